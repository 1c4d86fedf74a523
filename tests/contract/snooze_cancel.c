/* A handler may snooze its job (no attempt spent) or cancel it; a job may be
 * cancelled by hand before or while it runs. */
#include <cjson/cJSON.h>
#include <string.h>

#include "contract.h"

static int snooze_first(bus_ctx *ctx, void *udata)
{
	if (atomic_fetch_add((atomic_int *)udata, 1) == 0)
		return bus_ctx_snooze(ctx, 30);
	return 0;
}

START_TEST(snooze_reschedules_without_spending_an_attempt)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "snooze.job", snooze_first, &runs, NULL, "snooze.q");
	int64_t id = enqueue_ok(b, "snooze.job", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "snooze.q" });

	bus_job *j = wait_job(b, id, BUS_JOB_SCHEDULED, 0);
	ck_assert_int_eq(atomic_load(&runs), 1);
	ck_assert_int_eq(j->scheduled_at, clock_now(&clock) + 30 * SEC_US);
	ck_assert_int_eq(j->finished_at, 0);
	assert_errors(j, 0, "");
	bus_job_free(j);

	sleep_ms(CONTRACT_SETTLE_MS);
	ck_assert_int_eq(atomic_load(&runs), 1);

	clock_advance(&clock, 31 * SEC_US);
	j = wait_job(b, id, BUS_JOB_COMPLETED, 1);
	assert_errors(j, 0, "");
	bus_job_free(j);
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), 2);
	bus_close(b);
}
END_TEST

static int cancel_self(bus_ctx *ctx, void *udata)
{
	atomic_fetch_add((atomic_int *)udata, 1);
	return bus_ctx_cancel(ctx, "customer %d is gone", 42);
}

START_TEST(cancel_from_handler_finishes_job_without_retry)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "cancel.self", cancel_self, &runs, NULL, "cancel.s");
	int64_t id = enqueue_ok(b, "cancel.self", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "cancel.s" });

	bus_job *j = wait_job(b, id, BUS_JOB_CANCELLED, 1);
	ck_assert_int_eq(j->finished_at, clock_now(&clock));
	assert_errors(j, 1, "customer 42 is gone");
	bus_job_free(j);

	/* Not retried, however long we wait. */
	clock_advance(&clock, 2 * HOUR_US);
	sleep_ms(CONTRACT_SETTLE_MS);
	j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "cancelled");
	ck_assert_int_eq(j->attempt, 1);
	bus_job_free(j);
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), 1);
	bus_close(b);
}
END_TEST

static int count_run(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

START_TEST(cancelled_queued_job_never_runs)
{
	bus *b;
	atomic_int runs = 0;
	contract_open(&b);
	contract_handle(b, "cancel.queued", count_run, &runs, NULL,
			"cancel.q");
	int64_t id = enqueue_ok(b, "cancel.queued", "{}", NULL, BUS_INSERTED);
	ck_assert_int_eq(bus_job_cancel(b, id), 0);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "cancelled");
	ck_assert_int_ne(j->finished_at, 0);
	bus_job_free(j);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "cancel.q" });
	sleep_ms(CONTRACT_SETTLE_MS);
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), 0);
	j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "cancelled");
	ck_assert_int_eq(j->attempt, 0);
	bus_job_free(j);

	/* A finished job cannot be cancelled; an unknown one is not found. */
	ck_assert_int_eq(bus_job_cancel(b, id), BUS_ESTATE);
	ck_assert_int_eq(bus_job_cancel(b, id + 1000000), BUS_ENOTFOUND);
	bus_close(b);
}
END_TEST

/* A long handler that honours bus_ctx_expired (with a safety cap), then
 * cleans up until the test lets it return: the window in which a second
 * run, or a run of a unique twin, must not start. */
struct long_run {
	atomic_int started;
	atomic_int running;     /* runs in progress now */
	atomic_int max_running; /* the most at once */
	atomic_int returned;
	atomic_int saw_expired;
	atomic_int may_return;
};

static int run_until_expired(bus_ctx *ctx, void *udata)
{
	struct long_run *r = udata;
	atomic_fetch_add(&r->started, 1);
	int now = atomic_fetch_add(&r->running, 1) + 1;
	int max = atomic_load(&r->max_running);
	while (now > max &&
	       !atomic_compare_exchange_weak(&r->max_running, &max, now))
		;
	for (int i = 0; i < CONTRACT_LIVENESS_MS / 2 && !bus_ctx_expired(ctx);
	     i++)
		sleep_ms(2);
	atomic_store(&r->saw_expired, bus_ctx_expired(ctx));
	for (int i = 0; i < CONTRACT_LIVENESS_MS && !atomic_load(&r->may_return);
	     i++)
		sleep_ms(1); /* cleaning up */
	atomic_fetch_sub(&r->running, 1);
	atomic_fetch_add(&r->returned, 1);
	/* Success: were this outcome recorded, the job would be completed. */
	return 0;
}

/* The bus of the test below, for its wait condition. */
static bus *cancel_test_bus;

static int job_cancelled(void *arg)
{
	bus_job *j = NULL;
	int64_t *idp = arg;
	if (bus_job_get(&j, cancel_test_bus, *idp) != 0)
		return 0;
	int done = j->state == BUS_JOB_CANCELLED;
	bus_job_free(j);
	return done;
}

