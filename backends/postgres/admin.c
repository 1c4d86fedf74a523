/*
 * Administration: get, list, cancel, retry, remove, pausing queues,
 * counts and prune.
 *
 * Each write (cancel, retry, remove) is one short transaction: the job's
 * row is read and locked (what it was before), the one statement that
 * changes it runs when its state allows (the statement also carries that
 * condition), and the row read says why when it does not (not found, or
 * its state). Should the connection drop once the COMMIT was sent, the
 * write may have landed: it is never run again blindly (a delete that
 * landed would then report "not found", a cancel "already finished").
 * After the retry wrapper has ended the lost session (fence.c),
 * change_landed reads the row again and compares it with what it was
 * before: a row that shows the change (or is gone, for a remove) means it
 * landed; one that does not means it did not, and the change runs again
 * from its read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../change.h"
#include "pg_store.h"

#define LIST_LIMIT_DEFAULT 100

static const char get_sql[] =
    "SELECT " PG_JOB_COLS " FROM bus_jobs WHERE id = $1::int8";

static const char list_sql[] =
    "SELECT " PG_JOB_COLS " FROM bus_jobs "
    "WHERE id > $1::int8 AND ($2::int4 = 0 OR ($2::int4 >> state) & 1 = 1) "
    "AND ($3::text IS NULL OR queue = $3::text) "
    "AND ($4::text IS NULL OR kind = $4::text) "
    "ORDER BY id LIMIT $5::int8";

/* Every SET expression reads the row as it was: an executing job only
 * records the request (once: a second cancel keeps the first time), the
 * others end cancelled. */
static const char cancel_sql[] =
    "UPDATE bus_jobs SET "
    "cancel_requested_at = CASE WHEN state = 2 THEN "
    "COALESCE(cancel_requested_at, COALESCE($1::timestamptz, now())) END, "
    "finished_at = CASE WHEN state = 2 THEN NULL "
    "ELSE COALESCE($1::timestamptz, now()) END, "
    "lease_until = CASE WHEN state = 2 THEN lease_until END, "
    "unique_key = CASE WHEN state = 2 OR unique_states & 32 <> 0 "
    "THEN unique_key END, "
    "state = CASE WHEN state = 2 THEN 2 ELSE 5 END "
    "WHERE id = $2::int8 AND state IN (0, 1, 2, 3)";

/* A job already due keeps its scheduled_at: its place in line. */
static const char retry_sql[] =
    "UPDATE bus_jobs SET state = 0, "
    "scheduled_at = CASE WHEN state IN (0, 1, 3) AND "
    "scheduled_at <= COALESCE($1::timestamptz, now()) THEN scheduled_at "
    "ELSE COALESCE($1::timestamptz, now()) END, "
    "finished_at = NULL, lease_until = NULL, cancel_requested_at = NULL, "
    "max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 "
    "ELSE max_attempts END, "
    "unique_key = CASE WHEN unique_states & 1 <> 0 THEN unique_key END "
    "WHERE id = $2::int8 AND state <> 2";

static const char remove_sql[] =
    "DELETE FROM bus_jobs WHERE id = $1::int8 AND state <> 2";

/* What the change and its read-back judge by: state, attempt, and
 * whether a cancel request is pending. The lock holds the row until the
 * change commits, so the statement sees the job as read. */
#define LOOK_COLS "state, attempt, cancel_requested_at IS NOT NULL"

static const char lock_sql[] =
    "SELECT " LOOK_COLS " FROM bus_jobs WHERE id = $1::int8 FOR UPDATE";

static const char look_sql[] =
    "SELECT " LOOK_COLS " FROM bus_jobs WHERE id = $1::int8";

static const char pause_sql[] =
    "INSERT INTO bus_queues (name, paused) VALUES ($1::text, $2::bool) "
    "ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused";

static const char counts_sql[] = "SELECT queue, state, count(*) FROM bus_jobs "
				 "GROUP BY queue, state ORDER BY queue, state";

/* finished_at is set only on finished jobs: the state test is a check. */
static const char prune_sql[] =
    "DELETE FROM bus_jobs WHERE id IN (SELECT id FROM bus_jobs "
    "WHERE finished_at < COALESCE($1::timestamptz, now()) - "
    "$2::int8 * interval '1 microsecond' AND state IN (4, 5, 6) "
    "ORDER BY finished_at, id LIMIT $3::int8)";

/* Runs the statement of `slot` with one job id as its last parameter
 * (after `now` when with_now). */
static int by_id(struct pg_conn *c, int slot, const char *sql, int with_now,
		 int64_t now, int64_t id, PGresult **out)
{
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 2);
	if (rc != 0)
		return rc;
	if (with_now)
		bus__pg_p_time(&p, now);
	bus__pg_p_int8(&p, id);
	rc = bus__pg_exec(c, slot, sql, &p, out);
	bus__pg_params_free(&p);
	return rc;
}

