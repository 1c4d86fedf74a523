/*
 * insert and insert_tx: a batch of new jobs in one transaction.
 *
 * Runs of jobs without a unique key go in multi-row INSERTs (prepared for
 * 1, 2, 4, ... 256 rows); InnoDB numbers the rows of one such
 * statement consecutively (auto_increment_increment apart), so their ids
 * follow from the first. A job with a key is one INSERT ... ON DUPLICATE
 * KEY UPDATE on the unique index, the core's replace rules passed as one
 * bit mask of states per field, so that the conflict is settled by the
 * index alone: no SELECT first, no lock of our own. Its affected-row count
 * tells the outcome: 1 inserted, 2 replaced, 0 unchanged; an unchanged row
 * was replaced or a duplicate as the rules for its state say, which a
 * read of that row (locked by the upsert) tells.
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
#include "mysql_store.h"

#define COLS                                                                   \
	"inserted_at, scheduled_at, state, kind, handler, queue, priority, "   \
	"payload, meta, tags, max_attempts, timeout_ms, unique_states, "       \
	"insert_token, insert_seq, errors"
/* inserted_at is now, scheduled_at the given time or now + delay, state
 * follows from the two (a value list may use the columns set before). */
#define VALUES                                                                 \
	"COALESCE(?, UTC_TIMESTAMP(6)), "                                      \
	"COALESCE(?, inserted_at + INTERVAL ? MICROSECOND), "                  \
	"IF(scheduled_at <= inserted_at, 0, 1), "                              \
	"?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]'"
#define ROW_PARAMS 15

/* Assignments run left to right, each seeing those before: the masks test
 * the state the job had, and the state moves with the new scheduled_at. */
static const char upsert_sql[] =
	"INSERT INTO bus_jobs (" COLS ", unique_key) VALUES (" VALUES ", "
	"IF((unique_states >> state) & 1, ?, NULL)) "
	"ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), "
	"payload = IF((? >> state) & 1, VALUES(payload), payload), "
	"queue = IF((? >> state) & 1, VALUES(queue), queue), "
	"priority = IF((? >> state) & 1, VALUES(priority), priority), "
	"max_attempts = IF((? >> state) & 1, VALUES(max_attempts), "
	"max_attempts), "
	"timeout_ms = IF((? >> state) & 1, VALUES(timeout_ms), timeout_ms), "
	"tags = IF((? >> state) & 1, VALUES(tags), tags), "
	"meta = IF((? >> state) & 1, VALUES(meta), meta), "
	"scheduled_at = IF((? >> state) & 1, VALUES(scheduled_at), "
	"scheduled_at), "
	"state = IF(((? >> state) & 1) AND state IN (0, 1), "
	"IF(scheduled_at <= VALUES(inserted_at), 0, 1), state), "
	"unique_key = IF((unique_states >> state) & 1, unique_key, NULL)";
#define UPSERT_PARAMS (ROW_PARAMS + 1 + 9)

/* The replace fields, in the order of the masks in upsert_sql. */
static const unsigned replace_fields[9] = {
	BUS_REPLACE_PAYLOAD,	  BUS_REPLACE_QUEUE,
	BUS_REPLACE_PRIORITY,	  BUS_REPLACE_MAX_ATTEMPTS,
	BUS_REPLACE_TIMEOUT,	  BUS_REPLACE_TAGS,
	BUS_REPLACE_META,	  BUS_REPLACE_SCHEDULED_AT,
	BUS_REPLACE_SCHEDULED_AT,
};

/* Statements stay well under max_allowed_packet. */
#define CHUNK_BYTES_MAX (8u << 20)
#define ROW_OVERHEAD 256

static char *insert_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, "INSERT INTO bus_jobs (" COLS ") VALUES {rows}",
			   "(" VALUES ")", ", ", rows);
}

static char *upsert_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, upsert_sql, NULL, NULL, rows);
}

static char *state_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t, "SELECT state FROM bus_jobs WHERE id = ?", NULL,
			   NULL, rows);
}

static char *readback_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT insert_seq, id FROM bus_jobs "
			   "WHERE insert_token = ?",
			   NULL, NULL, rows);
}

