/*
 * The connection: connecting with the URL's settings, the cache of
 * prepared statements, and the wrapper that runs each operation through
 * deadlocks, serialization failures and lost connections.
 *
 * Every statement goes through libpq's asynchronous calls (PQsend*, then
 * PQflush, PQconsumeInput and PQisBusy under poll with a deadline): the
 * blocking ones (PQexec and its kin) would wait forever on a network that
 * stops passing packets, as libpq has no read timeout of its own. A
 * timeout is a lost connection.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_store.h"

/* Lock conflicts: tries in all, and the longest pause before each retry
 * (ms); the pause is drawn between half of that and all of it, so that
 * the transactions that deadlocked do not meet again in step. */
#define LOCK_TRIES 6
static const long lock_backoff_ms[LOCK_TRIES - 1] = { 5, 20, 50, 100, 200 };

/* Reconnecting: the pause before each attempt (ms), about 5 s in all; and
 * how many times one call reconnects before it gives up. */
static const long reconnect_ms[] = { 0, 100, 250, 500, 1000, 1500, 2000 };
#define RECONNECT_CYCLES 2

/* ---- Errors ---- */

static int record(struct pg_conn *c, const char *state, const char *msg)
{
	snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
	snprintf(c->err_msg, sizeof c->err_msg, "%s",
		 msg && *msg ? msg : "unknown error");
	/* One line: libpq ends its messages with a newline. */
	size_t len = strlen(c->err_msg);
	while (len > 0 && (c->err_msg[len - 1] == '\n' ||
			   c->err_msg[len - 1] == ' '))
		c->err_msg[--len] = '\0';
	for (char *p = c->err_msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	return PG_ERR_DB;
}

int bus__pg_db_fail(struct pg_conn *c, const PGresult *res)
{
	if (c->db == NULL)
		return record(c, "08003", "not connected");
	if (PQstatus(c->db) == CONNECTION_BAD)
		c->lost = 1;
	const char *state =
		res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
			      : NULL;
	if (msg == NULL)
		msg = PQerrorMessage(c->db);
	if (state == NULL && c->lost)
		state = "08006"; /* connection_failure */
	return record(c, state, msg);
}

int bus__pg_fail(struct pg_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
	va_end(ap);
	c->sqlstate[0] = '\0';
	return PG_ERR_DB;
}

/* ---- Statements ---- */

void bus__pg_stmts_reset(struct pg_conn *c)
{
	for (int i = 0; i < SL_COUNT; i++) {
		free(c->text[i]);
		c->text[i] = NULL;
		c->prepared[i] = 0;
	}
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The connection is treated as lost: `what` did not happen in time. */
static int timed_out(struct pg_conn *c, const char *what, const char *option,
		     unsigned s)
{
	c->lost = 1;
	char msg[200];
	snprintf(msg, sizeof msg,
		 "%s within %s %u s: the connection is treated as lost", what,
		 option, s);
	return record(c, "08006", msg);
}

static int lost_now(struct pg_conn *c)
{
	c->lost = 1;
	return bus__pg_db_fail(c, NULL);
}

/* Waits until c->db's socket is ready for `events` or the deadline (-1:
 * none) has passed: 1 ready, 0 timed out, -1 failed. */
static int wait_socket(struct pg_conn *c, short events, int64_t deadline)
{
	int fd = PQsocket(c->db);
	if (fd < 0)
		return -1;
	for (;;) {
		int left = -1;
		if (deadline >= 0) {
			int64_t l = deadline - monotonic_ms();
			if (l <= 0)
				return 0;
			left = l > 1000000 ? 1000000 : (int)l;
		}
		struct pollfd p = { fd, events, 0 };
		int r = poll(&p, 1, left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static int64_t deadline_of(unsigned s)
{
	return s > 0 ? monotonic_ms() + (int64_t)s * 1000 : -1;
}

int bus__pg_reply(struct pg_conn *c, PGresult **out)
{
	*out = NULL;
	/* What the call queued, sent; the reply read meanwhile, so that a
	 * server blocked on sending it cannot block us (libpq's advice). */
	int64_t deadline = deadline_of(c->write_timeout);
	for (;;) {
		int f = PQflush(c->db);
		if (f == 0)
			break;
		if (f < 0)
			return lost_now(c);
		int w = wait_socket(c, POLLOUT | POLLIN, deadline);
		if (w == 0)
			return timed_out(c, "the statement could not be sent",
					 "write-timeout", c->write_timeout);
		if (w < 0 || PQconsumeInput(c->db) == 0)
			return lost_now(c);
	}
	deadline = deadline_of(c->read_timeout);
	PGresult *kept = NULL;
	for (;;) {
		while (!PQisBusy(c->db)) {
			PGresult *r = PQgetResult(c->db);
			if (r == NULL) {
				*out = kept;
				return 0;
			}
			/* The first error is the one to tell; otherwise the
			 * last result (as PQexec does). */
			if (kept != NULL &&
			    PQresultStatus(kept) == PGRES_FATAL_ERROR) {
				PQclear(r);
				continue;
			}
			PQclear(kept);
			kept = r;
		}
		int w = wait_socket(c, POLLIN, deadline);
		if (w == 0) {
			PQclear(kept);
			return timed_out(c, "no reply from the server",
					 "read-timeout", c->read_timeout);
		}
		if (w < 0 || PQconsumeInput(c->db) == 0) {
			PQclear(kept);
			return lost_now(c);
		}
	}
}

/* Checks a result: rows or a command tag is success. */
static int result_ok(struct pg_conn *c, PGresult *res, PGresult **out)
{
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		if (out != NULL)
			*out = res;
		else
			PQclear(res);
		return 0;
	}
	int rc = bus__pg_db_fail(c, res);
	PQclear(res);
	return rc;
}

int bus__pg_exec(struct pg_conn *c, int slot, const char *sql,
		 const struct pg_params *p, PGresult **out)
{
	if (out != NULL)
		*out = NULL;
	if (c->db == NULL)
		return bus__pg_db_fail(c, NULL);
	if (p != NULL && p->oom)
		return PG_ERR_NOMEM;
	if (p != NULL && p->n > p->cap)
		return bus__pg_fail(c, "internal error: more parameters than "
				       "made room for");
	if (c->text[slot] == NULL &&
	    (c->text[slot] = bus__pg_sql(c->tables, sql)) == NULL)
		return PG_ERR_NOMEM;
	int n = p ? (int)p->n : 0;
	const char *const *val = p ? p->val : NULL;
	const int *len = p ? p->len : NULL, *fmt = p ? p->fmt : NULL;
	PGresult *res;
	int rc;
	if (!c->prepare) {
		if (!PQsendQueryParams(c->db, c->text[slot], n, NULL, val, len,
				       fmt, 1))
			return bus__pg_db_fail(c, NULL);
		if ((rc = bus__pg_reply(c, &res)) != 0)
			return rc;
		return result_ok(c, res, out);
	}
	char name[16];
	snprintf(name, sizeof name, "bus_%d", slot);
	if (!c->prepared[slot]) {
		if (!PQsendPrepare(c->db, name, c->text[slot], 0, NULL))
			return bus__pg_db_fail(c, NULL);
		if ((rc = bus__pg_reply(c, &res)) != 0 ||
		    (rc = result_ok(c, res, NULL)) != 0)
			return rc;
		c->prepared[slot] = 1;
	}
	if (!PQsendQueryPrepared(c->db, name, n, val, len, fmt, 1))
		return bus__pg_db_fail(c, NULL);
	if ((rc = bus__pg_reply(c, &res)) != 0)
		return rc;
	return result_ok(c, res, out);
}

int bus__pg_simple(struct pg_conn *c, const char *sql)
{
	if (c->db == NULL)
		return bus__pg_db_fail(c, NULL);
	if (!PQsendQuery(c->db, sql))
		return bus__pg_db_fail(c, NULL);
	PGresult *res;
	int rc = bus__pg_reply(c, &res);
	return rc != 0 ? rc : result_ok(c, res, NULL);
}

/* ---- Transactions ---- */

int bus__pg_begin(struct pg_conn *c)
{
	int rc = bus__pg_simple(c, "BEGIN");
	if (rc == 0)
		c->in_tx = 1;
	return rc;
}

int bus__pg_commit(struct pg_conn *c)
{
	c->in_tx = 0;
	return bus__pg_simple(c, "COMMIT");
}

void bus__pg_rollback(struct pg_conn *c)
{
	if (c->db != NULL && c->in_tx)
		bus__pg_simple(c, "ROLLBACK");
	c->in_tx = 0;
}

/* ---- Connecting ---- */

const char *bus__pg_where(const bus_store *s, char *buf, size_t size)
{
	const struct pg_url *u = &s->url;
	snprintf(buf, size, "%.200s:%u, database %.64s",
		 u->host ? u->host : "(default host)", u->port,
		 u->database ? u->database : "(default)");
	return buf;
}

static void notice_drop(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int bus__pg_connect(bus_store *s)
{
	struct pg_conn *c = &s->conn;
	const struct pg_url *u = &s->url;
	bus__pg_disconnect(s);
	char port[8], timeout[16], idle[16], intvl[16];
	snprintf(port, sizeof port, "%u", u->port);
	snprintf(timeout, sizeof timeout, "%u", u->connect_timeout);
	/* TCP keepalive probes after `keepalive` s of silence, every third
	 * of it (at least 1 s), 3 unanswered ending the connection: a peer
	 * that vanished without a reset is noticed even by a session that
	 * waits for nothing (a listener). */
	snprintf(idle, sizeof idle, "%u", u->keepalive);
	snprintf(intvl, sizeof intvl, "%u",
		 u->keepalive / 3 > 0 ? u->keepalive / 3 : 1);
	const char *keys[24], *vals[24];
	int k = 0;
#define KV(key, val)                                                           \
	do {                                                                   \
		if ((val) != NULL) {                                           \
			keys[k] = (key);                                       \
			vals[k++] = (val);                                     \
		}                                                              \
	} while (0)
	KV("host", u->host);
	KV("port", port);
	KV("dbname", u->database);
	KV("user", u->user);
	KV("password", u->password);
	KV("connect_timeout", timeout);
	KV("sslmode", u->sslmode);
	KV("sslrootcert", u->sslrootcert);
	KV("sslcert", u->sslcert);
	KV("sslkey", u->sslkey);
	KV("application_name",
	   u->application_name ? u->application_name : "libbus");
	KV("client_encoding", "UTF8");
	KV("keepalives", u->keepalive > 0 ? "1" : "0");
	if (u->keepalive > 0) {
		KV("keepalives_idle", idle);
		KV("keepalives_interval", intvl);
		KV("keepalives_count", "3");
	}
#undef KV
	keys[k] = vals[k] = NULL;
	PGconn *db = PQconnectdbParams(keys, vals, 0);
	if (db == NULL)
		return PG_ERR_NOMEM;
	if (PQstatus(db) != CONNECTION_OK) {
		record(c, "08001", PQerrorMessage(db));
		PQfinish(db);
		return PG_ERR_DB;
	}
	/* Server notices (IF NOT EXISTS skipped, ...) are not errors, and
	 * libpq would print them on stderr. */
	PQsetNoticeProcessor(db, notice_drop, NULL);
	/* Sends never block (bus__pg_reply waits for them under its
	 * deadline), nor does the goodbye PQfinish sends on a dead link. */
	if (PQsetnonblocking(db, 1) != 0) {
		record(c, "08001", PQerrorMessage(db));
		PQfinish(db);
		return PG_ERR_DB;
	}
	c->db = db;
	c->lost = 0;
	c->read_timeout = u->read_timeout;
	c->write_timeout = u->write_timeout;
	int rc = bus__pg_session_read(c);
	if (rc != 0) {
		bus__pg_disconnect(s);
		return rc;
	}
	return 0;
}

void bus__pg_disconnect(bus_store *s)
{
	struct pg_conn *c = &s->conn;
	bus__pg_stmts_reset(c);
	if (c->db != NULL)
		PQfinish(c->db);
	c->db = NULL;
	c->in_tx = 0;
}

/* ---- The retry wrapper ---- */

enum fault { F_FATAL, F_LOCK, F_CONN, F_REPREPARE };

static enum fault classify(const struct pg_conn *c)
{
	const char *e = c->sqlstate;
	if (c->lost || strncmp(e, "08", 2) == 0 || strcmp(e, "57P01") == 0 ||
	    strcmp(e, "57P02") == 0 || strcmp(e, "57P03") == 0 ||
	    strcmp(e, "53300") == 0)
		return F_CONN;
	/* serialization_failure, deadlock_detected, lock_not_available */
	if (strcmp(e, "40001") == 0 || strcmp(e, "40P01") == 0 ||
	    strcmp(e, "55P03") == 0)
		return F_LOCK;
	/* A prepared statement the server no longer has (a pooler moved
	 * the session), or whose plan no longer fits the tables. */
	if (strcmp(e, "26000") == 0 || strcmp(e, "0A000") == 0)
		return F_REPREPARE;
	return F_FATAL;
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

int bus__pg_report(const bus_store *s, const struct pg_conn *c,
		   const char *what)
{
	char where[300];
	bus__pg_where(s, where, sizeof where);
	if (c->sqlstate[0] == '\0')
		return s->env.error(BUS_EBACKEND, "postgres store (%s): %s: %s",
				    where, what, c->err_msg);
	return s->env.error(BUS_EBACKEND,
			    "postgres store (%s): %s: %s (SQLSTATE %s)", where,
			    what, c->err_msg, c->sqlstate);
}

/* Whether a failed connection attempt may succeed if tried again (not a
 * refused password or a missing database). */
static int connect_transient(const struct pg_conn *c)
{
	return strcmp(c->sqlstate, "08001") == 0 &&
	       strstr(c->err_msg, "authentication") == NULL &&
	       strstr(c->err_msg, "does not exist") == NULL;
}

/* Connects, trying again for a few seconds while the server cannot be
 * reached (a restart, a fail-over). No attempt starts after the pauses'
 * total has passed, so that an unreachable server (each attempt waiting
 * up to connect-timeout) ends the call in bounded time; once a window has
 * passed in vain, calls try once until the server answers again. */
static int reconnect(bus_store *s)
{
	int rc = PG_ERR_DB;
	if (s->conn.unreachable) {
		rc = bus__pg_connect(s);
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
		rc = bus__pg_connect(s);
		if (rc != PG_ERR_DB || !connect_transient(&s->conn))
			return rc;
	}
	s->conn.unreachable = 1;
	return rc;
}

/* After a failure: the transaction rolled back, or the connection dropped
 * when it is gone or cannot tell. */
static void recover(bus_store *s, int rc)
{
	struct pg_conn *c = &s->conn;
	if (c->db == NULL)
		return;
	if ((rc == PG_ERR_DB && classify(c) == F_CONN) ||
	    PQstatus(c->db) == CONNECTION_BAD) {
		/* What this session was sent may still commit until the
		 * server has ended it: the next session makes sure it has. */
		bus__pg_session_lost(c);
		bus__pg_disconnect(s);
		return;
	}
	if (PQtransactionStatus(c->db) != PQTRANS_IDLE &&
	    bus__pg_simple(c, "ROLLBACK") != 0 && c->lost) {
		bus__pg_session_lost(c);
		bus__pg_disconnect(s);
		return;
	}
	c->in_tx = 0;
	if (PQtransactionStatus(c->db) != PQTRANS_IDLE)
		bus__pg_disconnect(s);
}

int bus__pg_run(bus_store *s, const char *what, pg_op_fn fn, void *arg)
{
	return bus__pg_run_checked(s, what, fn, NULL, arg);
}

int bus__pg_run_checked(bus_store *s, const char *what, pg_op_fn fn,
			pg_op_fn landed, void *arg)
{
	struct pg_conn *c = &s->conn;
	int lock_tries = 1, cycles = 0, reprepared = 0;
	/* fn lost its connection: whether its write landed is not known. */
	int in_doubt = 0;
	for (;;) {
		int connecting = c->db == NULL, rc = 0;
		if (connecting)
			rc = reconnect(s);
		if (rc == 0) {
			connecting = 0;
			c->lost = 0;
			rc = bus__pg_lost_end(c);
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
		if (rc == PG_ERR_NOMEM)
			return s->env.error(BUS_ENOMEM,
					    "postgres store: %s: out of memory",
					    what);
		if (rc != PG_ERR_DB)
			return rc; /* reported, and not the server's */
		enum fault f = classify(c);
		if (ran && f == F_CONN)
			in_doubt = 1;
		if (connecting) {
			char buf[200];
			snprintf(buf, sizeof buf,
				 "%s: cannot connect to the server", what);
			return bus__pg_report(s, c, buf);
		}
		if (f == F_LOCK && lock_tries < LOCK_TRIES) {
			log_at(s, BUS_LOG_DEBUG,
			       "postgres store: %s: %s; trying again", what,
			       c->err_msg);
			sleep_ms(jitter_ms(lock_backoff_ms[lock_tries++ - 1]));
			continue;
		}
		if (f == F_REPREPARE && !reprepared) {
			reprepared = 1;
			if (c->db != NULL &&
			    bus__pg_simple(c, "DEALLOCATE ALL") != 0 &&
			    c->lost)
				bus__pg_disconnect(s);
			bus__pg_stmts_reset(c);
			continue;
		}
		if (f == F_CONN && cycles++ < RECONNECT_CYCLES) {
			log_at(s, BUS_LOG_WARN,
			       "postgres store: %s: %s; reconnecting", what,
			       c->err_msg);
			if (c->db != NULL)
				bus__pg_disconnect(s);
			continue;
		}
		if (in_doubt) {
			char buf[200];
			snprintf(buf, sizeof buf,
				 "%s (the connection was lost; the change "
				 "may have been applied)",
				 what);
			return bus__pg_report(s, c, buf);
		}
		return bus__pg_report(s, c, what);
	}
}
