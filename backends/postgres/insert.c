/*
 * insert and insert_tx: a batch of new jobs, atomically.
 *
 * Runs of jobs without a unique key go in one INSERT ... SELECT FROM
 * unnest(arrays), a statement whatever the batch's size. Its ids are
 * drawn in the order of the rows, which are read in the batch's order
 * (WITH ORDINALITY ... ORDER BY), so the ids returned, sorted, are the
 * jobs' in order.
 *
 * A job with a key is one INSERT ... ON CONFLICT (unique_key) DO UPDATE:
 * the conflict is settled by the unique index alone, with no SELECT first
 * and no lock of our own. The core's replace rules come as one bit mask of
 * states per field; the update happens only when the rules for the
 * existing job's state allow some field (its WHERE), so a row returned is
 * inserted (xmax = 0, a row version no transaction has touched) or
 * replaced, and no row is a duplicate, whose id a second statement reads
 * (the upsert locked it, so within a transaction it is still there; in
 * autocommit, a job that left the key in between lets the insert go
 * through on the next try).
 *
 * Batch order is kept: ids grow in the order of the jobs, and a later job
 * of a batch sees the earlier ones.
 *
 * A lost connection must not insert a batch twice: each call draws an
 * insert token, and each row it inserts carries it with the row's place
 * in the batch (insert_token, insert_seq: a unique index). After a lost
 * connection the retry wrapper ends the lost session and asks
 * insert_landed: rows with the token mean the batch committed (it is one
 * transaction, or one statement), and their ids are the results; the
 * jobs of the batch without a row are unique jobs that met an existing
 * one, whose upserts are run again (they change nothing twice). No row
 * means it did not commit, and it runs again.
 */
#include <stdlib.h>
#include <string.h>

#include "../landed.h"
#include "pg_store.h"

/* A run of jobs without keys: at most this many in one statement, to
 * keep a statement's memory bounded on both sides. */
#define RUN_MAX 5000
/* Upsert tries when a duplicate vanishes before its id is read. */
#define UPSERT_TRIES 3

#define COLS                                                                   \
	"inserted_at, scheduled_at, state, kind, handler, queue, priority, "   \
	"payload, meta, tags, max_attempts, timeout_ms, unique_states, "       \
	"insert_token, insert_seq"
#define NOW_FROM "FROM (SELECT COALESCE($1::timestamptz, now()) AS now) n "
#define US " * interval '1 microsecond'"

/* Wrapped around an insert that returns id, queue, state: the ids, and a
 * notification per queue that received available jobs ($n: the channel;
 * NULL, none). The count of notifications is returned (as a last column)
 * so that the planner cannot drop the join that sends them. */
#define NOTIFY_HEAD "WITH ins AS ("
#define NOTIFY_TAIL(ch, cols)                                                  \
	"), note AS (SELECT pg_notify(" ch "::text, q.queue) FROM "          \
	"(SELECT DISTINCT queue FROM ins WHERE state = 0 AND " ch            \
	"::text IS NOT NULL) q) "                                              \
	"SELECT " cols ", x.n FROM ins CROSS JOIN "                            \
	"(SELECT count(*) AS n FROM note) x"

static const char insert_sql[] =
	NOTIFY_HEAD "INSERT INTO bus_jobs (" COLS ") "
	"SELECT n.now, a.at, CASE WHEN a.at <= n.now THEN 0 ELSE 1 END, "
	"r.kind, r.handler, r.queue, r.priority, r.payload, r.meta, r.tags, "
	"r.max_attempts, r.timeout_ms, r.unique_states, $16::text, "
	"CASE WHEN $16::text IS NOT NULL THEN r.seq END " NOW_FROM
	"CROSS JOIN unnest($2::text[], $3::text[], $4::text[], $5::int4[], "
	"$6::json[], $7::json[], $8::json[], $9::int4[], $10::int8[], "
	"$11::int2[], $12::timestamptz[], $13::int8[], $15::int4[]) "
	"WITH ORDINALITY "
	"AS r(kind, handler, queue, priority, payload, meta, tags, "
	"max_attempts, timeout_ms, unique_states, sched, delay, seq, ord) "
	"CROSS JOIN LATERAL (SELECT COALESCE(r.sched, n.now + r.delay" US
	") AS at) a "
	"ORDER BY r.ord RETURNING id, queue, state" NOTIFY_TAIL("$14",
								  "ins.id");