static char *now_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT TIMESTAMPDIFF(MICROSECOND, "
			   "'1970-01-01 00:00:00', UTC_TIMESTAMP(6))",
			   NULL, NULL, rows);
}

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
				  "mysql store: insert: job %zu has no %s", i,
				  missing);
	if (j->unique_key != NULL) {
		size_t len = strlen(j->unique_key);
		int ok = len > 0 && len <= 64;
		for (size_t k = 0; ok && k < len; k++)
			ok = j->unique_key[k] > ' ' && j->unique_key[k] < 127;
		if (!ok)
			return env->error(BUS_EINVAL,
					  "mysql store: insert: job %zu has a "
					  "unique key that is not 1 to 64 "
					  "printable ASCII characters",
					  i);
	}
	/* 2^58 us is some 9000 years: no sum below can overflow. */
	int64_t far = INT64_C(1) << 58;
	int delay_ok = j->scheduled_at != 0 ||
		       (j->delay_us > -far && j->delay_us < far);
	int64_t at = 0;
	if (j->scheduled_at != 0)
		at = j->scheduled_at;
	else if (now != 0 && delay_ok)
		at = now + j->delay_us;
	if (!delay_ok || (at != 0 && !bus__my_time_ok(at)))
		return env->error(BUS_EINVAL,
				  "mysql store: insert: job %zu is scheduled "
				  "outside the years 1000 to 9999 that MySQL "
				  "can store",
				  i);
	return 0;
}

static int batch_check(const bus_store_env *env, int64_t now,
		       const bus_store_new_job *jobs, size_t n,
		       bus_enqueue_result *results)
{
	if (jobs == NULL || results == NULL)
		return env->error(BUS_EINVAL, "mysql store: insert: jobs or "
					      "results is NULL");
	for (size_t i = 0; i < n; i++) {
		int rc = job_check(env, &jobs[i], i, now);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static size_t job_bytes(const bus_store_new_job *j)
{
	return ROW_OVERHEAD + strlen(j->kind) + strlen(j->handler) +
	       strlen(j->queue) + strlen(j->payload) +
	       (j->meta ? strlen(j->meta) : 2) +
	       (j->tags ? strlen(j->tags) : 2) +
	       (j->unique_key ? strlen(j->unique_key) : 0);
}

/* ---- The plan: which statement takes which jobs ---- */

struct step {
	size_t first, count;
	int bucket; /* -1: an upsert of one job */
};

struct plan {
	struct step *steps;
	size_t n;
	int needs_tx; /* more than one statement, or a read after one */
};

static int plan_make(const bus_store_env *env, struct plan *p,
		     const struct my_conn *c, const bus_store_new_job *jobs,
		     size_t n)
{
	size_t limit = c->max_packet / 2 < CHUNK_BYTES_MAX ? c->max_packet / 2
							   : CHUNK_BYTES_MAX;
	p->n = 0;
	p->needs_tx = 0;
	if ((p->steps = malloc(n * sizeof *p->steps)) == NULL)
		return MY_ERR_NOMEM;
	for (size_t i = 0; i < n;) {
		size_t bytes = job_bytes(&jobs[i]);
		if (bytes + 1024 > c->max_packet) {
			free(p->steps);
			p->steps = NULL;
			return env->error(BUS_EINVAL,
					  "mysql store: insert: job %zu is "
					  "about %zu bytes, more than the "
					  "server's max_allowed_packet (%lu)",
					  i, bytes, c->max_packet);
		}
		struct step *st = &p->steps[p->n++];
		st->first = i;
		if (jobs[i].unique_key != NULL) {
			st->count = 1;
			st->bucket = -1;
			p->needs_tx |= jobs[i].replace != NULL;
			i++;
			continue;
		}
		size_t run = 1;
		while (i + run < n && jobs[i + run].unique_key == NULL &&
		       run < MY_ROWS_MAX) {
			size_t more = job_bytes(&jobs[i + run]);
			if (bytes + more > limit)
				break;
			bytes += more;
			run++;
		}
		int b = MY_BUCKETS - 1;
		while (bus__my_bucket_rows[b] > run)
			b--;
		st->count = bus__my_bucket_rows[b];
		st->bucket = b;
		i += st->count;
	}
	p->needs_tx |= p->n > 1;
	return 0;
}

/* ---- Running it ---- */

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

static void bind_row(struct my_params *p, int64_t now,
		     const bus_store_new_job *j, const struct mark *m, size_t i)
{
	bus__my_p_time(p, now);
	bus__my_p_time(p, j->scheduled_at);
	bus__my_p_ll(p, j->delay_us);
	bus__my_p_str(p, j->kind);
	bus__my_p_str(p, j->handler);
	bus__my_p_str(p, j->queue);
	bus__my_p_ll(p, j->priority);
	bus__my_p_str(p, j->payload);
	bus__my_p_str(p, j->meta ? j->meta : "{}");
	bus__my_p_str(p, j->tags ? j->tags : "[]");
	bus__my_p_ll(p, j->max_attempts);
	bus__my_p_ll(p, j->timeout_ms);
	bus__my_p_ll(p, j->unique_states);
	bus__my_p_str(p, m->token);
	if (m->token != NULL)
		bus__my_p_ll(p, seq_of(m, i));
	else
		bus__my_p_null(p);
}

static int insert_rows(struct my_conn *c, int64_t now, const struct step *s,
		       const bus_store_new_job *jobs, const struct mark *m,
		       bus_enqueue_result *results)
{
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, SL_INSERT + s->bucket, insert_build,
				 s->count);
	if (rc != 0 || (rc = bus__my_params_init(&p, s->count * ROW_PARAMS)))
		return rc;
	for (size_t k = 0; k < s->count; k++)
		bind_row(&p, now, &jobs[s->first + k], m, s->first + k);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	if (rc != 0)
		return rc;
	my_ulonglong first = mysql_stmt_insert_id(st);
	unsigned long long rows = mysql_stmt_affected_rows(st);
	if (rows != s->count || first == 0)
		return bus__my_fail(c, "an INSERT of %zu jobs reported %llu "
				       "rows",
				    s->count, rows);
	for (size_t k = 0; k < s->count; k++) {
		results[s->first + k].id =
			(int64_t)(first + k * c->auto_inc_step);
		results[s->first + k].status = BUS_INSERTED;
	}
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

/* What an unchanged conflict was: the rules for the state it is in. */
static int unchanged_status(struct my_conn *c, const bus_store_new_job *j,
			    int64_t id, bus_insert_status *out)
{
	*out = BUS_DUPLICATE;
	if (j->replace == NULL)
		return 0;
	unsigned any = 0;
	for (int st = 0; st < BUS_JOB_STATE_COUNT; st++)
		any |= j->replace[st] & BUS_REPLACE_ALL;
	if (any == 0)
		return 0;
	MYSQL_STMT *st;
	struct my_params p;
	long long state = -1;
	size_t n = 0;
	int rc = bus__my_prepare(c, &st, SL_STATE, state_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 1)) != 0)
		return rc;
	bus__my_p_ll(&p, id);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	if (rc == 0)
		rc = bus__my_ints_fetch(c, st, &state, 1, &n);
	if (rc == 0 && n == 1 && state >= 0 && state < BUS_JOB_STATE_COUNT &&
	    (j->replace[state] & BUS_REPLACE_ALL))
		*out = BUS_REPLACED;
	return rc;
}

