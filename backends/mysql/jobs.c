/*
 * The worker's other operations: finish, extend, start, expired and
 * cancel_pending.
 *
 * finish and extend take a batch as one statement each: the batch is a
 * derived table of parameter rows (SELECT ? ... UNION ALL ...) joined to
 * the jobs by id, with the guard in the WHERE. Which items held their
 * guard is read by a SELECT ... FOR UPDATE of the same join, which also
 * locks them so the UPDATE applies to exactly those. finish first tries
 * without it: when the UPDATE changes every row, every guard held.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../finish_items.h"
#include "mysql_store.h"

/* ---- SQL ---- */

#define FINISH_GUARD                                                           \
	"j.state = 2 AND j.attempted_by = b.node AND j.attempt = b.attempt "   \
	"AND (b.oie = 0 OR j.lease_until < n.now) "                           \
	"AND (b.oie <> 2 OR j.started_at IS NULL)"
#define NOW_TABLE "(SELECT COALESCE(?, UTC_TIMESTAMP(6)) AS now) n"
/* The state an outcome gives: a pending cancel request ends every outcome
 * but a success (backend.h). */
#define NEW_STATE "IF(j.cancel_requested_at IS NULL OR b.st = 4, b.st, 5)"

static char *finish_check_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(
		t,
		"SELECT b.i FROM ({rows}) b JOIN bus_jobs j ON j.id = b.id "
		"JOIN " NOW_TABLE " WHERE " FINISH_GUARD " FOR UPDATE",
		"SELECT CAST(? AS SIGNED) AS i, CAST(? AS SIGNED) AS id, "
		"? AS node, CAST(? AS SIGNED) AS attempt, "
		"CAST(? AS SIGNED) AS oie",
		" UNION ALL ", rows);
}

/* A multiple-table UPDATE sets its columns in no given order: each
 * expression reads only the row as it was and the batch's values. An
 * error is appended as {"attempt":..,"at":..,"error":..} with the text
 * quoted by cJSON, byte for byte what the memory store writes (and not
 * re-spaced as the servers' JSON functions would). */
static char *finish_set_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(
		t,
		"UPDATE bus_jobs j JOIN ({rows}) b ON j.id = b.id "
		"JOIN " NOW_TABLE " SET "
		"j.attempt = j.attempt - "
		"IF(b.refund <> 0 AND j.attempt > 0, 1, 0), "
		"j.scheduled_at = IF(" NEW_STATE " IN (0, 1, 3) AND "
		"b.delay >= 0, n.now + INTERVAL b.delay MICROSECOND, "
		"j.scheduled_at), "
		"j.errors = IF(b.err IS NULL, j.errors, CONCAT("
		"IF(JSON_LENGTH(j.errors) = 0, '[', "
		"CONCAT(LEFT(TRIM(j.errors), CHAR_LENGTH(TRIM(j.errors)) - 1), "
		"',')), '{\"attempt\":', b.attempt, ',\"at\":', "
		"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', n.now), "
		"',\"error\":', b.err, '}]')), "
		"j.finished_at = IF(" NEW_STATE " IN (4, 5, 6), n.now, NULL), "
		"j.lease_until = NULL, "
		"j.unique_key = IF((j.unique_states >> " NEW_STATE ") & 1, "
		"j.unique_key, NULL), "
		"j.state = " NEW_STATE ", "
		/* last: the expressions above read the request */
		"j.cancel_requested_at = NULL WHERE " FINISH_GUARD,
		"SELECT CAST(? AS SIGNED) AS i, CAST(? AS SIGNED) AS id, "
		"? AS node, CAST(? AS SIGNED) AS attempt, "
		"CAST(? AS SIGNED) AS oie, CAST(? AS SIGNED) AS st, "
		"CAST(? AS SIGNED) AS delay, ? AS err, "
		"CAST(? AS SIGNED) AS refund",
		" UNION ALL ", rows);
}

/* NOWAIT: a renewal fails at once on a row another transaction holds, and
 * the core then renews the others one by one (backend.h). */
