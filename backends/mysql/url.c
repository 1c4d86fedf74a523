/*
 * The store's URL:
 *
 *   mysql://user:password@host:port/database?option=value&...
 *
 * (mariadb:// is the same). User, password, database and option values
 * are percent-decoded. Options: socket, ssl-mode, ssl-ca, ssl-capath,
 * ssl-cert, ssl-key, connect-timeout, read-timeout, write-timeout,
 * keepalive, table-prefix ('_' may stand for '-').
 *
 * Timeouts are whole seconds, 0 for none. By default a connection attempt
 * gives up after 10 s, and a read or a write on the connection after 60 s
 * (longer than any lock wait the store makes: a statement waits 10 s for
 * a row lock, a migration 30 s for another node's), and TCP keepalive
 * probes start after 30 s of silence; so a network that stops passing
 * packets ends a call as a lost connection instead of hanging it.
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

#include "mysql_store.h"

#define DEFAULT_PORT 3306
#define DEFAULT_PREFIX "bus_"
#define DEFAULT_CONNECT_TIMEOUT 10
#define DEFAULT_IO_TIMEOUT 60
#define DEFAULT_KEEPALIVE 30
#define TIMEOUT_MAX 86400
#define DATABASE_MAX 64

#define SYNTAX "mysql://user:password@host:port/database?option=value"

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
		return error(BUS_ENOMEM, "mysql store: out of memory parsing "
					 "the URL");
	if (rc != 0)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: %s has a '%%' that is not "
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

static int parse_port(struct my_url *u, const char *s, size_t len,
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
			     "mysql store: bad URL: the port is not a number "
			     "from 1 to 65535 (" SYNTAX ")");
	u->port = port;
	return 0;
}

/* host, host:port, [v6], [v6]:port, or empty. */
static int parse_hostport(struct my_url *u, const char *s, size_t len,
			  error_fn error)
{
	const char *host = s, *colon = NULL;
	size_t hlen;
	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (close == NULL)
			return error(BUS_EINVAL,
				     "mysql store: bad URL: an IPv6 address "
				     "in [ ] lacks its ']'");
		host = s + 1;
		hlen = (size_t)(close - host);
		size_t rest = len - (size_t)(close + 1 - s);
		if (rest > 0 && close[1] != ':')
			return error(BUS_EINVAL,
				     "mysql store: bad URL: after an IPv6 "
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
		return error(BUS_ENOMEM, "mysql store: out of memory parsing "
					 "the URL");
	for (const char *p = u->host; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == '%')
			return error(BUS_EINVAL,
				     "mysql store: bad URL: the host name has "
				     "a space, control character or '%%'");
	return 0;
}

/* user[:password] */
static int parse_userinfo(struct my_url *u, const char *s, size_t len,
			  error_fn error)
{
	const char *colon = memchr(s, ':', len);
	size_t ulen = colon ? (size_t)(colon - s) : len;
	int rc = decode_part(&u->user, s, ulen, "the user name", error);
	if (rc == 0 && colon != NULL)
		rc = decode_part(&u->password, colon + 1, len - ulen - 1,
				 "the password", error);
	if (rc == 0 && u->user[0] == '\0')
		rc = error(BUS_EINVAL, "mysql store: bad URL: the user name is "
				       "empty (" SYNTAX ")");
	return rc;
}

/* ---- Options ---- */

static int set_path(char **field, const char *value, const char *name,
		    error_fn error)
{
	if (value[0] == '\0')
		return error(BUS_EINVAL,
			     "mysql store: bad URL: option %s has an empty "
			     "value",
			     name);
	char *copy = strdup(value);
	if (copy == NULL)
		return error(BUS_ENOMEM, "mysql store: out of memory parsing "
					 "the URL");
	free(*field);
	*field = copy;
	return 0;
}

static int set_ssl_mode(struct my_url *u, const char *value, error_fn error)
{
	static const struct {
		const char *name;
		enum my_ssl_mode mode;
	} modes[] = {
		{"disabled", MY_SSL_DISABLED},
		{"preferred", MY_SSL_PREFERRED},
		{"required", MY_SSL_REQUIRED},
		{"verify_ca", MY_SSL_VERIFY_CA},
		{"verify_identity", MY_SSL_VERIFY_IDENTITY},
	};
	char norm[32];
	size_t len = strlen(value);
	for (size_t i = 0; len < sizeof norm && i <= len; i++) {
		char c = value[i];
		norm[i] = c == '-'		 ? '_'
			  : c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a')
						 : c;
	}
	for (size_t i = 0;
	     len < sizeof norm && i < sizeof modes / sizeof *modes; i++)
		if (strcmp(norm, modes[i].name) == 0) {
			u->ssl_mode = modes[i].mode;
			return 0;
		}
	return error(BUS_EINVAL,
		     "mysql store: bad URL: ssl-mode '%.32s' is not one of "
		     "disabled, preferred, required, verify_ca, "
		     "verify_identity",
		     value);
}

static int set_timeout(unsigned *field, const char *value, const char *name,
		       unsigned min, error_fn error)
{
	unsigned v;
	if (parse_uint(value, TIMEOUT_MAX, &v) != 0 || v < min)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: %s '%.32s' is not a "
			     "whole number of seconds from %u to %u",
			     name, value, min, TIMEOUT_MAX);
	*field = v;
	return 0;
}

