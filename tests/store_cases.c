/*
 * The cases every store passes, driven through its ops directly: claim
 * order, due times, pauses, the finish guard, errors, uniqueness and
 * replace, atomic batches, leases, the admin operations, and concurrent
 * use. The program names the store in a struct store_fixture
 * (store_cases.h) and adds these cases with store_cases_add.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "error.h"
#include "store_cases.h"

bus_store *st;

/* The program's store; set by store_cases_add, before any case runs. */
static const struct store_fixture *fx;
static const struct bus_store_ops *ops;

static void quiet_log(void *udata, bus_log_level level, const char *fmt, ...)
{
}

const bus_store_env store_env = { BUS_STORE_ABI_VERSION, bus__error_set,
				  quiet_log, NULL };

/* An id the store handed out: exactly `exact` where ids have no gaps,
 * else only above `above` (an INSERT that meets a unique key may spend
 * one). */
#define ck_assert_id(got, exact, above)                                        \
	do {                                                                   \
		if (fx->dense_ids)                                             \
			ck_assert_int_eq((got), (exact));                      \
		else                                                           \
			ck_assert_int_gt((got), (above));                      \
	} while (0)

static void setup(void)
{
	st = NULL;
	fx->reset();
	ck_assert_ptr_nonnull(st);
}

static void teardown(void)
{
	ops->close(st);
	st = NULL;
}

bus_store_new_job job_in(const char *queue, int priority,
			 int64_t scheduled_at)
{
	bus_store_new_job j;
	memset(&j, 0, sizeof j);
	j.kind = "kind";
	j.handler = "handler";
	j.queue = queue;
	j.priority = priority;
	j.payload = "{\"n\":1}";
	j.max_attempts = 3;
	j.scheduled_at = scheduled_at;
	return j;
}

static bus_store_new_job unique_job(const char *key, const unsigned *replace)
{
	bus_store_new_job j = job_in("default", 0, 0);
	j.unique_key = key;
	j.unique_states =
		BUS_STATES_UNFINISHED | BUS_STATE_BIT(BUS_JOB_COMPLETED);
	j.replace = replace;
	return j;
}

static int64_t insert_at(const bus_store_new_job *j, int64_t now,
			 bus_insert_status *status)
{
	bus_enqueue_result r = { -1, -1 };
	int rc = ops->insert(st, now, j, 1, &r);
	ck_assert_msg(rc == 0, "insert: %d %s", rc, bus_error_last()->message);
	if (status != NULL)
		*status = r.status;
	return r.id;
}

int64_t insert1(const bus_store_new_job *j)
{
	return insert_at(j, T0, NULL);
}

static bus_job *claim_n(int64_t now, const char *queue, size_t limit,
			size_t *n)
{
	bus_store_claim c = { queue, limit };
	bus_job *rows = NULL;
	ck_assert_int_eq(ops->claim(st, now, "node-a", LEASE, &c, 1, &rows, n),
			 0);
	return rows;
}

/* Claims one job of `queue` at `now` and returns its id (0: none). */
static int64_t claim1(int64_t now, const char *queue)
{
	size_t n = 0;
	bus_job *rows = claim_n(now, queue, 1, &n);
	int64_t id = n ? rows[0].id : 0;
	bus_job_list_free(rows, n);
	return id;
}

static bus_job *get(int64_t id)
{
	bus_job *j = NULL;
	ck_assert_int_eq(ops->get(st, id, &j), 0);
	return j;
}

static bus_job_state state_of(int64_t id)
{
	bus_job *j = get(id);
	bus_job_state s = j->state;
	bus_job_free(j);
	return s;
}

static bus_store_finish outcome(int64_t id, int attempt, bus_job_state state)
{
	bus_store_finish f;
	memset(&f, 0, sizeof f);
	f.id = id;
	f.node = "node-a";
	f.attempt = attempt;
	f.state = state;
	f.delay_us = -1;
	return f;
}

static int finish1(int64_t now, const bus_store_finish *f)
{
	unsigned char applied = 2;
	ck_assert_int_eq(ops->finish(st, now, f, 1, &applied), 0);
	ck_assert_int_le(applied, 1);
	return applied;
}

static int64_t count_of(const char *queue, bus_job_state state)
{
	bus_job_count *c = NULL;
	size_t n = 0;
	int64_t found = 0;
	ck_assert_int_eq(ops->counts(st, &c, &n), 0);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_gt(c[i].count, 0);
		if (strcmp(c[i].queue, queue) == 0 && c[i].state == state)
			found = c[i].count;
	}
	free(c);
	return found;
}

/* ---- insert ---- */

START_TEST(insert_stores_defaults_and_states)
{
	bus_store_new_job j = job_in("default", 0, 0);
	int64_t a = insert1(&j);
	j.delay_us = 5 * SEC;
	int64_t b = insert1(&j);
	j.delay_us = 0;
	j.scheduled_at = T0 - SEC;
	j.tags = "[\"x\"]";
	j.meta = "{\"m\":1}";
	int64_t c = insert1(&j);
	ck_assert_int_eq(a, 1);
	ck_assert_int_eq(b, 2);
	ck_assert_int_eq(c, 3);

	bus_job *r = get(a);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->inserted_at, T0);
	ck_assert_int_eq(r->scheduled_at, T0);
	ck_assert_str_eq(r->kind, "kind");
	ck_assert_str_eq(r->handler, "handler");
	ck_assert_str_eq(r->queue, "default");
	ck_assert_str_eq(r->payload, "{\"n\":1}");
	ck_assert_str_eq(r->tags, "[]");
	ck_assert_str_eq(r->meta, "{}");
	ck_assert_str_eq(r->errors, "[]");
	ck_assert_int_eq(r->attempt, 0);
	ck_assert_int_eq(r->max_attempts, 3);
	ck_assert_ptr_null(r->attempted_by);
	ck_assert_ptr_null(r->unique_key);
	ck_assert_int_eq(r->finished_at, 0);
	bus_job_free(r);

	r = get(b);
	ck_assert_int_eq(r->state, BUS_JOB_SCHEDULED);
	ck_assert_int_eq(r->scheduled_at, T0 + 5 * SEC);
	bus_job_free(r);
	r = get(c);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_str_eq(r->tags, "[\"x\"]");
	ck_assert_str_eq(r->meta, "{\"m\":1}");
	bus_job_free(r);
}
END_TEST

START_TEST(now_zero_is_the_wall_clock)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t before = (int64_t)ts.tv_sec * SEC + ts.tv_nsec / 1000;
	bus_store_new_job j = job_in("default", 0, 0);
	int64_t id = insert_at(&j, 0, NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t after = (int64_t)ts.tv_sec * SEC + ts.tv_nsec / 1000;
	bus_job *r = get(id);
	ck_assert_int_ge(r->inserted_at, before);
	ck_assert_int_le(r->inserted_at, after);
	bus_job_free(r);
	ck_assert_int_eq(claim1(0, "default"), id);
}
END_TEST

START_TEST(insert_rejects_missing_fields_and_inserts_nothing)
{
	bus_store_new_job jobs[2] = { job_in("default", 0, 0),
				      job_in("default", 0, 0) };
	jobs[1].payload = NULL;
	bus_enqueue_result r[2];
	ck_assert_int_eq(ops->insert(st, T0, jobs, 2, r), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "job 1 has no payload");
	ck_assert_int_eq(count_of("default", BUS_JOB_AVAILABLE), 0);
	jobs[1].payload = "1";
	ck_assert_int_eq(ops->insert(st, T0, jobs, 2, r), 0);
	ck_assert_int_eq(r[0].id, 1);
	ck_assert_int_eq(r[1].id, 2);
}
END_TEST

/* ---- claim ---- */

START_TEST(claim_orders_by_priority_then_scheduled_at_then_id)
{
	bus_store_new_job j = job_in("q", 5, T0 - 1);
	int64_t low = insert1(&j);
	j = job_in("q", 1, T0 - 1);
	int64_t p1_late_a = insert1(&j);
	j = job_in("q", 1, T0 - 9);
	int64_t p1_early = insert1(&j);
	j = job_in("q", 1, T0 - 1);
	int64_t p1_late_b = insert1(&j);
	j = job_in("q", -3, T0 - 1);
	int64_t urgent = insert1(&j);

	size_t n = 0;
	bus_job *rows = claim_n(T0, "q", 10, &n);
	ck_assert_uint_eq(n, 5);
	int64_t want[] = { urgent, p1_early, p1_late_a, p1_late_b, low };
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(rows[i].id, want[i]);
		ck_assert_int_eq(rows[i].state, BUS_JOB_EXECUTING);
		ck_assert_int_eq(rows[i].attempt, 1);
		ck_assert_int_eq(rows[i].attempted_at, T0);
		ck_assert_int_eq(rows[i].lease_until, T0 + LEASE);
		ck_assert_str_eq(rows[i].attempted_by, "node-a");
		ck_assert_str_eq(rows[i].payload, "{\"n\":1}");
	}
	bus_job_list_free(rows, n);
	bus_job *r = get(low);
	ck_assert_int_eq(r->state, BUS_JOB_EXECUTING);
	ck_assert_int_eq(r->attempt, 1);
	ck_assert_str_eq(r->attempted_by, "node-a");
	bus_job_free(r);
	ck_assert_int_eq(claim1(T0, "q"), 0);
}
END_TEST

