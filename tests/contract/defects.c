/*
 * Outcomes and rescues that used to block a worker, and options that used
 * to overflow (issues 10 and 11):
 *  - an outcome with an absurd delay (a backoff returning INT64_MAX, a
 *    snooze of 2^62 s) is bounded by the core and never blocks the outcomes
 *    of the other jobs;
 *  - an expired job whose handler's backoff is absurd is rescued like the
 *    others, and more than one rescue batch (100) of expired leases is
 *    rescued at once;
 *  - a rescued job runs again after the worker's rescue_delay_ms;
 *  - bus_job_retry of a job already due keeps its place in line;
 *  - every duration option is bounded, with BUS_EINVAL naming it.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "contract.h"

#define DELAY_MAX_US (BUS_DELAY_MAX_S * SEC_US)

static int64_t absurd_backoff(int attempt, void *udata)
{
	(void)attempt;
	(void)udata;
	return INT64_MAX;
}

static int fail_always(bus_ctx *ctx, void *udata)
{
	atomic_fetch_add((atomic_int *)udata, 1);
	return bus_ctx_fail(ctx, "no luck");
}

static int succeed(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

static int snooze_forever(bus_ctx *ctx, void *udata)
{
	atomic_fetch_add((atomic_int *)udata, 1);
	return bus_ctx_snooze(ctx, INT64_C(1) << 62);
}

START_TEST(poisoned_outcome_does_not_block_the_others)
{
	bus *b;
	struct test_clock clock;
	atomic_int bad = 0, good = 0, snoozy = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.backoff = absurd_backoff;
	ho.max_attempts = 5;
	contract_handle(b, "poison.outcome", fail_always, &bad, &ho, "poison.q");
	contract_handle(b, "poison.snooze", snooze_forever, &snoozy, NULL,
			"poison.q");
	contract_handle(b, "poison.good", succeed, &good, NULL, "poison.q");
	int64_t bad_id = enqueue_ok(b, "poison.outcome", "{}", NULL,
				    BUS_INSERTED);
	int64_t snooze_id = enqueue_ok(b, "poison.snooze", "{}", NULL,
				       BUS_INSERTED);
	int64_t ids[20];
	for (int i = 0; i < 20; i++)
		ids[i] = enqueue_ok(b, "poison.good", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "poison.q",
						   .concurrency = 4 });
	for (int i = 0; i < 20; i++)
		bus_job_free(wait_job(b, ids[i], BUS_JOB_COMPLETED, 1));

	/* The absurd backoff is clamped to BUS_DELAY_MAX_S. */
	bus_job *j = wait_job(b, bad_id, BUS_JOB_RETRYABLE, 1);
	ck_assert_int_eq(j->scheduled_at, clock_now(&clock) + DELAY_MAX_US);
	assert_errors(j, 1, "no luck");
	bus_job_free(j);
	/* A snooze beyond it fails the attempt with a clear error. */
	j = wait_job(b, snooze_id, BUS_JOB_RETRYABLE, 1);
	assert_errors(j, 1, "bus_ctx_snooze");
	assert_errors(j, 1, "BUS_DELAY_MAX_S");
	bus_job_free(j);

	/* And the worker goes on recording outcomes. */
	int64_t late = enqueue_ok(b, "poison.good", "{}", NULL, BUS_INSERTED);
	bus_job_free(wait_job(b, late, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

static int fail_with_bad_text(bus_ctx *ctx, void *udata)
{
	(void)udata;
	const bus_job *job = bus_ctx_job(ctx);
	if (job->attempt == 1)
		return bus_ctx_fail(ctx, "bad \xff\xfe bytes");
	/* Attempt 2: a message far past the limit. */
	static char big[40000];
	memset(big, 'x', sizeof big - 1);
	return bus_ctx_fail(ctx, "%s", big);
}

/* A handler's message may hold anything: it is recorded as valid UTF-8
 * of at most 16 KiB, on every store (MariaDB would refuse the bytes). */
START_TEST(error_texts_are_recorded_as_bounded_utf8)
{
	bus *b;
	struct test_clock clock;
	atomic_int good = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 2;
	contract_handle(b, "poison.text", fail_with_bad_text, NULL, &ho,
			"poison.t");
	contract_handle(b, "poison.tgood", succeed, &good, NULL, "poison.t");
	int64_t id = enqueue_ok(b, "poison.text", "{}", NULL, BUS_INSERTED);
	int64_t other = enqueue_ok(b, "poison.tgood", "{}", NULL,
				   BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "poison.t" });
	bus_job *j = wait_job(b, id, BUS_JOB_RETRYABLE, 1);
	assert_errors(j, 1, "bad \xef\xbf\xbd\xef\xbf\xbd bytes");
	clock_advance(&clock, j->scheduled_at - clock_now(&clock));
	bus_job_free(j);
	j = wait_job(b, id, BUS_JOB_DISCARDED, 2);
	struct cJSON *errors = job_errors(j);
	const char *text = job_error_text(errors, 1);
	ck_assert_uint_eq(strlen(text), 16384 + 3);
	ck_assert_str_eq(text + 16384, "...");
	cJSON_Delete(errors);
	bus_job_free(j);
	bus_job_free(wait_job(b, other, BUS_JOB_COMPLETED, 1));
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.refused, 0);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

/* Handlers that hold their jobs until released (or a safety cap). */
struct hold {
	atomic_int started;
	atomic_int release;
};

static int hold_until_released(bus_ctx *ctx, void *udata)
{
	struct hold *h = udata;
	(void)ctx;
	atomic_fetch_add(&h->started, 1);
	for (int i = 0; i < CONTRACT_LIVENESS_MS && !atomic_load(&h->release);
	     i++)
		sleep_ms(1);
	return 0;
}

/* `n` jobs of `kind` held by worker "dead" (60 s leases), the clock moved
 * past their leases; then a rescuing worker "b" starts. */
struct strand {
	bus *b;
	struct test_clock clock;
	struct hold h;
	bus_worker *dead, *rescuer;
};

/* The "dead" worker reads no cancel request (cancel_check_ms a day). */
static void strand_dead(struct strand *s, const int64_t *ids, size_t n,
			int64_t rescue_delay_ms)
{
	s->dead = contract_start_worker(
		s->b, &(struct contract_worker_opts){
			      .queue = "strand.q", .node = "dead",
			      .concurrency = (int)n, .lease_ms = 60000,
			      .rescue_interval_ms = 600000,
			      .rescue_delay_ms = rescue_delay_ms,
			      .cancel_check_ms = BUS_WORKER_INTERVAL_MAX_MS });
	for (size_t i = 0; i < n; i++)
		bus_job_free(wait_job(s->b, ids[i], BUS_JOB_EXECUTING, 1));
	/* Running, not only claimed: a rescue refunds the attempt of a job
	 * whose handler had not started. */
	wait_atomic(&s->h.started, (int)n, "every handler to start on 'dead'");
}

static void strand(struct strand *s, const int64_t *ids, size_t n,
		   int64_t rescue_delay_ms)
{
	if (s->dead == NULL)
		strand_dead(s, ids, n, rescue_delay_ms);
	clock_advance(&s->clock, 120 * SEC_US);
	s->rescuer = contract_start_worker(
		s->b, &(struct contract_worker_opts){
			      .queue = "strand.other", .node = "b",
			      .rescue_delay_ms = rescue_delay_ms });
}

static void strand_end(struct strand *s)
{
	atomic_store(&s->h.release, 1);
	bus_worker_free(s->rescuer);
	bus_worker_free(s->dead);
	bus_close(s->b);
}

/* An expired job whose handler's backoff is absurd (INT64_MAX) is rescued
 * like the others, after rescue_delay_ms: a rescue does not use the
 * backoff. (A rescue the store refuses is check_faults'
 * a_refused_rescue_does_not_stop_the_others: the public API cannot make
 * a store refuse one.) */
START_TEST(expired_job_with_an_absurd_backoff_is_rescued_like_the_others)
{
	struct strand s;
	memset(&s, 0, sizeof s);
	contract_open(&s.b);
	contract_clock_install(s.b, &s.clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.backoff = absurd_backoff;
	contract_handle(s.b, "strand.poison", hold_until_released, &s.h, &ho,
			"strand.q");
	contract_handle(s.b, "strand.plain", hold_until_released, &s.h, NULL,
			"strand.q");
	/* The poisoned job is the oldest lease: first in every rescue. */
	int64_t ids[6];
	bus_job_opts first = BUS_JOB_OPTS_INIT;
	first.priority = -1;
	ids[0] = enqueue_ok(s.b, "strand.poison", "{}", &first, BUS_INSERTED);
	for (int i = 1; i < 6; i++)
		ids[i] = enqueue_ok(s.b, "strand.plain", "{}", NULL,
				    BUS_INSERTED);
	strand(&s, ids, 6, 0);
	for (int i = 0; i < 6; i++) {
		bus_job *j = wait_job(s.b, ids[i], BUS_JOB_RETRYABLE, 1);
		assert_errors(j, 1, "lease expired");
		ck_assert_int_eq(j->scheduled_at,
				 clock_now(&s.clock) + 5 * SEC_US);
		bus_job_free(j);
	}
	strand_end(&s);
}
END_TEST

START_TEST(more_than_a_rescue_batch_of_expired_leases_is_rescued)
{
	enum { N = 150 };
	struct strand s;
	memset(&s, 0, sizeof s);
	contract_open(&s.b);
	contract_clock_install(s.b, &s.clock);
	contract_handle(s.b, "strand.many", hold_until_released, &s.h, NULL,
			"strand.q");
	bus_enqueue_item items[N];
	bus_enqueue_result res[N];
	for (int i = 0; i < N; i++)
		items[i] = (bus_enqueue_item){ "strand.many", NULL, "{}", NULL };
	ck_assert_int_eq(bus_enqueue_many(res, s.b, items, N), 0);
	int64_t ids[N];
	for (int i = 0; i < N; i++)
		ids[i] = res[i].id;
	strand(&s, ids, N, 250);
	for (int i = 0; i < N; i++) {
		bus_job *j = wait_job(s.b, ids[i], BUS_JOB_RETRYABLE, 1);
		/* rescue_delay_ms 250 */
		ck_assert_int_eq(j->scheduled_at,
				 clock_now(&s.clock) + 250000);
		bus_job_free(j);
	}
	ck_assert_int_eq(count_jobs(s.b, BUS_STATE_BIT(BUS_JOB_RETRYABLE),
				    "strand.q", NULL),
			 N);
	strand_end(&s);
}
END_TEST

/* A cancel request on a job whose worker is gone (here: never reads it)
 * is honoured by the rescue of its lease: cancelled, not retried. */
START_TEST(cancel_request_of_a_dead_workers_job_ends_at_its_rescue)
{
	struct strand s;
	memset(&s, 0, sizeof s);
	contract_open(&s.b);
	contract_clock_install(s.b, &s.clock);
	contract_handle(s.b, "strand.cancel", hold_until_released, &s.h, NULL,
			"strand.q");
	int64_t ids[2];
	for (int i = 0; i < 2; i++)
		ids[i] = enqueue_ok(s.b, "strand.cancel", "{}", NULL,
				    BUS_INSERTED);
	strand_dead(&s, ids, 2, 0);
	ck_assert_int_eq(bus_job_cancel(s.b, ids[0]), 0);
	bus_job *j = get_job(s.b, ids[0]);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	bus_job_free(j);
	strand(&s, ids, 2, 0);
	j = wait_job(s.b, ids[0], BUS_JOB_CANCELLED, 1);
	assert_errors(j, 1, "lease expired");
	ck_assert_int_eq(j->cancel_requested_at, 0);
	bus_job_free(j);
	/* The other one, not cancelled, is retried. */
	bus_job_free(wait_job(s.b, ids[1], BUS_JOB_RETRYABLE, 1));
	strand_end(&s);
}
END_TEST

struct order {
	atomic_int n;
	int64_t ids[8];
};

static int record_order(bus_ctx *ctx, void *udata)
{
	struct order *o = udata;
	int k = atomic_fetch_add(&o->n, 1);
	if (k < 8)
		o->ids[k] = bus_ctx_job(ctx)->id;
	return 0;
}

START_TEST(retry_keeps_a_due_jobs_place_in_line)
{
	bus *b;
	struct test_clock clock;
	struct order o;
	memset(&o, 0, sizeof o);
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "retry.place", record_order, &o, NULL, "retry.pl");
	int64_t a = enqueue_ok(b, "retry.place", "{}", NULL, BUS_INSERTED);
	clock_advance(&clock, SEC_US);
	int64_t c = enqueue_ok(b, "retry.place", "{}", NULL, BUS_INSERTED);
	bus_job_opts later = BUS_JOB_OPTS_INIT;
	later.run_in_ms = 60000;
	int64_t sched = enqueue_ok(b, "retry.place", "{}", &later,
				   BUS_INSERTED);
	clock_advance(&clock, SEC_US);

	/* a is available and due: its scheduled_at, so its place, stays. */
	ck_assert_int_eq(bus_job_retry(b, a), 0);
	bus_job *j = get_job(b, a);
	ck_assert_int_eq(j->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(j->scheduled_at, CONTRACT_T0_US);
	bus_job_free(j);
	/* A job scheduled for later runs now. */
	ck_assert_int_eq(bus_job_retry(b, sched), 0);
	j = get_job(b, sched);
	ck_assert_int_eq(j->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(j->scheduled_at, clock_now(&clock));
	bus_job_free(j);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "retry.pl",
						   .prefetch = -1 });
	bus_job_free(wait_job(b, sched, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&o.n), 3);
	ck_assert_int_eq(o.ids[0], a);
	ck_assert_int_eq(o.ids[1], c);
	ck_assert_int_eq(o.ids[2], sched);

	/* A finished job retried runs from now, behind the due ones. */
	ck_assert_int_eq(bus_job_retry(b, a), 0);
	j = get_job(b, a);
	ck_assert_int_eq(j->scheduled_at, clock_now(&clock));
	bus_job_free(j);

	/* A scheduled job whose time has come is due too: it keeps its
	 * scheduled_at. */
	later.run_in_ms = 1000;
	int64_t due = enqueue_ok(b, "retry.place", "{}", &later, BUS_INSERTED);
	int64_t due_at = clock_now(&clock) + SEC_US;
	clock_advance(&clock, 2 * SEC_US);
	ck_assert_int_eq(bus_job_retry(b, due), 0);
	j = get_job(b, due);
	ck_assert_int_eq(j->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(j->scheduled_at, due_at);
	bus_job_free(j);
	bus_close(b);
}
END_TEST

static void assert_einval_naming(int rc, const char *name)
{
	ck_assert_int_eq(rc, BUS_EINVAL);
	ck_assert_msg(strstr(bus_error_last()->message, name) != NULL,
		      "the error does not name %s: %s", name,
		      bus_error_last()->message);
}

START_TEST(duration_options_are_bounded)
{
	bus *b;
	atomic_int runs = 0;
	contract_open(&b);
	contract_handle(b, "bounds.job", succeed, &runs, NULL, "bounds.q");
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.run_in_ms = BUS_DELAY_MAX_S * 1000 + 1;
	assert_einval_naming(bus_enqueue(NULL, b, "bounds.job", "{}", &o),
			     "run_in_ms");
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.run_in_ms = INT64_MAX;
	assert_einval_naming(bus_enqueue(NULL, b, "bounds.job", "{}", &o),
			     "run_in_ms");
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.run_at = BUS_TIME_MAX_US + 1;
	assert_einval_naming(bus_enqueue(NULL, b, "bounds.job", "{}", &o),
			     "run_at");
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.timeout_ms = INT64_MAX / 2;
	assert_einval_naming(bus_enqueue(NULL, b, "bounds.job", "{}", &o),
			     "timeout_ms");
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.period_s = INT64_MAX / 1000;
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.unique = &u;
	assert_einval_naming(bus_enqueue(NULL, b, "bounds.job", "{}", &o),
			     "period_s");
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	ho.timeout_ms = INT64_MAX;
	assert_einval_naming(bus_handle_command(b, "bounds.other", succeed,
						&runs, &ho),
			     "timeout_ms");

	/* The largest values are accepted and stored as given. */
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.run_in_ms = BUS_DELAY_MAX_S * 1000;
	o.timeout_ms = BUS_DELAY_MAX_S * 1000;
	bus_enqueue_result r;
	ck_assert_int_eq(bus_enqueue(&r, b, "bounds.job", "{}", &o), 0);
	bus_job *j = get_job(b, r.id);
	ck_assert_int_eq(j->state, BUS_JOB_SCHEDULED);
	ck_assert_int_eq(j->timeout_ms, BUS_DELAY_MAX_S * 1000);
	ck_assert_int_ge(j->scheduled_at - j->inserted_at,
			 BUS_DELAY_MAX_S * SEC_US);
	bus_job_free(j);

	static const char *const intervals[] = {
		"poll_interval_ms", "lease_ms",		"rescue_interval_ms",
		"completer_flush_ms", "shutdown_grace_ms", "rescue_delay_ms",
		"cancel_check_ms",
	};
	for (size_t i = 0; i < sizeof intervals / sizeof *intervals; i++) {
		for (int sign = 0; sign < 2; sign++) {
			bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
			int64_t v = sign ? -1 : BUS_WORKER_INTERVAL_MAX_MS + 1;
			switch (i) {
			case 0: wo.poll_interval_ms = v; break;
			case 1: wo.lease_ms = v; break;
			case 2: wo.rescue_interval_ms = v; break;
			case 3: wo.completer_flush_ms = v; break;
			case 4: wo.shutdown_grace_ms = v; break;
			case 5: wo.rescue_delay_ms = v; break;
			default: wo.cancel_check_ms = v; break;
			}
			bus_worker *w = NULL;
			assert_einval_naming(bus_worker_new(&w, b, &wo),
					     intervals[i]);
			ck_assert_ptr_null(w);
		}
	}
	assert_einval_naming(bus_job_prune(NULL, b, INT64_MAX), "age_s");
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.retention_s = BUS_DELAY_MAX_S + 1;
	bus_worker *w = NULL;
	assert_einval_naming(bus_worker_new(&w, b, &wo), "retention_s");
	wo = (bus_worker_opts)BUS_WORKER_OPTS_INIT;
	ck_assert_int_eq(bus_worker_new(&w, b, &wo), 0);
	assert_einval_naming(bus_worker_stop(w, INT64_MAX), "grace");
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

TCase *contract_defects(void)
{
	TCase *tc = contract_tcase("defects");
	tcase_add_test(tc, poisoned_outcome_does_not_block_the_others);
	tcase_add_test(tc, error_texts_are_recorded_as_bounded_utf8);
	tcase_add_test(
		tc, expired_job_with_an_absurd_backoff_is_rescued_like_the_others);
	tcase_add_test(tc,
		       more_than_a_rescue_batch_of_expired_leases_is_rescued);
	tcase_add_test(tc,
		       cancel_request_of_a_dead_workers_job_ends_at_its_rescue);
	tcase_add_test(tc, retry_keeps_a_due_jobs_place_in_line);
	tcase_add_test(tc, duration_options_are_bounded);
	return tc;
}