/* The items of a batch of (i, id, attempt) rows that `node` (the last
 * parameter) holds: the guard of extend, start and cancel_pending. */
#define BATCH_ROW                                                              \
	"SELECT CAST(? AS SIGNED) AS i, CAST(? AS SIGNED) AS id, "             \
	"CAST(? AS SIGNED) AS attempt"
#define HELD_SELECT                                                            \
	"SELECT b.i FROM ({rows}) b JOIN bus_jobs j ON j.id = b.id "           \
	"WHERE j.state = 2 AND j.attempted_by = ? AND j.attempt = b.attempt"

static char *extend_check_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, HELD_SELECT " FOR UPDATE NOWAIT", BATCH_ROW,
			   " UNION ALL ", rows);
}

static char *cancel_pending_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   HELD_SELECT " AND j.cancel_requested_at IS NOT NULL",
			   BATCH_ROW, " UNION ALL ", rows);
}

static char *extend_set_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "UPDATE bus_jobs SET lease_until = "
			   "COALESCE(?, UTC_TIMESTAMP(6)) + "
			   "INTERVAL ? MICROSECOND WHERE id IN ({rows})",
			   "?", ", ", rows);
}

/* start: the guard of extend; a start already recorded stands. The fast
 * form is one UPDATE of the batch, which holds every guard when it
 * changes every row (the core's calls nearly always do). */
static char *start_fast_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(
		t,
		"UPDATE bus_jobs j JOIN ({rows}) b ON j.id = b.id "
		"SET j.started_at = COALESCE(?, UTC_TIMESTAMP(6)) "
		"WHERE j.state = 2 AND j.attempted_by = ? AND "
		"j.attempt = b.attempt AND j.started_at IS NULL",
		BATCH_ROW, " UNION ALL ", rows);
}

static char *start_check_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, HELD_SELECT " FOR UPDATE", BATCH_ROW,
			   " UNION ALL ", rows);
}

static char *start_set_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "UPDATE bus_jobs SET started_at = "
			   "COALESCE(started_at, ?, UTC_TIMESTAMP(6)) "
			   "WHERE id IN ({rows})",
			   "?", ", ", rows);
}

static char *expired_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT " MY_JOB_COLS " FROM bus_jobs "
			   "WHERE lease_until < COALESCE(?, UTC_TIMESTAMP(6)) "
			   "AND state = 2 ORDER BY lease_until, id LIMIT ?",
			   NULL, NULL, rows);
}

/* ---- finish ---- */

/* A chunk of items: no id twice (a second outcome for a job is judged
 * after the first is applied, as one at a time would). */
static size_t chunk_len(const bus_store_finish *items, size_t n)
{
	size_t k = 1;
	for (; k < n && k < MY_ROWS_MAX; k++)
		for (size_t j = 0; j < k; j++)
			if (items[j].id == items[k].id)
				return k;
	return k;
}

struct finish_arg {
	int64_t now;
	const bus_store_finish *items;
	char **errors; /* items[i].error as a JSON string, or NULL */
	size_t n;
	unsigned char *applied;
};

/* The statement of a chunk with its parameters: `check` the SELECT of the
 * items whose guard holds, else the UPDATE. */
