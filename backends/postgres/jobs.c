/*
 * The worker's other operations: finish, extend, start, expired and
 * cancel_pending.
 *
 * finish and extend take a batch as one UPDATE each: the batch is a set of
 * arrays unnested into rows and joined to the jobs by id, with the guard
 * in the WHERE; RETURNING tells which items held their guard.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../finish_items.h"
#include "pg_store.h"

/* Items per statement; no id twice in one (a second outcome for a job is
 * judged after the first is applied, as one at a time would be). */
#define CHUNK_MAX 1000

/* The state an outcome gives: a pending cancel request ends every outcome
 * but a success cancelled (backend.h). Every SET expression reads the row
 * as it was, the request included. */
#define NEW_STATE                                                              \
	"(CASE WHEN j.cancel_requested_at IS NULL OR b.st = 4 THEN b.st "     \
	"ELSE 5 END)"

/* An error is appended as {"attempt":..,"at":..,"error":..} with the text
 * quoted by cJSON, byte for byte what the memory store writes. */
static const char finish_sql[] =
	"UPDATE bus_jobs j SET "
	"attempt = j.attempt - CASE WHEN b.refund AND j.attempt > 0 "
	"THEN 1 ELSE 0 END, "
	"scheduled_at = CASE WHEN " NEW_STATE " IN (0, 1, 3) AND b.delay >= 0 "
	"THEN n.now + b.delay * interval '1 microsecond' "
	"ELSE j.scheduled_at END, "
	"errors = CASE WHEN b.err IS NULL THEN j.errors ELSE ("
	"CASE WHEN json_array_length(j.errors) = 0 THEN '[' "
	"ELSE left(rtrim(j.errors::text), -1) || ',' END || "
	"'{\"attempt\":' || b.attempt || ',\"at\":' || n.us || "
	"',\"error\":' || b.err || '}]')::json END, "
	"finished_at = CASE WHEN " NEW_STATE " IN (4, 5, 6) THEN n.now END, "
	"lease_until = NULL, "
	"unique_key = CASE WHEN (j.unique_states::int4 >> " NEW_STATE
	") & 1 = 1 THEN j.unique_key END, "
	"state = " NEW_STATE ", cancel_requested_at = NULL "
	"FROM (SELECT t.now, (extract(epoch FROM t.now) * 1000000)::int8 "
	"AS us FROM (SELECT COALESCE($1::timestamptz, now()) AS now) t) n, "
	"unnest($2::int4[], $3::int8[], $4::text[], $5::int4[], $6::int4[], "
	"$7::int4[], $8::int8[], $9::text[], $10::bool[]) "
	"AS b(i, id, node, attempt, oie, st, delay, err, refund) "
	"WHERE j.id = b.id AND j.state = 2 AND j.attempted_by = b.node "
	"AND j.attempt = b.attempt AND (b.oie = 0 OR j.lease_until < n.now) "
	"AND (b.oie <> 2 OR j.started_at IS NULL) "
	"RETURNING b.i";

/* NOWAIT: a renewal fails at once on a row another transaction holds, and
 * the core then renews the others one by one (backend.h). */
static const char extend_sql[] =
	"UPDATE bus_jobs j SET lease_until = COALESCE($1::timestamptz, now()) "
	"+ $2::int8 * interval '1 microsecond' "
	"FROM (SELECT x.id, b.i FROM unnest($3::int4[], $4::int8[], "
	"$5::int4[]) AS b(i, id, attempt) JOIN bus_jobs x ON x.id = b.id "
	"WHERE x.state = 2 AND x.attempted_by = $6::text "
	"AND x.attempt = b.attempt FOR UPDATE OF x NOWAIT) b "
	"WHERE j.id = b.id RETURNING b.i";

/* start: the guard of extend, waiting for a locked row (a start is
 * written once per attempt, and must not fail for a passing lock); a start
 * already recorded stands. */