/* One batch, in an order unlike the claim order, with jobs due "now" (no
 * scheduled_at: the batch's now, equal for all of them), then one more such
 * job on its own: the batch's ids follow its order, and claims of one job
 * at a time take exactly the claim order, equal priorities and times by id
 * (each claim the head of what is left; the worker runs them so). */
START_TEST(single_claims_follow_claim_order_in_a_batch)
{
	enum { N = 8 };
	static const int prio[N] = { 2, 1, 1, 2, -1, 1, 1, 1 };
	static const int64_t back_s[N] = { 10, 0, 20, 10, 0, 0, 0, 5 };
	bus_store_new_job jobs[N];
	for (int i = 0; i < N; i++)
		jobs[i] = job_in("q", prio[i],
				 back_s[i] ? T0 - back_s[i] * SEC : 0);
	bus_enqueue_result r[N];
	ck_assert_int_eq(ops->insert(st, T0, jobs, N, r), 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(r[i].status, BUS_INSERTED);
		if (i > 0)
			ck_assert_msg(r[i].id > r[i - 1].id,
				      "batch job %d has id %lld, not above "
				      "job %d's %lld",
				      i, (long long)r[i].id, i - 1,
				      (long long)r[i - 1].id);
		bus_job *row = get(r[i].id);
		ck_assert_int_eq(row->scheduled_at,
				 back_s[i] ? T0 - back_s[i] * SEC : T0);
		bus_job_free(row);
	}
	bus_store_new_job later = job_in("q", 1, 0);
	int64_t alone = insert1(&later);
	ck_assert_int_gt(alone, r[N - 1].id);

	const int64_t want[] = { r[4].id, r[2].id, r[7].id, r[1].id, r[5].id,
				 r[6].id, alone,   r[0].id, r[3].id };
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		int64_t got = claim1(T0, "q");
		ck_assert_msg(got == want[i],
			      "claim %zu took job %lld, expected job %lld", i,
			      (long long)got, (long long)want[i]);
	}
	ck_assert_int_eq(claim1(T0, "q"), 0);
}
END_TEST

/* Random priorities and times, some jobs cancelled out of the middle of
 * the heaps: the claim order is still exactly the sorted order. */
START_TEST(claim_order_holds_after_random_removals)
{
	enum { N = 2000 };
	static int64_t prio[N + 1], sched[N + 1];
	static char gone[N + 1];
	unsigned seed = 12345;
	for (int i = 1; i <= N; i++) {
		seed = seed * 1103515245u + 12345u;
		prio[i] = (int)(seed >> 16) % 7 - 3;
		seed = seed * 1103515245u + 12345u;
		sched[i] = T0 - (int64_t)((seed >> 16) % 50) + 25;
		bus_store_new_job j = job_in("q", (int)prio[i], sched[i]);
		ck_assert_int_eq(insert1(&j), i);
	}
	for (int i = 1; i <= N; i += 3) {
		ck_assert_int_eq(ops->cancel(st, T0, i), 0);
		gone[i] = 1;
	}
	int64_t now = T0 + 100;
	size_t n = 0, total = 0;
	bus_job *rows = claim_n(now, "q", N, &n);
	for (size_t i = 0; i < n; i++) {
		ck_assert(!gone[rows[i].id]);
		if (i > 0) {
			const bus_job *a = &rows[i - 1], *b = &rows[i];
			int ordered = a->priority < b->priority ||
				      (a->priority == b->priority &&
				       (a->scheduled_at < b->scheduled_at ||
					(a->scheduled_at == b->scheduled_at &&
					 a->id < b->id)));
			ck_assert_msg(ordered, "job %lld before %lld",
				      (long long)a->id, (long long)b->id);
		}
	}
	total += n;
	bus_job_list_free(rows, n);
	ck_assert_uint_eq(total, N - (N + 2) / 3);
}
END_TEST

START_TEST(scheduled_jobs_wait_for_their_time)
{
	bus_store_new_job j = job_in("q", -10, T0 + 10 * SEC);
	int64_t later = insert1(&j);
	j = job_in("q", 10, 0);
	int64_t now_job = insert1(&j);
	/* The urgent job that is not due does not hide the due one. */
	ck_assert_int_eq(claim1(T0, "q"), now_job);
	ck_assert_int_eq(claim1(T0 + 10 * SEC - 1, "q"), 0);
	ck_assert_int_eq(state_of(later), BUS_JOB_SCHEDULED);
	ck_assert_int_eq(claim1(T0 + 10 * SEC, "q"), later);
}
END_TEST

START_TEST(a_claim_with_an_earlier_now_takes_nothing_early)
{
	bus_store_new_job j = job_in("q", 0, T0 + 10 * SEC);
	int64_t a = insert1(&j);
	j = job_in("q", 0, T0 + 20 * SEC);
	int64_t b = insert1(&j);
	/* Limit 0 claims nothing. */
	size_t n = 9;
	bus_job *rows = claim_n(T0 + 30 * SEC, "q", 0, &n);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(rows);
	/* A late claim finds both due and takes one; a claim with an earlier
	 * clock (another node's, or a test's) must not take the other. */
	ck_assert_int_eq(claim1(T0 + 30 * SEC, "q"), a);
	ck_assert_int_eq(claim1(T0, "q"), 0);
	ck_assert_int_eq(claim1(T0 + 20 * SEC - 1, "q"), 0);
	ck_assert_int_eq(claim1(T0 + 20 * SEC, "q"), b);
}
END_TEST

/* The contract claims available jobs whatever their scheduled_at: a job
 * given back with a delay, or a claim with an earlier clock. */
START_TEST(available_jobs_are_claimable_whatever_their_time)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t id = insert1(&j);
	ck_assert_int_eq(claim1(T0 - SEC, "q"), id);
	bus_store_finish f = outcome(id, 1, BUS_JOB_AVAILABLE);
	f.delay_us = 60 * SEC;
	ck_assert_int_eq(finish1(T0, &f), 1);
	bus_job *r = get(id);
	ck_assert_int_eq(r->scheduled_at, T0 + 60 * SEC);
	bus_job_free(r);
	ck_assert_int_eq(claim1(T0 + SEC, "q"), id);
}
END_TEST

START_TEST(claim_takes_limits_per_queue_and_skips_unknown_ones)
{
	for (int i = 0; i < 3; i++) {
		bus_store_new_job a = job_in("a", 0, 0), b = job_in("b", 0, 0);
		insert1(&a);
		insert1(&b);
	}
	bus_store_claim c[3] = { { "a", 2 }, { "nope", 5 }, { "b", 5 } };
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_int_eq(ops->claim(st, T0, "n", LEASE, c, 3, &rows, &n), 0);
	ck_assert_uint_eq(n, 5);
	int na = 0;
	for (size_t i = 0; i < n; i++)
		na += strcmp(rows[i].queue, "a") == 0;
	ck_assert_int_eq(na, 2);
	bus_job_list_free(rows, n);
	ck_assert_int_eq(count_of("a", BUS_JOB_AVAILABLE), 1);
	ck_assert_int_eq(count_of("b", BUS_JOB_EXECUTING), 3);
}
END_TEST

START_TEST(paused_queues_are_not_claimed)
{
	ck_assert_int_eq(ops->set_paused(st, "q", 1), 0); /* before any job */
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t id = insert1(&j);
	j = job_in("other", 0, 0);
	int64_t other = insert1(&j);
	ck_assert_int_eq(claim1(T0, "q"), 0);
	ck_assert_int_eq(claim1(T0, "other"), other);
	ck_assert_int_eq(ops->set_paused(st, "q", 0), 0);
	ck_assert_int_eq(claim1(T0, "q"), id);
	ck_assert_int_eq(ops->set_paused(st, NULL, 1), BUS_EINVAL);
}
END_TEST

/* ---- finish ---- */

START_TEST(finish_applies_only_under_the_guard)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t id = insert1(&j);
	bus_store_finish f = outcome(id, 1, BUS_JOB_COMPLETED);
	ck_assert_int_eq(finish1(T0, &f), 0); /* not executing yet */
	ck_assert_int_eq(claim1(T0, "q"), id);

	f.node = "node-b";
	ck_assert_int_eq(finish1(T0, &f), 0);
	f.node = "node-a";
	f.attempt = 2;
	ck_assert_int_eq(finish1(T0, &f), 0);
	f.attempt = 1;
	f.only_if_expired = 1;
	ck_assert_int_eq(finish1(T0 + LEASE, &f), 0); /* lease_until == now */
	ck_assert_int_eq(state_of(id), BUS_JOB_EXECUTING);
	ck_assert_int_eq(finish1(T0 + LEASE + 1, &f), 1);

	bus_job *r = get(id);
	ck_assert_int_eq(r->state, BUS_JOB_COMPLETED);
	ck_assert_int_eq(r->finished_at, T0 + LEASE + 1);
	ck_assert_int_eq(r->lease_until, 0);
	ck_assert_str_eq(r->attempted_by, "node-a");
	ck_assert_int_eq(r->attempt, 1);
	bus_job_free(r);
	f.only_if_expired = 0;
	ck_assert_int_eq(finish1(T0, &f), 0); /* already finished */

	unsigned char applied[2];
	bus_store_finish bad[2] = { f, outcome(id, 1, BUS_JOB_EXECUTING) };
	ck_assert_int_eq(ops->finish(st, T0, bad, 2, applied), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "not an outcome");
}
END_TEST

