/*
 * The lost session. When a connection is lost, its server session may
 * live on (the network died unseen by the server): what it was sent may
 * still commit, and it keeps the locks of an open transaction (a claim's
 * rows, an insert's unique keys) until the server notices, which with no
 * keepalive can take hours. Before anything runs again on the new
 * connection, the store ends that session for certain: it terminates it
 * and waits until it is gone, so that a write read back afterwards is
 * what it will ever be, and its locks are free.
 *
 * A session is known by its backend's pid and start time, both read when
 * it connected: the pid alone could by then belong to another session,
 * which must never be terminated. Behind a pooler the pid libpq knows is
 * not a server backend's, and there is nothing to end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_store.h"

/* How long a new session waits for a lost one it terminated to end. */
#define LOST_END_WAIT_MS 5000
#define LOST_END_POLL_MS 20

/* The backend start as integer microseconds, the same expression each
 * time (the comparison is the server's, on its own values). */
#define START_US "(extract(epoch FROM backend_start) * 1000000)::int8"

static const char session_sql[] =
	"SELECT " START_US " FROM pg_stat_activity "
	"WHERE pid = pg_backend_pid() AND pid = $1::int4";

static const char terminate_sql[] =
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	"WHERE pid = $1::int4 AND " START_US " = $2::int8";

static const char alive_sql[] = "SELECT 1 FROM pg_stat_activity "
				"WHERE pid = $1::int4 AND " START_US
				" = $2::int8";

/* Runs one of the statements above with its text parameters, as an
 * unnamed statement (each runs once per session, or rarely); the rows
 * counted, the first value read as an integer. */
static int query(struct pg_conn *c, const char *sql, int n,
		 const char *const *vals, int *rows, long long *first)
{
	*rows = 0;
	if (c->db == NULL)
		return bus__pg_db_fail(c, NULL);
	if (!PQsendQueryParams(c->db, sql, n, NULL, vals, NULL, NULL, 0))
		return bus__pg_db_fail(c, NULL);
	PGresult *r = NULL;
	int rc = bus__pg_reply(c, &r);
	if (rc != 0)
		return rc;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = bus__pg_db_fail(c, r);
		PQclear(r);
		return rc;
	}
	*rows = PQntuples(r);
	if (first != NULL)
		*first = *rows > 0 && !PQgetisnull(r, 0, 0)
				 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
				 : 0;
	PQclear(r);
	return 0;
}

int bus__pg_session_read(struct pg_conn *c)
{
	c->backend_pid = 0;
	c->backend_start = 0;
	int pid = PQbackendPID(c->db);
	char p[16];
	snprintf(p, sizeof p, "%d", pid);
	const char *vals[1] = { p };
	int rows;
	long long start = 0;
	int rc = query(c, session_sql, 1, vals, &rows, &start);
	if (rc == 0 && rows == 1 && pid > 0) {
		c->backend_pid = pid;
		c->backend_start = start;
	}
	return rc;
}

void bus__pg_session_lost(struct pg_conn *c)
{
	if (c->db != NULL && c->lost_pid == 0 && c->backend_pid != 0) {
		c->lost_pid = c->backend_pid;
		c->lost_start = c->backend_start;
	}
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int bus__pg_lost_end(struct pg_conn *c)
{
	if (c->lost_pid == 0)
		return 0;
	char pid[16], start[24];
	snprintf(pid, sizeof pid, "%d", c->lost_pid);
	snprintf(start, sizeof start, "%lld", (long long)c->lost_start);
	const char *vals[2] = { pid, start };
	int terminated = 0;
	for (long waited = 0;; waited += LOST_END_POLL_MS) {
		int rows;
		/* Only while it is still that session (pid and start). */
		int rc = query(c, terminated ? alive_sql : terminate_sql, 2,
			       vals, &rows, NULL);
		if (rc != 0)
			return rc;
		if (rows == 0) {
			c->lost_pid = 0;
			return 0;
		}
		terminated = 1;
		if (waited >= LOST_END_WAIT_MS)
			return bus__pg_fail(c,
					    "a lost session (server process "
					    "%d) was terminated but has not "
					    "ended after %d ms; its last write "
					    "may still commit",
					    c->lost_pid, LOST_END_WAIT_MS);
		sleep_ms(LOST_END_POLL_MS);
	}
}
