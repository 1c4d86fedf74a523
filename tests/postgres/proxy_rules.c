/*
 * The fault proxy on PostgreSQL: each rule does what faultproxy.c and
 * pgwire.c say, on a simple Query (PQexec), on the unnamed statement of
 * the extended protocol (PQexecParams) and on a named prepared statement
 * (PQprepare, PQexecPrepared), with connections of the test's own made
 * through the proxy (libpq asks for TLS first: sslmode=prefer, told no).
 * The stores' network tests (tests/postgres/net_*.sh) rely on them.
 */
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mysql/fault_proxy.h"

static struct fault_env env;
static struct fault_proxy proxy;
static char table[128];

/* The test's connection through the proxy (one at a time). */
static fault_db *current;

static void done(void)
{
	fault_db_close(current);
	current = NULL;
}

static PGconn *via_proxy(void)
{
	struct fault_dsn d = env.dsn;
	d.host = "127.0.0.1";
	d.port = proxy.port;
	char why[300];
	fault_db *db = fault_connect(&d, why, sizeof why);
	if (db == NULL)
		fault_fail("connecting through the proxy: %s", why);
	current = db;
	return fault_db_handle(db);
}

static long long count_rows(fault_db *direct, const char *where)
{
	char sql[300], why[300];
	long long n = -1;
	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE %s", table,
		 where);
	PGconn *db = fault_db_handle(direct);
	PGresult *r = PQexec(db, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		n = atoll(PQgetvalue(r, 0, 0));
	else
		snprintf(why, sizeof why, "%s", PQerrorMessage(db));
	PQclear(r);
	if (n < 0)
		fault_fail("counting rows: %s", why);
	return n;
}

static const char *state_of(const PGresult *r)
{
	const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	return s ? s : "";
}

static void expect_fired(long before, const char *what)
{
	if (fault_proxy_stat(&proxy, "fired") != before + 1)
		fault_fail("%s: the rule did not fire", what);
}

/* fail-reply: an error of the SQLSTATE given, the connection goes on. */
static void fail_reply(void)
{
	PGconn *db = via_proxy();
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "fail-reply SELECT 'q1' 42P01");
	PGresult *r = PQexec(db, "SELECT 'q1'");
	expect_fired(fired, "fail-reply on a Query");
	if (PQresultStatus(r) != PGRES_FATAL_ERROR ||
	    strcmp(state_of(r), "42P01") != 0)
		fault_fail("fail-reply on a Query gave status %s, SQLSTATE "
			   "'%s'",
			   PQresStatus(PQresultStatus(r)), state_of(r));
	PQclear(r);
	r = PQprepare(db, "s1", "SELECT 'b1'::text", 0, NULL);
	PQclear(r);
	fault_proxy_cmd(&proxy, "fail-reply SELECT 'b1' 40001");
	r = PQexecPrepared(db, "s1", 0, NULL, NULL, NULL, 0);
	expect_fired(fired + 1, "fail-reply on a prepared statement");
	if (strcmp(state_of(r), "40001") != 0)
		fault_fail("fail-reply on a prepared statement: SQLSTATE '%s'",
			   state_of(r));
	PQclear(r);
	/* In a transaction, the error leaves it failed. */
	PQclear(PQexec(db, "BEGIN"));
	fault_proxy_cmd(&proxy, "fail-reply SELECT 'b1' XX000");
	r = PQexecParams(db, "SELECT 'b1'::text", 0, NULL, NULL, NULL, NULL,
			 1);
	if (strcmp(state_of(r), "XX000") != 0 ||
	    PQtransactionStatus(db) != PQTRANS_INERROR)
		fault_fail("fail-reply in a transaction: SQLSTATE '%s', "
			   "transaction status %d",
			   state_of(r), (int)PQtransactionStatus(db));
	PQclear(r);
	PQclear(PQexec(db, "ROLLBACK"));
	r = PQexec(db, "SELECT 'after'");
	if (PQresultStatus(r) != PGRES_TUPLES_OK ||
	    strcmp(PQgetvalue(r, 0, 0), "after") != 0)
		fault_fail("the connection after fail-reply: %s",
			   PQerrorMessage(db));
	PQclear(r);
	done();
	fault_note("fail-reply: the SQLSTATE given, on Query, Bind of the "
		   "unnamed and of a named statement; the connection goes on");
}

static void insert_params(PGconn *db, const char *tag, PGresult **out)
{
	char sql[200];
	snprintf(sql, sizeof sql, "INSERT INTO %s (tag) VALUES ($1)", table);
	const char *v[1] = { tag };
	*out = PQexecParams(db, sql, 1, NULL, v, NULL, NULL, 0);
}

/* drop-reply: the statement committed, the client never learns it. */
static void drop_reply(fault_db *direct)
{
	PGconn *db = via_proxy();
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "drop-reply INSERT INTO");
	PGresult *r;
	insert_params(db, "drop", &r);
	expect_fired(fired, "drop-reply");
	if (PQresultStatus(r) != PGRES_FATAL_ERROR ||
	    PQstatus(db) != CONNECTION_BAD)
		fault_fail("drop-reply: the client got %s",
			   PQresStatus(PQresultStatus(r)));
	PQclear(r);
	done();
	if (count_rows(direct, "tag = 'drop'") != 1)
		fault_fail("drop-reply: the INSERT whose reply was lost did "
			   "not commit");
	/* In a transaction: the COMMIT (a Query) committed, unseen. */
	db = via_proxy();
	PQclear(PQexec(db, "BEGIN"));
	insert_params(db, "drop-tx", &r);
	PQclear(r);
	fault_proxy_cmd(&proxy, "drop-reply COMMIT");
	r = PQexec(db, "COMMIT");
	if (PQstatus(db) != CONNECTION_BAD)
		fault_fail("drop-reply COMMIT: the connection lives on");
	PQclear(r);
	done();
	if (count_rows(direct, "tag = 'drop-tx'") != 1)
		fault_fail("drop-reply COMMIT: it did not commit");
	fault_note("drop-reply: committed, the client saw a lost connection");
}

