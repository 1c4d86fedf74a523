/*
 * Administration: get, list, cancel, retry, remove, pausing queues,
 * counts and prune.
 *
 * Each write (cancel, retry, remove) is one short transaction: the job's
 * row is read and locked (what it was before), the one statement that
 * changes it runs when its state allows (the statement also carries that
 * condition), and the reply says why when it does not (not found, or its
 * state). Should the connection drop once the COMMIT was sent, the write
 * may have landed: it is never run again blindly (a delete that landed
 * would then report "not found", a cancel "already finished"). After the
 * retry wrapper has ended the lost session, change_landed reads the row
 * again and compares it with what it was before: a row that shows the
 * change (or is gone, for a remove) means it landed; one that does not
 * means it did not, and the change runs again from its read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../change.h"
#include "mysql_store.h"

#define LIST_LIMIT_DEFAULT 100

static char *get_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT " MY_JOB_COLS " FROM bus_jobs "
			   "WHERE id = ?",
			   NULL, NULL, rows);
}

static char *list_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT " MY_JOB_COLS " FROM bus_jobs "
			   "WHERE id > ? AND (? = 0 OR (? >> state) & 1) "
			   "AND (? IS NULL OR queue = ?) "
			   "AND (? IS NULL OR kind = ?) "
			   "ORDER BY id LIMIT ?",
			   NULL, NULL, rows);
}

/* A single-table UPDATE assigns left to right, each expression seeing
 * the columns set before it: state is set last, so every other one reads
 * the state the job had. An executing job only records the request (once:
 * a second cancel changes nothing, and is told apart by the state read
 * after). */
static char *cancel_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "UPDATE bus_jobs SET "
			   "cancel_requested_at = IF(state = 2, "
			   "COALESCE(cancel_requested_at, "
			   "COALESCE(?, UTC_TIMESTAMP(6))), NULL), "
			   "finished_at = IF(state = 2, NULL, "
			   "COALESCE(?, UTC_TIMESTAMP(6))), "
			   "lease_until = IF(state = 2, lease_until, NULL), "
			   "unique_key = IF(state = 2 OR "
			   "(unique_states >> 5) & 1, unique_key, NULL), "
			   "state = IF(state = 2, 2, 5) "
			   "WHERE id = ? AND state IN (0, 1, 2, 3)",
			   NULL, NULL, rows);
}

/* max_attempts reads attempt, which this statement does not set; state is
 * set last (see cancel_build): a job already due keeps its scheduled_at,
 * its place in line. */
static char *retry_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "UPDATE bus_jobs SET "
			   "scheduled_at = IF(state IN (0, 1, 3) AND "
			   "scheduled_at <= COALESCE(?, UTC_TIMESTAMP(6)), "
			   "scheduled_at, COALESCE(?, UTC_TIMESTAMP(6))), "
			   "finished_at = NULL, lease_until = NULL, "
			   "cancel_requested_at = NULL, "
			   "max_attempts = IF(attempt >= max_attempts, "
			   "attempt + 1, max_attempts), "
			   "unique_key = IF(unique_states & 1, unique_key, "
			   "NULL), state = 0 "
			   "WHERE id = ? AND state <> 2",
			   NULL, NULL, rows);
}

static char *remove_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "DELETE FROM bus_jobs WHERE id = ? AND state <> 2",
			   NULL, NULL, rows);
}

/* What the change and its read-back judge by: state, attempt, and
 * whether a cancel request is pending. The lock holds the row until the
 * change commits, so the statement sees the job as read. */
#define LOOK_COLS "state, attempt, cancel_requested_at IS NOT NULL"

static char *lock_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT " LOOK_COLS " FROM bus_jobs WHERE id = ? "
			   "FOR UPDATE",
			   NULL, NULL, rows);
}

static char *look_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, "SELECT " LOOK_COLS " FROM bus_jobs WHERE id = ?",
			   NULL, NULL, rows);
}

static char *pause_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "INSERT INTO bus_queues (name, paused) "
			   "VALUES (?, ?) "
			   "ON DUPLICATE KEY UPDATE paused = VALUES(paused)",
			   NULL, NULL, rows);
}

static char *counts_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT queue, state, COUNT(*) FROM bus_jobs "
			   "GROUP BY queue, state ORDER BY queue, state",
			   NULL, NULL, rows);
}

static char *paused_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT name FROM bus_queues WHERE paused <> 0 "
			   "ORDER BY name",
			   NULL, NULL, rows);
}

/* finished_at is set only on finished jobs: the state test is a check. */
static char *prune_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "DELETE FROM bus_jobs WHERE finished_at < "
			   "COALESCE(?, UTC_TIMESTAMP(6)) - "
			   "INTERVAL ? MICROSECOND AND state IN (4, 5, 6) "
			   "ORDER BY finished_at, id LIMIT ?",
			   NULL, NULL, rows);
}

