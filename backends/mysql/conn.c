/*
 * The connection: the client library's process and thread set-up,
 * connecting with the URL's options, the session every statement relies
 * on, the cache of prepared statements, and the wrapper that runs each
 * operation through deadlocks and lost connections.
 */
#include <errmsg.h>
#include <errno.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include "mysql_store.h"

/* Lock conflicts: tries in all, and the longest pause before each retry
 * (ms); the pause is drawn between half of that and all of it, so that
 * the transactions that deadlocked do not meet again in step. */
#define LOCK_TRIES 6
static const long lock_backoff_ms[LOCK_TRIES - 1] = { 5, 20, 50, 100, 200 };

/* Reconnecting: the pause before each attempt (ms), about 5 s in all; and
 * how many times one call reconnects before it gives up. */
static const long reconnect_ms[] = { 0, 100, 250, 500, 1000, 1500, 2000 };
#define RECONNECT_CYCLES 2

/* How long a new session waits for a lost one it killed to end. */
#define LOST_END_WAIT_MS 5000
#define LOST_END_POLL_MS 20
/* The session lock: this prefix and the session's token (64 at most). */
#define SESSION_LOCK_PREFIX "bus.session."

/* Session settings every statement relies on: times are UTC (the
 * statements use UTC_TIMESTAMP; this is for the DATETIME defaults),
 * strict checks, and lock waits short enough to be retried. */
static const char *const session_sql[] = {
	"SET SESSION time_zone = '+00:00', "
	"SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', "
	"SESSION innodb_lock_wait_timeout = 10",
	/* A claim's SKIP LOCKED scan then takes no gap locks, and rows that
	 * do not match are not kept locked. */
	"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
};

const size_t bus__my_bucket_rows[MY_BUCKETS] = {
	1, 2, 4, 8, 16, 32, 64, 128, MY_ROWS_MAX,
};

int bus__my_bucket(size_t n)
{
	for (int b = 0; b < MY_BUCKETS; b++)
		if (n <= bus__my_bucket_rows[b])
			return b;
	return MY_BUCKETS - 1;
}

/* ---- The library, per process and per thread ---- */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_failed;
static pthread_key_t thread_key;

/* Runs when a thread that used the library exits. */
static void thread_end(void *unused)
{
	(void)unused;
	mysql_thread_end();
}

static void lib_init(void)
{
	/* Not thread-safe, hence once; mysql_init would otherwise call it
	 * on first use, from whichever threads race there. */
	if (mysql_library_init(0, NULL, NULL) != 0 ||
	    pthread_key_create(&thread_key, thread_end) != 0)
		lib_failed = 1;
}

int bus__my_library_init(const bus_store_env *env)
{
	pthread_once(&lib_once, lib_init);
	if (lib_failed)
		return env->error(BUS_EBACKEND,
				  "mysql store: the MariaDB client library "
				  "could not be initialised");
	bus__my_thread_enter();
	return 0;
}

void bus__my_thread_enter(void)
{
	if (pthread_getspecific(thread_key) != NULL)
		return;
	mysql_thread_init();
	/* Any non-NULL value, so that the destructor runs. */
	pthread_setspecific(thread_key, &thread_key);
}

/* ---- Errors ---- */

static int record(struct my_conn *c, unsigned err_no, const char *msg)
{
	c->err_no = err_no;
	snprintf(c->err_msg, sizeof c->err_msg, "%s",
		 msg && *msg ? msg : "unknown error");
	return MY_ERR_DB;
}

int bus__my_db_fail(struct my_conn *c)
{
	if (c->db == NULL)
		return record(c, CR_SERVER_GONE_ERROR, "not connected");
	return record(c, mysql_errno(c->db), mysql_error(c->db));
}

int bus__my_stmt_fail(struct my_conn *c, MYSQL_STMT *st)
{
	/* Some failures (a lock wait or a lost connection while rows are
	 * fetched) are recorded in the connection, not in the statement. */
	if (mysql_stmt_errno(st) == 0 && c->db != NULL &&
	    mysql_errno(c->db) != 0)
		return bus__my_db_fail(c);
	return record(c, mysql_stmt_errno(st), mysql_stmt_error(st));
}

int bus__my_fail(struct my_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
	va_end(ap);
	c->err_no = 0;
	return MY_ERR_DB;
}

/* ---- Statements ---- */

