/*
 * The store's URL:
 *
 *   postgres://user:password@host:port/database?option=value&...
 *
 * (postgresql:// is the same). User, password, database and option values
 * are percent-decoded. Options ('_' may stand for '-'): sslmode,
 * sslrootcert, sslcert, sslkey, connect-timeout, application-name, host
 * (a socket directory, for an empty host part), schema, table-prefix,
 * prepare (on, off), notify (on, off).
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

#include "pg_store.h"

#define DEFAULT_PORT 5432
#define DEFAULT_PREFIX "bus_"
#define DEFAULT_CONNECT_TIMEOUT 10
#define TIMEOUT_MAX 86400
#define DATABASE_MAX 63

#define SYNTAX "postgres://user:password@host:port/database?option=value"

typedef int (*error_fn)(int code, const char *fmt, ...);

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes src[0..len) into *out (malloc'd). BUS_EINVAL for a '%' not
 * followed by two hex digits or one that makes a NUL byte. */
static int decode(char **out, const char *src, size_t len)
{
	char *d = malloc(len + 1);
	if (d == NULL)
		return BUS_ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		if (src[i] != '%') {
			d[k++] = src[i];
			continue;
		}
		int hi = i + 2 < len ? hex_value(src[i + 1]) : -1;
		int lo = hi >= 0 ? hex_value(src[i + 2]) : -1;
		if (lo < 0 || (hi == 0 && lo == 0)) {
			explicit_bzero(d, len + 1);
			free(d);
			return BUS_EINVAL;
		}
		d[k++] = (char)(hi * 16 + lo);
		i += 2;
	}
	d[k] = '\0';
	*out = d;
	return 0;
}

/* decode() with the error reported for `what`. */
static int decode_part(char **out, const char *src, size_t len,
		       const char *what, error_fn error)
{
	int rc = decode(out, src, len);
	if (rc == BUS_ENOMEM)
		return error(BUS_ENOMEM, "postgres store: out of memory parsing "
					 "the URL");
	if (rc != 0)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: %s has a '%%' that is not "
			     "followed by two hex digits (or encodes a NUL)",
			     what);
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned *out)
{
	if (*s == '\0')
		return -1;
	unsigned long v = 0;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -1;
	}
	*out = (unsigned)v;
	return 0;
}

/* ---- The host part ---- */

static int parse_port(struct pg_url *u, const char *s, size_t len,
		      error_fn error)
{
	char buf[8];
	unsigned port = 0;
	if (len == 0 || len >= sizeof buf)
		port = 0;
	else {
		memcpy(buf, s, len);
		buf[len] = '\0';
		if (parse_uint(buf, 65535, &port) != 0)
			port = 0;
	}
	/* Not repeated: with an unencoded '/' in the password, this is
	 * where its first half lands. */
	if (port == 0)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: the port is not a number "
			     "from 1 to 65535 (" SYNTAX ")");
	u->port = port;
	return 0;
}

/* host, host:port, [v6], [v6]:port, or empty. */
static int parse_hostport(struct pg_url *u, const char *s, size_t len,
			  error_fn error)
{
	const char *host = s, *colon = NULL;
	size_t hlen;
	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (close == NULL)
			return error(BUS_EINVAL,
				     "postgres store: bad URL: an IPv6 address "
				     "in [ ] lacks its ']'");
		host = s + 1;
		hlen = (size_t)(close - host);
		size_t rest = len - (size_t)(close + 1 - s);
		if (rest > 0 && close[1] != ':')
			return error(BUS_EINVAL,
				     "postgres store: bad URL: after an IPv6 "
				     "address in [ ] only ':port' may follow");
		if (rest > 0)
			colon = close + 1;
	} else {
		colon = memchr(s, ':', len);
		hlen = colon ? (size_t)(colon - s) : len;
	}
	u->port = DEFAULT_PORT;
	if (colon != NULL) {
		int rc = parse_port(u, colon + 1, len - (size_t)(colon + 1 - s),
				    error);
		if (rc != 0)
			return rc;
	}
	if (hlen == 0)
		return 0;
	if ((u->host = strndup(host, hlen)) == NULL)
		return error(BUS_ENOMEM, "postgres store: out of memory parsing "
					 "the URL");
	for (const char *p = u->host; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == '%')
			return error(BUS_EINVAL,
				     "postgres store: bad URL: the host name has "
				     "a space, control character or '%%'");
	return 0;
}

/* user[:password] */
static int parse_userinfo(struct pg_url *u, const char *s, size_t len,
			  error_fn error)
{
	const char *colon = memchr(s, ':', len);
	size_t ulen = colon ? (size_t)(colon - s) : len;
	int rc = decode_part(&u->user, s, ulen, "the user name", error);
	if (rc == 0 && colon != NULL)
		rc = decode_part(&u->password, colon + 1, len - ulen - 1,
				 "the password", error);
	if (rc == 0 && u->user[0] == '\0')
		rc = error(BUS_EINVAL, "postgres store: bad URL: the user name is "
				       "empty (" SYNTAX ")");
	return rc;
}

