/* Scheduled jobs wait for their time, by the bus's clock, and then run. */
#include "contract.h"

static int count_run(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

START_TEST(scheduled_job_is_not_claimed_before_its_time)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "sched.later", count_run, &runs, NULL, "sched.q");

	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.run_in_ms = 60000;
	int64_t id = enqueue_ok(b, "sched.later", "{}", &o, BUS_INSERTED);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "scheduled");
	ck_assert_int_eq(j->scheduled_at, CONTRACT_T0_US + 60 * SEC_US);
	ck_assert_int_eq(j->inserted_at, CONTRACT_T0_US);
	bus_job_free(j);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "sched.q" });
	sleep_ms(CONTRACT_SETTLE_MS);
	j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "scheduled");
	ck_assert_int_eq(j->attempt, 0);
	bus_job_free(j);
	ck_assert_int_eq(atomic_load(&runs), 0);

	/* One second short of due is still not due. */
	clock_advance(&clock, 59 * SEC_US);
	sleep_ms(CONTRACT_SETTLE_MS);
	ck_assert_int_eq(atomic_load(&runs), 0);

	clock_advance(&clock, 2 * SEC_US);
	j = wait_job(b, id, BUS_JOB_COMPLETED, 1);
	ck_assert_int_eq(j->finished_at, clock_now(&clock));
	bus_job_free(j);
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), 1);
	bus_close(b);
}
END_TEST

START_TEST(job_with_absolute_run_at_runs_once_due)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "sched.at", count_run, &runs, NULL, "sched.at");

	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.run_at = CONTRACT_T0_US + 30 * SEC_US;
	int64_t soon = enqueue_ok(b, "sched.at", "{}", &o, BUS_INSERTED);
	o.run_at = CONTRACT_T0_US + HOUR_US;
	int64_t later = enqueue_ok(b, "sched.at", "{}", &o, BUS_INSERTED);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "sched.at" });
	clock_advance(&clock, 31 * SEC_US);
	bus_job_free(wait_job(b, soon, BUS_JOB_COMPLETED, 1));
	sleep_ms(CONTRACT_SETTLE_MS);
	bus_job *j = get_job(b, later);
	ck_assert_str_eq(bus_job_state_name(j->state), "scheduled");
	ck_assert_int_eq(j->scheduled_at, CONTRACT_T0_US + HOUR_US);
	bus_job_free(j);
	ck_assert_int_eq(atomic_load(&runs), 1);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

TCase *contract_schedule(void)
{
	TCase *tc = contract_tcase("schedule");
	tcase_add_test(tc, scheduled_job_is_not_claimed_before_its_time);
	tcase_add_test(tc, job_with_absolute_run_at_runs_once_due);
	return tc;
}
