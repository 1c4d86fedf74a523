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

#include "../url_parts.h"
#include "mysql_store.h"

#define DEFAULT_PORT 3306
#define DEFAULT_PREFIX "bus_"
#define DEFAULT_CONNECT_TIMEOUT 10
#define DEFAULT_IO_TIMEOUT 60
#define DEFAULT_KEEPALIVE 30
#define DATABASE_MAX 64

#define STORE "mysql store"
#define SYNTAX "mysql://user:password@host:port/database?option=value"

typedef bus_url_error_fn error_fn;

/* ---- Options ---- */

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
		return bus__url_set_path(&u->socket, value, name, STORE, error);
	if (strcmp(name, "ssl-mode") == 0)
		return set_ssl_mode(u, value, error);
	if (strcmp(name, "ssl-ca") == 0)
		return bus__url_set_path(&u->ssl_ca, value, name, STORE, error);
	if (strcmp(name, "ssl-capath") == 0)
		return bus__url_set_path(&u->ssl_capath, value, name, STORE,
					 error);
	if (strcmp(name, "ssl-cert") == 0)
		return bus__url_set_path(&u->ssl_cert, value, name, STORE,
					 error);
	if (strcmp(name, "ssl-key") == 0)
		return bus__url_set_path(&u->ssl_key, value, name, STORE,
					 error);
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
	if (strcmp(name, "table-prefix") == 0)
		return set_prefix(u, value, error);
	return error(BUS_EINVAL,
		     "mysql store: bad URL: unknown option '%.40s' (known: "
		     "socket, ssl-mode, ssl-ca, ssl-capath, ssl-cert, "
		     "ssl-key, connect-timeout, read-timeout, write-timeout, "
		     "keepalive, table-prefix)",
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
	const struct bus_url_store st = {STORE, SYNTAX, DEFAULT_PORT,
					 DATABASE_MAX, error};
	const struct bus_url_fields f = {&u->user, &u->password, &u->host,
					 &u->port, &u->database};
	int rc = bus__url_parse_rest(&st, &f, rest, apply_option, u);
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