/* Reads the job through the statement in `slot` (lock_sql or look_sql). */
static int look_at(struct pg_conn *c, int slot, const char *sql, int64_t id,
		   struct bus_change_look *out)
{
	PGresult *r = NULL;
	int rc = by_id(c, slot, sql, 0, 0, id, &r);
	if (rc != 0)
		return rc;
	if (PQnfields(r) != 3 || PQbinaryTuples(r) != 1) {
		int n = PQnfields(r);
		PQclear(r);
		return bus__pg_fail(c, "internal error: a job's state read as "
				       "%d columns, not 3 in binary",
				    n);
	}
	if (PQntuples(r) == 0)
		*out = (struct bus_change_look){ -1, 0, 0 };
	else
		*out = (struct bus_change_look){ bus__pg_get_int(r, 0, 0),
						 bus__pg_get_int(r, 0, 1),
						 bus__pg_get_int(r, 0, 2) };
	PQclear(r);
	return 0;
}

static int not_found(const bus_store *s, int64_t id)
{
	return s->env.error(BUS_ENOTFOUND, "postgres store: job %lld not found",
			    (long long)id);
}

static const char *state_name(long long st)
{
	static const char *const names[BUS_JOB_STATE_COUNT] = {
	    "available", "scheduled", "executing", "retryable",
	    "completed", "cancelled", "discarded",
	};
	return st >= 0 && st < BUS_JOB_STATE_COUNT ? names[st] : "unknown";
}

static int64_t limit_of(size_t n)
{
	return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n;
}

/* ---- get and list ---- */

struct read_arg {
	int64_t id;
	const bus_job_filter *filter;
	bus_job *rows;
	size_t n;
};

static int get_op(bus_store *s, void *arg)
{
	struct read_arg *a = arg;
	PGresult *r = NULL;
	int rc = by_id(&s->conn, SL_GET, get_sql, 0, 0, a->id, &r);
	if (rc == 0) {
		rc = bus__pg_rows_read(&s->conn, r, 0, &a->rows, &a->n);
		PQclear(r);
	}
	return rc;
}

int bus__pg_get(bus_store *s, int64_t id, bus_job **out)
{
	*out = NULL;
	struct read_arg a = {id, NULL, NULL, 0};
	int rc = bus__pg_run(s, "reading a job", get_op, &a);
	if (rc != 0)
		return rc;
	if (a.n == 0)
		return not_found(s, id);
	*out = a.rows; /* an array of one: bus_job_free frees it */
	return 0;
}

static int list_op(bus_store *s, void *arg)
{
	struct read_arg *a = arg;
	const bus_job_filter *f = a->filter;
	size_t limit = f->limit ? f->limit : LIST_LIMIT_DEFAULT;
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 5);
	if (rc != 0)
		return rc;
	bus__pg_p_int8(&p, f->after_id);
	bus__pg_p_int4(&p, (int32_t)(f->states & 0x7f));
	bus__pg_p_text(&p, f->queue);
	bus__pg_p_text(&p, f->kind);
	bus__pg_p_int8(&p, limit_of(limit));
	PGresult *r = NULL;
	rc = bus__pg_exec(&s->conn, SL_LIST, list_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc == 0) {
		rc = bus__pg_rows_read(&s->conn, r, 0, &a->rows, &a->n);
		PQclear(r);
	}
	return rc;
}

int bus__pg_list(bus_store *s, const bus_job_filter *filter, bus_job **out,
		 size_t *n_out)
{
	static const bus_job_filter all = BUS_JOB_FILTER_INIT;
	*out = NULL;
	*n_out = 0;
	struct read_arg a = {0, filter ? filter : &all, NULL, 0};
	int rc = bus__pg_run(s, "listing jobs", list_op, &a);
	if (rc == 0) {
		*out = a.rows;
		*n_out = a.n;
	}
	return rc;
}

/* ---- cancel, retry, remove ---- */

struct change_arg {
	enum bus_change what;
	int64_t now, id;
	struct bus_change_look before; /* the job as the change found it */
	int wrote;		       /* the change applied, and was made */
	int commit_sent;	       /* the COMMIT of a change was sent */
};

