/* A paused queue is not claimed from, other queues are; resuming it lets its
 * jobs run. The queue name is in fixture.c's list of paused queues. */
#include "contract.h"

static int count_run(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

START_TEST(paused_queue_is_not_claimed_until_resumed)
{
	bus *b;
	atomic_int paused_runs = 0, other_runs = 0;
	contract_open(&b);
	contract_handle(b, "pause.job", count_run, &paused_runs, NULL,
			"pause.q");
	contract_handle(b, "pause.other", count_run, &other_runs, NULL,
			"pause.other");
	ck_assert_int_eq(bus_queue_pause(b, "pause.q"), 0);
	int64_t id = enqueue_ok(b, "pause.job", "{}", NULL, BUS_INSERTED);
	int64_t other = enqueue_ok(b, "pause.other", "{}", NULL, BUS_INSERTED);

	const bus_worker_queue queues[] = { { "pause.q", 1 },
					    { "pause.other", 1 } };
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queues = queues,
						   .n_queues = 2 });
	/* The other queue is served meanwhile. */
	bus_job_free(wait_job(b, other, BUS_JOB_COMPLETED, 1));
	sleep_ms(CONTRACT_SETTLE_MS);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "available");
	ck_assert_int_eq(j->attempt, 0);
	bus_job_free(j);
	ck_assert_int_eq(atomic_load(&paused_runs), 0);

	ck_assert_int_eq(bus_queue_resume(b, "pause.q"), 0);
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&paused_runs), 1);
	ck_assert_int_eq(atomic_load(&other_runs), 1);
	bus_close(b);
}
END_TEST

TCase *contract_pause(void)
{
	TCase *tc = contract_tcase("pause");
	tcase_add_test(tc, paused_queue_is_not_claimed_until_resumed);
	return tc;
}