static int finish_exec(struct my_conn *c, int check, int64_t now,
		       const bus_store_finish *items, char *const *errors,
		       size_t n, MYSQL_STMT **out)
{
	int b = bus__my_bucket(n);
	size_t rows = bus__my_bucket_rows[b], per = check ? 5 : 9;
	struct my_params p;
	int rc = check ? bus__my_prepare(c, out, SL_FINISH_CHECK + b,
					 finish_check_build, rows)
		       : bus__my_prepare(c, out, SL_FINISH_SET + b,
					 finish_set_build, rows);
	if (rc != 0 || (rc = bus__my_params_init(&p, rows * per + 1)) != 0)
		return rc;
	for (size_t k = 0; k < rows; k++) {
		const bus_store_finish *it = k < n ? &items[k] : NULL;
		/* Padding rows are all NULL: their id matches no job. */
		if (it == NULL) {
			for (size_t f = 0; f < per; f++)
				bus__my_p_null(&p);
			continue;
		}
		bus__my_p_ll(&p, (long long)k);
		bus__my_p_ll(&p, it->id);
		bus__my_p_str(&p, it->node);
		bus__my_p_ll(&p, it->attempt);
		bus__my_p_ll(&p, it->only_if_expired); /* 0, 1 or 2 */
		if (check)
			continue;
		bus__my_p_ll(&p, it->state);
		bus__my_p_ll(&p, it->delay_us);
		bus__my_p_str(&p, errors ? errors[k] : NULL);
		bus__my_p_ll(&p, it->refund_attempt != 0);
	}
	bus__my_p_time(&p, now);
	rc = bus__my_exec(c, *out, &p);
	bus__my_params_free(&p);
	return rc;
}

/* Every item's outcome, if every guard holds; *all tells whether it did
 * (if not, nothing is changed once the caller rolls back). */
static int finish_fast(struct my_conn *c, struct finish_arg *a, int *all)
{
	*all = 1;
	for (size_t done = 0; done < a->n;) {
		size_t n = chunk_len(a->items + done, a->n - done);
		MYSQL_STMT *st;
		char *const *errors = a->errors ? a->errors + done : NULL;
		int rc = finish_exec(c, 0, a->now, a->items + done, errors, n,
				     &st);
		if (rc != 0)
			return rc;
		if (mysql_stmt_affected_rows(st) != n) {
			*all = 0;
			return 0;
		}
		done += n;
	}
	return 0;
}

static int finish_careful(struct my_conn *c, struct finish_arg *a)
{
	memset(a->applied, 0, a->n);
	for (size_t done = 0; done < a->n;) {
		size_t n = chunk_len(a->items + done, a->n - done), got = 0;
		long long idx[MY_ROWS_MAX];
		MYSQL_STMT *st;
		int rc = finish_exec(c, 1, a->now, a->items + done, NULL, n,
				     &st);
		if (rc == 0)
			rc = bus__my_ints_fetch(c, st, idx, n, &got);
		if (rc != 0)
			return rc;
		for (size_t k = 0; k < got; k++)
			if (idx[k] >= 0 && (size_t)idx[k] < n)
				a->applied[done + (size_t)idx[k]] = 1;
		if (got > 0) {
			char *const *errors =
				a->errors ? a->errors + done : NULL;
			rc = finish_exec(c, 0, a->now, a->items + done, errors,
					 n, &st);
			unsigned long long changed =
				rc == 0 ? mysql_stmt_affected_rows(st) : 0;
			if (rc == 0 && changed != got)
				rc = bus__my_fail(c,
						  "finish changed %llu of the "
						  "%zu jobs it locked",
						  changed, got);
			if (rc != 0)
				return rc;
		}
		done += n;
	}
	return 0;
}

static int finish_op(bus_store *s, void *arg)
{
	struct finish_arg *a = arg;
	struct my_conn *c = &s->conn;
	int all = 0;
	int rc = bus__my_begin(c);
	if (rc == 0)
		rc = finish_fast(c, a, &all);
	if (rc == 0 && all) {
		rc = bus__my_commit(c);
		if (rc == 0)
			memset(a->applied, 1, a->n);
		return rc;
	}
	if (rc != 0)
		return rc;
	/* Some guard failed: undo, and find out which, under lock. */
	bus__my_rollback(c);
	rc = bus__my_begin(c);
	if (rc == 0)
		rc = finish_careful(c, a);
	if (rc == 0)
		rc = bus__my_commit(c);
	return rc;
}

