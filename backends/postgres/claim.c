/*
 * claim: one statement. The due jobs of each queue are picked by a
 * sub-SELECT ... ORDER BY priority, scheduled_at, id LIMIT n FOR UPDATE
 * SKIP LOCKED (a range of the partial index jobs_due read in order, with
 * no sort), and updated by the UPDATE around it, which returns them as the
 * claim leaves them. The queues and their limits are two arrays, each
 * queue's pick a LATERAL sub-SELECT.
 *
 * The pick is the UPDATE's WHERE id = ANY (ARRAY(SELECT ...)), not a plain
 * IN (SELECT ...): an array is computed once, before the UPDATE reads a
 * row, and the update's targets are then fetched by primary key. With IN,
 * a target row that another transaction changed after the statement began
 * (the rescuer, an admin retry) makes PostgreSQL re-check the row, which
 * may run the sub-SELECT again, locking and returning other rows: the
 * UPDATE could then claim more jobs than the limit.
 *
 * RETURNING gives no order: the rows are sorted here in claim order (the
 * queues in the order asked, then priority, scheduled_at, id), which the
 * worker relies on.
 *
 * A claim whose commit may have landed on a lost connection is read back,
 * never run again blindly (that would leave the jobs it took executing
 * with nobody running them, until their lease ran out and an attempt was
 * spent): each call draws a claim token, which the UPDATE writes. After
 * the retry wrapper has ended the lost session, claim_landed reads the
 * jobs that hold the token, executing for this node, with a lease the
 * claim can have set (found through the jobs_lease index: the claim ran
 * at most as long ago as it was first sent, by the server's clock): they
 * are the claim's result. None: it did not commit, and it runs again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_store.h"

/* A due job: available whatever its time (a job given back with a delay
 * stays available), scheduled or retryable once its time has come. */
static const char claim_sql[] =
	"WITH n AS (SELECT COALESCE($1::timestamptz, now()) AS now) "
	"UPDATE bus_jobs j SET state = 2, attempt = j.attempt + 1, "
	"attempted_at = n.now, attempted_by = $4::text, "
	"lease_until = n.now + $5::int8 * interval '1 microsecond', "
	"claim_token = $7::text, finished_at = NULL, "
	/* claim_start: the jobs of the queues in $6 are started too (a job
	 * claimed from a queue is of that queue) */
	"started_at = CASE WHEN j.queue = ANY ($6::text[]) THEN n.now END, "
	"unique_key = CASE WHEN j.unique_states & 4 <> 0 THEN j.unique_key "
	"END "
	"FROM n WHERE j.id = ANY (ARRAY(SELECT d.id FROM n, "
	"unnest($2::text[], $3::int8[]) AS q(name, lim) "
	"CROSS JOIN LATERAL (SELECT id FROM bus_jobs "
	"WHERE queue = q.name AND state IN (0, 1, 3) "
	"AND (state = 0 OR scheduled_at <= n.now) "
	"AND NOT EXISTS (SELECT 1 FROM bus_queues p WHERE p.name = q.name "
	"AND p.paused) "
	"ORDER BY priority, scheduled_at, id LIMIT q.lim "
	"FOR UPDATE SKIP LOCKED) d)) "
	"RETURNING " PG_JOB_COLS;

/* $3: the claim's time when the core gave one; else the server's clock,
 * less $4 us (how long ago the claim was first sent, and a margin). */
#define LEASE_FROM(t)                                                          \
	"COALESCE($3::timestamptz, " t ") + $5::int8 * interval '1 microsecond'"
static const char readback_sql[] =
	"SELECT " PG_JOB_COLS " FROM bus_jobs WHERE state = 2 "
	"AND lease_until >= " LEASE_FROM(
		"now() - $4::int8 * interval '1 microsecond'") " "
	"AND lease_until <= " LEASE_FROM("now()") " "
	"AND claim_token = $1::text AND attempted_by = $2::text";

/* The slack, beyond the time since the claim was sent, allowed between
 * the claim's now() and the readback's (a statement's time is taken when
 * it starts). */
#define READBACK_MARGIN_US INT64_C(1000000)

const char *bus__pg_claim_sql(void)
{
	return claim_sql;
}