static int set_prefix(struct my_url *u, const char *value, error_fn error)
{
	size_t len = strlen(value);
	if (len == 0)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: table-prefix is empty: the "
			     "tables would be named plain jobs, queues and "
			     "schema_version; give a prefix (the default is "
			     "bus_)");
	int ok = len <= MY_PREFIX_MAX;
	for (size_t i = 0; ok && i < len; i++)
		ok = (value[i] >= 'a' && value[i] <= 'z') ||
		     (value[i] >= '0' && value[i] <= '9') || value[i] == '_';
	if (!ok)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: table-prefix '%.40s' must "
			     "be at most %d of a-z, 0-9 and '_'",
			     value, MY_PREFIX_MAX);
	memcpy(u->prefix, value, len + 1);
	return 0;
}

/* Applies option `name` (already decoded, '_' turned to '-'). */
static int set_option(struct my_url *u, const char *name, const char *value,
		      error_fn error)
{
	if (strcmp(name, "socket") == 0)
		return set_path(&u->socket, value, name, error);
	if (strcmp(name, "ssl-mode") == 0)
		return set_ssl_mode(u, value, error);
	if (strcmp(name, "ssl-ca") == 0)
		return set_path(&u->ssl_ca, value, name, error);
	if (strcmp(name, "ssl-capath") == 0)
		return set_path(&u->ssl_capath, value, name, error);
	if (strcmp(name, "ssl-cert") == 0)
		return set_path(&u->ssl_cert, value, name, error);
	if (strcmp(name, "ssl-key") == 0)
		return set_path(&u->ssl_key, value, name, error);
	if (strcmp(name, "connect-timeout") == 0)
		return set_timeout(&u->connect_timeout, value, name, 1, error);
	if (strcmp(name, "read-timeout") == 0)
		return set_timeout(&u->read_timeout, value, name, 0, error);
	if (strcmp(name, "write-timeout") == 0)
		return set_timeout(&u->write_timeout, value, name, 0, error);
	if (strcmp(name, "keepalive") == 0)
		return set_timeout(&u->keepalive, value, name, 0, error);
	if (strcmp(name, "table-prefix") == 0)
		return set_prefix(u, value, error);
	return error(BUS_EINVAL,
		     "mysql store: bad URL: unknown option '%.40s' (known: "
		     "socket, ssl-mode, ssl-ca, ssl-capath, ssl-cert, "
		     "ssl-key, connect-timeout, read-timeout, write-timeout, "
		     "keepalive, table-prefix)",
		     name);
}

/* One "name=value" of the query, len bytes at s. */
static int parse_option(struct my_url *u, const char *s, size_t len,
			error_fn error)
{
	const char *eq = memchr(s, '=', len);
	if (eq == NULL)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: option '%.*s' has no "
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

static int parse_query(struct my_url *u, const char *q, error_fn error)
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

static int parse_database(struct my_url *u, const char *s, size_t len,
			  error_fn error)
{
	if (len == 0)
		return error(BUS_EINVAL, "mysql store: bad URL: it names no "
					 "database (" SYNTAX ")");
	int rc = decode_part(&u->database, s, len, "the database name", error);
	if (rc != 0)
		return rc;
	size_t dlen = strlen(u->database);
	if (dlen > DATABASE_MAX || strchr(u->database, '/') != NULL)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: the database name is "
			     "longer than %d bytes or has a '/'",
			     DATABASE_MAX);
	return 0;
}

/* The checks that need every part. */
static int check_whole(struct my_url *u, error_fn error)
{
	if (u->socket != NULL && u->host != NULL &&
	    strcmp(u->host, "localhost") != 0)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: it gives both host '%.64s' "
			     "and a socket (leave the host empty, or "
			     "'localhost', with ?socket=)",
			     u->host);
	if (u->socket == NULL && u->host == NULL)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: it names no host (" SYNTAX
			     ", or ?socket=/path for a Unix socket)");
	if ((u->ssl_mode == MY_SSL_VERIFY_CA ||
	     u->ssl_mode == MY_SSL_VERIFY_IDENTITY) &&
	    u->ssl_ca == NULL && u->ssl_capath == NULL)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: ssl-mode verify_ca and "
			     "verify_identity need ssl-ca or ssl-capath");
	return 0;
}

static int parse(struct my_url *u, const char *url, error_fn error)
{
	const char *rest;
	if (strncmp(url, "mysql://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "mariadb://", 10) == 0)
		rest = url + 10;
	else
		return error(BUS_EINVAL,
			     "mysql store: bad URL: it must start with "
			     "mysql:// or mariadb:// (" SYNTAX ")");
	size_t alen = strcspn(rest, "/?");
	const char *after = rest + alen;
	if (strchr(after, '@') != NULL)
		return error(BUS_EINVAL,
			     "mysql store: bad URL: it has an '@' after the "
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

int bus__my_url_parse(struct my_url *out, const char *url, error_fn error)
{
	memset(out, 0, sizeof *out);
	if (url == NULL)
		return error(BUS_EINVAL, "mysql store: the URL is NULL");
	out->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
	out->read_timeout = DEFAULT_IO_TIMEOUT;
	out->write_timeout = DEFAULT_IO_TIMEOUT;
	out->keepalive = DEFAULT_KEEPALIVE;
	memcpy(out->prefix, DEFAULT_PREFIX, sizeof DEFAULT_PREFIX);
	int rc = parse(out, url, error);
	if (rc != 0)
		bus__my_url_free(out);
	return rc;
}

void bus__my_url_free(struct my_url *u)
{
	if (u->password != NULL) {
		explicit_bzero(u->password, strlen(u->password));
		free(u->password);
	}
	free(u->user);
	free(u->host);
	free(u->database);
	free(u->socket);
	free(u->ssl_ca);
	free(u->ssl_capath);
	free(u->ssl_cert);
	free(u->ssl_key);
	memset(u, 0, sizeof *u);
}