int bus__my_finish(bus_store *s, int64_t now, const bus_store_finish *items,
		   size_t n, unsigned char *applied)
{
	if (n == 0)
		return 0;
	if (items == NULL || applied == NULL)
		return s->env.error(BUS_EINVAL, "mysql store: finish: items or "
						"applied is NULL");
	int rc = bus__my_now_check(s, "finish", now);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = bus__finish_item_check(&s->env, "mysql store", &items[i],
					    i);
	if (rc != 0)
		return rc;
	memset(applied, 0, n);
	char **errors = NULL;
	rc = bus__finish_errors_quote(items, n, &errors);
	if (rc != 0)
		return s->env.error(rc, "mysql store: finish: out of memory");
	struct finish_arg a = { now, items, errors, n, applied };
	rc = bus__my_run(s, "recording job outcomes", finish_op, &a);
	bus__finish_errors_free(errors, n);
	if (rc != 0)
		memset(applied, 0, n);
	return rc;
}

/* ---- extend ---- */

struct extend_arg {
	int64_t now, lease_us;
	const char *node;
	const int64_t *ids;
	const int *attempts;
	size_t n;
	unsigned char *held;
};

/* The parameters of a derived table of (i, id, attempt) rows for jobs
 * ids[0..n) with attempts[0..n), padded to `rows` with rows of NULLs
 * (which match no job). */
static void batch_rows_bind(struct my_params *p, const int64_t *ids,
			    const int *attempts, size_t n, size_t rows)
{
	for (size_t k = 0; k < rows; k++) {
		if (k >= n) {
			bus__my_p_null(p);
			bus__my_p_null(p);
			bus__my_p_null(p);
			continue;
		}
		bus__my_p_ll(p, (long long)k);
		bus__my_p_ll(p, ids[k]);
		bus__my_p_ll(p, attempts[k]);
	}
}

/*
 * Runs a SELECT of `build`'s shape (a derived table of (i, id, attempt)
 * rows, then the node) for jobs ids[0..n) with attempts[0..n), n at most
 * MY_ROWS_MAX, and reads the indexes i it returns into idx: the jobs of
 * the batch that match. Shared by extend (which of them this node holds)
 * and cancel_pending (which of them have a cancel request).
 */
static int indexes_select(struct my_conn *c, int slot, my_sql_fn build,
			  const char *node, const int64_t *ids,
			  const int *attempts, size_t n, long long *idx,
			  size_t *got)
{
	int b = bus__my_bucket(n);
	size_t rows = bus__my_bucket_rows[b];
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, slot + b, build, rows);
	if (rc != 0 || (rc = bus__my_params_init(&p, rows * 3 + 1)) != 0)
		return rc;
	batch_rows_bind(&p, ids, attempts, n, rows);
	bus__my_p_str(&p, node);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	if (rc == 0)
		rc = bus__my_ints_fetch(c, st, idx, n, got);
	return rc;
}

/* The chunk's held items into idx (indexes within the chunk). */
static int extend_check(struct my_conn *c, struct extend_arg *a, size_t done,
			size_t n, long long *idx, size_t *got)
{
	return indexes_select(c, SL_EXTEND_CHECK, extend_check_build, a->node,
			      a->ids + done, a->attempts + done, n, idx, got);
}

/* The UPDATE of the chunk's held items (idx[0..got), indexes within the
 * chunk at `done`) by id: extend's (now, lease_us, ids) or start's (now,
 * ids), as `with_lease` says. */
static int held_update(struct my_conn *c, int slot, my_sql_fn build,
		       struct extend_arg *a, size_t done, const long long *idx,
		       size_t got, int with_lease)
{
	int b = bus__my_bucket(got);
	size_t rows = bus__my_bucket_rows[b];
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, slot + b, build, rows);
	if (rc != 0 || (rc = bus__my_params_init(&p, rows + 2)) != 0)
		return rc;
	bus__my_p_time(&p, a->now);
	if (with_lease)
		bus__my_p_ll(&p, a->lease_us);
	for (size_t k = 0; k < rows; k++)
		if (k < got)
			bus__my_p_ll(&p, a->ids[done + (size_t)idx[k]]);
		else
			bus__my_p_null(&p);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	return rc;
}