static int upsert(struct my_conn *c, int64_t now, const bus_store_new_job *j,
		  const struct mark *m, size_t i, bus_enqueue_result *res)
{
	MYSQL_STMT *st;
	struct my_params p;
	int rc = bus__my_prepare(c, &st, SL_UPSERT, upsert_build, 1);
	if (rc != 0 || (rc = bus__my_params_init(&p, UPSERT_PARAMS)) != 0)
		return rc;
	bind_row(&p, now, j, m, i);
	bus__my_p_str(&p, j->unique_key);
	for (size_t f = 0; f < sizeof replace_fields / sizeof *replace_fields;
	     f++)
		bus__my_p_ll(&p, field_mask(j->replace, replace_fields[f]));
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	if (rc != 0)
		return rc;
	my_ulonglong affected = mysql_stmt_affected_rows(st);
	res->id = (int64_t)mysql_stmt_insert_id(st);
	if (res->id <= 0 || affected > 2)
		return bus__my_fail(c,
				    "a unique insert reported %llu rows "
				    "and id %lld",
				    (unsigned long long)affected,
				    (long long)res->id);
	if (affected == 1)
		res->status = BUS_INSERTED;
	else if (affected == 2)
		res->status = BUS_REPLACED;
	else
		return unchanged_status(c, j, res->id, &res->status);
	return 0;
}