int bus__my_prepare(struct my_conn *c, MYSQL_STMT **out, int slot,
		    my_sql_fn build, size_t rows)
{
	*out = c->stmt[slot];
	if (*out != NULL)
		return 0;
	if (c->db == NULL)
		return bus__my_db_fail(c);
	char *sql = build(c->tables, rows);
	if (sql == NULL)
		return MY_ERR_NOMEM;
	MYSQL_STMT *st = mysql_stmt_init(c->db);
	int rc = 0;
	if (st == NULL)
		rc = MY_ERR_NOMEM;
	else if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0)
		rc = bus__my_stmt_fail(c, st);
	free(sql);
	if (rc != 0) {
		if (st != NULL)
			mysql_stmt_close(st);
		return rc;
	}
	c->stmt[slot] = *out = st;
	return 0;
}

void bus__my_stmts_close(struct my_conn *c)
{
	for (int i = 0; i < SL_COUNT; i++) {
		if (c->stmt[i] != NULL)
			mysql_stmt_close(c->stmt[i]);
		c->stmt[i] = NULL;
	}
}

static char *session_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT @@SESSION.auto_increment_increment, "
			   "@@SESSION.max_allowed_packet",
			   NULL, NULL, rows);
}

int bus__my_session_read(struct my_conn *c)
{
	if (c->session_read)
		return 0;
	MYSQL_STMT *st;
	int rc = bus__my_prepare(c, &st, SL_SESSION, session_build, 0);
	if (rc == 0)
		rc = bus__my_exec(c, st, NULL);
	if (rc != 0)
		return rc;
	long long v[2] = { 1, 0 };
	MYSQL_BIND b[2];
	memset(b, 0, sizeof b);
	for (int i = 0; i < 2; i++) {
		b[i].buffer_type = MYSQL_TYPE_LONGLONG;
		b[i].buffer = &v[i];
	}
	if (mysql_stmt_bind_result(st, b) != 0)
		return bus__my_stmt_fail(c, st);
	int f = mysql_stmt_fetch(st);
	mysql_stmt_free_result(st);
	if (f != 0 && f != MYSQL_DATA_TRUNCATED)
		return bus__my_stmt_fail(c, st);
	c->auto_inc_step = v[0] > 0 ? (unsigned long)v[0] : 1;
	c->max_packet = v[1] > 0 ? (unsigned long)v[1] : 4u << 20;
	c->session_read = 1;
	return 0;
}

/* ---- Transactions ---- */

int bus__my_begin(struct my_conn *c)
{
	if (mysql_real_query(c->db, "START TRANSACTION", 17) != 0)
		return bus__my_db_fail(c);
	c->in_tx = 1;
	return 0;
}

int bus__my_commit(struct my_conn *c)
{
	/* A COMMIT the server refused leaves the transaction open (in_tx
	 * stays set): the retry wrapper rolls it back, or the next START
	 * TRANSACTION would commit the half-done work. */
	if (mysql_commit(c->db) != 0)
		return bus__my_db_fail(c);
	c->in_tx = 0;
	return 0;
}

void bus__my_rollback(struct my_conn *c)
{
	if (c->db != NULL && c->in_tx)
		mysql_rollback(c->db);
	c->in_tx = 0;
}

static void sleep_ms(long ms);

/* ---- Connecting ---- */

const char *bus__my_where(const bus_store *s, char *buf, size_t size)
{
	const struct my_url *u = &s->url;
	if (u->socket != NULL)
		snprintf(buf, size, "%.200s, database %.64s", u->socket,
			 u->database);
	else
		snprintf(buf, size, "%.200s:%u, database %.64s", u->host,
			 u->port, u->database);
	return buf;
}

