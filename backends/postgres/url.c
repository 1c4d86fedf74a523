/*
 * The store's URL:
 *
 *   postgres://user:password@host:port/database?option=value&...
 *
 * (postgresql:// is the same). User, password, database and option values
 * are percent-decoded. Options ('_' may stand for '-'): sslmode,
 * sslrootcert, sslcert, sslkey, connect-timeout, read-timeout,
 * write-timeout, keepalive, application-name, host (a socket directory,
 * for an empty host part), schema, table-prefix, prepare (on, off),
 * notify (on, off).
 *
 * Timeouts are whole seconds, 0 for none, as in the MySQL store: by
 * default a connection attempt gives up after 10 s, a wait for the
 * server's reply (or to send it a statement) after 60 s (longer than any
 * lock wait the store makes: a migration waits 30 s for another node's),
 * and TCP keepalive probes start after 30 s of silence; so a network that
 * stops passing packets ends a call as a lost connection instead of
 * hanging it (libpq itself would wait forever).
 *
 * No message shows the password, nor anything that could be a piece of
 * one: a password with an unencoded '/' or '?' ends the host part early
 * and leaves the rest to look like a port, a database or options, so
 * ports and database names are described, never repeated, and an '@'
 * after the host part is refused as a password that needs encoding.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../url_parts.h"
#include "pg_store.h"

#define DEFAULT_PORT 5432
#define DEFAULT_PREFIX "bus_"
#define DEFAULT_CONNECT_TIMEOUT 10
#define DEFAULT_IO_TIMEOUT 60
#define DEFAULT_KEEPALIVE 30
#define DATABASE_MAX 63

#define STORE "postgres store"
#define SYNTAX "postgres://user:password@host:port/database?option=value"

typedef bus_url_error_fn error_fn;

/* ---- Options ---- */

static int set_sslmode(struct pg_url *u, const char *value, error_fn error)
{
	static const char *const modes[] = {
		"disable", "allow", "prefer", "require", "verify-ca",
		"verify-full",
	};
	for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
		if (strcmp(value, modes[i]) == 0)
			return bus__url_set_path(&u->sslmode, value, "sslmode",
						 STORE, error);
	return error(BUS_EINVAL,
		     "postgres store: bad URL: sslmode '%.32s' is not one of "
		     "disable, allow, prefer, require, verify-ca, verify-full",
		     value);
}

static int set_bool(int *field, const char *value, const char *name,
		    error_fn error)
{
	static const char *const on[] = { "on", "true", "yes", "1" };
	static const char *const off[] = { "off", "false", "no", "0" };
	for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
		if (strcmp(value, on[i]) == 0) {
			*field = 1;
			return 0;
		}
		if (strcmp(value, off[i]) == 0) {
			*field = 0;
			return 0;
		}
	}
	return error(BUS_EINVAL,
		     "postgres store: bad URL: %s '%.32s' is not on or off",
		     name, value);
}

/* A name pasted into SQL: at most `max` of a-z, 0-9 and '_'. */
static int name_ok(const char *value, size_t max)
{
	size_t len = strlen(value);
	int ok = len <= max;
	for (size_t i = 0; ok && i < len; i++)
		ok = (value[i] >= 'a' && value[i] <= 'z') ||
		     (value[i] >= '0' && value[i] <= '9') || value[i] == '_';
	return ok;
}

static int set_prefix(struct pg_url *u, const char *value, error_fn error)
{
	if (value[0] == '\0')
		return error(BUS_EINVAL,
			     "postgres store: bad URL: table-prefix is empty: "
			     "the tables would be named plain jobs, queues and "
			     "schema_version; give a prefix (the default is "
			     "bus_)");
	if (!name_ok(value, PG_PREFIX_MAX))
		return error(BUS_EINVAL,
			     "postgres store: bad URL: table-prefix '%.40s' "
			     "must be at most %d of a-z, 0-9 and '_'",
			     value, PG_PREFIX_MAX);
	memcpy(u->prefix, value, strlen(value) + 1);
	return 0;
}

static int set_schema(struct pg_url *u, const char *value, error_fn error)
{
	if (value[0] == '\0' || !name_ok(value, PG_SCHEMA_MAX) ||
	    (value[0] >= '0' && value[0] <= '9'))
		return error(BUS_EINVAL,
			     "postgres store: bad URL: schema '%.70s' must be "
			     "1 to %d of a-z, 0-9 and '_', not starting with "
			     "a digit",
			     value, PG_SCHEMA_MAX);
	memcpy(u->schema, value, strlen(value) + 1);
	return 0;
}