/* The state the existing job moves to: with scheduled_at replaced, an
 * available or scheduled job follows its new time. */
#define NEW_STATE                                                              \
	"CASE WHEN ($22::int4 >> j.state) & 1 = 1 AND j.state IN (0, 1) "      \
	"THEN CASE WHEN EXCLUDED.scheduled_at <= EXCLUDED.inserted_at "        \
	"THEN 0 ELSE 1 END ELSE j.state END"
#define REPLACE(col, mask)                                                     \
	col " = CASE WHEN (" mask "::int4 >> j.state) & 1 = 1 THEN "           \
	    "EXCLUDED." col " ELSE j." col " END, "

/* Every SET expression reads the row as it was. */
static const char upsert_sql[] =
	NOTIFY_HEAD "INSERT INTO bus_jobs AS j (" COLS ", unique_key) "
	"SELECT n.now, a.at, a.st, $2::text, $3::text, $4::text, $5::int4, "
	"$6::json, $7::json, $8::json, $9::int4, $10::int8, $11::int4, "
	"$25::text, $26::int4, "
	"CASE WHEN ($11::int4 >> a.st) & 1 = 1 THEN $14::text END " NOW_FROM
	"CROSS JOIN LATERAL (SELECT COALESCE($12::timestamptz, "
	"n.now + $13::int8" US ") AS at) a0 "
	"CROSS JOIN LATERAL (SELECT a0.at, "
	"CASE WHEN a0.at <= n.now THEN 0 ELSE 1 END AS st) a "
	"ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL "
	"DO UPDATE SET " REPLACE("payload", "$15")
		REPLACE("queue", "$16") REPLACE("priority", "$17")
			REPLACE("max_attempts", "$18") REPLACE("timeout_ms",
							       "$19")
				REPLACE("tags", "$20") REPLACE("meta", "$21")
					REPLACE("scheduled_at", "$22")
	"state = " NEW_STATE ", "
	"unique_key = CASE WHEN (j.unique_states::int4 >> (" NEW_STATE
	")) & 1 = 1 THEN j.unique_key END "
	"WHERE ($23::int4 >> j.state) & 1 = 1 "
	"RETURNING j.id, (j.xmax::text = '0')::int4 AS inserted, j.queue, "
	"j.state" NOTIFY_TAIL("$24", "ins.id, ins.inserted");

static const char unique_id_sql[] =
	"SELECT id FROM bus_jobs WHERE unique_key = $1::text";

static const char readback_sql[] =
	"SELECT insert_seq, id FROM bus_jobs WHERE insert_token = $1::text";

/* The replace fields, in the order of the masks $15.. in upsert_sql. */
static const unsigned replace_fields[8] = {
	BUS_REPLACE_PAYLOAD,  BUS_REPLACE_QUEUE,	BUS_REPLACE_PRIORITY,
	BUS_REPLACE_MAX_ATTEMPTS, BUS_REPLACE_TIMEOUT, BUS_REPLACE_TAGS,
	BUS_REPLACE_META,	  BUS_REPLACE_SCHEDULED_AT,
};

/* ---- Checks, before anything is sent ---- */

