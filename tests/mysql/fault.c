/* The fault tests' environment: the URL, the test's own connections, the
 * run's tables, the worker processes, and how a test ends. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"

#define MAX_CHILDREN 64

static struct fault_env *env;  /* the one environment of this program */
static pid_t parent_pid;       /* only the parent cleans up */
static struct timespec started;
static pid_t children[MAX_CHILDREN];
static int n_children;
/* What the watchdog execs to drop the tables: this program again, told the
 * prefix through the environment. Made before the alarm is armed, since
 * a signal handler may not allocate. */
#define DROP_VAR "BUS_FAULT_DROP_PREFIX"
static char *watchdog_argv[2] = { "fault-cleanup", NULL };
static char **watchdog_envp;

/* ---- the URL ------------------------------------------------------------ */

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

/* A percent-decoded copy of s[0..len), NULL when malformed. */
static char *decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;
	if (out == NULL)
		fault_fail("out of memory");
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
		int lo = i + 2 < len ? hex_value(s[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			free(out);
			return NULL;
		}
		*o++ = (char)(hi * 16 + lo);
		i += 2;
	}
	*o = '\0';
	return out;
}

/* Fills `d` from a mysql://, mariadb://, postgres:// or postgresql:// URL;
 * the message says what is wrong without repeating the URL (it holds a
 * password). */
static void parse_url(struct fault_dsn *d, const char *url)
{
	const char *p;
	if (strncmp(url, "mysql://", 8) == 0)
		p = url + 8;
	else if (strncmp(url, "mariadb://", 10) == 0)
		p = url + 10;
	else if (strncmp(url, "postgres://", 11) == 0)
		p = url + 11;
	else if (strncmp(url, "postgresql://", 13) == 0)
		p = url + 13;
	else
		fault_fail("the test URL must start with mysql://, "
			   "mariadb://, postgres:// or postgresql://");
	d->postgres = url[0] == 'p';
	size_t auth_len = strcspn(p, "/?");
	const char *at = NULL;
	for (const char *q = p; q < p + auth_len; q++)
		if (*q == '@')
			at = q;
	const char *host = p;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
		d->user = decode(p, ulen);
		d->password = colon ? decode(colon + 1,
					     (size_t)(at - colon - 1))
				    : strdup("");
		if (d->user == NULL || d->password == NULL)
			fault_fail("the test URL: bad percent-encoding "
				   "in the user or password");
		host = at + 1;
	}
	const char *host_end = p + auth_len, *port = NULL;
	size_t host_len = (size_t)(host_end - host);
	if (*host == '[') {
		const char *close = memchr(host, ']', host_len);
		if (close == NULL)
			fault_fail("the test URL: '[' without ']' in the "
				   "host");
		d->host = decode(host + 1, (size_t)(close - host - 1));
		if (close + 1 < host_end && close[1] == ':')
			port = close + 2;
	} else {
		const char *colon = memchr(host, ':', host_len);
		const char *end = colon ? colon : host_end;
		d->host = decode(host, (size_t)(end - host));
		if (colon != NULL)
			port = colon + 1;
	}
	d->port = d->postgres ? 5432 : 3306;
	if (port != NULL) {
		char *end;
		unsigned long v = strtoul(port, &end, 10);
		if (end != host_end || v == 0 || v > 65535)
			fault_fail("the test URL: the port is not a "
				   "number 1..65535");
		d->port = (unsigned)v;
	}
	p = host_end;
	if (*p == '/') {
		size_t dlen = strcspn(p + 1, "?");
		d->database = decode(p + 1, dlen);
		p += 1 + dlen;
	}
	if (d->host == NULL || d->database == NULL || d->database[0] == '\0')
		fault_fail("the test URL names no database (scheme://"
			   "user:password@host:port/database)");
	while (*p == '?' || *p == '&') {
		p++;
		size_t len = strcspn(p, "&");
		if (strncmp(p, "socket=", 7) == 0 &&
		    (d->socket = decode(p + 7, len - 7)) == NULL)
			fault_fail("the test URL: bad percent-encoding "
				   "in socket=");
		p += len;
	}
}

/* The URL with this run's table prefix in place of any it had. */
static char *url_with_prefix(const char *url, const char *prefix)
{
	size_t len = strlen(url) + strlen(prefix) + 32;
	char *out = malloc(len), *o = out;
	if (out == NULL)
		fault_fail("out of memory");
	size_t base = strcspn(url, "?");
	memcpy(o, url, base);
	o += base;
	char sep = '?';
	for (const char *p = url + base; *p != '\0';) {
		p++; /* '?' or '&' */
		size_t plen = strcspn(p, "&");
		if (strncmp(p, "table-prefix=", 13) != 0) {
			*o++ = sep;
			memcpy(o, p, plen);
			o += plen;
			sep = '&';
		}
		p += plen;
	}
	sprintf(o, "%ctable-prefix=%s", sep, prefix);
	return out;
}