START_TEST(finish_sets_times_and_refunds)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t id = insert1(&j);
	ck_assert_int_eq(claim1(T0, "q"), id);

	/* Failure: retryable after a delay, the attempt spent. */
	bus_store_finish f = outcome(id, 1, BUS_JOB_RETRYABLE);
	f.delay_us = 60 * SEC;
	ck_assert_int_eq(finish1(T0 + SEC, &f), 1);
	bus_job *r = get(id);
	ck_assert_int_eq(r->state, BUS_JOB_RETRYABLE);
	ck_assert_int_eq(r->scheduled_at, T0 + 61 * SEC);
	ck_assert_int_eq(r->attempt, 1);
	ck_assert_int_eq(r->finished_at, 0);
	ck_assert_int_eq(r->lease_until, 0);
	bus_job_free(r);
	ck_assert_int_eq(claim1(T0 + 61 * SEC - 1, "q"), 0);
	ck_assert_int_eq(claim1(T0 + 61 * SEC, "q"), id);

	/* Snooze: scheduled, no attempt spent. */
	f = outcome(id, 2, BUS_JOB_SCHEDULED);
	f.delay_us = 5 * SEC;
	f.refund_attempt = 1;
	ck_assert_int_eq(finish1(T0 + 70 * SEC, &f), 1);
	r = get(id);
	ck_assert_int_eq(r->state, BUS_JOB_SCHEDULED);
	ck_assert_int_eq(r->attempt, 1);
	ck_assert_int_eq(r->scheduled_at, T0 + 75 * SEC);
	ck_assert_str_eq(r->errors, "[]");
	bus_job_free(r);

	/* Give back with delay -1: scheduled_at is left alone. */
	ck_assert_int_eq(claim1(T0 + 75 * SEC, "q"), id);
	f = outcome(id, 2, BUS_JOB_AVAILABLE);
	f.refund_attempt = 1;
	ck_assert_int_eq(finish1(T0 + 80 * SEC, &f), 1);
	r = get(id);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->scheduled_at, T0 + 75 * SEC);
	ck_assert_int_eq(r->attempt, 1);
	bus_job_free(r);

	/* Out of attempts: discarded, finished. */
	ck_assert_int_eq(claim1(T0 + 80 * SEC, "q"), id);
	f = outcome(id, 2, BUS_JOB_DISCARDED);
	f.delay_us = 7;
	ck_assert_int_eq(finish1(T0 + 90 * SEC, &f), 1);
	r = get(id);
	ck_assert_int_eq(r->state, BUS_JOB_DISCARDED);
	ck_assert_int_eq(r->finished_at, T0 + 90 * SEC);
	ck_assert_int_eq(r->scheduled_at, T0 + 75 * SEC);
	bus_job_free(r);
}
END_TEST

START_TEST(finish_appends_errors_as_valid_json)
{
	const char *msgs[2] = { "boom \"quoted\" \\ back\nnew\ttab \x01 é",
				"second" };
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t id = insert1(&j);
	for (int a = 1; a <= 2; a++) {
		ck_assert_int_eq(claim1(T0 + a * 100 * SEC, "q"), id);
		bus_store_finish f = outcome(id, a, BUS_JOB_RETRYABLE);
		f.delay_us = 0;
		f.error = msgs[a - 1];
		ck_assert_int_eq(finish1(T0 + a * 100 * SEC + 1, &f), 1);
	}
	bus_job *r = get(id);
	cJSON *arr = cJSON_Parse(r->errors);
	ck_assert_msg(arr != NULL, "errors is not JSON: %s", r->errors);
	ck_assert(cJSON_IsArray(arr));
	ck_assert_int_eq(cJSON_GetArraySize(arr), 2);
	for (int a = 1; a <= 2; a++) {
		cJSON *e = cJSON_GetArrayItem(arr, a - 1);
		cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "attempt");
		cJSON *when = cJSON_GetObjectItemCaseSensitive(e, "at");
		cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "error");
		ck_assert(cJSON_IsNumber(at) && cJSON_IsNumber(when));
		ck_assert_int_eq((int)at->valuedouble, a);
		ck_assert_int_eq((int64_t)when->valuedouble,
				 T0 + a * 100 * SEC + 1);
		ck_assert(cJSON_IsString(msg));
		ck_assert_str_eq(msg->valuestring, msgs[a - 1]);
	}
	cJSON_Delete(arr);
	/* "at" is written as an integer, not in exponent form. */
	char want[64];
	snprintf(want, sizeof want, "\"at\":%lld,",
		 (long long)(T0 + 100 * SEC + 1));
	ck_assert_ptr_nonnull(strstr(r->errors, want));
	bus_job_free(r);
}
END_TEST

/* ---- uniqueness ---- */

#define KEY_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

START_TEST(unique_conflict_without_replace_is_a_duplicate)
{
	unsigned none[BUS_JOB_STATE_COUNT] = { 0 };
	bus_store_new_job j = unique_job(KEY_A, NULL);
	bus_insert_status status;
	int64_t id = insert_at(&j, T0, &status);
	ck_assert_int_eq(status, BUS_INSERTED);
	j.payload = "{\"n\":2}";
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_DUPLICATE);
	j.replace = none;
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_DUPLICATE);
	bus_job *r = get(id);
	ck_assert_str_eq(r->payload, "{\"n\":1}");
	ck_assert_str_eq(r->unique_key, KEY_A);
	ck_assert_uint_eq(r->unique_states, j.unique_states);
	bus_job_free(r);
	/* Another key and no key are never blocked. */
	j = unique_job(KEY_B, NULL);
	ck_assert_int_ne(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_INSERTED);
	j = job_in("default", 0, 0);
	ck_assert_id(insert_at(&j, T0, &status), id + 2, id + 1);
	ck_assert_int_eq(count_of("default", BUS_JOB_AVAILABLE), 3);
}
END_TEST

START_TEST(replace_overwrites_only_the_allowed_fields)
{
	unsigned rep[BUS_JOB_STATE_COUNT] = { 0 };
	rep[BUS_JOB_AVAILABLE] = BUS_REPLACE_PAYLOAD | BUS_REPLACE_PRIORITY |
				 BUS_REPLACE_MAX_ATTEMPTS | BUS_REPLACE_TIMEOUT;
	bus_store_new_job j = unique_job(KEY_A, rep);
	int64_t id = insert1(&j);
	j.payload = "{\"n\":2}";
	j.priority = 7;
	j.max_attempts = 9;
	j.timeout_ms = 1234;
	j.tags = "[\"t\"]";
	j.meta = "{\"m\":2}";
	j.queue = "elsewhere";
	j.scheduled_at = T0 + 100 * SEC;
	bus_insert_status status;
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_REPLACED);
	bus_job *r = get(id);
	ck_assert_str_eq(r->payload, "{\"n\":2}");
	ck_assert_int_eq(r->priority, 7);
	ck_assert_int_eq(r->max_attempts, 9);
	ck_assert_int_eq(r->timeout_ms, 1234);
	ck_assert_str_eq(r->tags, "[]");
	ck_assert_str_eq(r->meta, "{}");
	ck_assert_str_eq(r->queue, "default");
	ck_assert_int_eq(r->scheduled_at, T0);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	bus_job_free(r);

	/* The others, with a second replace of the same job. */
	rep[BUS_JOB_AVAILABLE] = BUS_REPLACE_TAGS | BUS_REPLACE_META;
	j.payload = "{\"n\":3}";
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_REPLACED);
	r = get(id);
	ck_assert_str_eq(r->payload, "{\"n\":2}");
	ck_assert_str_eq(r->tags, "[\"t\"]");
	ck_assert_str_eq(r->meta, "{\"m\":2}");
	bus_job_free(r);
	ck_assert_int_eq(count_of("default", BUS_JOB_AVAILABLE), 1);
}
END_TEST