static int extend_op(bus_store *s, void *arg)
{
	struct extend_arg *a = arg;
	struct my_conn *c = &s->conn;
	memset(a->held, 0, a->n);
	int rc = bus__my_begin(c);
	for (size_t done = 0; rc == 0 && done < a->n;) {
		size_t left = a->n - done, got = 0;
		size_t n = left < MY_ROWS_MAX ? left : MY_ROWS_MAX;
		long long idx[MY_ROWS_MAX];
		rc = extend_check(c, a, done, n, idx, &got);
		for (size_t k = 0; rc == 0 && k < got; k++)
			if (idx[k] >= 0 && (size_t)idx[k] < n)
				a->held[done + (size_t)idx[k]] = 1;
		if (rc == 0 && got > 0)
			rc = held_update(c, SL_EXTEND_SET, extend_set_build,
					 a, done, idx, got, 1);
		done += n;
	}
	if (rc == 0)
		rc = bus__my_commit(c);
	return rc;
}

int bus__my_extend(bus_store *s, int64_t now, const char *node,
		   int64_t lease_us, const int64_t *ids, const int *attempts,
		   size_t n, unsigned char *held)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || held == NULL)
		return s->env.error(BUS_EINVAL,
				    "mysql store: extend: node, ids, attempts "
				    "or held is NULL");
	if (lease_us < 0 || lease_us > INT64_C(1) << 58)
		return s->env.error(BUS_EINVAL, "mysql store: extend: the "
						"lease is out of range");
	int rc = bus__my_now_check(s, "extend", now);
	if (rc != 0)
		return rc;
	struct extend_arg a = { now, lease_us, node, ids, attempts, n, held };
	rc = bus__my_run(s, "extending leases", extend_op, &a);
	if (rc != 0)
		memset(held, 0, n);
	return rc;
}

/* ---- start ---- */

/* The fast form of a chunk: *all is set when it changed every row. */
static int start_fast(struct my_conn *c, struct extend_arg *a, size_t done,
		      size_t n, int *all)
{
	int b = bus__my_bucket(n);
	size_t rows = bus__my_bucket_rows[b];
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, SL_START_FAST + b, start_fast_build,
				 rows);
	if (rc != 0 || (rc = bus__my_params_init(&p, rows * 3 + 2)) != 0)
		return rc;
	batch_rows_bind(&p, a->ids + done, a->attempts + done, n, rows);
	bus__my_p_time(&p, a->now);
	bus__my_p_str(&p, a->node);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	*all = rc == 0 && mysql_stmt_affected_rows(st) == n;
	return rc;
}

/* The careful form: which items hold their guard, under lock, then the
 * start of those (a start already recorded stands). */
static int start_careful(struct my_conn *c, struct extend_arg *a, size_t done,
			 size_t n)
{
	long long idx[MY_ROWS_MAX];
	size_t got = 0;
	int rc = indexes_select(c, SL_START_CHECK, start_check_build, a->node,
				a->ids + done, a->attempts + done, n, idx,
				&got);
	for (size_t k = 0; rc == 0 && k < got; k++)
		if (idx[k] >= 0 && (size_t)idx[k] < n)
			a->held[done + (size_t)idx[k]] = 1;
	if (rc != 0 || got == 0)
		return rc;
	return held_update(c, SL_START_SET, start_set_build, a, done, idx, got,
			   0);
}