static int is_local(const struct fault_dsn *d)
{
	return strcmp(d->host, "127.0.0.1") == 0 ||
	       strcmp(d->host, "localhost") == 0 || strcmp(d->host, "::1") == 0;
}

/* ---- connections and tables --------------------------------------------- */

/* Appends `name` to `out` as a quoted identifier. */
static void quote_ident(char *out, size_t cap, const char *name, char q)
{
	size_t o = 0;
	out[o++] = q;
	for (const char *p = name; *p != '\0' && o + 3 < cap; p++) {
		if (*p == q)
			out[o++] = q;
		out[o++] = *p;
	}
	out[o++] = q;
	out[o] = '\0';
}

struct names {
	char **v;
	size_t n, cap;
	int oom;
};

static void name_add(void *arg, const char *const *values, int n)
{
	struct names *l = arg;
	if (n < 1 || values[0] == NULL || l->oom)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof *v);
		if (v == NULL) {
			l->oom = 1;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	if ((l->v[l->n] = strdup(values[0])) != NULL)
		l->n++;
}

/* Names of the tables whose names start with the run's prefix, NULL with
 * the reason in `why`. The prefix is [a-z0-9_]: it can be pasted into the
 * pattern, its '_' escaped. */
static char **prefixed_tables(fault_db *db, size_t *n, char *why,
			      size_t why_len)
{
	char pattern[2 * sizeof env->prefix + 2], *o = pattern;
	for (const char *p = env->prefix; *p != '\0'; p++) {
		if (*p == '_' || *p == '%' || *p == '\\')
			*o++ = '\\';
		*o++ = *p;
	}
	*o++ = '%';
	*o = '\0';
	char sql[512];
	snprintf(sql, sizeof sql,
		 "SELECT table_name FROM information_schema.tables "
		 "WHERE table_schema = %s AND table_name LIKE '%s'",
		 env->dsn.postgres ? "current_schema()" : "DATABASE()",
		 pattern);
	struct names l = { NULL, 0, 0, 0 };
	*n = 0;
	if (fault_db_query(db, sql, name_add, &l, why, why_len) != 0 ||
	    l.oom) {
		if (l.oom)
			snprintf(why, why_len, "out of memory");
		for (size_t i = 0; i < l.n; i++)
			free(l.v[i]);
		free(l.v);
		return NULL;
	}
	if (l.v == NULL)
		l.v = calloc(1, sizeof *l.v);
	*n = l.n;
	return l.v;
}

/* Drops every table of the run. Returns how many it dropped, or -1 with a
 * warning when it could not (this also runs while failing, so it must not
 * fail itself). */
static int drop_tables(void)
{
	char why[512];
	fault_db *db = fault_connect(&env->dsn, why, sizeof why);
	size_t n = 0;
	char **names = NULL;
	if (db != NULL) {
		/* The plug-in's tables may refer to each other. */
		if (!env->dsn.postgres)
			fault_db_exec(db, "SET SESSION foreign_key_checks = 0",
				      why, sizeof why);
		names = prefixed_tables(db, &n, why, sizeof why);
	}
	if (names == NULL) {
		fprintf(stderr, "%s: cannot drop the tables of prefix %s: %s\n",
			env->test, env->prefix, why);
		fault_db_close(db);
		return -1;
	}
	int dropped = 0;
	for (size_t i = 0; i < n; i++) {
		char ident[600], sql[700];
		quote_ident(ident, sizeof ident, names[i],
			    env->dsn.postgres ? '"' : '`');
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s%s", ident,
			 env->dsn.postgres ? " CASCADE" : "");
		if (fault_db_exec(db, sql, why, sizeof why) == 0)
			dropped++;
		else
			fprintf(stderr, "%s: %s: %s\n", env->test, sql, why);
		free(names[i]);
	}
	free(names);
	fault_db_close(db);
	return dropped;
}

bus *fault_open_bus(const struct fault_env *e)
{
	bus *b = NULL;
	/* The message never holds the password (bus_open's contract). */
	if (bus_open(&b, e->url) != 0)
		fault_fail("bus_open on the test server (prefix %s): %s",
			   e->prefix, bus_error_last()->message);
	if (getenv("BUS_LOG") == NULL)
		bus_set_logger(b, BUS_LOG_ERROR, NULL, NULL);
	return b;
}