START_TEST(replace_rules_follow_the_existing_state)
{
	unsigned rep[BUS_JOB_STATE_COUNT] = { 0 };
	rep[BUS_JOB_AVAILABLE] = BUS_REPLACE_ALL;
	bus_store_new_job j = unique_job(KEY_A, rep);
	int64_t id = insert1(&j);
	ck_assert_int_eq(claim1(T0, "default"), id);
	bus_insert_status status;
	j.payload = "{\"n\":2}";
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_DUPLICATE);
	rep[BUS_JOB_EXECUTING] = BUS_REPLACE_PAYLOAD;
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_REPLACED);
	bus_job *r = get(id);
	ck_assert_str_eq(r->payload, "{\"n\":2}");
	ck_assert_int_eq(r->state, BUS_JOB_EXECUTING);
	bus_job_free(r);
	/* A completed job still holds the key (default states). */
	bus_store_finish f = outcome(id, 1, BUS_JOB_COMPLETED);
	ck_assert_int_eq(finish1(T0, &f), 1);
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_DUPLICATE);
	rep[BUS_JOB_COMPLETED] = BUS_REPLACE_META;
	j.meta = "{\"m\":3}";
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_REPLACED);
	r = get(id);
	ck_assert_str_eq(r->meta, "{\"m\":3}");
	ck_assert_int_eq(r->state, BUS_JOB_COMPLETED);
	ck_assert_int_eq(r->finished_at, T0);
	bus_job_free(r);
}
END_TEST

START_TEST(replacing_scheduled_at_moves_the_state)
{
	unsigned rep[BUS_JOB_STATE_COUNT] = { 0 };
	rep[BUS_JOB_AVAILABLE] = BUS_REPLACE_SCHEDULED_AT;
	rep[BUS_JOB_SCHEDULED] = BUS_REPLACE_SCHEDULED_AT;
	rep[BUS_JOB_RETRYABLE] = BUS_REPLACE_SCHEDULED_AT;
	bus_store_new_job j = unique_job(KEY_A, rep);
	int64_t id = insert1(&j);
	j.scheduled_at = T0 + 50 * SEC;
	bus_insert_status status;
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_REPLACED);
	ck_assert_int_eq(state_of(id), BUS_JOB_SCHEDULED);
	ck_assert_int_eq(count_of("default", BUS_JOB_SCHEDULED), 1);
	ck_assert_int_eq(count_of("default", BUS_JOB_AVAILABLE), 0);
	ck_assert_int_eq(claim1(T0 + SEC, "default"), 0);

	j.scheduled_at = T0 - SEC;
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(state_of(id), BUS_JOB_AVAILABLE);
	ck_assert_int_eq(count_of("default", BUS_JOB_AVAILABLE), 1);

	/* A retryable job keeps its state, with the new time. */
	ck_assert_int_eq(claim1(T0, "default"), id);
	bus_store_finish f = outcome(id, 1, BUS_JOB_RETRYABLE);
	f.delay_us = 10 * SEC;
	ck_assert_int_eq(finish1(T0, &f), 1);
	j.scheduled_at = T0 + 3 * SEC;
	ck_assert_int_eq(insert_at(&j, T0 + SEC, &status), id);
	bus_job *r = get(id);
	ck_assert_int_eq(r->state, BUS_JOB_RETRYABLE);
	ck_assert_int_eq(r->scheduled_at, T0 + 3 * SEC);
	bus_job_free(r);
	ck_assert_int_eq(claim1(T0 + 3 * SEC - 1, "default"), 0);
	ck_assert_int_eq(claim1(T0 + 3 * SEC, "default"), id);
}
END_TEST

START_TEST(replacing_the_queue_moves_the_job)
{
	unsigned rep[BUS_JOB_STATE_COUNT] = { 0 };
	rep[BUS_JOB_AVAILABLE] = BUS_REPLACE_QUEUE | BUS_REPLACE_PRIORITY;
	bus_store_new_job j = unique_job(KEY_A, rep);
	j.queue = "qa";
	int64_t id = insert1(&j);
	bus_store_new_job other = job_in("qb", 0, 0);
	int64_t b = insert1(&other);
	j.queue = "qb";
	j.priority = -1;
	bus_insert_status status;
	ck_assert_int_eq(insert_at(&j, T0, &status), id);
	ck_assert_int_eq(status, BUS_REPLACED);
	ck_assert_int_eq(count_of("qa", BUS_JOB_AVAILABLE), 0);
	ck_assert_int_eq(count_of("qb", BUS_JOB_AVAILABLE), 2);
	ck_assert_int_eq(claim1(T0, "qa"), 0);
	ck_assert_int_eq(claim1(T0, "qb"), id); /* its new priority first */
	ck_assert_int_eq(claim1(T0, "qb"), b);
	bus_job *r = get(id);
	ck_assert_str_eq(r->queue, "qb");
	bus_job_free(r);
}
END_TEST

START_TEST(a_key_is_released_when_its_job_leaves_its_states)
{
	bus_store_new_job j = unique_job(KEY_A, NULL);
	j.unique_states = BUS_STATES_UNFINISHED;
	int64_t id = insert1(&j);
	ck_assert_int_eq(claim1(T0, "default"), id);
	bus_store_finish f = outcome(id, 1, BUS_JOB_COMPLETED);
	ck_assert_int_eq(finish1(T0, &f), 1);
	bus_job *r = get(id);
	ck_assert_ptr_null(r->unique_key);
	bus_job_free(r);
	bus_insert_status status;
	int64_t id2 = insert_at(&j, T0, &status);
	ck_assert_int_eq(status, BUS_INSERTED);
	ck_assert_int_ne(id2, id);
	/* Retrying the old job does not bring its key back. */
	ck_assert_int_eq(ops->retry(st, T0, id), 0);
	r = get(id);
	ck_assert_ptr_null(r->unique_key);
	bus_job_free(r);
	ck_assert_int_eq(insert_at(&j, T0, &status), id2);
	ck_assert_int_eq(status, BUS_DUPLICATE);

	/* With the default states, discarded and cancelled release it. */
	j = unique_job(KEY_B, NULL);
	int64_t c = insert1(&j);
	ck_assert_int_eq(ops->cancel(st, T0, c), 0);
	int64_t c2 = insert_at(&j, T0, &status);
	ck_assert_int_eq(status, BUS_INSERTED);
	/* A deleted job releases it too. */
	ck_assert_int_eq(ops->remove(st, c2), 0);
	insert_at(&j, T0, &status);
	ck_assert_int_eq(status, BUS_INSERTED);
}
END_TEST

START_TEST(a_batch_is_atomic_and_sees_its_own_jobs)
{
	unsigned rep[BUS_JOB_STATE_COUNT] = { 0 };
	rep[BUS_JOB_AVAILABLE] = BUS_REPLACE_PAYLOAD;
	bus_store_new_job jobs[4] = {
		unique_job(KEY_A, NULL), unique_job(KEY_A, NULL),
		unique_job(KEY_A, rep), job_in("default", 0, 0)
	};
	jobs[1].payload = "{\"n\":2}";
	jobs[2].payload = "{\"n\":3}";
	bus_enqueue_result r[4];
	ck_assert_int_eq(ops->insert(st, T0, jobs, 4, r), 0);
	ck_assert_int_eq(r[0].id, 1);
	ck_assert_int_eq(r[0].status, BUS_INSERTED);
	ck_assert_int_eq(r[1].id, 1);
	ck_assert_int_eq(r[1].status, BUS_DUPLICATE);
	ck_assert_int_eq(r[2].id, 1);
	ck_assert_int_eq(r[2].status, BUS_REPLACED);
	ck_assert_id(r[3].id, 2, 1);
	ck_assert_int_eq(r[3].status, BUS_INSERTED);
	bus_job *row = get(1);
	ck_assert_str_eq(row->payload, "{\"n\":3}");
	bus_job_free(row);

	/* One bad job: none of the batch is stored, no id is spent. */
	jobs[0] = unique_job(KEY_B, NULL);
	jobs[3].kind = NULL;
	ck_assert_int_eq(ops->insert(st, T0, jobs, 4, r), BUS_EINVAL);
	ck_assert_int_eq(count_of("default", BUS_JOB_AVAILABLE), 2);
	jobs[3].kind = "kind";
	ck_assert_int_eq(ops->insert(st, T0, jobs, 4, r), 0);
	ck_assert_id(r[0].id, 3, 2);
	ck_assert_int_eq(r[0].status, BUS_INSERTED);
	ck_assert_int_eq(r[2].id, 1);
	ck_assert_id(r[3].id, 4, r[0].id);
}
END_TEST

/* ---- leases ---- */