static int change_op(bus_store *s, void *arg)
{
	static const struct {
		int slot;
		const char *sql;
		int with_now;
	} stmts[] = {
	    [BUS_CHANGE_CANCEL] = {SL_CANCEL, cancel_sql, 1},
	    [BUS_CHANGE_RETRY] = {SL_RETRY, retry_sql, 1},
	    [BUS_CHANGE_REMOVE] = {SL_REMOVE, remove_sql, 0},
	};
	struct change_arg *a = arg;
	struct pg_conn *c = &s->conn;
	a->wrote = a->commit_sent = 0;
	int rc = bus__pg_begin(c);
	if (rc == 0)
		rc = look_at(c, SL_JOB_LOCK, lock_sql, a->id, &a->before);
	if (rc == 0 && bus__change_applies(a->what, &a->before)) {
		PGresult *r = NULL;
		rc = by_id(c, stmts[a->what].slot, stmts[a->what].sql,
			   stmts[a->what].with_now, a->now, a->id, &r);
		/* The row is locked in a state the statement applies to. */
		if (rc == 0 && atoi(PQcmdTuples(r)) != 1)
			rc = bus__pg_fail(c, "job %lld, locked, changed %s rows "
					     "instead of 1",
					  (long long)a->id, PQcmdTuples(r));
		PQclear(r);
		a->wrote = rc == 0;
	}
	if (rc == 0) {
		a->commit_sent = a->wrote;
		rc = bus__pg_commit(c);
	}
	return rc;
}

/* After a lost connection (the lost session has ended): whether the
 * change's COMMIT landed, judged by the row now against the row before.
 * Without a COMMIT sent nothing can have landed: the change runs again
 * from its read; otherwise bus__change_landed (change.h) judges. */
static int change_landed(bus_store *s, void *arg)
{
	struct change_arg *a = arg;
	if (!a->commit_sent)
		return 0;
	struct bus_change_look now;
	int rc = look_at(&s->conn, SL_JOB_LOOK, look_sql, a->id, &now);
	if (rc != 0)
		return rc;
	int landed = bus__change_landed(a->what, &a->before, &now);
	if (landed && s->env.log != NULL)
		s->env.log(s->env.log_udata, BUS_LOG_WARN,
			   "postgres store: a %s of job %lld committed before "
			   "the connection was lost; read back",
			   bus__change_name(a->what),
			   (long long)a->id);
	return landed;
}

static int change(bus_store *s, struct change_arg *a, const char *what)
{
	return bus__pg_run_checked(s, what, change_op, change_landed, a);
}

int bus__pg_cancel(bus_store *s, int64_t now, int64_t id)
{
	int rc = bus__pg_now_check(s, "cancel", now);
	struct change_arg a = {BUS_CHANGE_CANCEL, now, id, {-1, 0, 0}, 0, 0};
	if (rc == 0)
		rc = change(s, &a, "cancelling a job");
	/* An executing job with a request already made: nothing to add. */
	if (rc != 0 || a.wrote || a.before.state == BUS_JOB_EXECUTING)
		return rc;
	if (a.before.state < 0)
		return not_found(s, id);
	return s->env.error(BUS_ESTATE,
			    "postgres store: cannot cancel job %lld: it has "
			    "already finished (%s)",
			    (long long)id, state_name(a.before.state));
}

int bus__pg_retry(bus_store *s, int64_t now, int64_t id)
{
	int rc = bus__pg_now_check(s, "retry", now);
	struct change_arg a = {BUS_CHANGE_RETRY, now, id, {-1, 0, 0}, 0, 0};
	if (rc == 0)
		rc = change(s, &a, "retrying a job");
	if (rc != 0 || a.wrote)
		return rc;
	if (a.before.state < 0)
		return not_found(s, id);
	return s->env.error(BUS_ESTATE,
			    "postgres store: cannot retry job %lld: it is "
			    "executing",
			    (long long)id);
}

int bus__pg_remove(bus_store *s, int64_t id)
{
	struct change_arg a = {BUS_CHANGE_REMOVE, 0, id, {-1, 0, 0}, 0, 0};
	int rc = change(s, &a, "deleting a job");
	if (rc != 0 || a.wrote)
		return rc;
	if (a.before.state < 0)
		return not_found(s, id);
	return s->env.error(BUS_ESTATE,
			    "postgres store: cannot delete job %lld: it is "
			    "executing",
			    (long long)id);
}

/* ---- Queues and counts ---- */

struct pause_arg {
	const char *queue;
	int paused;
};

static int pause_op(bus_store *s, void *arg)
{
	struct pause_arg *a = arg;
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 2);
	if (rc != 0)
		return rc;
	bus__pg_p_text(&p, a->queue);
	bus__pg_p_bool(&p, a->paused);
	rc = bus__pg_exec(&s->conn, SL_PAUSE, pause_sql, &p, NULL);
	bus__pg_params_free(&p);
	return rc;
}

int bus__pg_set_paused(bus_store *s, const char *queue, int paused)
{
	if (queue == NULL)
		return s->env.error(BUS_EINVAL, "postgres store: set_paused: "
						"queue is NULL");
	struct pause_arg a = {queue, paused};
	return bus__pg_run(s, paused ? "pausing a queue" : "resuming a queue",
			   pause_op, &a);
}

struct counts_arg {
	bus_job_count *c;
	size_t n;
};