static int job_check(const bus_store_env *env, const bus_store_new_job *j,
		     size_t i, int64_t now)
{
	const char *missing = j->kind == NULL	   ? "kind"
			      : j->handler == NULL ? "handler"
			      : j->queue == NULL   ? "queue"
			      : j->payload == NULL ? "payload"
						   : NULL;
	if (missing != NULL)
		return env->error(BUS_EINVAL,
				  "postgres store: insert: job %zu has no %s",
				  i, missing);
	if (j->unique_key != NULL) {
		size_t len = strlen(j->unique_key);
		int ok = len > 0 && len <= 64;
		for (size_t k = 0; ok && k < len; k++)
			ok = j->unique_key[k] > ' ' && j->unique_key[k] < 127;
		if (!ok)
			return env->error(BUS_EINVAL,
					  "postgres store: insert: job %zu "
					  "has a unique key that is not 1 to "
					  "64 printable ASCII characters",
					  i);
	}
	if (j->priority < -32768 || j->priority > 32767)
		return env->error(BUS_EINVAL,
				  "postgres store: insert: job %zu has "
				  "priority %d, outside a smallint",
				  i, j->priority);
	/* 2^58 us is some 9000 years: no sum below can overflow. */
	int64_t far = INT64_C(1) << 58;
	int delay_ok = j->scheduled_at != 0 ||
		       (j->delay_us > -far && j->delay_us < far);
	int64_t at = 0;
	if (j->scheduled_at != 0)
		at = j->scheduled_at;
	else if (now != 0 && delay_ok)
		at = now + j->delay_us;
	if (!delay_ok || (at != 0 && !bus__pg_time_ok(at)))
		return env->error(BUS_EINVAL,
				  "postgres store: insert: job %zu is "
				  "scheduled out of the range this store "
				  "takes",
				  i);
	return 0;
}

