/* Pruning: finished jobs older than the age go; recent finished jobs and
 * unfinished jobs of any age stay. */
#include "contract.h"

struct outcome {
	atomic_int fail;
};

static int run_or_fail(bus_ctx *ctx, void *udata)
{
	struct outcome *o = udata;
	if (atomic_load(&o->fail))
		return bus_ctx_fail(ctx, "failing on purpose");
	return 0;
}

static void assert_gone(bus *b, int64_t id)
{
	bus_job *j = NULL;
	ck_assert_msg(bus_job_get(&j, b, id) == BUS_ENOTFOUND,
		      "job %lld should have been pruned", (long long)id);
}

START_TEST(prune_deletes_only_finished_jobs_older_than_the_age)
{
	bus *b;
	struct test_clock clock;
	struct outcome o = { 0 };
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "prune.job", run_or_fail, &o, NULL, "prune.q");
	bus_job_opts idle = BUS_JOB_OPTS_INIT;
	idle.queue = "prune.idle"; /* no worker serves it */

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "prune.q" });
	int64_t old = enqueue_ok(b, "prune.job", "{}", NULL, BUS_INSERTED);
	bus_job_free(wait_job(b, old, BUS_JOB_COMPLETED, 1));
	int64_t waiting = enqueue_ok(b, "prune.job", "{}", &idle,
				     BUS_INSERTED);

	/* A worker reads the clock before each claim: one running across the
	 * jump could claim the next job with the old time, and its lease would
	 * be two hours stale. Stop it, jump, start another. */
	bus_worker_free(w);
	clock_advance(&clock, 2 * HOUR_US);
	w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "prune.q" });
	int64_t recent = enqueue_ok(b, "prune.job", "{}", NULL, BUS_INSERTED);
	bus_job_free(wait_job(b, recent, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	/* Half an hour old: finished, but not long enough ago. */
	clock_advance(&clock, 30 * MIN_US);

	int64_t deleted = -1;
	ck_assert_int_eq(bus_job_prune(&deleted, b, 3600), 0);
	ck_assert_int_eq(deleted, 1);
	assert_gone(b, old);
	bus_job_free(get_job(b, recent));
	bus_job *j = get_job(b, waiting);
	ck_assert_str_eq(bus_job_state_name(j->state), "available");
	bus_job_free(j);

	/* With age 0 the recent one goes too; the unfinished one, inserted
	 * two hours ago, still stays. */
	clock_advance(&clock, 1);
	ck_assert_int_eq(bus_job_prune(&deleted, b, 0), 0);
	ck_assert_int_eq(deleted, 1);
	assert_gone(b, recent);
	bus_job_free(get_job(b, waiting));
	bus_close(b);
}
END_TEST

START_TEST(prune_deletes_old_cancelled_and_discarded_jobs)
{
	bus *b;
	struct test_clock clock;
	struct outcome o = { 1 };
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 1;
	contract_handle(b, "prune.fail", run_or_fail, &o, &ho, "prune.f");

	bus_job_opts idle = BUS_JOB_OPTS_INIT;
	idle.queue = "prune.idle";
	int64_t cancelled = enqueue_ok(b, "prune.fail", "{}", &idle,
				       BUS_INSERTED);
	ck_assert_int_eq(bus_job_cancel(b, cancelled), 0);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "prune.f" });
	int64_t discarded = enqueue_ok(b, "prune.fail", "{}", NULL,
				       BUS_INSERTED);
	bus_job_free(wait_job(b, discarded, BUS_JOB_DISCARDED, 1));
	bus_worker_free(w);

	int64_t deleted = -1;
	ck_assert_int_eq(bus_job_prune(&deleted, b, 3600), 0);
	ck_assert_int_eq(deleted, 0);
	clock_advance(&clock, 2 * HOUR_US);
	ck_assert_int_eq(bus_job_prune(&deleted, b, 3600), 0);
	ck_assert_int_eq(deleted, 2);
	assert_gone(b, cancelled);
	assert_gone(b, discarded);
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);
	bus_close(b);
}
END_TEST

TCase *contract_prune(void)
{
	TCase *tc = contract_tcase("prune");
	tcase_add_test(tc, prune_deletes_only_finished_jobs_older_than_the_age);
	tcase_add_test(tc, prune_deletes_old_cancelled_and_discarded_jobs);
	return tc;
}