/* Runs the statement in `slot` with one job id as its last parameter
 * (after `now` when with_now); *affected tells how many rows changed. */
static int by_id(struct my_conn *c, int slot, my_sql_fn build, int with_now,
		 int64_t now, int64_t id, MYSQL_STMT **out)
{
	struct my_params p;
	int rc = bus__my_prepare(c, out, slot, build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 3)) != 0)
		return rc;
	for (int k = 0; k < with_now; k++)
		bus__my_p_time(&p, now);
	bus__my_p_ll(&p, id);
	rc = bus__my_exec(c, *out, &p);
	bus__my_params_free(&p);
	return rc;
}

/* Reads the job through the statement in `slot` (lock_build or
 * look_build). */
static int look_at(struct my_conn *c, int slot, my_sql_fn build, int64_t id,
		   struct bus_change_look *out)
{
	MYSQL_STMT *st;
	int rc = by_id(c, slot, build, 0, 0, id, &st);
	if (rc != 0)
		return rc;
	long long v[3] = { -1, 0, 0 };
	MYSQL_BIND b[3];
	memset(b, 0, sizeof b);
	for (int i = 0; i < 3; i++) {
		b[i].buffer_type = MYSQL_TYPE_LONGLONG;
		b[i].buffer = &v[i];
	}
	if (mysql_stmt_bind_result(st, b) != 0)
		return bus__my_stmt_fail(c, st);
	int f = mysql_stmt_fetch(st);
	if (f == MYSQL_NO_DATA) {
		v[0] = -1;
	} else if (f != 0 && f != MYSQL_DATA_TRUNCATED) {
		rc = bus__my_stmt_fail(c, st);
		mysql_stmt_free_result(st);
		return rc;
	}
	mysql_stmt_free_result(st);
	*out = (struct bus_change_look){ v[0], v[1], v[2] };
	return 0;
}

static int not_found(const bus_store *s, int64_t id)
{
	return s->env.error(BUS_ENOTFOUND, "mysql store: job %lld not found",
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

/* A size as a LIMIT. */
static long long limit_of(size_t n)
{
	return n > (size_t)INT64_MAX ? INT64_MAX : (long long)n;
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
	MYSQL_STMT *st;
	int rc = by_id(&s->conn, SL_GET, get_build, 0, 0, a->id, &st);
	if (rc == 0)
		rc = bus__my_rows_fetch(&s->conn, st, 1, &a->rows, &a->n, NULL);
	return rc;
}

int bus__my_get(bus_store *s, int64_t id, bus_job **out)
{
	*out = NULL;
	struct read_arg a = { id, NULL, NULL, 0 };
	int rc = bus__my_run(s, "reading a job", get_op, &a);
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
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(&s->conn, &st, SL_LIST, list_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 8)) != 0)
		return rc;
	bus__my_p_ll(&p, f->after_id);
	bus__my_p_ll(&p, f->states);
	bus__my_p_ll(&p, f->states);
	bus__my_p_str(&p, f->queue);
	bus__my_p_str(&p, f->queue);
	bus__my_p_str(&p, f->kind);
	bus__my_p_str(&p, f->kind);
	bus__my_p_ll(&p, limit_of(limit));
	rc = bus__my_exec(&s->conn, st, &p);
	bus__my_params_free(&p);
	if (rc == 0)
		rc = bus__my_rows_fetch(&s->conn, st, limit, &a->rows, &a->n,
					NULL);
	return rc;
}

int bus__my_list(bus_store *s, const bus_job_filter *filter, bus_job **out,
		 size_t *n_out)
{
	static const bus_job_filter all = BUS_JOB_FILTER_INIT;
	*out = NULL;
	*n_out = 0;
	struct read_arg a = { 0, filter ? filter : &all, NULL, 0 };
	int rc = bus__my_run(s, "listing jobs", list_op, &a);
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
		my_sql_fn build;
		int with_now;
	} stmts[] = {
		[BUS_CHANGE_CANCEL] = { SL_CANCEL, cancel_build, 2 },
		[BUS_CHANGE_RETRY] = { SL_RETRY, retry_build, 2 },
		[BUS_CHANGE_REMOVE] = { SL_REMOVE, remove_build, 0 },
	};
	struct change_arg *a = arg;
	struct my_conn *c = &s->conn;
	a->wrote = a->commit_sent = 0;
	int rc = bus__my_begin(c);
	if (rc == 0)
		rc = look_at(c, SL_JOB_LOCK, lock_build, a->id, &a->before);
	if (rc == 0 && bus__change_applies(a->what, &a->before)) {
		MYSQL_STMT *st;
		rc = by_id(c, stmts[a->what].slot, stmts[a->what].build,
			   stmts[a->what].with_now, a->now, a->id, &st);
		if (rc == 0 && mysql_stmt_affected_rows(st) == 0 &&
		    a->what == BUS_CHANGE_REMOVE)
			rc = bus__my_fail(c, "job %lld, locked, was not "
					     "deleted",
					  (long long)a->id);
		a->wrote = rc == 0;
	}
	if (rc == 0) {
		a->commit_sent = a->wrote;
		rc = bus__my_commit(c);
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
	int rc = look_at(&s->conn, SL_JOB_LOOK, look_build, a->id, &now);
	if (rc != 0)
		return rc;
	int landed = bus__change_landed(a->what, &a->before, &now);
	if (landed && s->env.log != NULL)
		s->env.log(s->env.log_udata, BUS_LOG_WARN,
			   "mysql store: a %s of job %lld committed before "
			   "the connection was lost; read back",
			   bus__change_name(a->what),
			   (long long)a->id);
	return landed;
}