static const char start_sql[] =
	"UPDATE bus_jobs j SET started_at = "
	"COALESCE(j.started_at, $1::timestamptz, now()) "
	"FROM (SELECT x.id, b.i FROM unnest($2::int4[], $3::int8[], "
	"$4::int4[]) AS b(i, id, attempt) JOIN bus_jobs x ON x.id = b.id "
	"WHERE x.state = 2 AND x.attempted_by = $5::text "
	"AND x.attempt = b.attempt FOR UPDATE OF x) b "
	"WHERE j.id = b.id RETURNING b.i";

static const char cancel_pending_sql[] =
	"SELECT b.i FROM unnest($1::int4[], $2::int8[], $3::int4[]) "
	"AS b(i, id, attempt) JOIN bus_jobs j ON j.id = b.id "
	"WHERE j.state = 2 AND j.attempted_by = $4::text "
	"AND j.attempt = b.attempt AND j.cancel_requested_at IS NOT NULL";

static const char expired_sql[] =
	"SELECT " PG_JOB_COLS " FROM bus_jobs "
	"WHERE state = 2 AND lease_until < COALESCE($1::timestamptz, now()) "
	"ORDER BY lease_until, id LIMIT $2::int8";

/* Marks flags[done + i] for each index i the result's first column
 * returns (within 0..n). */
static void mark_returned(const PGresult *r, unsigned char *flags,
			  size_t done, size_t n)
{
	for (int row = 0; row < PQntuples(r); row++) {
		int64_t i = bus__pg_get_int(r, row, 0);
		if (i >= 0 && (size_t)i < n)
			flags[done + (size_t)i] = 1;
	}
}

/* ---- finish ---- */

