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

/* A long handler that honours bus_ctx_expired, with a safety cap. */
struct long_run {
	atomic_int started;
	atomic_int returned;
	atomic_int saw_expired;
};

static int run_until_expired(bus_ctx *ctx, void *udata)
{
	struct long_run *r = udata;
	atomic_store(&r->started, 1);
	for (int i = 0; i < CONTRACT_LIVENESS_MS / 2 && !bus_ctx_expired(ctx);
	     i++)
		sleep_ms(2);
	atomic_store(&r->saw_expired, bus_ctx_expired(ctx));
	atomic_store(&r->returned, 1);
	/* Success: were this outcome recorded, the job would be completed. */
	return 0;
}

START_TEST(cancel_of_running_job_stops_it_and_refuses_its_outcome)
{
	bus *b;
	struct long_run r = { 0, 0, 0 };
	contract_open(&b);
	contract_handle(b, "cancel.running", run_until_expired, &r, NULL,
			"cancel.r");
	int64_t id = enqueue_ok(b, "cancel.running", "{}", NULL, BUS_INSERTED);
	/* Leases of 300 ms are renewed every 100 ms: that is when the worker
	 * learns of the cancel. */
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "cancel.r",
						   .lease_ms = 300 });
	wait_atomic(&r.started, 1, "the handler to start");
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	bus_job_free(j);

	ck_assert_int_eq(bus_job_cancel(b, id), 0);
	j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "cancelled");
	bus_job_free(j);

	wait_atomic(&r.returned, 1, "the handler to see bus_ctx_expired");
	ck_assert_msg(atomic_load(&r.saw_expired),
		      "bus_ctx_expired never turned true for the handler of a "
		      "cancelled job");
	wait_idle(w);
	ck_assert_int_eq(bus_worker_stop(w, 1000), 0);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.completed, 0);
	bus_worker_free(w);

	j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "cancelled");
	ck_assert_int_ne(j->finished_at, 0);
	bus_job_free(j);
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
	return tc;
}