static int start_op(bus_store *s, void *arg)
{
	struct extend_arg *a = arg;
	struct my_conn *c = &s->conn;
	memset(a->held, 0, a->n);
	int all = 1;
	int rc = bus__my_begin(c);
	for (size_t done = 0; rc == 0 && all && done < a->n;) {
		size_t left = a->n - done;
		size_t n = left < MY_ROWS_MAX ? left : MY_ROWS_MAX;
		rc = start_fast(c, a, done, n, &all);
		done += n;
	}
	if (rc == 0 && all) {
		rc = bus__my_commit(c);
		if (rc == 0)
			memset(a->held, 1, a->n);
		return rc;
	}
	if (rc != 0)
		return rc;
	/* Some guard failed (or a start was there already): undo, and find
	 * out which, under lock. */
	bus__my_rollback(c);
	memset(a->held, 0, a->n);
	rc = bus__my_begin(c);
	for (size_t done = 0; rc == 0 && done < a->n;) {
		size_t left = a->n - done;
		size_t n = left < MY_ROWS_MAX ? left : MY_ROWS_MAX;
		rc = start_careful(c, a, done, n);
		done += n;
	}
	if (rc == 0)
		rc = bus__my_commit(c);
	return rc;
}

int bus__my_start(bus_store *s, int64_t now, const char *node,
		  const int64_t *ids, const int *attempts, size_t n,
		  unsigned char *held)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || held == NULL)
		return s->env.error(BUS_EINVAL,
				    "mysql store: start: node, ids, attempts "
				    "or held is NULL");
	int rc = bus__my_now_check(s, "start", now);
	if (rc != 0)
		return rc;
	struct extend_arg a = { now, 0, node, ids, attempts, n, held };
	rc = bus__my_run(s, "recording job starts", start_op, &a);
	if (rc != 0)
		memset(held, 0, n);
	return rc;
}

/* ---- expired ---- */

struct expired_arg {
	int64_t now;
	size_t limit;
	bus_job *rows;
	size_t n;
};

static int expired_op(bus_store *s, void *arg)
{
	struct expired_arg *a = arg;
	struct my_conn *c = &s->conn;
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, SL_EXPIRED, expired_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 2)) != 0)
		return rc;
	bus__my_p_time(&p, a->now);
	bus__my_p_ll(&p, a->limit > (size_t)INT64_MAX ? INT64_MAX
						      : (long long)a->limit);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	if (rc == 0)
		rc = bus__my_rows_fetch(c, st, a->limit, &a->rows, &a->n, NULL);
	return rc;
}

int bus__my_expired(bus_store *s, int64_t now, size_t limit, bus_job **out,
		    size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	int rc = bus__my_now_check(s, "expired", now);
	if (rc != 0 || limit == 0)
		return rc;
	struct expired_arg a = { now, limit, NULL, 0 };
	rc = bus__my_run(s, "reading expired leases", expired_op, &a);
	if (rc == 0) {
		*out = a.rows;
		*n_out = a.n;
	}
	return rc;
}

/* ---- cancel_pending ---- */

struct pending_arg {
	const char *node;
	const int64_t *ids;
	const int *attempts;
	size_t n;
	unsigned char *pending;
};

static int pending_op(bus_store *s, void *arg)
{
	struct pending_arg *a = arg;
	struct my_conn *c = &s->conn;
	memset(a->pending, 0, a->n);
	for (size_t done = 0; done < a->n;) {
		size_t left = a->n - done, got = 0;
		size_t n = left < MY_ROWS_MAX ? left : MY_ROWS_MAX;
		long long idx[MY_ROWS_MAX];
		int rc = indexes_select(c, SL_CANCEL_PENDING,
					cancel_pending_build, a->node,
					a->ids + done, a->attempts + done, n,
					idx, &got);
		if (rc != 0)
			return rc;
		for (size_t k = 0; k < got; k++)
			if (idx[k] >= 0 && (size_t)idx[k] < n)
				a->pending[done + (size_t)idx[k]] = 1;
		done += n;
	}
	return 0;
}

int bus__my_cancel_pending(bus_store *s, const char *node, const int64_t *ids,
			   const int *attempts, size_t n,
			   unsigned char *pending)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || pending == NULL)
		return s->env.error(BUS_EINVAL,
				    "mysql store: cancel_pending: node, ids, "
				    "attempts or pending is NULL");
	struct pending_arg a = { node, ids, attempts, n, pending };
	int rc = bus__my_run(s, "reading cancel requests", pending_op, &a);
	if (rc != 0)
		memset(pending, 0, n);
	return rc;
}