static int server_now(struct my_conn *c, int64_t *now)
{
	MYSQL_STMT *st;
	long long v = 0;
	size_t n = 0;
	int rc = bus__my_prepare(c, &st, SL_NOW, now_build, 0);
	if (rc == 0)
		rc = bus__my_exec(c, st, NULL);
	if (rc == 0)
		rc = bus__my_ints_fetch(c, st, &v, 1, &n);
	if (rc == 0 && n != 1)
		rc = bus__my_fail(c, "the server did not tell its time");
	*now = v;
	return rc;
}

/* The batch on `c`; with own_tx, in a transaction of its own when it takes
 * more than one statement. */
static int insert_on(const bus_store_env *env, struct my_conn *c, int own_tx,
		     int64_t now, const bus_store_new_job *jobs, size_t n,
		     const struct mark *m, bus_enqueue_result *results)
{
	struct plan plan;
	int rc = bus__my_session_read(c);
	if (rc == 0)
		rc = plan_make(env, &plan, c, jobs, n);
	if (rc != 0)
		return rc;
	if (own_tx && plan.needs_tx)
		rc = bus__my_begin(c);
	/* One time for the whole batch, as one statement would have. */
	if (rc == 0 && now == 0 && plan.n > 1)
		rc = server_now(c, &now);
	for (size_t i = 0; rc == 0 && i < plan.n; i++) {
		const struct step *s = &plan.steps[i];
		rc = s->bucket < 0
			 ? upsert(c, now, &jobs[s->first], m, s->first,
				  &results[s->first])
			 : insert_rows(c, now, s, jobs, m, results);
	}
	if (rc == 0 && c->in_tx)
		rc = bus__my_commit(c);
	free(plan.steps);
	return rc;
}

struct insert_arg {
	int64_t now;
	const bus_store_new_job *jobs;
	size_t n;
	bus_enqueue_result *results;
	char token[MY_TOKEN_LEN + 1];
};

static int insert_op(bus_store *s, void *arg)
{
	struct insert_arg *a = arg;
	struct mark m = { a->token, NULL };
	return insert_on(&s->env, &s->conn, 1, a->now, a->jobs, a->n, &m,
			 a->results);
}

/* Reads (insert_seq, id) of the rows with the call's token into
 * found[seq] (0: no row). */