static size_t chunk_len(const bus_store_finish *items, size_t n)
{
	size_t k = 1;
	for (; k < n && k < CHUNK_MAX; k++)
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

static int finish_chunk(struct pg_conn *c, struct finish_arg *a, size_t done,
			size_t n)
{
	static const uint32_t oids[9] = {
		PG_INT4, PG_INT8, PG_TEXT, PG_INT4, PG_INT4,
		PG_INT4, PG_INT8, PG_TEXT, PG_BOOL,
	};
	struct pg_params p;
	struct pg_array b[9];
	int rc = bus__pg_params_init(&p, 10);
	if (rc != 0)
		return rc;
	for (int k = 0; k < 9; k++)
		bus__pg_array_init(&b[k], oids[k]);
	for (size_t k = 0; k < n; k++) {
		const bus_store_finish *it = &a->items[done + k];
		bus__pg_a_int4(&b[0], (int32_t)k);
		bus__pg_a_int8(&b[1], it->id);
		bus__pg_a_text(&b[2], it->node);
		bus__pg_a_int4(&b[3], it->attempt);
		bus__pg_a_int4(&b[4], it->only_if_expired); /* 0, 1 or 2 */
		bus__pg_a_int4(&b[5], (int32_t)it->state);
		bus__pg_a_int8(&b[6], it->delay_us);
		bus__pg_a_text(&b[7], a->errors ? a->errors[done + k] : NULL);
		bus__pg_a_bool(&b[8], it->refund_attempt);
	}
	bus__pg_p_time(&p, a->now);
	for (int k = 0; k < 9; k++)
		bus__pg_p_array(&p, &b[k]);
	PGresult *r = NULL;
	rc = bus__pg_exec(c, SL_FINISH, finish_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc == 0) {
		mark_returned(r, a->applied, done, n);
		PQclear(r);
	}
	return rc;
}

static int finish_op(bus_store *s, void *arg)
{
	struct finish_arg *a = arg;
	struct pg_conn *c = &s->conn;
	memset(a->applied, 0, a->n);
	size_t first = chunk_len(a->items, a->n);
	int rc = 0;
	if (first < a->n)
		rc = bus__pg_begin(c);
	for (size_t done = 0; rc == 0 && done < a->n;) {
		size_t n = chunk_len(a->items + done, a->n - done);
		rc = finish_chunk(c, a, done, n);
		done += n;
	}
	if (rc == 0 && c->in_tx)
		rc = bus__pg_commit(c);
	return rc;
}

int bus__pg_finish(bus_store *s, int64_t now, const bus_store_finish *items,
		   size_t n, unsigned char *applied)
{
	if (n == 0)
		return 0;
	if (items == NULL || applied == NULL)
		return s->env.error(BUS_EINVAL, "postgres store: finish: items "
						"or applied is NULL");
	int rc = bus__pg_now_check(s, "finish", now);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = bus__finish_item_check(&s->env, "postgres store",
					    &items[i], i);
	if (rc != 0)
		return rc;
	memset(applied, 0, n);
	char **errors = NULL;
	rc = bus__finish_errors_quote(items, n, &errors);
	if (rc != 0)
		return s->env.error(rc, "postgres store: finish: out of "
					"memory");
	struct finish_arg a = { now, items, errors, n, applied };
	rc = bus__pg_run(s, "recording job outcomes", finish_op, &a);
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

/* Runs `sql`, an UPDATE of the jobs of the batch that hold the guard of
 * extend, with parameters (now, [lease_us,] i[], id[], attempt[], node),
 * and marks a->held[i] for each index it returns. */
static int guarded_update(struct pg_conn *c, int slot, const char *sql,
			  struct extend_arg *a, int with_lease)
{
	memset(a->held, 0, a->n);
	struct pg_params p;
	struct pg_array idx, ids, att;
	int rc = bus__pg_params_init(&p, with_lease ? 6 : 5);
	if (rc != 0)
		return rc;
	bus__pg_array_init(&idx, PG_INT4);
	bus__pg_array_init(&ids, PG_INT8);
	bus__pg_array_init(&att, PG_INT4);
	for (size_t k = 0; k < a->n; k++) {
		bus__pg_a_int4(&idx, (int32_t)k);
		bus__pg_a_int8(&ids, a->ids[k]);
		bus__pg_a_int4(&att, a->attempts[k]);
	}
	bus__pg_p_time(&p, a->now);
	if (with_lease)
		bus__pg_p_int8(&p, a->lease_us);
	bus__pg_p_array(&p, &idx);
	bus__pg_p_array(&p, &ids);
	bus__pg_p_array(&p, &att);
	bus__pg_p_text(&p, a->node);
	PGresult *r = NULL;
	rc = bus__pg_exec(c, slot, sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc == 0) {
		mark_returned(r, a->held, 0, a->n);
		PQclear(r);
	}
	return rc;
}

static int extend_op(bus_store *s, void *arg)
{
	struct pg_conn *c = &s->conn;
	int rc = guarded_update(c, SL_EXTEND, extend_sql, arg, 1);
	/* A row another transaction holds: fail at once, not after the
	 * wrapper's retries (the core renews the jobs one by one). */
	if (rc == PG_ERR_DB && strcmp(c->sqlstate, "55P03") == 0)
		return bus__pg_report(s, c, "extending leases (a job is "
					    "locked by another transaction)");
	return rc;
}

int bus__pg_extend(bus_store *s, int64_t now, const char *node,
		   int64_t lease_us, const int64_t *ids, const int *attempts,
		   size_t n, unsigned char *held)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || held == NULL)
		return s->env.error(BUS_EINVAL,
				    "postgres store: extend: node, ids, "
				    "attempts or held is NULL");
	if (lease_us < 0 || lease_us > INT64_C(1) << 58)
		return s->env.error(BUS_EINVAL, "postgres store: extend: the "
						"lease is out of range");
	int rc = bus__pg_now_check(s, "extend", now);
	if (rc != 0)
		return rc;
	if (n > INT32_MAX)
		return s->env.error(BUS_EINVAL,
				    "postgres store: extend: too many jobs");
	struct extend_arg a = { now, lease_us, node, ids, attempts, n, held };
	rc = bus__pg_run(s, "extending leases", extend_op, &a);
	if (rc != 0)
		memset(held, 0, n);
	return rc;
}