/* ---- processes and time ------------------------------------------------- */

void fault_track_child(pid_t pid)
{
	if (n_children == MAX_CHILDREN)
		fault_fail("more than %d child processes", MAX_CHILDREN);
	children[n_children++] = pid;
}

void fault_untrack_child(pid_t pid)
{
	for (int i = 0; i < n_children; i++) {
		if (children[i] == pid) {
			children[i] = children[--n_children];
			return;
		}
	}
}

int fault_wait_child(pid_t pid, long ms, int *status)
{
	for (long waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD)) {
			fault_untrack_child(pid);
			return 1;
		}
		if (waited >= ms)
			return 0;
		fault_sleep_ms(10);
	}
}

static void kill_children(void)
{
	for (int i = 0; i < n_children; i++)
		kill(children[i], SIGKILL);
	while (n_children > 0) {
		pid_t pid = children[n_children - 1];
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		n_children--;
	}
}

/* Async-signal-safe: only write, kill, execve and _exit. The program run
 * again drops the tables (fault_init) and exits 1. */
static void on_watchdog(int sig)
{
	(void)sig;
	static const char msg[] = "FAIL: watchdog: the test did not finish "
				  "in time; killing its processes\n";
	ssize_t w = write(STDOUT_FILENO, msg, sizeof msg - 1);
	(void)w;
	for (int i = 0; i < n_children; i++)
		kill(children[i], SIGKILL);
	if (watchdog_envp != NULL)
		execve("/proc/self/exe", watchdog_argv, watchdog_envp);
	_exit(1);
}

/* The environment with DROP_VAR=<prefix> added, for the watchdog. */
static void prepare_watchdog_exec(const char *prefix)
{
	extern char **environ;
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **envp = calloc(n + 2, sizeof *envp);
	char *var = NULL;
	if (envp == NULL || asprintf(&var, DROP_VAR "=%s", prefix) < 0)
		fault_fail("out of memory");
	memcpy(envp, environ, n * sizeof *envp);
	envp[n] = var;
	watchdog_envp = envp;
}

/* Run by the watchdog's exec: drops a timed-out run's tables, exits 1. */
static _Noreturn void drop_after_watchdog(struct fault_env *e,
					  const char *prefix, const char *url)
{
	if (strspn(prefix, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
		    strlen(prefix) ||
	    strlen(prefix) >= sizeof e->prefix || url == NULL)
		_exit(1);
	strcpy(e->prefix, prefix);
	parse_url(&e->dsn, url);
	int n = drop_tables();
	printf("watchdog: dropped %d tables of prefix %s\n", n, prefix);
	_exit(1);
}

double fault_elapsed_s(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - started.tv_sec) +
	       (double)(now.tv_nsec - started.tv_nsec) / 1e9;
}

void fault_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- how a test ends ---------------------------------------------------- */

static void vreport(const char *what, const char *fmt, va_list ap)
{
	printf("%s: %s: ", what, env != NULL ? env->test : "fault test");
	vprintf(fmt, ap);
	printf(" (%.1f s)\n", fault_elapsed_s());
	fflush(stdout);
}

void fault_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s [%6.1f s] ", env != NULL ? env->test : "fault test",
	       fault_elapsed_s());
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

void fault_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("SKIP: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	exit(FAULT_SKIP);
}

/* Kills the workers and drops the tables, in the parent only: a worker
 * process that fails just ends. */
static void clean_up(void)
{
	static int cleaning;
	if (getpid() != parent_pid || cleaning++)
		return;
	alarm(0);
	kill_children();
	if (env != NULL && env->url != NULL &&
	    getenv("BUS_TEST_KEEP_TABLES") == NULL)
		drop_tables();
}

void fault_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport("FAIL", fmt, ap);
	va_end(ap);
	if (getpid() != parent_pid)
		_exit(1);
	clean_up();
	exit(1);
}

void fault_pass(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport("PASS", fmt, ap);
	va_end(ap);
	clean_up();
	exit(0);
}

int fault_in_ci(void)
{
	const char *ci = getenv("CI");
	return ci != NULL && strcmp(ci, "true") == 0;
}