static int change(bus_store *s, struct change_arg *a, const char *what)
{
	return bus__my_run_checked(s, what, change_op, change_landed, a);
}

int bus__my_cancel(bus_store *s, int64_t now, int64_t id)
{
	int rc = bus__my_now_check(s, "cancel", now);
	struct change_arg a = { BUS_CHANGE_CANCEL, now, id, { -1, 0, 0 },
				 0, 0 };
	if (rc == 0)
		rc = change(s, &a, "cancelling a job");
	/* An executing job with a request already made: nothing to add. */
	if (rc != 0 || a.wrote || a.before.state == BUS_JOB_EXECUTING)
		return rc;
	if (a.before.state < 0)
		return not_found(s, id);
	return s->env.error(BUS_ESTATE,
			    "mysql store: cannot cancel job %lld: it has "
			    "already finished (%s)",
			    (long long)id, state_name(a.before.state));
}

int bus__my_retry(bus_store *s, int64_t now, int64_t id)
{
	int rc = bus__my_now_check(s, "retry", now);
	struct change_arg a = { BUS_CHANGE_RETRY, now, id, { -1, 0, 0 },
				 0, 0 };
	if (rc == 0)
		rc = change(s, &a, "retrying a job");
	if (rc != 0 || a.wrote)
		return rc;
	if (a.before.state < 0)
		return not_found(s, id);
	return s->env.error(BUS_ESTATE,
			    "mysql store: cannot retry job %lld: it is "
			    "executing",
			    (long long)id);
}

int bus__my_remove(bus_store *s, int64_t id)
{
	struct change_arg a = { BUS_CHANGE_REMOVE, 0, id, { -1, 0, 0 },
				 0, 0 };
	int rc = change(s, &a, "deleting a job");
	if (rc != 0 || a.wrote)
		return rc;
	if (a.before.state < 0)
		return not_found(s, id);
	return s->env.error(BUS_ESTATE,
			    "mysql store: cannot delete job %lld: it is "
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
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(&s->conn, &st, SL_PAUSE, pause_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 2)) != 0)
		return rc;
	bus__my_p_str(&p, a->queue);
	bus__my_p_ll(&p, a->paused != 0);
	rc = bus__my_exec(&s->conn, st, &p);
	bus__my_params_free(&p);
	return rc;
}

int bus__my_set_paused(bus_store *s, const char *queue, int paused)
{
	if (queue == NULL)
		return s->env.error(BUS_EINVAL,
				    "mysql store: set_paused: queue is NULL");
	struct pause_arg a = { queue, paused };
	return bus__my_run(s, paused ? "pausing a queue" : "resuming a queue",
			   pause_op, &a);
}

struct counts_arg {
	bus_job_count *c;
	size_t n;
};