static int readback(struct my_conn *c, const char *token, int64_t *found,
		    size_t n, size_t *n_found)
{
	MYSQL_STMT *st;
	struct my_params p;
	*n_found = 0;
	int rc = bus__my_prepare(c, &st, SL_INSERT_READBACK, readback_build, 0);
	if (rc != 0 || (rc = bus__my_params_init(&p, 1)) != 0)
		return rc;
	bus__my_p_str(&p, token);
	rc = bus__my_exec(c, st, &p);
	bus__my_params_free(&p);
	if (rc != 0)
		return rc;
	long long v[2] = { 0, 0 };
	MYSQL_BIND b[2];
	memset(b, 0, sizeof b);
	for (int i = 0; i < 2; i++) {
		b[i].buffer_type = MYSQL_TYPE_LONGLONG;
		b[i].buffer = &v[i];
	}
	if (mysql_stmt_bind_result(st, b) != 0)
		return bus__my_stmt_fail(c, st);
	int f;
	while ((f = mysql_stmt_fetch(st)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		if (v[0] < 0 || (size_t)v[0] >= n || v[1] <= 0)
			continue; /* not ours to know: ignored */
		if (found[v[0]] == 0)
			(*n_found)++;
		found[v[0]] = v[1];
	}
	if (f != MYSQL_NO_DATA) {
		rc = bus__my_stmt_fail(c, st);
		mysql_stmt_free_result(st);
		return rc;
	}
	mysql_stmt_free_result(st);
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
	struct my_conn *c = &r->s->conn;
	struct mark m = { r->token, seqs };
	return insert_on(&r->s->env, c, 1, r->now, jobs, n, &m, results);
}

/* After a lost connection: whether the batch committed (1, results
 * filled in), or not (0). */
static int insert_landed(bus_store *s, void *arg)
{
	struct insert_arg *a = arg;
	struct my_conn *c = &s->conn;
	int64_t *found = calloc(a->n, sizeof *found);
	if (found == NULL)
		return MY_ERR_NOMEM;
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
		return MY_ERR_NOMEM;
	if (rc == BUS_ESTATE)
		return bus__my_fail(c,
				    "after a lost connection, job %zu of a "
				    "batch that committed has no row",
				    missing);
	return rc == 0 ? 1 : rc;
}

int bus__my_insert(bus_store *s, int64_t now, const bus_store_new_job *jobs,
		   size_t n, bus_enqueue_result *results)
{
	if (n == 0)
		return 0;
	int rc = bus__my_now_check(s, "insert", now);
	if (rc == 0)
		rc = batch_check(&s->env, now, jobs, n, results);
	if (rc != 0)
		return rc;
	struct insert_arg a = { now, jobs, n, results, "" };
	bus__token(a.token);
	return bus__my_run_checked(s, "inserting jobs", insert_op,
				   insert_landed, &a);
}

/* ---- The server's clock ---- */

static int now_op(bus_store *s, void *arg)
{
	return server_now(&s->conn, arg);
}

int bus__my_now(bus_store *s, int64_t *out)
{
	*out = 0;
	return bus__my_run(s, "reading the server's clock", now_op, out);
}

/* ---- The outbox ---- */

static int non_ascii(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

static int tx_check(bus_store *s, MYSQL *tx, const bus_store_new_job *jobs,
		    size_t n)
{
	unsigned status = 0;
	int known = mariadb_get_infov(tx, MARIADB_CONNECTION_SERVER_STATUS,
				      &status) == 0;
	if (known && (status & SERVER_STATUS_AUTOCOMMIT) &&
	    !(status & SERVER_STATUS_IN_TRANS))
		return s->env.error(BUS_ESTATE,
				    "mysql store: insert_tx: the connection "
				    "has no open transaction (START "
				    "TRANSACTION first): the jobs would not "
				    "commit with the application's writes");
	const char *cs = mysql_character_set_name(tx);
	if (cs != NULL && strcmp(cs, "utf8mb4") == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const bus_store_new_job *j = &jobs[i];
		if (non_ascii(j->kind) || non_ascii(j->handler) ||
		    non_ascii(j->queue) || non_ascii(j->payload) ||
		    non_ascii(j->meta) || non_ascii(j->tags))
			return s->env.error(BUS_EINVAL,
					    "mysql store: insert_tx: the "
					    "connection's character set is "
					    "%s, and job %zu is not ASCII: "
					    "call mysql_set_character_set(tx, "
					    "\"utf8mb4\")",
					    cs ? cs : "unknown", i);
	}
	return 0;
}

int bus__my_insert_tx(bus_store *s, void *tx, int64_t now,
		      const bus_store_new_job *jobs, size_t n,
		      bus_enqueue_result *results)
{
	if (tx == NULL)
		return s->env.error(BUS_EINVAL,
				    "mysql store: insert_tx: the connection "
				    "is NULL");
	if (n == 0)
		return 0;
	int rc = bus__my_now_check(s, "insert_tx", now);
	if (rc == 0)
		rc = batch_check(&s->env, now, jobs, n, results);
	if (rc == 0)
		rc = tx_check(s, tx, jobs, n);
	if (rc != 0)
		return rc;
	bus__my_thread_enter();
	/* Statements live for this call only: the connection is not ours
	 * to keep anything on. Nothing is retried either: a deadlock or a
	 * lost connection ends the application's transaction, which only
	 * the application can run again. */
	struct my_conn c;
	memset(&c, 0, sizeof c);
	c.db = tx;
	c.tables = &s->tables;
	unsigned long thread_id = mysql_thread_id(tx);
	if (s->tx_session.db == tx && s->tx_session.thread_id == thread_id) {
		c.auto_inc_step = s->tx_session.auto_inc_step;
		c.max_packet = s->tx_session.max_packet;
		c.session_read = 1;
	}
	struct mark m = { NULL, NULL };
	rc = insert_on(&s->env, &c, 0, now, jobs, n, &m, results);
	bus__my_stmts_close(&c);
	if (c.session_read) {
		s->tx_session.db = tx;
		s->tx_session.thread_id = thread_id;
		s->tx_session.auto_inc_step = c.auto_inc_step;
		s->tx_session.max_packet = c.max_packet;
	}
	if (rc == MY_ERR_NOMEM)
		return s->env.error(BUS_ENOMEM,
				    "mysql store: insert_tx: out of memory");
	if (rc == MY_ERR_DB)
		return bus__my_report(s, &c,
				      "insert_tx (on the application's "
				      "connection; its transaction may have "
				      "been rolled back)");
	return rc;
}
