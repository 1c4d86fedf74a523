/*
 * claim: one short transaction. Per queue, a SELECT ... FOR UPDATE SKIP
 * LOCKED of the due jobs in claim order, which is a range scan of
 * jobs_claim (queue, pending, priority, scheduled_at, id) read in index
 * order with no sort; then one UPDATE of the ids taken (padded to a
 * prepared size with NULLs, which match nothing). The rows come back from
 * the SELECT with the claim's changes made here, so nothing is read twice.
 *
 * With now = 0 the SELECT also returns the server's time, which the
 * UPDATE and the rows then use, so that a claim has one time throughout.
 *
 * A claim whose COMMIT may have landed on a lost connection is read back,
 * never run again blindly (that would leave the jobs it took executing
 * with nobody running them, until their lease ran out and an attempt was
 * spent): each call draws a claim token, which the UPDATE writes. After
 * the retry wrapper has ended the lost session, claim_landed reads the
 * jobs that hold the token and the claim's lease time (through the
 * jobs_lease index): they are the claim's result. None: it did not
 * commit, and it runs again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_store.h"

/* A due job: available whatever its time (a job given back with a delay
 * stays available), scheduled or retryable once its time has come. */
static char *claim_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(
		t,
		"SELECT " MY_JOB_COLS ", COALESCE(?, UTC_TIMESTAMP(6)) "
		"FROM bus_jobs WHERE queue = ? AND pending = 1 AND "
		"(state = 0 OR scheduled_at <= COALESCE(?, UTC_TIMESTAMP(6))) "
		"AND NOT EXISTS (SELECT 1 FROM bus_queues WHERE name = ? AND "
		"paused <> 0) "
		"ORDER BY priority, scheduled_at, id LIMIT ? "
		"FOR UPDATE SKIP LOCKED",
		NULL, NULL, rows);
}

static char *claim_set_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(
		t,
		"UPDATE bus_jobs SET state = 2, attempt = attempt + 1, "
		"attempted_at = ?, attempted_by = ?, lease_until = ?, "
		"claim_token = ?, finished_at = NULL, started_at = ?, "
		"unique_key = IF((unique_states >> 2) & 1, unique_key, NULL) "
		"WHERE id IN ({rows})",
		"?", ", ", rows);
}

static char *readback_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT " MY_JOB_COLS " FROM bus_jobs "
			   "WHERE lease_until = ? AND claim_token = ? AND "
			   "state = 2 AND attempted_by = ? "
			   "ORDER BY priority, scheduled_at, id",
			   NULL, NULL, rows);
}

struct claim_arg {
	int64_t now, lease_us;
	const char *node;
	const bus_store_claim *queues; /* no queue twice */
	const unsigned char *start;    /* per queue (claim_start), or NULL */
	size_t *ends; /* per queue: a->n once its rows were appended */
	size_t n_queues;
	size_t limit; /* the limits added up */
	bus_job *rows;
	size_t n;
	char token[MY_TOKEN_LEN + 1];
	/* The lease the last UPDATE sent set (0: none was sent). */
	int64_t lease_sent;
};

/* Appends the due jobs of one queue to a->rows; sets *now to the
 * server's time when it was 0 and a row came back. */
static int claim_select(struct my_conn *c, struct claim_arg *a,
			const bus_store_claim *q, int64_t *now)
{
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, SL_CLAIM, claim_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 5)) != 0)
		return rc;
	bus__my_p_time(&p, *now);
	bus__my_p_str(&p, q->queue);
	bus__my_p_time(&p, *now);
	bus__my_p_str(&p, q->queue);
	bus__my_p_ll(&p, q->limit > (size_t)INT64_MAX ? INT64_MAX
						      : (long long)q->limit);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	bus_job *rows = NULL;
	size_t n = 0;
	int64_t seen = 0;
	if (rc == 0)
		rc = bus__my_rows_fetch(c, st, q->limit, &rows, &n, &seen);
	if (rc != 0 || n == 0)
		return rc;
	if (*now == 0)
		*now = seen;
	bus_job *all = realloc(a->rows, (a->n + n) * sizeof *all);
	if (all == NULL) {
		bus__my_rows_free(rows, n);
		return MY_ERR_NOMEM;
	}
	memcpy(all + a->n, rows, n * sizeof *rows);
	free(rows);
	a->rows = all;
	a->n += n;
	return 0;
}