static int batch_check(const bus_store_env *env, int64_t now,
		       const bus_store_new_job *jobs, size_t n,
		       bus_enqueue_result *results)
{
	if (jobs == NULL || results == NULL)
		return env->error(BUS_EINVAL, "postgres store: insert: jobs "
					      "or results is NULL");
	for (size_t i = 0; i < n; i++) {
		int rc = job_check(env, &jobs[i], i, now);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- Running it ---- */

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* What the rows of one call are marked with: its token (NULL: none, in
 * the outbox) and each job's place in the batch as first given
 * (seqs[i], or i when seqs is NULL). */
struct mark {
	const char *token;
	const int *seqs;
};

static int seq_of(const struct mark *m, size_t i)
{
	return m->seqs != NULL ? m->seqs[i] : (int)i;
}

/* jobs[0..n) are the batch's jobs from place `first` on. */
static int insert_run(struct pg_conn *c, int64_t now,
		      const bus_store_new_job *jobs, size_t n,
		      const struct mark *m, size_t first,
		      bus_enqueue_result *results)
{
	struct pg_params p;
	struct pg_array a[13];
	static const uint32_t oids[13] = {
		PG_TEXT, PG_TEXT, PG_TEXT, PG_INT4, PG_JSON, PG_JSON, PG_JSON,
		PG_INT4, PG_INT8, PG_INT2, PG_TIMESTAMPTZ, PG_INT8, PG_INT4,
	};
	int rc = bus__pg_params_init(&p, 16);
	if (rc != 0)
		return rc;
	for (int k = 0; k < 13; k++)
		bus__pg_array_init(&a[k], oids[k]);
	for (size_t i = 0; i < n; i++) {
		const bus_store_new_job *j = &jobs[i];
		bus__pg_a_text(&a[0], j->kind);
		bus__pg_a_text(&a[1], j->handler);
		bus__pg_a_text(&a[2], j->queue);
		bus__pg_a_int4(&a[3], j->priority);
		bus__pg_a_text(&a[4], j->payload);
		bus__pg_a_text(&a[5], j->meta ? j->meta : "{}");
		bus__pg_a_text(&a[6], j->tags ? j->tags : "[]");
		bus__pg_a_int4(&a[7], j->max_attempts);
		bus__pg_a_int8(&a[8], j->timeout_ms);
		bus__pg_a_int2(&a[9], (int16_t)(j->unique_states & 0x7f));
		bus__pg_a_time(&a[10], j->scheduled_at);
		bus__pg_a_int8(&a[11], j->delay_us);
		bus__pg_a_int4(&a[12], seq_of(m, first + i));
	}
	bus__pg_p_time(&p, now);
	for (int k = 0; k < 12; k++)
		bus__pg_p_array(&p, &a[k]);
	bus__pg_p_text(&p, c->notify);
	bus__pg_p_array(&p, &a[12]);
	bus__pg_p_text(&p, m->token);
	PGresult *r = NULL;
	rc = bus__pg_exec(c, SL_INSERT, insert_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc != 0)
		return rc;
	if ((size_t)PQntuples(r) != n) {
		rc = bus__pg_fail(c, "an INSERT of %zu jobs returned %d ids",
				  n, PQntuples(r));
		PQclear(r);
		return rc;
	}
	int64_t *ids = malloc(n * sizeof *ids);
	if (ids == NULL) {
		PQclear(r);
		return PG_ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = bus__pg_get_int(r, (int)i, 0);
	PQclear(r);
	qsort(ids, n, sizeof *ids, cmp_id);
	for (size_t i = 0; i < n; i++) {
		results[i].id = ids[i];
		results[i].status = BUS_INSERTED;
	}
	free(ids);
	return 0;
}

static unsigned field_mask(const unsigned *replace, unsigned field)
{
	unsigned m = 0;
	for (int st = 0; replace != NULL && st < BUS_JOB_STATE_COUNT; st++)
		if (replace[st] & field)
			m |= BUS_STATE_BIT(st);
	return m;
}

/* The id of the job holding `key`, or 0. */
static int unique_id(struct pg_conn *c, const char *key, int64_t *id)
{
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 1);
	if (rc != 0)
		return rc;
	bus__pg_p_text(&p, key);
	PGresult *r = NULL;
	rc = bus__pg_exec(c, SL_UNIQUE_ID, unique_id_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc != 0)
		return rc;
	*id = PQntuples(r) > 0 ? bus__pg_get_int(r, 0, 0) : 0;
	PQclear(r);
	return 0;
}

static int upsert_once(struct pg_conn *c, int64_t now,
		       const bus_store_new_job *j, const struct mark *m,
		       size_t i, bus_enqueue_result *res, int *returned)
{
	struct pg_params p;
	int rc = bus__pg_params_init(&p, 26);
	if (rc != 0)
		return rc;
	bus__pg_p_time(&p, now);
	bus__pg_p_text(&p, j->kind);
	bus__pg_p_text(&p, j->handler);
	bus__pg_p_text(&p, j->queue);
	bus__pg_p_int4(&p, j->priority);
	bus__pg_p_text(&p, j->payload);
	bus__pg_p_text(&p, j->meta ? j->meta : "{}");
	bus__pg_p_text(&p, j->tags ? j->tags : "[]");
	bus__pg_p_int4(&p, j->max_attempts);
	bus__pg_p_int8(&p, j->timeout_ms);
	bus__pg_p_int4(&p, (int32_t)(j->unique_states & 0x7f));
	bus__pg_p_time(&p, j->scheduled_at);
	bus__pg_p_int8(&p, j->delay_us);
	bus__pg_p_text(&p, j->unique_key);
	unsigned any = 0;
	for (size_t f = 0; f < sizeof replace_fields / sizeof *replace_fields;
	     f++) {
		unsigned mask = field_mask(j->replace, replace_fields[f]);
		bus__pg_p_int4(&p, (int32_t)mask);
		any |= mask;
	}
	bus__pg_p_int4(&p, (int32_t)any);
	bus__pg_p_text(&p, c->notify);
	bus__pg_p_text(&p, m->token);
	if (m->token != NULL)
		bus__pg_p_int4(&p, seq_of(m, i));
	else
		bus__pg_p_text(&p, NULL);
	PGresult *r = NULL;
	rc = bus__pg_exec(c, SL_UPSERT, upsert_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc != 0)
		return rc;
	*returned = PQntuples(r) == 1;
	if (*returned) {
		res->id = bus__pg_get_int(r, 0, 0);
		res->status = bus__pg_get_int(r, 0, 1) ? BUS_INSERTED
						       : BUS_REPLACED;
	}
	PQclear(r);
	return 0;
}

static int upsert(struct pg_conn *c, int64_t now, const bus_store_new_job *j,
		  const struct mark *m, size_t i, bus_enqueue_result *res)
{
	for (int tries = 0; tries < UPSERT_TRIES; tries++) {
		int returned = 0;
		int rc = upsert_once(c, now, j, m, i, res, &returned);
		if (rc != 0 || returned)
			return rc;
		int64_t id = 0;
		if ((rc = unique_id(c, j->unique_key, &id)) != 0)
			return rc;
		if (id > 0) {
			res->id = id;
			res->status = BUS_DUPLICATE;
			return 0;
		}
	}
	return bus__pg_fail(c, "a unique insert kept meeting a job that "
			       "left its key before it could be read");
}

/* The length of the run of keyless jobs at jobs[0] (0: a unique job). */
static size_t run_len(const bus_store_new_job *jobs, size_t n)
{
	size_t k = 0;
	while (k < n && k < RUN_MAX && jobs[k].unique_key == NULL)
		k++;
	return k;
}

/* The batch on `c`; with own_tx, in a transaction of its own when it takes
 * more than one statement. */
static int insert_on(struct pg_conn *c, int own_tx, int64_t now,
		     const bus_store_new_job *jobs, size_t n,
		     const struct mark *m, bus_enqueue_result *results)
{
	size_t first = run_len(jobs, n);
	int single = first == n || (first == 0 && n == 1);
	int rc = 0;
	if (own_tx && !single)
		rc = bus__pg_begin(c);
	for (size_t i = 0; rc == 0 && i < n;) {
		size_t k = run_len(jobs + i, n - i);
		if (k > 0) {
			rc = insert_run(c, now, jobs + i, k, m, i, results + i);
			i += k;
		} else {
			rc = upsert(c, now, &jobs[i], m, i, &results[i]);
			i++;
		}
	}
	if (rc == 0 && c->in_tx)
		rc = bus__pg_commit(c);
	return rc;
}

struct insert_arg {
	int64_t now;
	const bus_store_new_job *jobs;
	size_t n;
	bus_enqueue_result *results;
	char token[BUS_TOKEN_LEN + 1];
};

static int insert_op(bus_store *s, void *arg)
{
	struct insert_arg *a = arg;
	struct mark m = { a->token, NULL };
	return insert_on(&s->conn, 1, a->now, a->jobs, a->n, &m, a->results);
}

/* Reads (insert_seq, id) of the rows with the call's token into
 * found[seq] (0: no row). */
static int readback(struct pg_conn *c, const char *token, int64_t *found,
		    size_t n, size_t *n_found)
{
	struct pg_params p;
	*n_found = 0;
	int rc = bus__pg_params_init(&p, 1);
	if (rc != 0)
		return rc;
	bus__pg_p_text(&p, token);
	PGresult *r = NULL;
	rc = bus__pg_exec(c, SL_INSERT_READBACK, readback_sql, &p, &r);
	bus__pg_params_free(&p);
	if (rc != 0)
		return rc;
	for (int row = 0; row < PQntuples(r); row++) {
		int64_t seq = bus__pg_get_int(r, row, 0);
		int64_t id = bus__pg_get_int(r, row, 1);
		if (seq < 0 || (uint64_t)seq >= n || id <= 0)
			continue; /* not ours to know: ignored */
		if (found[seq] == 0)
			(*n_found)++;
		found[seq] = id;
	}
	PQclear(r);
	return 0;
}

/* The upserts of a batch read back, run again (bus__landed_apply). */
struct rerun_ctx {
	bus_store *s;
	int64_t now;
	const char *token;
};

static int rerun(void *ctx, const bus_store_new_job *jobs, size_t n,
		 const int *seqs, bus_enqueue_result *results)
{
	struct rerun_ctx *r = ctx;
	struct pg_conn *c = &r->s->conn;
	struct mark m = { r->token, seqs };
	return insert_on(c, 1, r->now, jobs, n, &m, results);
}

/* After a lost connection: whether the batch committed (1, results
 * filled in), or not (0). */
static int insert_landed(bus_store *s, void *arg)
{
	struct insert_arg *a = arg;
	struct pg_conn *c = &s->conn;
	int64_t *found = calloc(a->n, sizeof *found);
	if (found == NULL)
		return PG_ERR_NOMEM;
	size_t n_found = 0;
	int rc = readback(c, a->token, found, a->n, &n_found);
	if (rc != 0 || n_found == 0) {
		free(found);
		return rc;
	}
	/* Committed. The jobs without a row met an existing unique job:
	 * their upserts run again, with the same token and places. */
	struct rerun_ctx r = { s, a->now, a->token };
	size_t missing = 0;
	rc = bus__landed_apply(a->jobs, a->n, found, n_found, a->results,
			       rerun, &r, &missing);
	free(found);
	if (rc == BUS_ENOMEM)
		return PG_ERR_NOMEM;
	if (rc == BUS_ESTATE)
		return bus__pg_fail(c,
				    "after a lost connection, job %zu of a "
				    "batch that committed has no row",
				    missing);
	return rc == 0 ? 1 : rc;
}

int bus__pg_insert(bus_store *s, int64_t now, const bus_store_new_job *jobs,
		   size_t n, bus_enqueue_result *results)
{
	if (n == 0)
		return 0;
	int rc = bus__pg_now_check(s, "insert", now);
	if (rc == 0)
		rc = batch_check(&s->env, now, jobs, n, results);
	if (rc != 0)
		return rc;
	struct insert_arg a = { now, jobs, n, results, "" };
	bus__token(a.token);
	return bus__pg_run_checked(s, "inserting jobs", insert_op,
				   insert_landed, &a);
}

/* ---- The outbox ---- */

static int non_ascii(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

static int tx_check(bus_store *s, PGconn *tx, const bus_store_new_job *jobs,
		    size_t n)
{
	switch (PQtransactionStatus(tx)) {
	case PQTRANS_INTRANS: break;
	case PQTRANS_IDLE:
		return s->env.error(BUS_ESTATE,
				    "postgres store: insert_tx: the "
				    "connection has no open transaction "
				    "(BEGIN first): the jobs would not commit "
				    "with the application's writes");
	case PQTRANS_INERROR:
		return s->env.error(BUS_ESTATE,
				    "postgres store: insert_tx: the "
				    "application's transaction has failed "
				    "(ROLLBACK it)");
	default:
		return s->env.error(BUS_ESTATE,
				    "postgres store: insert_tx: the "
				    "connection is busy or broken");
	}
	const char *enc = pg_encoding_to_char(PQclientEncoding(tx));
	if (enc != NULL && strcmp(enc, "UTF8") == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const bus_store_new_job *j = &jobs[i];
		if (non_ascii(j->kind) || non_ascii(j->handler) ||
		    non_ascii(j->queue) || non_ascii(j->payload) ||
		    non_ascii(j->meta) || non_ascii(j->tags))
			return s->env.error(BUS_EINVAL,
					    "postgres store: insert_tx: the "
					    "connection's client encoding is "
					    "%s, and job %zu is not ASCII: "
					    "call PQsetClientEncoding(tx, "
					    "\"UTF8\")",
					    enc ? enc : "unknown", i);
	}
	return 0;
}

int bus__pg_insert_tx(bus_store *s, void *tx, int64_t now,
		      const bus_store_new_job *jobs, size_t n,
		      bus_enqueue_result *results)
{
	if (tx == NULL)
		return s->env.error(BUS_EINVAL,
				    "postgres store: insert_tx: the "
				    "connection is NULL");
	if (n == 0)
		return 0;
	int rc = bus__pg_now_check(s, "insert_tx", now);
	if (rc == 0)
		rc = batch_check(&s->env, now, jobs, n, results);
	if (rc == 0)
		rc = tx_check(s, tx, jobs, n);
	if (rc != 0)
		return rc;
	/* Unnamed statements: the connection is not ours to keep anything
	 * on. Nothing is retried either: an error ends the application's
	 * transaction, which only the application can run again. */
	struct pg_conn c;
	memset(&c, 0, sizeof c);
	c.db = tx;
	c.tables = &s->tables;
	c.prepare = 0;
	c.notify = s->conn.notify;
	struct mark m = { NULL, NULL };
	rc = insert_on(&c, 0, now, jobs, n, &m, results);
	bus__pg_stmts_reset(&c);
	if (rc == PG_ERR_NOMEM)
		return s->env.error(BUS_ENOMEM,
				    "postgres store: insert_tx: out of memory");
	if (rc == PG_ERR_DB)
		return bus__pg_report(s, &c,
				      "insert_tx (on the application's "
				      "connection; its transaction has "
				      "failed)");
	return rc;
}