static void set_ssl(MYSQL *db, const struct my_url *u)
{
	if (u->ssl_mode == MY_SSL_DISABLED)
		return;
	/* With use_ssl alone the client takes TLS when the server offers
	 * it; REQUIRED is checked once connected. */
	my_bool on = 1;
	mysql_optionsv(db, MYSQL_OPT_SSL_ENFORCE, &on);
	if (u->ssl_ca != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_CA, u->ssl_ca);
	if (u->ssl_capath != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_CAPATH, u->ssl_capath);
	if (u->ssl_cert != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_CERT, u->ssl_cert);
	if (u->ssl_key != NULL)
		mysql_optionsv(db, MYSQL_OPT_SSL_KEY, u->ssl_key);
	/* Connector/C verifies the chain and the host name together, so
	 * verify_ca is as strict as verify_identity. */
	if (u->ssl_mode == MY_SSL_VERIFY_CA ||
	    u->ssl_mode == MY_SSL_VERIFY_IDENTITY)
		mysql_optionsv(db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
}

static MYSQL *connect_init(const struct my_url *u)
{
	MYSQL *db = mysql_init(NULL);
	if (db == NULL)
		return NULL;
	unsigned proto = u->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
	unsigned no = 0;
	mysql_optionsv(db, MYSQL_OPT_PROTOCOL, &proto);
	mysql_optionsv(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_optionsv(db, MYSQL_OPT_LOCAL_INFILE, &no);
	mysql_optionsv(db, MYSQL_OPT_CONNECT_TIMEOUT, &u->connect_timeout);
	if (u->read_timeout > 0)
		mysql_optionsv(db, MYSQL_OPT_READ_TIMEOUT, &u->read_timeout);
	if (u->write_timeout > 0)
		mysql_optionsv(db, MYSQL_OPT_WRITE_TIMEOUT, &u->write_timeout);
	set_ssl(db, u);
	return db;
}

/* TCP keepalive probes after `idle` s of silence, every idle/3 s (at
 * least 1), 3 unanswered ending the connection: a peer that vanished
 * without a reset is noticed even by a session that waits for nothing. */
static void set_keepalive(MYSQL *db, unsigned idle)
{
	int fd = (int)mysql_get_socket(db);
	if (idle == 0 || fd < 0)
		return;
	int on = 1, cnt = 3, intvl = idle / 3 > 0 ? (int)(idle / 3) : 1;
	int secs = (int)idle;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static char *lock_get_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, "SELECT GET_LOCK(?, 0)", NULL, NULL, rows);
}

static char *lock_owner_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, "SELECT IS_USED_LOCK(?)", NULL, NULL, rows);
}

/* One BIGINT from a statement of one string parameter (NULL reads 0). */
static int query_int(struct my_conn *c, int slot, my_sql_fn build,
		     const char *param, long long *value)
{
	MYSQL_STMT *st;
	struct my_params p;
	size_t n = 0;
	*value = 0;
	int rc = bus__my_prepare(c, &st, slot, build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 1)) != 0)
		return rc;
	bus__my_p_str(&p, param);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	if (rc == 0)
		rc = bus__my_ints_fetch(c, st, value, 1, &n);
	return rc;
}

/* Takes the session lock of a fresh token. */
static int session_lock(struct my_conn *c)
{
	char name[sizeof SESSION_LOCK_PREFIX + MY_TOKEN_LEN];
	long long got;
	bus__token(c->session_token);
	snprintf(name, sizeof name, SESSION_LOCK_PREFIX "%s", c->session_token);
	int rc = query_int(c, SL_SESSION_LOCK, lock_get_build, name, &got);
	if (rc == 0 && got != 1)
		rc = bus__my_fail(c, "could not take the session lock %s", name);
	if (rc != 0)
		c->session_token[0] = '\0';
	return rc;
}

/* Ends the lost session (c->lost_token) for certain: kills it while it
 * still holds its lock, and waits until it no longer does. */
static int lost_session_end(struct my_conn *c)
{
	char name[sizeof SESSION_LOCK_PREFIX + MY_TOKEN_LEN];
	snprintf(name, sizeof name, SESSION_LOCK_PREFIX "%s", c->lost_token);
	int killed = 0;
	for (long waited = 0;; waited += LOST_END_POLL_MS) {
		long long owner;
		int rc = query_int(c, SL_LOCK_OWNER, lock_owner_build, name,
				   &owner);
		if (rc != 0)
			return rc;
		if (owner <= 0) {
			c->lost_token[0] = '\0';
			return 0;
		}
		/* The lock names a random token only that session took, so
		 * `owner` is that session and no other. A KILL statement,
		 * not mysql_kill: COM_PROCESS_KILL carries 32 bits, and a
		 * server's connection ids grow past them (the KILL would
		 * reach another connection, or none). The id is a number
		 * the server gave, formatted here: no text of anyone's. */
		char kill[48];
		int len = snprintf(kill, sizeof kill, "KILL CONNECTION %lld",
				   owner);
		if (!killed &&
		    mysql_real_query(c->db, kill, (unsigned long)len) != 0 &&
		    mysql_errno(c->db) != ER_NO_SUCH_THREAD)
			return bus__my_db_fail(c);
		killed = 1;
		if (waited >= LOST_END_WAIT_MS)
			return bus__my_fail(c,
					    "a lost session (server thread "
					    "%lld) was killed but has not "
					    "ended after %d ms; its last write "
					    "may still commit",
					    owner, LOST_END_WAIT_MS);
		sleep_ms(LOST_END_POLL_MS);
	}
}