/* ---- Options ---- */

static int set_path(char **field, const char *value, const char *name,
		    error_fn error)
{
	if (value[0] == '\0')
		return error(BUS_EINVAL,
			     "postgres store: bad URL: option %s has an empty "
			     "value",
			     name);
	char *copy = strdup(value);
	if (copy == NULL)
		return error(BUS_ENOMEM, "postgres store: out of memory parsing "
					 "the URL");
	free(*field);
	*field = copy;
	return 0;
}

static int set_sslmode(struct pg_url *u, const char *value, error_fn error)
{
	static const char *const modes[] = {
		"disable", "allow", "prefer", "require", "verify-ca",
		"verify-full",
	};
	for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
		if (strcmp(value, modes[i]) == 0)
			return set_path(&u->sslmode, value, "sslmode", error);
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

static int set_timeout(unsigned *field, const char *value, const char *name,
		       unsigned min, error_fn error)
{
	unsigned v;
	if (parse_uint(value, TIMEOUT_MAX, &v) != 0 || v < min)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: %s '%.32s' is not a "
			     "whole number of seconds from %u to %u",
			     name, value, min, TIMEOUT_MAX);
	*field = v;
	return 0;
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
		return set_path(&u->sslrootcert, value, name, error);
	if (strcmp(name, "sslcert") == 0)
		return set_path(&u->sslcert, value, name, error);
	if (strcmp(name, "sslkey") == 0)
		return set_path(&u->sslkey, value, name, error);
	if (strcmp(name, "connect-timeout") == 0)
		return set_timeout(&u->connect_timeout, value, name, 1, error);
	if (strcmp(name, "application-name") == 0)
		return set_path(&u->application_name, value, name, error);
	if (strcmp(name, "host") == 0 && u->host != NULL)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: it gives a host both "
			     "before the path and as ?host= (leave the host "
			     "part empty for ?host=/socket/directory)");
	if (strcmp(name, "host") == 0)
		return set_path(&u->host, value, name, error);
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
		     "application-name, host, schema, table-prefix, prepare, "
		     "notify)",
		     name);
}

/* One "name=value" of the query, len bytes at s. */
static int parse_option(struct pg_url *u, const char *s, size_t len,
			error_fn error)
{
	const char *eq = memchr(s, '=', len);
	if (eq == NULL)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: option '%.*s' has no "
			     "'=value'",
			     (int)(len > 40 ? 40 : len), s);
	char *name = NULL, *value = NULL;
	size_t nlen = (size_t)(eq - s);
	int rc = decode_part(&name, s, nlen, "an option name", error);
	if (rc == 0)
		rc = decode_part(&value, eq + 1, len - (size_t)(eq + 1 - s),
				 "an option value", error);
	if (rc == 0) {
		for (char *p = name; *p != '\0'; p++)
			if (*p == '_')
				*p = '-';
		rc = set_option(u, name, value, error);
	}
	free(name);
	free(value);
	return rc;
}

static int parse_query(struct pg_url *u, const char *q, error_fn error)
{
	while (*q != '\0') {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		if (len > 0) {
			int rc = parse_option(u, q, len, error);
			if (rc != 0)
				return rc;
		}
		q += len + (amp != NULL);
	}
	return 0;
}

/* ---- The whole URL ---- */

static int parse_database(struct pg_url *u, const char *s, size_t len,
			  error_fn error)
{
	if (len == 0)
		return error(BUS_EINVAL, "postgres store: bad URL: it names no "
					 "database (" SYNTAX ")");
	int rc = decode_part(&u->database, s, len, "the database name", error);
	if (rc != 0)
		return rc;
	size_t dlen = strlen(u->database);
	if (dlen > DATABASE_MAX || strchr(u->database, '/') != NULL)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: the database name is "
			     "longer than %d bytes or has a '/'",
			     DATABASE_MAX);
	return 0;
}

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
	size_t alen = strcspn(rest, "/?");
	const char *after = rest + alen;
	if (strchr(after, '@') != NULL)
		return error(BUS_EINVAL,
			     "postgres store: bad URL: it has an '@' after the "
			     "host part: percent-encode '/', '?', '@' and "
			     "':' in the user name and password (%%2F, %%3F, "
			     "%%40, %%3A)");
	/* The last '@' ends the user part, so that an unencoded '@' in a
	 * password still works. */
	const char *at = NULL;
	for (const char *p = rest; p < after; p++)
		if (*p == '@')
			at = p;
	int rc = 0;
	if (at != NULL)
		rc = parse_userinfo(u, rest, (size_t)(at - rest), error);
	const char *hp = at ? at + 1 : rest;
	if (rc == 0)
		rc = parse_hostport(u, hp, (size_t)(after - hp), error);
	const char *q = strchr(after, '?');
	if (rc == 0) {
		const char *db = *after == '/' ? after + 1 : after;
		size_t dlen = q ? (size_t)(q - db) : strlen(db);
		rc = parse_database(u, db, dlen, error);
	}
	if (rc == 0 && q != NULL)
		rc = parse_query(u, q + 1, error);
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