START_TEST(extend_renews_only_held_leases)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t a = insert1(&j), b = insert1(&j), c = insert1(&j);
	size_t n;
	bus_job *rows = claim_n(T0, "q", 2, &n);
	bus_job_list_free(rows, n);
	int64_t ids[4] = { a, b, c, 999 };
	int attempts[4] = { 1, 2, 1, 1 };
	unsigned char held[4];
	ck_assert_int_eq(ops->extend(st, T0 + SEC, "node-a", LEASE, ids,
				     attempts, 4, held),
			 0);
	ck_assert_int_eq(held[0], 1);
	ck_assert_int_eq(held[1], 0); /* wrong attempt */
	ck_assert_int_eq(held[2], 0); /* not executing */
	ck_assert_int_eq(held[3], 0); /* no such job */
	ck_assert_int_eq(ops->extend(st, T0 + SEC, "node-b", LEASE, ids,
				     attempts, 1, held),
			 0);
	ck_assert_int_eq(held[0], 0);
	bus_job *r = get(a);
	ck_assert_int_eq(r->lease_until, T0 + SEC + LEASE);
	bus_job_free(r);
	r = get(b);
	ck_assert_int_eq(r->lease_until, T0 + LEASE);
	bus_job_free(r);

	/* Only b has run out at T0 + LEASE + 1. */
	rows = NULL;
	ck_assert_int_eq(ops->expired(st, T0 + LEASE + 1, 10, &rows, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(rows[0].id, b);
	bus_job_list_free(rows, n);
}
END_TEST

/* start (ABI 6): the guard of extend; the first start stands; the rows
 * report it; a claim clears it; and the rescue guard for a job that never
 * started refuses one that did, which the charged rescue then takes. */
START_TEST(start_is_recorded_under_the_guard_and_guards_the_refund)
{
	ck_assert_ptr_nonnull(ops->start);
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t a = insert1(&j), b = insert1(&j), c = insert1(&j);
	size_t n;
	bus_job *rows = claim_n(T0, "q", 2, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(rows[0].started_at, 0);
	ck_assert_int_eq(rows[1].started_at, 0);
	bus_job_list_free(rows, n);
	int64_t ids[4] = { a, b, c, 999 };
	int attempts[4] = { 1, 2, 1, 1 };
	unsigned char held[4];
	ck_assert_int_eq(ops->start(st, T0 + SEC, "node-a", ids, attempts, 4,
				    held),
			 0);
	ck_assert_int_eq(held[0], 1);
	ck_assert_int_eq(held[1], 0); /* wrong attempt */
	ck_assert_int_eq(held[2], 0); /* not executing */
	ck_assert_int_eq(held[3], 0); /* no such job */
	ck_assert_int_eq(ops->start(st, T0 + SEC, "node-b", ids, attempts, 1,
				    held),
			 0);
	ck_assert_int_eq(held[0], 0); /* another node's */
	/* A second start of the same attempt keeps the first time. */
	ck_assert_int_eq(ops->start(st, T0 + 2 * SEC, "node-a", ids, attempts,
				    1, held),
			 0);
	ck_assert_int_eq(held[0], 1);
	bus_job *r = get(a);
	ck_assert_int_eq(r->started_at, T0 + SEC);
	bus_job_free(r);
	r = get(b);
	ck_assert_int_eq(r->started_at, 0);
	bus_job_free(r);
	r = get(c);
	ck_assert_int_eq(r->started_at, 0);
	bus_job_free(r);

	/* expired reports it. */
	rows = NULL;
	ck_assert_int_eq(ops->expired(st, T0 + LEASE + 1, 10, &rows, &n), 0);
	ck_assert_uint_eq(n, 2);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(rows[i].started_at,
				 rows[i].id == a ? T0 + SEC : 0);
	bus_job_list_free(rows, n);

	/* The refund applies to b (never started), not to a (started); the
	 * charged rescue right after it applies to a only. */
	bus_store_finish f[4];
	for (int i = 0; i < 4; i++) {
		f[i] = outcome(i < 2 ? a : b, 1,
			       i % 2 ? BUS_JOB_RETRYABLE : BUS_JOB_AVAILABLE);
		f[i].only_if_expired = i % 2 ? BUS_FINISH_IF_EXPIRED
					     : BUS_FINISH_IF_EXPIRED_UNSTARTED;
		f[i].refund_attempt = i % 2 == 0;
		f[i].delay_us = i % 2 ? 5 * SEC : 0;
	}
	unsigned char applied[4];
	ck_assert_int_eq(ops->finish(st, T0 + LEASE + 1, f, 4, applied), 0);
	ck_assert_int_eq(applied[0], 0);
	ck_assert_int_eq(applied[1], 1);
	ck_assert_int_eq(applied[2], 1);
	ck_assert_int_eq(applied[3], 0);
	r = get(a);
	ck_assert_int_eq(r->state, BUS_JOB_RETRYABLE);
	ck_assert_int_eq(r->attempt, 1);
	bus_job_free(r);
	r = get(b);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->attempt, 0);
	ck_assert_int_eq(r->scheduled_at, T0 + LEASE + 1);
	bus_job_free(r);

	/* A new claim of a clears its start. */
	ck_assert_int_eq(claim1(T0 + LEASE + 10 * SEC, "q"), c);
	ck_assert_int_eq(claim1(T0 + LEASE + 10 * SEC, "q"), b);
	ck_assert_int_eq(claim1(T0 + LEASE + 10 * SEC, "q"), a);
	r = get(a);
	ck_assert_int_eq(r->attempt, 2);
	ck_assert_int_eq(r->started_at, 0);
	bus_job_free(r);
}
END_TEST

/* claim_start records the start of the jobs of the queues it is told to,
 * and only those, in the claim's own step. */
START_TEST(claim_start_starts_the_jobs_of_the_queues_it_is_told)
{
	ck_assert_ptr_nonnull(ops->claim_start);
	bus_store_new_job ja = job_in("qa", 0, 0), jb = job_in("qb", 0, 0);
	int64_t a1 = insert1(&ja), a2 = insert1(&ja), b1 = insert1(&jb);
	bus_store_claim c[2] = { { "qa", 2 }, { "qb", 1 } };
	unsigned char start[2] = { 1, 0 };
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_int_eq(ops->claim_start(st, T0 + SEC, "node-a", LEASE, c,
					  start, 2, &rows, &n),
			 0);
	ck_assert_uint_eq(n, 3);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(rows[i].started_at,
				 rows[i].id == b1 ? 0 : T0 + SEC);
	bus_job_list_free(rows, n);
	int64_t ids[3] = { a1, a2, b1 };
	for (int i = 0; i < 3; i++) {
		bus_job *r = get(ids[i]);
		ck_assert_int_eq(r->state, BUS_JOB_EXECUTING);
		ck_assert_int_eq(r->started_at, ids[i] == b1 ? 0 : T0 + SEC);
		bus_job_free(r);
	}
}
END_TEST

START_TEST(expired_lists_oldest_leases_first)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t id[5];
	for (int i = 0; i < 5; i++)
		id[i] = insert1(&j);
	/* Claim them at decreasing times: the last claimed expires first. */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(claim1(T0 + (10 - i) * SEC, "q"), id[i]);
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_int_eq(ops->expired(st, T0 + 10 * SEC + LEASE, 3, &rows, &n),
			 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(rows[0].id, id[4]);
	ck_assert_int_eq(rows[1].id, id[3]);
	ck_assert_int_eq(rows[2].id, id[2]);
	ck_assert_int_eq(rows[0].state, BUS_JOB_EXECUTING);
	ck_assert_int_eq(rows[0].lease_until, T0 + 6 * SEC + LEASE);
	bus_job_list_free(rows, n);
	/* Reading changes nothing; id[0]'s lease ends at exactly now. */
	ck_assert_int_eq(ops->expired(st, T0 + 10 * SEC + LEASE, 10, &rows, &n),
			 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(rows[3].id, id[1]);
	bus_job_list_free(rows, n);
	ck_assert_int_eq(ops->expired(st, T0, 10, &rows, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(rows);
}
END_TEST

/* ---- administration ---- */

START_TEST(cancel_follows_the_state_rules)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t a = insert1(&j), b = insert1(&j);
	ck_assert_int_eq(ops->cancel(st, T0 + 1, a), 0);
	bus_job *r = get(a);
	ck_assert_int_eq(r->state, BUS_JOB_CANCELLED);
	ck_assert_int_eq(r->finished_at, T0 + 1);
	bus_job_free(r);
	ck_assert_int_eq(ops->cancel(st, T0, a), BUS_ESTATE);
	ck_assert_last_error(BUS_ESTATE, "cancelled");
	ck_assert_int_eq(ops->cancel(st, T0, 77), BUS_ENOTFOUND);
	ck_assert_last_error(BUS_ENOTFOUND, "77");

	/* A running job only records a request: it stays executing with its
	 * lease, and so cannot be claimed again. */
	ck_assert_int_eq(claim1(T0, "q"), b);
	ck_assert_int_eq(ops->cancel(st, T0 + 2, b), 0);
	r = get(b);
	ck_assert_int_eq(r->state, BUS_JOB_EXECUTING);
	ck_assert_int_eq(r->cancel_requested_at, T0 + 2);
	ck_assert_int_eq(r->lease_until, T0 + LEASE);
	ck_assert_int_eq(r->finished_at, 0);
	bus_job_free(r);
	/* A second request keeps the first time. */
	ck_assert_int_eq(ops->cancel(st, T0 + 3, b), 0);
	r = get(b);
	ck_assert_int_eq(r->cancel_requested_at, T0 + 2);
	bus_job_free(r);
	ck_assert_int_eq(claim1(T0 + 4, "q"), 0);
	ck_assert_int_eq(ops->retry(st, T0 + 4, b), BUS_ESTATE);
	ck_assert_int_eq(ops->remove(st, b), BUS_ESTATE);
	/* The worker reads the request... */
	int64_t ids[2] = { b, a };
	int attempts[2] = { 1, 0 };
	unsigned char pending[2] = { 7, 7 };
	ck_assert_int_eq(ops->cancel_pending(st, "node-a", ids, attempts, 2,
					     pending),
			 0);
	ck_assert_int_eq(pending[0], 1);
	ck_assert_int_eq(pending[1], 0);
	/* ...which is not another node's, nor another attempt's. */
	ck_assert_int_eq(ops->cancel_pending(st, "node-b", ids, attempts, 1,
					     pending),
			 0);
	ck_assert_int_eq(pending[0], 0);
	attempts[0] = 2;
	ck_assert_int_eq(ops->cancel_pending(st, "node-a", ids, attempts, 1,
					     pending),
			 0);
	ck_assert_int_eq(pending[0], 0);
	/* The lease is still renewed. */
	unsigned char held = 0;
	int one = 1;
	ck_assert_int_eq(ops->extend(st, T0 + 5, "node-a", LEASE, &b, &one, 1,
				     &held),
			 0);
	ck_assert_int_eq(held, 1);
	/* Whatever it then records but a success, it ends cancelled. */
	bus_store_finish f = outcome(b, 1, BUS_JOB_RETRYABLE);
	f.delay_us = 10 * SEC;
	f.error = "stopped";
	ck_assert_int_eq(finish1(T0 + 6, &f), 1);
	r = get(b);
	ck_assert_int_eq(r->state, BUS_JOB_CANCELLED);
	ck_assert_int_eq(r->finished_at, T0 + 6);
	ck_assert_int_eq(r->cancel_requested_at, 0);
	ck_assert_int_eq(r->lease_until, 0);
	ck_assert_ptr_nonnull(strstr(r->errors, "stopped"));
	bus_job_free(r);
	bus_job *rows;
	size_t n;
	ck_assert_int_eq(ops->expired(st, T0 + 2 * LEASE, 10, &rows, &n), 0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

/* The finish rule of a cancel request, outcome by outcome, and for the
 * rescue of its expired lease. */
START_TEST(a_cancel_request_ends_every_outcome_but_success_cancelled)
{
	static const bus_job_state outcomes[] = {
		BUS_JOB_RETRYABLE, BUS_JOB_DISCARDED, BUS_JOB_SCHEDULED,
		BUS_JOB_AVAILABLE, BUS_JOB_CANCELLED, BUS_JOB_COMPLETED,
	};
	const size_t n_out = sizeof outcomes / sizeof *outcomes;
	bus_store_new_job j = job_in("q", 0, 0);
	j.unique_key = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	j.unique_states = BUS_STATES_UNFINISHED;
	for (size_t i = 0; i < n_out; i++) {
		int64_t id = insert1(&j);
		ck_assert_int_eq(claim1(T0, "q"), id);
		ck_assert_int_eq(ops->cancel(st, T0 + 1, id), 0);
		bus_job *r = get(id);
		ck_assert_ptr_nonnull(r->unique_key);
		bus_job_free(r);
		bus_store_finish f = outcome(id, 1, outcomes[i]);
		f.refund_attempt = outcomes[i] == BUS_JOB_AVAILABLE;
		ck_assert_int_eq(finish1(T0 + 2, &f), 1);
		r = get(id);
		bus_job_state want = outcomes[i] == BUS_JOB_COMPLETED
					     ? BUS_JOB_COMPLETED
					     : BUS_JOB_CANCELLED;
		ck_assert_msg(r->state == want, "outcome %s gave %s",
			      bus_job_state_name(outcomes[i]),
			      bus_job_state_name(r->state));
		ck_assert_int_eq(r->finished_at, T0 + 2);
		ck_assert_int_eq(r->cancel_requested_at, 0);
		/* cancelled and completed are outside the key's states */
		ck_assert_ptr_null(r->unique_key);
		bus_job_free(r);
	}
	/* The rescue of an expired lease with a request: cancelled. */
	int64_t id = insert1(&j);
	ck_assert_int_eq(claim1(T0, "q"), id);
	ck_assert_int_eq(ops->cancel(st, T0 + 1, id), 0);
	bus_store_finish f = outcome(id, 1, BUS_JOB_RETRYABLE);
	f.only_if_expired = 1;
	f.delay_us = 5 * SEC;
	ck_assert_int_eq(finish1(T0 + LEASE + 1, &f), 1);
	ck_assert_int_eq(state_of(id), BUS_JOB_CANCELLED);
}
END_TEST

/* The rows come back queue by queue in the order asked, each queue in
 * (priority, scheduled_at, id) order: the worker runs them so. */
START_TEST(claim_returns_rows_in_claim_order)
{
	int64_t q1[3], q2[3];
	for (int i = 0; i < 3; i++) {
		bus_store_new_job j = job_in("q1", 2 - i, 0);
		q1[2 - i] = insert1(&j);
		j = job_in("q2", 0, T0 - (3 - i) * SEC);
		q2[i] = insert1(&j);
	}
	bus_store_claim c[2] = { { "q2", 10 }, { "q1", 10 } };
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_int_eq(ops->claim(st, T0, "node-a", LEASE, c, 2, &rows, &n),
			 0);
	ck_assert_uint_eq(n, 6);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(rows[i].id, q2[i]);
		ck_assert_int_eq(rows[3 + i].id, q1[i]);
	}
	bus_job_list_free(rows, n);
}
END_TEST

START_TEST(retry_keeps_the_place_of_a_due_job)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t a = insert1(&j);
	j = job_in("q", 0, T0 + 5 * SEC);
	int64_t later = insert1(&j);
	j = job_in("q", 0, T0 + SEC);
	int64_t due = insert1(&j);
	ck_assert_int_eq(ops->retry(st, T0 + 2 * SEC, a), 0);
	ck_assert_int_eq(ops->retry(st, T0 + 2 * SEC, later), 0);
	ck_assert_int_eq(ops->retry(st, T0 + 2 * SEC, due), 0);
	bus_job *r = get(a);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->scheduled_at, T0);
	bus_job_free(r);
	r = get(due); /* scheduled, but due: it keeps its time */
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->scheduled_at, T0 + SEC);
	bus_job_free(r);
	r = get(later);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->scheduled_at, T0 + 2 * SEC);
	bus_job_free(r);
	size_t n = 0;
	bus_job *rows = claim_n(T0 + 2 * SEC, "q", 3, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(rows[0].id, a);
	ck_assert_int_eq(rows[1].id, due);
	ck_assert_int_eq(rows[2].id, later);
	bus_job_list_free(rows, n);
}
END_TEST

/* More items than one statement takes (256 on MySQL), guards holding and
 * failing in a pattern: outcomes of the worker (no lease condition) mixed
 * with rescues (only_if_expired), of jobs whose leases have and have not
 * run out. */
START_TEST(a_large_mixed_finish_batch_applies_exactly_the_held_guards)
{
	enum { N = 300 };
	bus_store_new_job j = job_in("q", 0, 0);
	bus_store_new_job *jobs = calloc(N, sizeof *jobs);
	bus_enqueue_result *res = calloc(N, sizeof *res);
	for (size_t i = 0; i < N; i++)
		jobs[i] = j;
	ck_assert_int_eq(ops->insert(st, T0 - 3 * LEASE, jobs, N, res), 0);
	/* The first half's leases run out before T0; the second's do not. */
	size_t n = 0;
	bus_job *rows = claim_n(T0 - 2 * LEASE, "q", N / 2, &n);
	ck_assert_uint_eq(n, N / 2);
	bus_job_list_free(rows, n);
	rows = claim_n(T0, "q", N, &n);
	ck_assert_uint_eq(n, N / 2);
	bus_job_list_free(rows, n);
	bus_store_finish *f = calloc(N, sizeof *f);
	unsigned char *applied = malloc(N);
	int *want = calloc(N, sizeof *want);
	for (size_t i = 0; i < N; i++) {
		int expired = i < N / 2;
		f[i] = outcome(res[i].id, 1, BUS_JOB_COMPLETED);
		want[i] = 1;
		if (i % 3 == 1) {
			f[i].node = "node-b"; /* not ours */
			want[i] = 0;
		} else if (i % 5 == 2) {
			f[i].attempt = 2; /* another attempt */
			want[i] = 0;
		} else if (i % 4 == 3) {
			/* a rescue: applies only where the lease ran out */
			f[i].only_if_expired = 1;
			f[i].state = BUS_JOB_RETRYABLE;
			f[i].delay_us = SEC;
			f[i].error = "lease expired";
			want[i] = expired;
		} else if (i % 2) {
			f[i].state = BUS_JOB_RETRYABLE;
			f[i].delay_us = SEC;
			f[i].error = "retry me";
		}
	}
	memset(applied, 9, N);
	ck_assert_int_eq(ops->finish(st, T0 + 1, f, N, applied), 0);
	size_t held = 0, rescued = 0;
	for (size_t i = 0; i < N; i++) {
		ck_assert_msg(applied[i] == want[i], "item %zu: applied %d",
			      i, applied[i]);
		bus_job_state s = state_of(res[i].id);
		ck_assert_msg(s == (want[i] ? f[i].state : BUS_JOB_EXECUTING),
			      "item %zu is %s", i, bus_job_state_name(s));
		held += want[i];
		rescued += want[i] && f[i].only_if_expired;
	}
	/* The pattern has all four kinds. */
	ck_assert_uint_gt(held, 0);
	ck_assert_uint_lt(held, N);
	ck_assert_uint_gt(rescued, 0);
	/* A second pass: every guard now fails. */
	ck_assert_int_eq(ops->finish(st, T0 + 2, f, N, applied), 0);
	for (size_t i = 0; i < N; i++)
		ck_assert_int_eq(applied[i], 0);
	free(jobs);
	free(res);
	free(f);
	free(applied);
	free(want);
}
END_TEST

START_TEST(retry_makes_a_job_available_with_an_attempt_left)
{
	bus_store_new_job j = job_in("q", 0, 0);
	j.max_attempts = 1;
	int64_t id = insert1(&j);
	ck_assert_int_eq(claim1(T0, "q"), id);
	ck_assert_int_eq(ops->retry(st, T0, id), BUS_ESTATE);
	ck_assert_last_error(BUS_ESTATE, "executing");
	bus_store_finish f = outcome(id, 1, BUS_JOB_DISCARDED);
	ck_assert_int_eq(finish1(T0 + 1, &f), 1);
	ck_assert_int_eq(ops->retry(st, T0 + 5, id), 0);
	bus_job *r = get(id);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->scheduled_at, T0 + 5);
	ck_assert_int_eq(r->finished_at, 0);
	ck_assert_int_eq(r->max_attempts, 2);
	ck_assert_int_eq(r->attempt, 1);
	bus_job_free(r);
	ck_assert_int_eq(claim1(T0 + 5, "q"), id);
	ck_assert_int_eq(ops->retry(st, T0, 4242), BUS_ENOTFOUND);

	/* A scheduled job runs now; its max_attempts is not spent. */
	j = job_in("q", 0, T0 + 100 * SEC);
	int64_t s2 = insert1(&j);
	ck_assert_int_eq(ops->retry(st, T0 + 6, s2), 0);
	r = get(s2);
	ck_assert_int_eq(r->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(r->max_attempts, 3);
	bus_job_free(r);
	ck_assert_int_eq(claim1(T0 + 6, "q"), s2);
}
END_TEST

START_TEST(remove_deletes_jobs_that_are_not_running)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t a = insert1(&j), b = insert1(&j);
	ck_assert_int_eq(claim1(T0, "q"), a);
	ck_assert_int_eq(ops->remove(st, a), BUS_ESTATE);
	ck_assert_int_eq(ops->remove(st, b), 0);
	bus_job *r = NULL;
	ck_assert_int_eq(ops->get(st, b, &r), BUS_ENOTFOUND);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(ops->remove(st, b), BUS_ENOTFOUND);
	ck_assert_int_eq(claim1(T0, "q"), 0);
	ck_assert_int_eq(count_of("q", BUS_JOB_AVAILABLE), 0);
	ck_assert_int_eq(count_of("q", BUS_JOB_EXECUTING), 1);
}
END_TEST