struct claim_arg {
	int64_t now, lease_us;
	const char *node;
	const bus_store_claim *queues; /* no queue twice */
	const unsigned char *start;    /* per queue (claim_start), or NULL */
	size_t n_queues;
	size_t limit; /* the limits added up */
	bus_job *rows;
	size_t n;
	char token[BUS_TOKEN_LEN + 1];
	/* When the claim was first sent (monotonic us; 0: not yet). */
	int64_t sent_us;
};

static int64_t monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* For sorting: the queue's place in the claim, then the index's order
 * (qsort has no argument for it). */
static _Thread_local const struct claim_arg *sort_arg;

static size_t queue_rank(const struct claim_arg *a, const char *queue)
{
	for (size_t i = 0; i < a->n_queues; i++)
		if (strcmp(a->queues[i].queue, queue) == 0)
			return i;
	return a->n_queues;
}

static int claim_order(const void *x, const void *y)
{
	const bus_job *a = x, *b = y;
	size_t qa = queue_rank(sort_arg, a->queue),
	       qb = queue_rank(sort_arg, b->queue);
	if (qa != qb)
		return qa < qb ? -1 : 1;
	if (a->priority != b->priority)
		return a->priority < b->priority ? -1 : 1;
	if (a->scheduled_at != b->scheduled_at)
		return a->scheduled_at < b->scheduled_at ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

static int claim_op(bus_store *s, void *arg)
{
	struct claim_arg *a = arg;
	struct pg_conn *c = &s->conn;
	a->rows = NULL;
	a->n = 0;
	struct pg_params p;
	struct pg_array names, limits, started;
	int rc = bus__pg_params_init(&p, 7);
	if (rc != 0)
		return rc;
	bus__pg_array_init(&names, PG_TEXT);
	bus__pg_array_init(&limits, PG_INT8);
	bus__pg_array_init(&started, PG_TEXT);
	for (size_t i = 0; i < a->n_queues; i++) {
		size_t lim = a->queues[i].limit;
		bus__pg_a_text(&names, a->queues[i].queue);
		if (a->start != NULL && a->start[i])
			bus__pg_a_text(&started, a->queues[i].queue);
		bus__pg_a_int8(&limits, lim > (size_t)INT64_MAX
						? INT64_MAX
						: (int64_t)lim);
	}
	bus__pg_p_time(&p, a->now);
	bus__pg_p_array(&p, &names);
	bus__pg_p_array(&p, &limits);
	bus__pg_p_text(&p, a->node);
	bus__pg_p_int8(&p, a->lease_us);
	bus__pg_p_array(&p, &started);
	bus__pg_p_text(&p, a->token);
	if (a->sent_us == 0)
		a->sent_us = monotonic_us();
	PGresult *r = NULL;
	rc = bus__pg_exec(c, SL_CLAIM, claim_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc != 0)
		return rc;
	rc = bus__pg_rows_read(c, r, 0, &a->rows, &a->n);
	PQclear(r);
	if (rc == 0 && a->n > 1) {
		sort_arg = a;
		qsort(a->rows, a->n, sizeof *a->rows, claim_order);
		sort_arg = NULL;
	}
	return rc;
}

/* After a lost connection: the jobs the claim took, if it committed. */
static int claim_landed(bus_store *s, void *arg)
{
	struct claim_arg *a = arg;
	struct pg_conn *c = &s->conn;
	if (a->sent_us == 0)
		return 0; /* never sent */
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 5);
	if (rc != 0)
		return rc;
	bus__pg_p_text(&p, a->token);
	bus__pg_p_text(&p, a->node);
	bus__pg_p_time(&p, a->now);
	bus__pg_p_int8(&p, monotonic_us() - a->sent_us + READBACK_MARGIN_US);
	bus__pg_p_int8(&p, a->lease_us);
	PGresult *r = NULL;
	rc = bus__pg_exec(c, SL_CLAIM_READBACK, readback_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc != 0)
		return rc;
	bus_job *rows = NULL;
	size_t n = 0;
	rc = bus__pg_rows_read(c, r, 0, &rows, &n);
	PQclear(r);
	if (rc == 0 && n > a->limit) {
		bus__pg_rows_free(rows, n);
		return bus__pg_fail(c, "a claim read back %zu jobs, more than "
				       "its limit of %zu", n, a->limit);
	}
	if (rc != 0 || n == 0)
		return rc;
	if (n > 1) {
		sort_arg = a;
		qsort(rows, n, sizeof *rows, claim_order);
		sort_arg = NULL;
	}
	if (s->env.log != NULL)
		s->env.log(s->env.log_udata, BUS_LOG_WARN,
			   "postgres store: a claim of %zu jobs committed "
			   "before the connection was lost; read back",
			   n);
	a->rows = rows;
	a->n = n;
	return 1;
}