static int counts_op(bus_store *s, void *arg)
{
	struct counts_arg *a = arg;
	free(a->c);
	a->c = NULL;
	a->n = 0;
	PGresult *r = NULL;
	int rc = bus__pg_exec(&s->conn, SL_COUNTS, counts_sql, NULL, &r);
	if (rc != 0)
		return rc;
	int n = PQntuples(r);
	if (n > 0 && (a->c = calloc((size_t)n, sizeof *a->c)) == NULL) {
		PQclear(r);
		return PG_ERR_NOMEM;
	}
	for (int i = 0; i < n; i++) {
		bus_job_count *row = &a->c[i];
		/* A name longer than the field is cut, as the memory store
		 * does. */
		snprintf(row->queue, sizeof row->queue, "%s",
			 PQgetvalue(r, i, 0));
		row->state = (bus_job_state)bus__pg_get_int(r, i, 1);
		row->count = bus__pg_get_int(r, i, 2);
	}
	a->n = (size_t)n;
	PQclear(r);
	return 0;
}

int bus__pg_counts(bus_store *s, bus_job_count **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	struct counts_arg a = {NULL, 0};
	int rc = bus__pg_run(s, "counting jobs", counts_op, &a);
	if (rc == 0) {
		*out = a.c;
		*n_out = a.n;
	} else {
		free(a.c);
	}
	return rc;
}

/* ---- paused queues ---- */

static const char paused_sql[] =
    "SELECT name FROM bus_queues WHERE paused ORDER BY name";

struct paused_arg {
	bus_queue_info *q;
	size_t n;
};

static int paused_op(bus_store *s, void *arg)
{
	struct paused_arg *a = arg;
	free(a->q);
	a->q = NULL;
	a->n = 0;
	PGresult *r = NULL;
	int rc = bus__pg_exec(&s->conn, SL_PAUSED, paused_sql, NULL, &r);
	if (rc != 0)
		return rc;
	int n = PQntuples(r);
	if (n > 0 && (a->q = calloc((size_t)n, sizeof *a->q)) == NULL) {
		PQclear(r);
		return PG_ERR_NOMEM;
	}
	for (int i = 0; i < n; i++) {
		/* A name longer than the field is cut, as in counts. */
		snprintf(a->q[i].name, sizeof a->q[i].name, "%s",
			 PQgetvalue(r, i, 0));
		a->q[i].paused = 1;
	}
	a->n = (size_t)n;
	PQclear(r);
	return 0;
}

int bus__pg_paused_queues(bus_store *s, bus_queue_info **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	struct paused_arg a = {NULL, 0};
	int rc = bus__pg_run(s, "listing paused queues", paused_op, &a);
	if (rc == 0) {
		*out = a.q;
		*n_out = a.n;
	} else {
		free(a.q);
	}
	return rc;
}

/* ---- the server's clock ---- */

/* clock_timestamp(): the time now, not the start of this transaction. */
static const char now_sql[] = "SELECT clock_timestamp()";

static int now_op(bus_store *s, void *arg)
{
	int64_t *out = arg;
	PGresult *r = NULL;
	int rc = bus__pg_exec(&s->conn, SL_NOW, now_sql, NULL, &r);
	if (rc != 0)
		return rc;
	*out = PQntuples(r) == 1 ? bus__pg_get_time(r, 0, 0) : 0;
	PQclear(r);
	if (*out == 0)
		return bus__pg_fail(&s->conn, "the server's clock read as no "
					      "time");
	return 0;
}

int bus__pg_now(bus_store *s, int64_t *out)
{
	*out = 0;
	return bus__pg_run(s, "reading the server's clock", now_op, out);
}

/* ---- prune ---- */

struct prune_arg {
	int64_t now, age_us;
	size_t limit;
	int64_t deleted;
};

static int prune_op(bus_store *s, void *arg)
{
	struct prune_arg *a = arg;
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 3);
	if (rc != 0)
		return rc;
	bus__pg_p_time(&p, a->now);
	bus__pg_p_int8(&p, a->age_us);
	bus__pg_p_int8(&p, limit_of(a->limit));
	PGresult *r = NULL;
	rc = bus__pg_exec(&s->conn, SL_PRUNE, prune_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc == 0) {
		a->deleted = atoll(PQcmdTuples(r));
		PQclear(r);
	}
	return rc;
}

int bus__pg_prune(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		  int64_t *deleted)
{
	if (deleted != NULL)
		*deleted = 0;
	int rc = bus__pg_now_check(s, "prune", now);
	if (rc != 0 || limit == 0)
		return rc;
	struct prune_arg a = {now, age_us, limit, 0};
	rc = bus__pg_run(s, "pruning finished jobs", prune_op, &a);
	if (rc == 0 && deleted != NULL)
		*deleted = a.deleted;
	return rc;
}