/* Whether row i is of a queue whose jobs the claim starts. */
static int row_started(const struct claim_arg *a, size_t i)
{
	if (a->start == NULL)
		return 0;
	size_t q = 0;
	while (q < a->n_queues && a->ends[q] <= i)
		q++;
	return q < a->n_queues && a->start[q];
}

/* The rows as the claim leaves them, before it is applied (so that
 * running out of memory here leaves nothing claimed). */
static int claim_rows_set(struct claim_arg *a, int64_t now)
{
	for (size_t i = 0; i < a->n; i++) {
		bus_job *j = &a->rows[i];
		char *node = strdup(a->node);
		if (node == NULL)
			return MY_ERR_NOMEM;
		free(j->attempted_by);
		j->attempted_by = node;
		j->state = BUS_JOB_EXECUTING;
		j->attempt++;
		j->attempted_at = now;
		j->lease_until = now + a->lease_us;
		j->finished_at = 0;
		j->started_at = row_started(a, i) ? now : 0;
		if (!(j->unique_states & BUS_STATE_BIT(BUS_JOB_EXECUTING))) {
			free(j->unique_key);
			j->unique_key = NULL;
		}
	}
	return 0;
}

/* Applies the claim to the rows whose started_at is (or is not, with
 * `started` 0) set: one UPDATE per chunk of them. */
static int claim_update(struct my_conn *c, struct claim_arg *a, int64_t now,
			int started)
{
	int64_t *ids = malloc((a->n ? a->n : 1) * sizeof *ids);
	if (ids == NULL)
		return MY_ERR_NOMEM;
	size_t n = 0;
	for (size_t i = 0; i < a->n; i++)
		if ((a->rows[i].started_at != 0) == (started != 0))
			ids[n++] = a->rows[i].id;
	int rc = 0;
	for (size_t done = 0; rc == 0 && done < n;) {
		size_t left = n - done;
		int b = bus__my_bucket(left);
		size_t rows = bus__my_bucket_rows[b];
		size_t take = left < rows ? left : rows;
		MYSQL_STMT *st;
		struct my_params p;
		rc = bus__my_prepare(c, &st, SL_CLAIM_SET + b, claim_set_build,
				     rows);
		if (rc != 0 || (rc = bus__my_params_init(&p, 5 + rows)) != 0)
			break;
		bus__my_p_time(&p, now);
		bus__my_p_str(&p, a->node);
		bus__my_p_time(&p, now + a->lease_us);
		bus__my_p_str(&p, a->token);
		bus__my_p_time(&p, started ? now : 0); /* 0: NULL */
		a->lease_sent = now + a->lease_us;
		for (size_t k = 0; k < rows; k++)
			if (k < take)
				bus__my_p_ll(&p, ids[done + k]);
			else
				bus__my_p_null(&p);
		rc = bus__my_exec(c, st, &p);
		bus__my_params_free(&p);
		/* The rows are locked: none can have gone. */
		unsigned long long changed = mysql_stmt_affected_rows(st);
		if (rc == 0 && changed != take)
			rc = bus__my_fail(c,
					  "a claim updated %llu of the %zu "
					  "jobs it locked",
					  changed, take);
		done += take;
	}
	free(ids);
	return rc;
}

static int claim_op(bus_store *s, void *arg)
{
	struct claim_arg *a = arg;
	struct my_conn *c = &s->conn;
	int64_t now = a->now;
	a->rows = NULL;
	a->n = 0;
	a->lease_sent = 0;
	int rc = bus__my_begin(c);
	for (size_t i = 0; rc == 0 && i < a->n_queues; i++) {
		if (a->queues[i].limit > 0)
			rc = claim_select(c, a, &a->queues[i], &now);
		a->ends[i] = a->n;
	}
	if (rc == 0 && a->n > 0 && now != 0)
		rc = claim_rows_set(a, now);
	if (rc == 0 && a->n > 0 && now == 0)
		rc = bus__my_fail(c, "the claim did not learn the time");
	if (rc == 0 && a->n > 0)
		rc = claim_update(c, a, now, 0);
	if (rc == 0 && a->n > 0 && a->start != NULL)
		rc = claim_update(c, a, now, 1);
	if (rc == 0)
		rc = bus__my_commit(c);
	if (rc != 0) {
		bus__my_rows_free(a->rows, a->n);
		a->rows = NULL;
		a->n = 0;
	}
	return rc;
}