/* ---- start ---- */

static int start_op(bus_store *s, void *arg)
{
	return guarded_update(&s->conn, SL_START, start_sql, arg, 0);
}

int bus__pg_start(bus_store *s, int64_t now, const char *node,
		  const int64_t *ids, const int *attempts, size_t n,
		  unsigned char *held)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || held == NULL)
		return s->env.error(BUS_EINVAL,
				    "postgres store: start: node, ids, "
				    "attempts or held is NULL");
	int rc = bus__pg_now_check(s, "start", now);
	if (rc != 0)
		return rc;
	if (n > INT32_MAX)
		return s->env.error(BUS_EINVAL,
				    "postgres store: start: too many jobs");
	struct extend_arg a = { now, 0, node, ids, attempts, n, held };
	rc = bus__pg_run(s, "recording job starts", start_op, &a);
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
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 2);
	if (rc != 0)
		return rc;
	bus__pg_p_time(&p, a->now);
	bus__pg_p_int8(&p, a->limit > (size_t)INT64_MAX ? INT64_MAX
							: (int64_t)a->limit);
	PGresult *r = NULL;
	rc = bus__pg_exec(&s->conn, SL_EXPIRED, expired_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc == 0) {
		rc = bus__pg_rows_read(&s->conn, r, 0, &a->rows, &a->n);
		PQclear(r);
	}
	return rc;
}

int bus__pg_expired(bus_store *s, int64_t now, size_t limit, bus_job **out,
		    size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	int rc = bus__pg_now_check(s, "expired", now);
	if (rc != 0 || limit == 0)
		return rc;
	struct expired_arg a = { now, limit, NULL, 0 };
	rc = bus__pg_run(s, "reading expired leases", expired_op, &a);
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
	memset(a->pending, 0, a->n);
	struct pg_params p;
	struct pg_array idx, ids, att;
	int rc = bus__pg_params_init(&p, 4);
	if (rc != 0)
		return rc;
	bus__pg_array_init(&idx, PG_INT4);
	bus__pg_array_init(&ids, PG_INT8);
	bus__pg_array_init(&att, PG_INT4);
	for (size_t k = 0; k < a->n; k++) {
		bus__pg_a_int4(&idx, (int32_t)k);
		bus__pg_a_int8(&ids, a->ids[k]);
		bus__pg_a_int4(&att, a->attempts[k]);
	}
	bus__pg_p_array(&p, &idx);
	bus__pg_p_array(&p, &ids);
	bus__pg_p_array(&p, &att);
	bus__pg_p_text(&p, a->node);
	PGresult *r = NULL;
	rc = bus__pg_exec(&s->conn, SL_CANCEL_PENDING, cancel_pending_sql, &p,
			  &r);
	bus__pg_params_free(&p);
	if (rc == 0) {
		mark_returned(r, a->pending, 0, a->n);
		PQclear(r);
	}
	return rc;
}

int bus__pg_cancel_pending(bus_store *s, const char *node,
			   const int64_t *ids, const int *attempts, size_t n,
			   unsigned char *pending)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || pending == NULL)
		return s->env.error(BUS_EINVAL,
				    "postgres store: cancel_pending: node, "
				    "ids, attempts or pending is NULL");
	if (n > INT32_MAX)
		return s->env.error(BUS_EINVAL, "postgres store: "
						"cancel_pending: too many jobs");
	struct pending_arg a = { node, ids, attempts, n, pending };
	int rc = bus__pg_run(s, "reading cancel requests", pending_op, &a);
	if (rc != 0)
		memset(pending, 0, n);
	return rc;
}