START_TEST(cancel_of_running_job_stops_it_and_refuses_its_outcome)
{
	bus *b;
	struct long_run r = { 0, 0, 0, 0, 0, 0 };
	contract_open(&b);
	cancel_test_bus = b;
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.unique = &u;
	contract_handle(b, "cancel.running", run_until_expired, &r, &ho,
			"cancel.r");
	int64_t id = enqueue_ok(b, "cancel.running", "{\"n\":1}", NULL,
				BUS_INSERTED);
	/* Two workers that would run a second copy at once if they could.
	 * Leases of 60 s are renewed every 20 s (the liveness bound): the
	 * workers must learn of the cancel sooner than that. */
	bus_worker *w1 = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "cancel.r",
						   .node = "w1",
						   .concurrency = 2,
						   .lease_ms = 60000 });
	bus_worker *w2 = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "cancel.r",
						   .node = "w2",
						   .concurrency = 2,
						   .lease_ms = 60000 });
	wait_atomic(&r.started, 1, "the handler to start");
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	bus_job_free(j);

	/* The cancel is recorded as a request: still executing, still
	 * holding its unique key (the handler cannot return yet). */
	ck_assert_int_eq(bus_job_cancel(b, id), 0);
	j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	ck_assert_int_ne(j->cancel_requested_at, 0);
	ck_assert_ptr_nonnull(j->unique_key);
	ck_assert_int_eq(j->finished_at, 0);
	bus_job_free(j);

	/* Its worker stops the handler long before the next renewal. */
	wait_atomic(&r.saw_expired, 1, "the handler to see bus_ctx_expired");

	/* While the handler cleans up: a second cancel is fine; retry,
	 * delete and prune refuse or skip it; its unique twin is a duplicate
	 * of it; no worker starts it again. */
	ck_assert_int_eq(bus_job_cancel(b, id), 0);
	ck_assert_int_eq(bus_job_retry(b, id), BUS_ESTATE);
	ck_assert_int_eq(bus_job_delete(b, id), BUS_ESTATE);
	int64_t pruned = -1;
	ck_assert_int_eq(bus_job_prune(&pruned, b, 0), 0);
	bus_enqueue_result res;
	ck_assert_int_eq(bus_enqueue(&res, b, "cancel.running", "{\"n\":1}",
				     NULL),
			 0);
	ck_assert_int_eq(res.status, BUS_DUPLICATE);
	ck_assert_int_eq(res.id, id);
	sleep_ms(CONTRACT_SETTLE_MS);
	j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	ck_assert_int_eq(j->attempt, 1);
	bus_job_free(j);
	ck_assert_int_eq(atomic_load(&r.started), 1);

	atomic_store(&r.may_return, 1);
	wait_atomic(&r.returned, 1, "the handler to return");
	wait_for(job_cancelled, &id, "the job to become cancelled");
	j = get_job(b, id);
	ck_assert_int_ne(j->finished_at, 0);
	ck_assert_int_eq(j->cancel_requested_at, 0);
	ck_assert_int_eq(j->attempt, 1);
	bus_job_free(j);

	/* No second run of it, or of its twin, ever started. */
	sleep_ms(CONTRACT_SETTLE_MS);
	ck_assert_int_eq(atomic_load(&r.started), 1);
	ck_assert_int_eq(atomic_load(&r.max_running), 1);
	ck_assert_int_eq(count_jobs(b, 0, "cancel.r", NULL), 1);
	ck_assert_int_eq(bus_worker_stop(w1, 1000), 0);
	ck_assert_int_eq(bus_worker_stop(w2, 1000), 0);
	bus_worker_stats s1, s2;
	bus_worker_get_stats(&s1, w1);
	bus_worker_get_stats(&s2, w2);
	ck_assert_int_eq(s1.completed + s2.completed, 0);
	ck_assert_int_eq(s1.cancelled + s2.cancelled, 1);
	bus_worker_free(w1);
	bus_worker_free(w2);
	ck_assert_int_eq(atomic_load(&r.started), 1);
	bus_close(b);
}
END_TEST

static int counted_cancel(void *arg)
{
	bus_worker_stats st;
	bus_worker_get_stats(&st, arg);
	return st.cancelled >= 1;
}

/* Runs in a child process and would outlive the test by far. */
static int sleep_for_ever(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	sleep_ms(600000);
	return 0;
}

/* Under process isolation the worker kills the child of a cancelled job:
 * the handler never returns by itself, so the job can only end cancelled
 * (within the liveness bound) if its child was stopped. */
START_TEST(cancel_of_running_job_kills_its_child_process)
{
	bus *b;
	contract_open(&b);
	contract_handle(b, "cancel.child", sleep_for_ever, NULL, NULL,
			"cancel.c");
	int64_t id = enqueue_ok(b, "cancel.child", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "cancel.c",
						   .process = 1,
						   .lease_ms = 60000 });
	bus_job_free(wait_job(b, id, BUS_JOB_EXECUTING, 1));
	ck_assert_int_eq(bus_job_cancel(b, id), 0);
	bus_job *j = wait_job(b, id, BUS_JOB_CANCELLED, 1);
	assert_errors(j, 1, "cancelled");
	bus_job_free(j);
	/* The worker counts it once its store call returns, which may come
	 * after the change is visible. */
	wait_for(counted_cancel, w, "the worker to count the cancel");
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.cancelled, 1);
	ck_assert_int_eq(st.completed, 0);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

TCase *contract_snooze_cancel(void)
{
	TCase *tc = contract_tcase("snooze_cancel");
	tcase_add_test(tc, snooze_reschedules_without_spending_an_attempt);
	tcase_add_test(tc, cancel_from_handler_finishes_job_without_retry);
	tcase_add_test(tc, cancelled_queued_job_never_runs);
	tcase_add_test(tc,
		       cancel_of_running_job_stops_it_and_refuses_its_outcome);
	tcase_add_test(tc, cancel_of_running_job_kills_its_child_process);
	return tc;
}