START_TEST(list_filters_and_pages_in_id_order)
{
	for (int i = 0; i < 150; i++) {
		bus_store_new_job j = job_in(i % 2 ? "odd" : "even", 0, 0);
		j.kind = i % 3 ? "k" : "three";
		ck_assert_int_eq(insert1(&j), i + 1);
	}
	ck_assert_int_eq(ops->cancel(st, T0, 5), 0);
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_int_eq(ops->list(st, NULL, &rows, &n), 0);
	ck_assert_uint_eq(n, 100); /* the default limit */
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(rows[i].id, (int64_t)i + 1);
	bus_job_list_free(rows, n);

	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.queue = "odd"; /* ids 2, 4, ... */
	f.kind = "three"; /* i % 3 == 0: ids 1, 4, 7, ...: so 4, 10, 16 */
	f.limit = 3;
	ck_assert_int_eq(ops->list(st, &f, &rows, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(rows[0].id, 4);
	ck_assert_int_eq(rows[1].id, 10);
	ck_assert_int_eq(rows[2].id, 16);
	f.after_id = rows[2].id;
	bus_job_list_free(rows, n);
	ck_assert_int_eq(ops->list(st, &f, &rows, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(rows[0].id, 22);
	bus_job_list_free(rows, n);

	bus_job_filter g = BUS_JOB_FILTER_INIT;
	g.states = BUS_STATE_BIT(BUS_JOB_CANCELLED);
	ck_assert_int_eq(ops->list(st, &g, &rows, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(rows[0].id, 5);
	bus_job_list_free(rows, n);

	/* Paging after a deleted id, near either end. */
	ck_assert_int_eq(ops->remove(st, 5), 0);
	ck_assert_int_eq(ops->remove(st, 140), 0);
	g.states = 0;
	g.limit = 1;
	g.after_id = 5;
	ck_assert_int_eq(ops->list(st, &g, &rows, &n), 0);
	ck_assert_int_eq(rows[0].id, 6);
	bus_job_list_free(rows, n);
	g.after_id = 140;
	ck_assert_int_eq(ops->list(st, &g, &rows, &n), 0);
	ck_assert_int_eq(rows[0].id, 141);
	bus_job_list_free(rows, n);
	g.after_id = 150;
	ck_assert_int_eq(ops->list(st, &g, &rows, &n), 0);
	ck_assert_uint_eq(n, 0);
	g.after_id = 0;
	g.queue = "none";
	ck_assert_int_eq(ops->list(st, &g, &rows, &n), 0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(counts_are_per_queue_and_state)
{
	bus_job_count *c = NULL;
	size_t n = 9;
	ck_assert_int_eq(ops->counts(st, &c, &n), 0);
	ck_assert_uint_eq(n, 0);
	free(c);
	bus_store_new_job j = job_in("a", 0, 0);
	insert1(&j);
	insert1(&j);
	int64_t x = insert1(&j);
	j = job_in("b", 0, T0 + SEC);
	insert1(&j);
	ck_assert_int_eq(ops->cancel(st, T0, x), 0);
	ck_assert_int_eq(ops->set_paused(st, "empty", 1), 0);
	ck_assert_int_eq(ops->counts(st, &c, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(c[0].queue, "a");
	ck_assert_int_eq(c[0].state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(c[0].count, 2);
	ck_assert_str_eq(c[1].queue, "a");
	ck_assert_int_eq(c[1].state, BUS_JOB_CANCELLED);
	ck_assert_int_eq(c[1].count, 1);
	ck_assert_str_eq(c[2].queue, "b");
	ck_assert_int_eq(c[2].state, BUS_JOB_SCHEDULED);
	ck_assert_int_eq(c[2].count, 1);
	free(c);
}
END_TEST

START_TEST(prune_deletes_old_finished_jobs_up_to_the_limit)
{
	bus_store_new_job j = job_in("q", 0, 0);
	int64_t id[6];
	for (int i = 0; i < 6; i++)
		id[i] = insert1(&j);
	/* Finished at T0 + 5, +4, ..., +1 (out of order); id[5] pending. */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(ops->cancel(st, T0 + 5 - i, id[i]), 0);
	int64_t deleted = -1;
	/* Older than now - age = T0 + 4: finished at T0 + 1..3. */
	ck_assert_int_eq(ops->prune(st, T0 + 14, 10, 2, &deleted), 0);
	ck_assert_int_eq(deleted, 2);
	bus_job *r;
	ck_assert_int_eq(ops->get(st, id[4], &r), BUS_ENOTFOUND);
	ck_assert_int_eq(ops->get(st, id[3], &r), BUS_ENOTFOUND);
	ck_assert_int_eq(ops->prune(st, T0 + 14, 10, 10, &deleted), 0);
	ck_assert_int_eq(deleted, 1);
	ck_assert_int_eq(ops->get(st, id[2], &r), BUS_ENOTFOUND);
	ck_assert_int_eq(state_of(id[1]), BUS_JOB_CANCELLED);
	ck_assert_int_eq(ops->prune(st, T0 + 1000, 0, 100, NULL), 0);
	ck_assert_int_eq(state_of(id[5]), BUS_JOB_AVAILABLE);
	ck_assert_int_eq(count_of("q", BUS_JOB_CANCELLED), 0);
}
END_TEST

/* Many deletions out of the hash tables (ids, unique keys): every entry
 * left is still found, and every entry removed is gone. */
START_TEST(indexes_stay_consistent_through_many_removals)
{
	enum { N = 3000 };
	static char keys[N + 1][65];
	static int fate[N + 1]; /* 0 kept, 1 removed, 2 cancelled */
	unsigned seed = 777;
	for (int i = 1; i <= N; i++) {
		snprintf(keys[i], sizeof keys[i], "%064x", i * 2654435761u);
		bus_store_new_job j = unique_job(keys[i], NULL);
		ck_assert_int_eq(insert1(&j), i);
	}
	for (int i = 1; i <= N; i++) {
		seed = seed * 1103515245u + 12345u;
		fate[i] = (int)((seed >> 16) % 3);
		if (fate[i] == 1)
			ck_assert_int_eq(ops->remove(st, i), 0);
		else if (fate[i] == 2)
			ck_assert_int_eq(ops->cancel(st, T0, i), 0);
	}
	for (int i = 1; i <= N; i++) {
		bus_job *r = NULL;
		int rc = ops->get(st, i, &r);
		ck_assert_int_eq(rc, fate[i] == 1 ? BUS_ENOTFOUND : 0);
		bus_job_free(r);
		bus_store_new_job j = unique_job(keys[i], NULL);
		bus_insert_status status;
		int64_t id = insert_at(&j, T0, &status);
		if (fate[i] == 0) {
			ck_assert_int_eq(status, BUS_DUPLICATE);
			ck_assert_int_eq(id, i);
		} else {
			ck_assert_int_eq(status, BUS_INSERTED);
			ck_assert_int_gt(id, N);
		}
	}
}
END_TEST

/* ---- concurrency ---- */

#define UNIQUE_THREADS 4

struct unique_producer {
	pthread_t thread;
	int failures;
	int64_t first_id;
	int mismatched;
};

/* A store handle for one thread: a connection of its own where the store
 * has them, else the case's `st`. */
static bus_store *thread_store(void)
{
	return fx->connect ? fx->connect() : st;
}

static void thread_store_done(bus_store *s)
{
	if (s != st)
		ops->close(s);
}

static void *insert_same_key(void *arg)
{
	struct unique_producer *p = arg;
	bus_store *s = thread_store();
	bus_store_new_job j = unique_job(KEY_A, NULL);
	for (int i = 0; i < fx->unique_per_thread; i++) {
		bus_enqueue_result r;
		if (ops->insert(s, T0, &j, 1, &r) != 0) {
			p->failures++;
			continue;
		}
		if (p->first_id == 0)
			p->first_id = r.id;
		p->mismatched += r.id != p->first_id;
	}
	thread_store_done(s);
	return NULL;
}

START_TEST(concurrent_inserts_of_one_key_make_one_job)
{
	struct unique_producer p[UNIQUE_THREADS];
	memset(p, 0, sizeof p);
	for (int i = 0; i < UNIQUE_THREADS; i++)
		ck_assert_int_eq(pthread_create(&p[i].thread, NULL,
						insert_same_key, &p[i]),
				 0);
	for (int i = 0; i < UNIQUE_THREADS; i++)
		ck_assert_int_eq(pthread_join(p[i].thread, NULL), 0);
	for (int i = 0; i < UNIQUE_THREADS; i++) {
		ck_assert_int_eq(p[i].failures, 0);
		ck_assert_int_eq(p[i].mismatched, 0);
		ck_assert_int_eq(p[i].first_id, p[0].first_id);
	}
	ck_assert_int_eq(count_of("default", BUS_JOB_AVAILABLE), 1);
}
END_TEST

#define CLAIM_JOBS 10000

struct claimer {
	pthread_t thread;
	const char *node;
	atomic_int *seen;
	int failures;
	long claimed;
};

static void *claim_all(void *arg)
{
	struct claimer *c = arg;
	bus_store_claim q = { "work", 7 };
	bus_store *s = thread_store();
	for (;;) {
		bus_job *rows = NULL;
		size_t n = 0;
		if (ops->claim(s, T0, c->node, LEASE, &q, 1, &rows, &n) != 0) {
			c->failures++;
			break;
		}
		if (n == 0)
			break;
		bus_store_finish f[7];
		unsigned char applied[7];
		for (size_t i = 0; i < n; i++) {
			atomic_fetch_add(&c->seen[rows[i].id], 1);
			f[i] = outcome(rows[i].id, rows[i].attempt,
				       BUS_JOB_COMPLETED);
			f[i].node = c->node;
		}
		if (ops->finish(s, T0, f, n, applied) != 0)
			c->failures++;
		for (size_t i = 0; i < n; i++)
			c->failures += applied[i] != 1;
		c->claimed += (long)n;
		bus_job_list_free(rows, n);
	}
	thread_store_done(s);
	return NULL;
}

START_TEST(concurrent_claims_never_share_a_job)
{
	enum { BATCH = 1000 };
	static bus_store_new_job jobs[BATCH];
	static bus_enqueue_result res[BATCH];
	for (int i = 0; i < BATCH; i++)
		jobs[i] = job_in("work", i % 5, 0);
	for (int b = 0; b < CLAIM_JOBS / BATCH; b++)
		ck_assert_int_eq(ops->insert(st, T0, jobs, BATCH, res), 0);
	atomic_int *seen = calloc(CLAIM_JOBS + 1, sizeof *seen);
	ck_assert_ptr_nonnull(seen);
	struct claimer c[2] = { { .node = "n1", .seen = seen },
				{ .node = "n2", .seen = seen } };
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&c[i].thread, NULL, claim_all,
						&c[i]),
				 0);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(c[i].thread, NULL), 0);
	ck_assert_int_eq(c[0].failures + c[1].failures, 0);
	ck_assert_int_eq(c[0].claimed + c[1].claimed, CLAIM_JOBS);
	for (int id = 1; id <= CLAIM_JOBS; id++)
		ck_assert_msg(atomic_load(&seen[id]) == 1,
			      "job %d claimed %d times", id,
			      atomic_load(&seen[id]));
	free(seen);
	ck_assert_int_eq(count_of("work", BUS_JOB_COMPLETED), CLAIM_JOBS);
}
END_TEST

void store_cases_add(TCase *tc, const struct store_fixture *f)
{
	fx = f;
	ops = f->ops;
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, insert_stores_defaults_and_states);
	tcase_add_test(tc, now_zero_is_the_wall_clock);
	tcase_add_test(tc, insert_rejects_missing_fields_and_inserts_nothing);
	tcase_add_test(tc, claim_orders_by_priority_then_scheduled_at_then_id);
	tcase_add_test(tc, claim_order_holds_after_random_removals);
	tcase_add_test(tc, single_claims_follow_claim_order_in_a_batch);
	tcase_add_test(tc, scheduled_jobs_wait_for_their_time);
	tcase_add_test(tc, a_claim_with_an_earlier_now_takes_nothing_early);
	tcase_add_test(tc, available_jobs_are_claimable_whatever_their_time);
	tcase_add_test(tc, claim_takes_limits_per_queue_and_skips_unknown_ones);
	tcase_add_test(tc, paused_queues_are_not_claimed);
	tcase_add_test(tc, finish_applies_only_under_the_guard);
	tcase_add_test(tc, finish_sets_times_and_refunds);
	tcase_add_test(tc,
		       start_is_recorded_under_the_guard_and_guards_the_refund);
	tcase_add_test(tc, claim_start_starts_the_jobs_of_the_queues_it_is_told);
	tcase_add_test(tc, finish_appends_errors_as_valid_json);
	tcase_add_test(tc, unique_conflict_without_replace_is_a_duplicate);
	tcase_add_test(tc, replace_overwrites_only_the_allowed_fields);
	tcase_add_test(tc, replace_rules_follow_the_existing_state);
	tcase_add_test(tc, replacing_scheduled_at_moves_the_state);
	tcase_add_test(tc, replacing_the_queue_moves_the_job);
	tcase_add_test(tc, a_key_is_released_when_its_job_leaves_its_states);
	tcase_add_test(tc, a_batch_is_atomic_and_sees_its_own_jobs);
	tcase_add_test(tc, extend_renews_only_held_leases);
	tcase_add_test(tc, expired_lists_oldest_leases_first);
	tcase_add_test(tc, cancel_follows_the_state_rules);
	tcase_add_test(tc,
		       a_cancel_request_ends_every_outcome_but_success_cancelled);
	tcase_add_test(tc, retry_keeps_the_place_of_a_due_job);
	tcase_add_test(tc, claim_returns_rows_in_claim_order);
	tcase_add_test(tc,
		       a_large_mixed_finish_batch_applies_exactly_the_held_guards);
	tcase_add_test(tc, retry_makes_a_job_available_with_an_attempt_left);
	tcase_add_test(tc, remove_deletes_jobs_that_are_not_running);
	tcase_add_test(tc, list_filters_and_pages_in_id_order);
	tcase_add_test(tc, counts_are_per_queue_and_state);
	tcase_add_test(tc, prune_deletes_old_finished_jobs_up_to_the_limit);
	tcase_add_test(tc, indexes_stay_consistent_through_many_removals);
	tcase_add_test(tc, concurrent_inserts_of_one_key_make_one_job);
	tcase_add_test(tc, concurrent_claims_never_share_a_job);
}