/* After a lost connection: the jobs the claim took, if it committed. */
static int claim_landed(bus_store *s, void *arg)
{
	struct claim_arg *a = arg;
	struct my_conn *c = &s->conn;
	if (a->lease_sent == 0)
		return 0; /* nothing was taken */
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, SL_CLAIM_READBACK, readback_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 3)) != 0)
		return rc;
	bus__my_p_time(&p, a->lease_sent);
	bus__my_p_str(&p, a->token);
	bus__my_p_str(&p, a->node);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	bus_job *rows = NULL;
	size_t n = 0;
	if (rc == 0)
		rc = bus__my_rows_fetch(c, st, a->limit, &rows, &n, NULL);
	if (rc != 0 || n == 0)
		return rc;
	if (s->env.log != NULL)
		s->env.log(s->env.log_udata, BUS_LOG_WARN,
			   "mysql store: a claim of %zu jobs committed before "
			   "the connection was lost; read back",
			   n);
	a->rows = rows;
	a->n = n;
	return 1;
}

/* The queues with each named once (its limits added up, which claims
 * the same jobs), so that no SELECT sees rows an earlier one locked. */
static int queues_merge(bus_store *s, const bus_store_claim *in,
			const unsigned char *start_in, size_t n,
			bus_store_claim **out, unsigned char *start,
			size_t *n_out)
{
	bus_store_claim *m = malloc((n ? n : 1) * sizeof *m);
	if (m == NULL)
		return s->env.error(BUS_ENOMEM, "mysql store: claim: out of "
						"memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
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

int bus__my_claim_start(bus_store *s, int64_t now, const char *node,
			int64_t lease_us, const bus_store_claim *queues,
			const unsigned char *start, size_t n_queues,
			bus_job **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (node == NULL || (n_queues > 0 && queues == NULL))
		return s->env.error(BUS_EINVAL, "mysql store: claim: node or "
						"queues is NULL");
	for (size_t i = 0; i < n_queues; i++)
		if (queues[i].queue == NULL)
			return s->env.error(BUS_EINVAL,
					    "mysql store: claim: queue %zu is "
					    "NULL",
					    i);
	if (lease_us < 0 || lease_us > INT64_C(1) << 58)
		return s->env.error(BUS_EINVAL, "mysql store: claim: the "
						"lease is out of range");
	int rc = bus__my_now_check(s, "claim", now);
	if (rc != 0)
		return rc;
	bus_store_claim *merged = NULL;
	size_t n_merged = 0;
	size_t cap = n_queues ? n_queues : 1;
	unsigned char *merged_start = malloc(cap);
	size_t *ends = malloc(cap * sizeof *ends);
	if (merged_start == NULL || ends == NULL) {
		free(merged_start);
		free(ends);
		return s->env.error(BUS_ENOMEM, "mysql store: claim: out of "
						"memory");
	}
	rc = queues_merge(s, queues, start, n_queues, &merged, merged_start,
			  &n_merged);
	if (rc != 0) {
		free(merged_start);
		free(ends);
		return rc;
	}
	struct claim_arg a = { now,
			       lease_us,
			       node,
			       merged,
			       start != NULL ? merged_start : NULL,
			       ends,
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
	rc = bus__my_run_checked(s, "claiming jobs", claim_op, claim_landed,
				 &a);
	free(merged);
	free(merged_start);
	free(ends);
	if (rc == 0) {
		*out = a.rows;
		*n_out = a.n;
	}
	return rc;
}

int bus__my_claim(bus_store *s, int64_t now, const char *node,
		  int64_t lease_us, const bus_store_claim *queues,
		  size_t n_queues, bus_job **out, size_t *n_out)
{
	return bus__my_claim_start(s, now, node, lease_us, queues, NULL,
				   n_queues, out, n_out);
}
