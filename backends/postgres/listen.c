/*
 * Push wake-up: LISTEN and NOTIFY. An insert notifies the channel of the
 * store's tables (pg_notify in the insert statement itself, so it costs
 * no round trip) once per queue that received available jobs; PostgreSQL
 * delivers it when the inserting transaction commits (an outbox insert
 * notifies at the application's COMMIT), and folds repeats of one queue
 * within a transaction into one. The listener folds a burst into one
 * wake-up: wait_jobs drains every notification that has arrived.
 *
 * A listener holds a session (LISTEN), so it needs a direct connection,
 * not one through PgBouncer in transaction mode; producers need none.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_store.h"

static void queues_free(bus_store *s)
{
	for (size_t i = 0; i < s->n_listen; i++)
		free(s->listen_queues[i]);
	free(s->listen_queues);
	s->listen_queues = NULL;
	s->n_listen = 0;
}

void bus__pg_listen_free(bus_store *s)
{
	queues_free(s);
}

static int listen_op(bus_store *s, void *arg)
{
	(void)arg;
	char sql[PG_TABLE_MAX + 16];
	/* The channel is made of [a-z0-9_.] names: quoted, it is pasted. */
	snprintf(sql, sizeof sql, "LISTEN \"%s\"", s->tables.channel);
	return bus__pg_simple(&s->conn, sql);
}

int bus__pg_listen(bus_store *s, const char *const *queues, size_t n)
{
	queues_free(s);
	if (n > 0 && (s->listen_queues = calloc(n, sizeof *queues)) == NULL)
		return s->env.error(BUS_ENOMEM,
				    "postgres store: listen: out of memory");
	for (size_t i = 0; i < n; i++) {
		if (queues[i] == NULL ||
		    (s->listen_queues[i] = strdup(queues[i])) == NULL) {
			queues_free(s);
			return s->env.error(queues[i] ? BUS_ENOMEM : BUS_EINVAL,
					    "postgres store: listen: queue %zu "
					    "is NULL or out of memory",
					    i);
		}
		s->n_listen++;
	}
	/* A lost connection is reconnected by the wrapper, the LISTEN
	 * issued on the new one. */
	if (s->conn.db != NULL && PQstatus(s->conn.db) == CONNECTION_BAD)
		bus__pg_disconnect(s);
	return bus__pg_run(s, "listening for new jobs", listen_op, NULL);
}

/* Whether a notification names one of the queues listened to. */
static int wanted(const bus_store *s, const PGnotify *n)
{
	if (strcmp(n->relname, s->tables.channel) != 0)
		return 0;
	for (size_t i = 0; i < s->n_listen; i++)
		if (strcmp(n->extra, s->listen_queues[i]) == 0)
			return 1;
	return 0;
}

/* Takes every notification received; 1 when one was wanted. */
static int drain(bus_store *s)
{
	int hit = 0;
	PGnotify *n;
	while ((n = PQnotifies(s->conn.db)) != NULL) {
		hit |= wanted(s, n);
		PQfreemem(n);
	}
	return hit;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int lost(bus_store *s, const char *why)
{
	char where[300];
	bus__pg_where(s, where, sizeof where);
	int rc = s->env.error(BUS_EBACKEND,
			      "postgres store (%s): the listener lost its "
			      "connection: %s",
			      where, why);
	bus__pg_disconnect(s);
	return rc;
}

int bus__pg_wait_jobs(bus_store *s, int timeout_ms)
{
	PGconn *db = s->conn.db;
	if (db == NULL || PQstatus(db) == CONNECTION_BAD)
		return lost(s, "not connected");
	if (drain(s))
		return 1;
	int64_t end = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		int64_t left = end - mono_ms();
		if (left < 0)
			left = 0;
		struct pollfd p = { PQsocket(db), POLLIN, 0 };
		if (p.fd < 0)
			return lost(s, "no socket");
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno != EINTR)
			return lost(s, strerror(errno));
		if (r > 0) {
			if (PQconsumeInput(db) == 0) {
				char why[300];
				snprintf(why, sizeof why, "%s",
					 PQerrorMessage(db));
				why[strcspn(why, "\n")] = '\0';
				return lost(s, why);
			}
			if (drain(s))
				return 1;
		}
		if (left == 0)
			return 0;
	}
}
