/*
 * The URL parts every store reads the same way (url_parts.h); each
 * store's url.c keeps its scheme, its options and its struct.
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

#include "bus/bus.h"
#include "url_parts.h"

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

static int out_of_memory(const struct bus_url_store *st)
{
	return st->error(BUS_ENOMEM, "%s: out of memory parsing the URL",
			 st->name);
}

/* decode() with the error reported for `what`. */
static int decode_part(const struct bus_url_store *st, char **out,
		       const char *src, size_t len, const char *what)
{
	int rc = decode(out, src, len);
	if (rc == BUS_ENOMEM)
		return out_of_memory(st);
	if (rc != 0)
		return st->error(
		    BUS_EINVAL,
		    "%s: bad URL: %s has a '%%' that is not "
		    "followed by two hex digits (or encodes a NUL)",
		    st->name, what);
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

static int parse_port(const struct bus_url_store *st,
		      const struct bus_url_fields *f, const char *s, size_t len)
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
		return st->error(BUS_EINVAL,
				 "%s: bad URL: the port is not a number from 1 "
				 "to 65535 (%s)",
				 st->name, st->syntax);
	*f->port = port;
	return 0;
}

/* host, host:port, [v6], [v6]:port, or empty. */
static int parse_hostport(const struct bus_url_store *st,
			  const struct bus_url_fields *f, const char *s,
			  size_t len)
{
	const char *host = s, *colon = NULL;
	size_t hlen;
	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (close == NULL)
			return st->error(BUS_EINVAL,
					 "%s: bad URL: an IPv6 address in [ ] "
					 "lacks its ']'",
					 st->name);
		host = s + 1;
		hlen = (size_t)(close - host);
		size_t rest = len - (size_t)(close + 1 - s);
		if (rest > 0 && close[1] != ':')
			return st->error(BUS_EINVAL,
					 "%s: bad URL: after an IPv6 address "
					 "in [ ] only ':port' may follow",
					 st->name);
		if (rest > 0)
			colon = close + 1;
	} else {
		colon = memchr(s, ':', len);
		hlen = colon ? (size_t)(colon - s) : len;
	}
	*f->port = st->default_port;
	if (colon != NULL) {
		int rc =
		    parse_port(st, f, colon + 1, len - (size_t)(colon + 1 - s));
		if (rc != 0)
			return rc;
	}
	if (hlen == 0)
		return 0;
	if ((*f->host = strndup(host, hlen)) == NULL)
		return out_of_memory(st);
	for (const char *p = *f->host; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == '%')
			return st->error(BUS_EINVAL,
					 "%s: bad URL: the host name has a "
					 "space, control character or '%%'",
					 st->name);
	return 0;
}

/* user[:password] */
static int parse_userinfo(const struct bus_url_store *st,
			  const struct bus_url_fields *f, const char *s,
			  size_t len)
{
	const char *colon = memchr(s, ':', len);
	size_t ulen = colon ? (size_t)(colon - s) : len;
	int rc = decode_part(st, f->user, s, ulen, "the user name");
	if (rc == 0 && colon != NULL)
		rc = decode_part(st, f->password, colon + 1, len - ulen - 1,
				 "the password");
	if (rc == 0 && (*f->user)[0] == '\0')
		rc = st->error(BUS_EINVAL,
			       "%s: bad URL: the user name is empty (%s)",
			       st->name, st->syntax);
	return rc;
}

/* ---- Options ---- */

int bus__url_set_path(char **field, const char *value, const char *name,
		      const char *store, bus_url_error_fn error)
{
	if (value[0] == '\0')
		return error(BUS_EINVAL,
			     "%s: bad URL: option %s has an empty value", store,
			     name);
	char *copy = strdup(value);
	if (copy == NULL)
		return error(BUS_ENOMEM, "%s: out of memory parsing the URL",
			     store);
	free(*field);
	*field = copy;
	return 0;
}