static const struct fault_store stores[] = {
	{ "mysql", "MySQL", "BUS_TEST_MYSQL_URL", "BUS_TEST_MYSQL_DIR",
	  "BUS_TEST_MYSQL_PORT", "BUS_MYSQL_BACKEND_DIR",
	  "scripts/mariadb.sh" },
	{ "postgres", "PostgreSQL", "BUS_TEST_POSTGRES_URL",
	  "BUS_TEST_POSTGRES_DIR", "BUS_TEST_POSTGRES_PORT",
	  "BUS_POSTGRES_BACKEND_DIR", "scripts/postgres.sh" },
};

/* The store $BUS_FAULT_STORE names. */
static const struct fault_store *store_chosen(void)
{
	const char *name = getenv("BUS_FAULT_STORE");
	if (name == NULL || name[0] == '\0')
		name = "mysql";
	for (size_t i = 0; i < sizeof stores / sizeof *stores; i++)
		if (strcmp(stores[i].name, name) == 0)
			return &stores[i];
	fprintf(stderr, "BUS_FAULT_STORE is '%s', not mysql or postgres\n",
		name);
	exit(1);
}

/* `make check` names the build tree's plug-in directory in
 * $BUS_MYSQL_BACKEND_DIR or $BUS_POSTGRES_BACKEND_DIR (so that other
 * suites keep the default); the library reads $BUS_BACKEND_DIR. One set
 * by hand wins. */
static void use_build_tree_backend(const struct fault_store *st)
{
	const char *dir = getenv(st->build_var);
	const char *set = getenv("BUS_BACKEND_DIR");
	if (dir == NULL || dir[0] == '\0' || (set != NULL && set[0] != '\0'))
		return;
	char so[4096];
	snprintf(so, sizeof so, "%s/%s.so", dir, st->name);
	if (access(so, F_OK) != 0 && fault_in_ci())
		fault_fail("CI: this build has no %s store (no %s)", st->label,
			   so);
	if (access(so, F_OK) != 0)
		fault_skip("this build has no %s store (no %s): skipping "
			   "the %s fault tests",
			   st->label, so, st->label);
	if (setenv("BUS_BACKEND_DIR", dir, 1) != 0)
		fault_fail("setenv: %s", strerror(errno));
}

void fault_init(struct fault_env *e, const char *test, const char *tag,
		unsigned limit_s)
{
	memset(e, 0, sizeof *e);
	e->test = test;
	env = e;
	parent_pid = getpid();
	clock_gettime(CLOCK_MONOTONIC, &started);
	setvbuf(stdout, NULL, _IOLBF, 0);

	const struct fault_store *st = e->store = store_chosen();
	const char *url = getenv(st->url_var);
	const char *drop = getenv(DROP_VAR);
	if (drop != NULL)
		drop_after_watchdog(e, drop, url);
	if ((url == NULL || url[0] == '\0') && fault_in_ci())
		fault_fail("CI: %s is not set: the %s fault tests must run",
			   st->url_var, st->label);
	if (url == NULL || url[0] == '\0')
		fault_skip("%s is not set: skipping the %s fault tests",
			   st->url_var, st->label);
	use_build_tree_backend(st);
	parse_url(&e->dsn, url);
	if (e->dsn.postgres != (strcmp(st->name, "postgres") == 0))
		fault_fail("%s does not name a %s server", st->url_var,
			   st->label);
	/* These tests load, kill and restart: never aim them elsewhere. */
	if (!is_local(&e->dsn))
		fault_fail("%s names host '%s'; the fault "
			   "tests run only against a server on this machine "
			   "(127.0.0.1, ::1 or localhost)",
			   st->url_var, e->dsn.host);

	char why[512];
	fault_db *db = fault_connect(&e->dsn, why, sizeof why);
	if (db == NULL)
		fault_fail("%s is set but the server at %s:%u cannot be "
			   "reached: %s",
			   st->url_var, e->dsn.host, e->dsn.port, why);
	fault_db_close(db);

	snprintf(e->prefix, sizeof e->prefix, "%s_%ld_", tag, (long)getpid());
	e->url = url_with_prefix(url, e->prefix);
	prepare_watchdog_exec(e->prefix);
	signal(SIGALRM, on_watchdog);
	alarm(limit_s);
	/* A pid reused from a run that crashed before it cleaned up. */
	int left = drop_tables();
	if (left < 0)
		fault_fail("cannot clear the tables of prefix %s (see above)",
			   e->prefix);
	if (left > 0)
		fault_note("dropped %d tables left with prefix %s", left,
			   e->prefix);
	fault_note("%s server %s:%u, database %s, table prefix %s",
		   st->label, e->dsn.host, e->dsn.port, e->dsn.database,
		   e->prefix);
}