/* Applies option `name` (already decoded, '_' turned to '-'). */
static int set_option(struct pg_url *u, const char *name, const char *value,
		      error_fn error)
{
	if (strcmp(name, "sslmode") == 0 || strcmp(name, "ssl-mode") == 0)
		return set_sslmode(u, value, error);
	if (strcmp(name, "sslrootcert") == 0)
		return bus__url_set_path(&u->sslrootcert, value, name, STORE,
					 error);
	if (strcmp(name, "sslcert") == 0)
		return bus__url_set_path(&u->sslcert, value, name, STORE,
					 error);
	if (strcmp(name, "sslkey") == 0)
		return bus__url_set_path(&u->sslkey, value, name, STORE, error);
	if (strcmp(name, "connect-timeout") == 0)
		return bus__url_set_timeout(&u->connect_timeout, value, name, 1,
					    STORE, error);
	if (strcmp(name, "read-timeout") == 0)
		return bus__url_set_timeout(&u->read_timeout, value, name, 0,
					    STORE, error);
	if (strcmp(name, "write-timeout") == 0)
		return bus__url_set_timeout(&u->write_timeout, value, name, 0,
					    STORE, error);
	if (strcmp(name, "keepalive") == 0)
		return bus__url_set_timeout(&u->keepalive, value, name, 0,
					    STORE, error);
	if (strcmp(name, "application-name") == 0)
		return bus__url_set_path(&u->application_name, value, name,
					 STORE, error);
	if (strcmp(name, "host") == 0 && u->host != NULL)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: it gives a host both "
			     "before the path and as ?host= (leave the host "
			     "part empty for ?host=/socket/directory)");
	if (strcmp(name, "host") == 0)
		return bus__url_set_path(&u->host, value, name, STORE, error);
	if (strcmp(name, "schema") == 0)
		return set_schema(u, value, error);
	if (strcmp(name, "table-prefix") == 0)
		return set_prefix(u, value, error);
	if (strcmp(name, "prepare") == 0)
		return set_bool(&u->prepare, value, name, error);
	if (strcmp(name, "notify") == 0)
		return set_bool(&u->notify, value, name, error);
	return error(BUS_EINVAL,
		     "postgres store: bad URL: unknown option '%.40s' (known: "
		     "sslmode, sslrootcert, sslcert, sslkey, connect-timeout, "
		     "read-timeout, write-timeout, keepalive, "
		     "application-name, host, schema, table-prefix, prepare, "
		     "notify)",
		     name);
}

/* set_option for bus__url_parse_rest. */
static int apply_option(void *url, const struct bus_url_store *st,
			const char *name, const char *value)
{
	return set_option(url, name, value, st->error);
}

/* ---- The whole URL ---- */

/* The checks that need every part. */
static int check_whole(struct pg_url *u, error_fn error)
{
	if (u->sslmode != NULL && strncmp(u->sslmode, "verify-", 7) == 0 &&
	    u->sslrootcert == NULL)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: sslmode %s needs "
			     "sslrootcert (the CA that signed the server's "
			     "certificate)",
			     u->sslmode);
	return 0;
}

static int parse(struct pg_url *u, const char *url, error_fn error)
{
	const char *rest;
	if (strncmp(url, "postgres://", 11) == 0)
		rest = url + 11;
	else if (strncmp(url, "postgresql://", 13) == 0)
		rest = url + 13;
	else
		return error(BUS_EINVAL,
			     "postgres store: bad URL: it must start with "
			     "postgres:// or postgresql:// (" SYNTAX ")");
	const struct bus_url_store st = {STORE, SYNTAX, DEFAULT_PORT,
					 DATABASE_MAX, error};
	const struct bus_url_fields f = {&u->user, &u->password, &u->host,
					 &u->port, &u->database};
	int rc = bus__url_parse_rest(&st, &f, rest, apply_option, u);
	if (rc == 0)
		rc = check_whole(u, error);
	return rc;
}

int bus__pg_url_parse(struct pg_url *out, const char *url, error_fn error)
{
	memset(out, 0, sizeof *out);
	if (url == NULL)
		return error(BUS_EINVAL, "postgres store: the URL is NULL");
	out->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
	out->read_timeout = DEFAULT_IO_TIMEOUT;
	out->write_timeout = DEFAULT_IO_TIMEOUT;
	out->keepalive = DEFAULT_KEEPALIVE;
	out->prepare = 1;
	out->notify = 1;
	memcpy(out->prefix, DEFAULT_PREFIX, sizeof DEFAULT_PREFIX);
	int rc = parse(out, url, error);
	if (rc != 0)
		bus__pg_url_free(out);
	return rc;
}

void bus__pg_url_free(struct pg_url *u)
{
	if (u->password != NULL) {
		explicit_bzero(u->password, strlen(u->password));
		free(u->password);
	}
	free(u->user);
	free(u->host);
	free(u->database);
	free(u->sslmode);
	free(u->sslrootcert);
	free(u->sslcert);
	free(u->sslkey);
	free(u->application_name);
	memset(u, 0, sizeof *u);
}