static int counts_read(struct my_conn *c, MYSQL_STMT *st, struct counts_arg *a)
{
	bus_job_count row;
	long long state = 0, count = 0;
	unsigned long qlen = 0;
	MYSQL_BIND b[3];
	memset(b, 0, sizeof b);
	b[0].buffer_type = MYSQL_TYPE_STRING;
	b[0].buffer = row.queue;
	b[0].buffer_length = sizeof row.queue;
	b[0].length = &qlen;
	b[1].buffer_type = MYSQL_TYPE_LONGLONG;
	b[1].buffer = &state;
	b[2].buffer_type = MYSQL_TYPE_LONGLONG;
	b[2].buffer = &count;
	if (mysql_stmt_bind_result(st, b) != 0)
		return bus__my_stmt_fail(c, st);
	size_t cap = 0;
	int rc = 0, f;
	while ((f = mysql_stmt_fetch(st)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		if (rc != 0)
			continue; /* read to the end */
		/* A name longer than the field is cut, as the memory store
		 * does. */
		size_t max = sizeof row.queue - 1;
		size_t len = qlen < max ? qlen : max;
		row.queue[len] = '\0';
		row.state = (bus_job_state)state;
		row.count = count;
		if (a->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			bus_job_count *nc = realloc(a->c, ncap * sizeof *nc);
			if (nc == NULL) {
				rc = MY_ERR_NOMEM;
				continue;
			}
			a->c = nc;
			cap = ncap;
		}
		a->c[a->n++] = row;
	}
	if (rc == 0 && f != MYSQL_NO_DATA)
		rc = bus__my_stmt_fail(c, st);
	mysql_stmt_free_result(st);
	return rc;
}

static int counts_op(bus_store *s, void *arg)
{
	struct counts_arg *a = arg;
	MYSQL_STMT *st;
	free(a->c);
	a->c = NULL;
	a->n = 0;
	int rc = bus__my_prepare(&s->conn, &st, SL_COUNTS, counts_build, 0);
	if (rc == 0)
		rc = bus__my_exec(&s->conn, st, NULL);
	if (rc == 0)
		rc = counts_read(&s->conn, st, a);
	if (rc != 0) {
		free(a->c);
		a->c = NULL;
		a->n = 0;
	}
	return rc;
}

int bus__my_counts(bus_store *s, bus_job_count **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	struct counts_arg a = { NULL, 0 };
	int rc = bus__my_run(s, "counting jobs", counts_op, &a);
	if (rc == 0) {
		*out = a.c;
		*n_out = a.n;
	}
	return rc;
}

struct paused_arg {
	bus_queue_info *q;
	size_t n;
};

static int paused_read(struct my_conn *c, MYSQL_STMT *st, struct paused_arg *a)
{
	char name[sizeof a->q->name];
	unsigned long len = 0;
	MYSQL_BIND b[1];
	memset(b, 0, sizeof b);
	b[0].buffer_type = MYSQL_TYPE_STRING;
	b[0].buffer = name;
	b[0].buffer_length = sizeof name;
	b[0].length = &len;
	if (mysql_stmt_bind_result(st, b) != 0)
		return bus__my_stmt_fail(c, st);
	size_t cap = 0;
	int rc = 0, f;
	while ((f = mysql_stmt_fetch(st)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		if (rc != 0)
			continue; /* read to the end */
		if (a->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			bus_queue_info *nq = realloc(a->q, ncap * sizeof *nq);
			if (nq == NULL) {
				rc = MY_ERR_NOMEM;
				continue;
			}
			a->q = nq;
			cap = ncap;
		}
		bus_queue_info *q = &a->q[a->n++];
		memset(q, 0, sizeof *q);
		size_t max = sizeof q->name - 1;
		memcpy(q->name, name, len < max ? len : max);
		q->paused = 1;
	}
	if (rc == 0 && f != MYSQL_NO_DATA)
		rc = bus__my_stmt_fail(c, st);
	mysql_stmt_free_result(st);
	return rc;
}

static int paused_op(bus_store *s, void *arg)
{
	struct paused_arg *a = arg;
	MYSQL_STMT *st;
	free(a->q);
	a->q = NULL;
	a->n = 0;
	int rc = bus__my_prepare(&s->conn, &st, SL_PAUSED, paused_build, 0);
	if (rc == 0)
		rc = bus__my_exec(&s->conn, st, NULL);
	if (rc == 0)
		rc = paused_read(&s->conn, st, a);
	if (rc != 0) {
		free(a->q);
		a->q = NULL;
		a->n = 0;
	}
	return rc;
}

int bus__my_paused_queues(bus_store *s, bus_queue_info **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	struct paused_arg a = { NULL, 0 };
	int rc = bus__my_run(s, "listing paused queues", paused_op, &a);
	if (rc == 0) {
		*out = a.q;
		*n_out = a.n;
	}
	return rc;
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
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(&s->conn, &st, SL_PRUNE, prune_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 3)) != 0)
		return rc;
	bus__my_p_time(&p, a->now);
	bus__my_p_ll(&p, a->age_us);
	bus__my_p_ll(&p, limit_of(a->limit));
	rc = bus__my_exec(&s->conn, st, &p);
	bus__my_params_free(&p);
	if (rc == 0)
		a->deleted = (int64_t)mysql_stmt_affected_rows(st);
	return rc;
}

int bus__my_prune(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		  int64_t *deleted)
{
	if (deleted != NULL)
		*deleted = 0;
	int rc = bus__my_now_check(s, "prune", now);
	if (rc != 0 || limit == 0)
		return rc;
	struct prune_arg a = { now, age_us, limit, 0 };
	rc = bus__my_run(s, "pruning finished jobs", prune_op, &a);
	if (rc == 0 && deleted != NULL)
		*deleted = a.deleted;
	return rc;
}