/* The backends of the run's orphaned sessions still on the server. */
static long long orphans(fault_db *direct)
{
	char sql[300];
	snprintf(sql, sizeof sql,
		 "SELECT count(*) FROM pg_stat_activity WHERE datname = "
		 "current_database() AND pid <> pg_backend_pid() AND query "
		 "LIKE 'INSERT INTO %s %%'",
		 table);
	PGresult *r = PQexec(fault_db_handle(direct), sql);
	long long n = PQresultStatus(r) == PGRES_TUPLES_OK
			      ? atoll(PQgetvalue(r, 0, 0))
			      : -1;
	PQclear(r);
	return n;
}

/* reset-mid: a Query half sent, or an extended statement run without
 * its Sync; nothing commits; with orphan, the session lives on. */
static void reset_mid(fault_db *direct)
{
	PGconn *db = via_proxy();
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "reset-mid INSERT INTO");
	PGresult *r;
	insert_params(db, "mid", &r);
	expect_fired(fired, "reset-mid");
	if (PQstatus(db) != CONNECTION_BAD)
		fault_fail("reset-mid: the connection lives on");
	PQclear(r);
	done();
	char sql[200];
	db = via_proxy();
	snprintf(sql, sizeof sql, "INSERT INTO %s (tag) VALUES ('mid-q')",
		 table);
	fault_proxy_cmd(&proxy, "reset-mid INSERT INTO");
	PQclear(PQexec(db, sql));
	if (PQstatus(db) != CONNECTION_BAD)
		fault_fail("reset-mid of a Query: the connection lives on");
	done();
	fault_sleep_ms(200);
	if (count_rows(direct, "tag LIKE 'mid%'") != 0)
		fault_fail("reset-mid: a statement cut before its Sync "
			   "committed");
	/* Orphaned: the server's session ran the INSERT, and waits. */
	fault_proxy_cmd(&proxy, "orphan");
	db = via_proxy();
	fault_proxy_cmd(&proxy, "reset-mid INSERT INTO");
	insert_params(db, "orphan", &r);
	PQclear(r);
	done();
	long long n = 0;
	for (int waited = 0; waited < 3000 && n == 0; waited += 50) {
		fault_sleep_ms(50);
		n = orphans(direct);
	}
	if (n != 1 || count_rows(direct, "tag = 'orphan'") != 0)
		fault_fail("orphan reset-mid: %lld sessions left with the "
			   "INSERT (expected 1, uncommitted)",
			   n);
	fault_note("reset-mid: nothing committed; orphaned, the session "
		   "lives on with its statement run");
}

/* cut-reply: BYTES of the reply, then the reset. */
static void cut_reply(void)
{
	PGconn *db = via_proxy();
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "cut-reply generate_series 3000");
	PGresult *r = PQexecParams(db,
				   "SELECT repeat('x', 1000) FROM "
				   "generate_series(1, 100)",
				   0, NULL, NULL, NULL, NULL, 0);
	expect_fired(fired, "cut-reply");
	if (PQresultStatus(r) == PGRES_TUPLES_OK ||
	    PQstatus(db) != CONNECTION_BAD)
		fault_fail("cut-reply: the client got %s",
			   PQresStatus(PQresultStatus(r)));
	PQclear(r);
	done();
	fault_note("cut-reply: the result cut, the connection lost");
}

/* stall and resume: no byte passes, then all do; reset-all. */
static void stall_resume_reset(void)
{
	PGconn *db = via_proxy();
	fault_proxy_cmd(&proxy, "stall");
	if (!PQsendQuery(db, "SELECT 'stalled'"))
		fault_fail("PQsendQuery: %s", PQerrorMessage(db));
	struct pollfd p = { PQsocket(db), POLLIN, 0 };
	if (poll(&p, 1, 700) != 0)
		fault_fail("stall: the server's reply came through");
	fault_proxy_cmd(&proxy, "resume");
	PGresult *r = PQgetResult(db);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fault_fail("resume: %s", PQerrorMessage(db));
	PQclear(r);
	while ((r = PQgetResult(db)) != NULL)
		PQclear(r);
	long open = fault_proxy_stat(&proxy, "open");
	const char *line = fault_proxy_cmd(&proxy, "reset-all");
	if (open < 1 || strcmp(line, "ok reset 0") == 0)
		fault_fail("reset-all: %s with %ld open", line, open);
	r = PQexec(db, "SELECT 1");
	if (PQstatus(db) != CONNECTION_BAD)
		fault_fail("reset-all: the connection lives on");
	PQclear(r);
	done();
	fault_note("stall holds the reply until resume; reset-all resets");
}

int main(void)
{
	fault_init(&env, "proxy_rules", "fpr", 120);
	if (!env.dsn.postgres)
		fault_skip("a PostgreSQL test (run by postgres/proxy_rules)");
	snprintf(table, sizeof table, "%sproxy_t", env.prefix);
	char why[300];
	fault_db *direct = fault_connect(&env.dsn, why, sizeof why);
	if (direct == NULL)
		fault_fail("connecting: %s", why);
	fault_sql(direct, "CREATE TABLE %s (tag text)", table);
	fault_proxy_start(&proxy, &env);
	fail_reply();
	drop_reply(direct);
	cut_reply();
	stall_resume_reset();
	reset_mid(direct); /* last: orphan stays on */
	fault_proxy_stop(&proxy);
	fault_db_close(direct);
	fault_pass("the proxy's rules on PostgreSQL's protocol");
}
