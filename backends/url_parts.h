/*
 * The parts of a store URL that every store reads the same way:
 *
 *   scheme://user:password@host:port/database?option=value&...
 *
 * Each store's url.c checks its scheme, hands the rest here with its name
 * and limits (struct bus_url_store), and applies its own options through a
 * callback. Compiled into each store plug-in; the names are bus__ and
 * hidden (-fvisibility=hidden), so each .so still exports only
 * bus_backend_entry.
 *
 * No message shows the password: see the comment in url_parts.c.
 */
#ifndef BUS_BACKENDS_URL_PARTS_H
#define BUS_BACKENDS_URL_PARTS_H

#include <stddef.h>

/* The store's error reporter: records the message and returns `code`. */
typedef int (*bus_url_error_fn)(int code, const char *fmt, ...);

/* What differs between the stores' URLs. */
struct bus_url_store {
	const char *name;   /* starts every message: "postgres store" */
	const char *syntax; /* the example URL some messages give */
	unsigned default_port;
	size_t database_max; /* bytes, after decoding */
	bus_url_error_fn error;
};

/* Where the common parts go: fields of the store's own URL struct. Each
 * string is malloc'd and owned by that struct (NULL when absent); the
 * password is the store's to explicit_bzero before freeing. */
struct bus_url_fields {
	char **user;
	char **password;
	char **host;
	unsigned *port;
	char **database;
};

/* Applies option `name` (decoded, '_' turned to '-') with its decoded
 * value to the store's URL struct `url`; 0 or what st->error returned. */
typedef int (*bus_url_option_fn)(void *url, const struct bus_url_store *st,
				 const char *name, const char *value);

/* Parses what follows "scheme://": userinfo, host:port (IPv6 in [ ]),
 * database and the options. 0, or what st->error returned; on error the
 * fields may be partly set, for the store's free function. */
int bus__url_parse_rest(const struct bus_url_store *st,
			const struct bus_url_fields *f, const char *rest,
			bus_url_option_fn set_option, void *url);

/* The longest timeout option, in seconds: a day. */
#define BUS_URL_TIMEOUT_MAX 86400

/* Copies a non-empty option value into *field (freeing the old one).
 * `store` starts the message: "postgres store". */
int bus__url_set_path(char **field, const char *value, const char *name,
		      const char *store, bus_url_error_fn error);

/* A whole number of seconds from min to BUS_URL_TIMEOUT_MAX into *field. */
int bus__url_set_timeout(unsigned *field, const char *value, const char *name,
			 unsigned min, const char *store,
			 bus_url_error_fn error);

#endif
