/* A strict JSON (RFC 8259) validator that builds nothing. Dispatch validates
 * every payload with it, so that bad input is refused before any handler
 * runs, while the cJSON tree is only built for handlers that ask for it. */
#ifndef BUS_LIB_JSON_CHECK_H
#define BUS_LIB_JSON_CHECK_H

#include <stddef.h>

/* Deeper nesting of arrays and objects is refused. The limit is that of
 * the strictest store: MariaDB's JSON_VALID refuses 32 levels (MySQL
 * allows 100, cJSON 1000), so that every store, memory: included, gives
 * the same answer for the same payload, before anything is stored. */
#define BUS_JSON_MAX_DEPTH 31

/* The largest payload, result or metadata accepted (bus.h says 16 MiB). */
#define BUS_PAYLOAD_MAX ((size_t)16 << 20)

struct bus_json_error {
	size_t offset;      /* byte offset of the first error */
	const char *reason; /* static text: "unterminated string", ... */
	int too_large;      /* longer than max_len; offset is then the length */
	size_t limit;       /* max_len, for the message */
};

/* Checks the NUL-terminated `text`, of at most `max_len` bytes. Returns 0 and
 * stores the length in *len when it is one valid JSON value (surrounding
 * white space allowed); otherwise returns -1 and fills *err. */
int bus__json_check(const char *text, size_t max_len, size_t *len,
		    struct bus_json_error *err);

/* The length of the valid UTF-8 sequence (RFC 3629) at p[0] >= 0x80, or
 * 0. Reads at most 4 bytes, stopping at a NUL. */
int bus__utf8_seq(const unsigned char *p);

/* Formats a BUS_EINVAL error for `what` ("payload of event 'x'", ...). */
int bus__json_error_set(const char *what, const struct bus_json_error *err);

#endif