int bus__url_set_timeout(unsigned *field, const char *value, const char *name,
			 unsigned min, const char *store,
			 bus_url_error_fn error)
{
	unsigned v;
	if (parse_uint(value, BUS_URL_TIMEOUT_MAX, &v) != 0 || v < min)
		return error(BUS_EINVAL,
			     "%s: bad URL: %s '%.32s' is not a whole number of "
			     "seconds from %u to %u",
			     store, name, value, min, BUS_URL_TIMEOUT_MAX);
	*field = v;
	return 0;
}

/* One "name=value" of the query, len bytes at s. */
static int parse_option(const struct bus_url_store *st, const char *s,
			size_t len, bus_url_option_fn set_option, void *url)
{
	const char *eq = memchr(s, '=', len);
	if (eq == NULL)
		return st->error(BUS_EINVAL,
				 "%s: bad URL: option '%.*s' has no '=value'",
				 st->name, (int)(len > 40 ? 40 : len), s);
	char *name = NULL, *value = NULL;
	size_t nlen = (size_t)(eq - s);
	int rc = decode_part(st, &name, s, nlen, "an option name");
	if (rc == 0)
		rc = decode_part(st, &value, eq + 1, len - (size_t)(eq + 1 - s),
				 "an option value");
	if (rc == 0) {
		for (char *p = name; *p != '\0'; p++)
			if (*p == '_')
				*p = '-';
		rc = set_option(url, st, name, value);
	}
	free(name);
	free(value);
	return rc;
}

static int parse_query(const struct bus_url_store *st, const char *q,
		       bus_url_option_fn set_option, void *url)
{
	while (*q != '\0') {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		if (len > 0) {
			int rc = parse_option(st, q, len, set_option, url);
			if (rc != 0)
				return rc;
		}
		q += len + (amp != NULL);
	}
	return 0;
}

/* ---- The whole URL ---- */

static int parse_database(const struct bus_url_store *st,
			  const struct bus_url_fields *f, const char *s,
			  size_t len)
{
	if (len == 0)
		return st->error(BUS_EINVAL,
				 "%s: bad URL: it names no database (%s)",
				 st->name, st->syntax);
	int rc = decode_part(st, f->database, s, len, "the database name");
	if (rc != 0)
		return rc;
	size_t dlen = strlen(*f->database);
	if (dlen > st->database_max || strchr(*f->database, '/') != NULL)
		return st->error(BUS_EINVAL,
				 "%s: bad URL: the database name is longer "
				 "than %d bytes or has a '/'",
				 st->name, (int)st->database_max);
	return 0;
}

int bus__url_parse_rest(const struct bus_url_store *st,
			const struct bus_url_fields *f, const char *rest,
			bus_url_option_fn set_option, void *url)
{
	size_t alen = strcspn(rest, "/?");
	const char *after = rest + alen;
	if (strchr(after, '@') != NULL)
		return st->error(
		    BUS_EINVAL,
		    "%s: bad URL: it has an '@' after the host "
		    "part: percent-encode '/', '?', '@' and ':' in "
		    "the user name and password (%%2F, %%3F, %%40, "
		    "%%3A)",
		    st->name);
	/* The last '@' ends the user part, so that an unencoded '@' in a
	 * password still works. */
	const char *at = NULL;
	for (const char *p = rest; p < after; p++)
		if (*p == '@')
			at = p;
	int rc = 0;
	if (at != NULL)
		rc = parse_userinfo(st, f, rest, (size_t)(at - rest));
	const char *hp = at ? at + 1 : rest;
	if (rc == 0)
		rc = parse_hostport(st, f, hp, (size_t)(after - hp));
	const char *q = strchr(after, '?');
	if (rc == 0) {
		const char *db = *after == '/' ? after + 1 : after;
		size_t dlen = q ? (size_t)(q - db) : strlen(db);
		rc = parse_database(st, f, db, dlen);
	}
	if (rc == 0 && q != NULL)
		rc = parse_query(st, q + 1, set_option, url);
	return rc;
}