/* The queues with each named once (its limits added up, which claims
 * the same jobs), and those with no room left out. */
static int queues_merge(bus_store *s, const bus_store_claim *in,
			const unsigned char *start_in, size_t n,
			bus_store_claim **out, unsigned char *start,
			size_t *n_out)
{
	bus_store_claim *m = malloc((n ? n : 1) * sizeof *m);
	if (m == NULL)
		return s->env.error(BUS_ENOMEM, "postgres store: claim: out of "
						"memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (in[i].limit == 0)
			continue;
		size_t j = 0;
		while (j < k && strcmp(m[j].queue, in[i].queue) != 0)
			j++;
		/* Started when any of its listings says so: a start recorded
		 * early only costs the refund, never the attempt's count. */
		if (j == k)
			start[k] = 0;
		if (start_in != NULL && start_in[i])
			start[j] = 1;
		if (j == k)
			m[k++] = in[i];
		else if (m[j].limit > SIZE_MAX - in[i].limit)
			m[j].limit = SIZE_MAX;
		else
			m[j].limit += in[i].limit;
	}
	*out = m;
	*n_out = k;
	return 0;
}

int bus__pg_claim_start(bus_store *s, int64_t now, const char *node,
			int64_t lease_us, const bus_store_claim *queues,
			const unsigned char *start, size_t n_queues,
			bus_job **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (node == NULL || (n_queues > 0 && queues == NULL))
		return s->env.error(BUS_EINVAL, "postgres store: claim: node "
						"or queues is NULL");
	for (size_t i = 0; i < n_queues; i++)
		if (queues[i].queue == NULL)
			return s->env.error(BUS_EINVAL,
					    "postgres store: claim: queue %zu "
					    "is NULL",
					    i);
	if (lease_us < 0 || lease_us > INT64_C(1) << 58)
		return s->env.error(BUS_EINVAL, "postgres store: claim: the "
						"lease is out of range");
	int rc = bus__pg_now_check(s, "claim", now);
	if (rc != 0)
		return rc;
	bus_store_claim *merged = NULL;
	size_t n_merged = 0;
	unsigned char *merged_start = malloc(n_queues ? n_queues : 1);
	if (merged_start == NULL)
		return s->env.error(BUS_ENOMEM, "postgres store: claim: out of "
						"memory");
	rc = queues_merge(s, queues, start, n_queues, &merged, merged_start,
			  &n_merged);
	if (rc != 0 || n_merged == 0) {
		free(merged);
		free(merged_start);
		return rc;
	}
	struct claim_arg a = { now,
			       lease_us,
			       node,
			       merged,
			       start != NULL ? merged_start : NULL,
			       n_merged,
			       0,
			       NULL,
			       0,
			       "",
			       0 };
	for (size_t i = 0; i < n_merged; i++)
		a.limit = a.limit > SIZE_MAX - merged[i].limit
				  ? SIZE_MAX
				  : a.limit + merged[i].limit;
	bus__token(a.token);
	rc = bus__pg_run_checked(s, "claiming jobs", claim_op, claim_landed,
				 &a);
	free(merged);
	free(merged_start);
	if (rc == 0) {
		*out = a.rows;
		*n_out = a.n;
	}
	return rc;
}

int bus__pg_claim(bus_store *s, int64_t now, const char *node,
		  int64_t lease_us, const bus_store_claim *queues,
		  size_t n_queues, bus_job **out, size_t *n_out)
{
	return bus__pg_claim_start(s, now, node, lease_us, queues, NULL,
				   n_queues, out, n_out);
}