int bus__my_connect(bus_store *s)
{
	struct my_conn *c = &s->conn;
	const struct my_url *u = &s->url;
	bus__my_disconnect(s);
	MYSQL *db = connect_init(u);
	if (db == NULL)
		return MY_ERR_NOMEM;
	const char *host = u->socket ? "localhost" : u->host;
	if (mysql_real_connect(db, host, u->user, u->password, u->database,
			       u->port, u->socket, 0) == NULL) {
		record(c, mysql_errno(db), mysql_error(db));
		mysql_close(db);
		return MY_ERR_DB;
	}
	c->db = db;
	for (size_t i = 0; i < sizeof session_sql / sizeof *session_sql; i++)
		if (mysql_real_query(db, session_sql[i],
				     strlen(session_sql[i])) != 0) {
			int rc = bus__my_db_fail(c);
			bus__my_disconnect(s);
			return rc;
		}
	if (u->ssl_mode == MY_SSL_REQUIRED &&
	    mysql_get_ssl_cipher(db) == NULL) {
		bus__my_disconnect(s);
		return bus__my_fail(c, "ssl-mode=required, but the server "
				       "does not offer TLS");
	}
	if (u->socket == NULL)
		set_keepalive(db, u->keepalive);
	int rc = session_lock(c);
	if (rc != 0)
		bus__my_disconnect(s);
	return rc;
}

void bus__my_disconnect(bus_store *s)
{
	struct my_conn *c = &s->conn;
	bus__my_stmts_close(c);
	if (c->db != NULL)
		mysql_close(c->db);
	c->db = NULL;
	c->in_tx = 0;
	c->session_read = 0;
}

/* ---- The retry wrapper ---- */

enum fault { FT_FATAL, FT_LOCK, FT_CONN, FT_REPREPARE };

static enum fault classify(unsigned e)
{
	switch (e) {
	/* ER_CHECKREAD: a conflict under MariaDB's snapshot isolation. */
	case ER_LOCK_DEADLOCK:
	case ER_LOCK_WAIT_TIMEOUT:
	case ER_CHECKREAD: return FT_LOCK;
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case CR_COMMANDS_OUT_OF_SYNC:
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
	case ER_CON_COUNT_ERROR:
	case ER_NET_READ_ERROR:
	case ER_NET_READ_INTERRUPTED:
	case ER_NET_ERROR_ON_WRITE:
	case ER_NET_WRITE_INTERRUPTED:
	case 4031: return FT_CONN; /* MySQL 8: closed for inactivity */
	case ER_NEED_REPREPARE:
	case ER_UNKNOWN_STMT_HANDLER: return FT_REPREPARE;
	default: return FT_FATAL;
	}
}

/* A pause from ms/2 to ms. */
static long jitter_ms(long ms)
{
	static _Thread_local unsigned seed;
	if (seed == 0)
		seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed;
	return ms / 2 + (long)(rand_r(&seed) % (unsigned)(ms / 2 + 1));
}

static void sleep_ms(long ms)
{
	if (ms <= 0)
		return;
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void log_at(const bus_store *s, bus_log_level level, const char *fmt,
		   ...) BUS_PRINTF(3, 4);

static void log_at(const bus_store *s, bus_log_level level, const char *fmt,
		   ...)
{
	if (s->env.log == NULL)
		return;
	char text[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	s->env.log(s->env.log_udata, level, "%s", text);
}

int bus__my_report(const bus_store *s, const struct my_conn *c,
		   const char *what)
{
	char where[300];
	bus__my_where(s, where, sizeof where);
	if (c->err_no == 0)
		return s->env.error(BUS_EBACKEND, "mysql store (%s): %s: %s",
				    where, what, c->err_msg);
	return s->env.error(BUS_EBACKEND,
			    "mysql store (%s): %s: %s (MySQL error %u)", where,
			    what, c->err_msg, c->err_no);
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects, trying again for a few seconds while the server cannot be
 * reached (a restart, a fail-over). No attempt starts after the pauses'
 * total has passed, so that an unreachable server (each attempt waiting
 * up to connect-timeout) ends the call in bounded time; once a window has
 * passed in vain, calls try once until the server answers again. */
static int reconnect(bus_store *s)
{
	int rc = MY_ERR_DB;
	if (s->conn.unreachable) {
		rc = bus__my_connect(s);
		if (rc == 0)
			s->conn.unreachable = 0;
		return rc;
	}
	long window = 0;
	for (size_t i = 0; i < sizeof reconnect_ms / sizeof *reconnect_ms; i++)
		window += reconnect_ms[i];
	int64_t start = monotonic_ms();
	for (size_t i = 0; i < sizeof reconnect_ms / sizeof *reconnect_ms;
	     i++) {
		if (i > 0 && monotonic_ms() - start >= window)
			break;
		sleep_ms(reconnect_ms[i]);
		rc = bus__my_connect(s);
		if (rc != MY_ERR_DB || classify(s->conn.err_no) != FT_CONN)
			return rc;
	}
	s->conn.unreachable = 1;
	return rc;
}

/* After a failure: the transaction rolled back, or the connection dropped
 * when it is gone or cannot tell. */
static void recover(bus_store *s, int rc)
{
	struct my_conn *c = &s->conn;
	if (rc == MY_ERR_DB && classify(c->err_no) == FT_CONN) {
		/* What this session sent may still commit until the server
		 * has ended it: the next session makes sure it has. */
		if (c->db != NULL && c->lost_token[0] == '\0')
			memcpy(c->lost_token, c->session_token,
			       sizeof c->lost_token);
		bus__my_disconnect(s);
		return;
	}
	if (c->in_tx && mysql_rollback(c->db) != 0)
		bus__my_disconnect(s);
	c->in_tx = 0;
}

int bus__my_run(bus_store *s, const char *what, my_op_fn fn, void *arg)
{
	return bus__my_run_checked(s, what, fn, NULL, arg);
}

int bus__my_run_checked(bus_store *s, const char *what, my_op_fn fn,
			my_op_fn landed, void *arg)
{
	struct my_conn *c = &s->conn;
	int lock_tries = 1, cycles = 0, reprepared = 0;
	/* fn lost its connection: whether its write landed is not known. */
	int in_doubt = 0;
	bus__my_thread_enter();
	for (;;) {
		int connecting = c->db == NULL, rc = 0;
		if (connecting)
			rc = reconnect(s);
		if (rc == 0) {
			connecting = 0;
			if (c->lost_token[0] != '\0')
				rc = lost_session_end(c);
		}
		if (rc == 0 && in_doubt && landed != NULL) {
			rc = landed(s, arg);
			if (rc == 1)
				return 0;
			if (rc == 0)
				in_doubt = 0;
		}
		int ran = 0;
		if (rc == 0) {
			ran = 1;
			rc = fn(s, arg);
		}
		if (rc == 0)
			return 0;
		recover(s, rc);
		if (rc == MY_ERR_NOMEM)
			return s->env.error(BUS_ENOMEM,
					    "mysql store: %s: out of memory",
					    what);
		if (rc != MY_ERR_DB)
			return rc; /* reported, and not the server's */
		enum fault f = classify(c->err_no);
		if (ran && f == FT_CONN)
			in_doubt = 1;
		if (connecting) {
			char buf[200];
			snprintf(buf, sizeof buf,
				 "%s: cannot connect to the server", what);
			return bus__my_report(s, c, buf);
		}
		if (f == FT_LOCK && lock_tries < LOCK_TRIES) {
			log_at(s, BUS_LOG_DEBUG,
			       "mysql store: %s: %s; trying again", what,
			       c->err_msg);
			sleep_ms(jitter_ms(lock_backoff_ms[lock_tries++ - 1]));
			continue;
		}
		if (f == FT_REPREPARE && !reprepared) {
			reprepared = 1;
			bus__my_stmts_close(c);
			continue;
		}
		if (f == FT_CONN && cycles++ < RECONNECT_CYCLES) {
			log_at(s, BUS_LOG_WARN,
			       "mysql store: %s: %s (MySQL error %u); "
			       "reconnecting",
			       what, c->err_msg, c->err_no);
			continue;
		}
		if (in_doubt) {
			char buf[200];
			snprintf(buf, sizeof buf,
				 "%s (the connection was lost; the change "
				 "may have been applied)",
				 what);
			return bus__my_report(s, c, buf);
		}
		return bus__my_report(s, c, what);
	}
}
