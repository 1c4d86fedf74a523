/* A paused queue is not claimed from, other queues are; resuming it lets its
 * jobs run. The queue name is in fixture.c's list of paused queues. */
#include <string.h>

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

/* The queue of `name` in a bus_queue_list, or NULL. */
static const bus_queue_info *find_queue(const bus_queue_info *q, size_t n,
					const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(q[i].name, name) == 0)
			return &q[i];
	return NULL;
}

START_TEST(queue_list_tells_counts_and_paused_flags)
{
	bus *b;
	contract_open(&b);
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = "pause.list";
	enqueue_ok(b, "pause.listed", "{}", &o, BUS_INSERTED);
	int64_t id = enqueue_ok(b, "pause.listed", "{}", &o, BUS_INSERTED);
	ck_assert_int_eq(bus_job_cancel(b, id), 0);
	/* A paused queue with no job is listed too. */
	ck_assert_int_eq(bus_queue_pause(b, "pause.empty"), 0);
	ck_assert_int_eq(bus_queue_pause(b, "pause.list"), 0);

	bus_queue_info *q;
	size_t n;
	ck_assert_int_eq(bus_queue_list(&q, &n, b), 0);
	for (size_t i = 1; i < n; i++)
		ck_assert_int_lt(strcmp(q[i - 1].name, q[i].name), 0);
	const bus_queue_info *list = find_queue(q, n, "pause.list");
	const bus_queue_info *empty = find_queue(q, n, "pause.empty");
	ck_assert_ptr_nonnull(list);
	ck_assert_ptr_nonnull(empty);
	ck_assert_int_eq(list->paused, 1);
	ck_assert_int_eq(list->counts[BUS_JOB_AVAILABLE], 1);
	ck_assert_int_eq(list->counts[BUS_JOB_CANCELLED], 1);
	ck_assert_int_eq(list->counts[BUS_JOB_COMPLETED], 0);
	ck_assert_int_eq(empty->paused, 1);
	for (int s = 0; s < BUS_JOB_STATE_COUNT; s++)
		ck_assert_int_eq(empty->counts[s], 0);
	bus_free(q);

	ck_assert_int_eq(bus_queue_resume(b, "pause.list"), 0);
	ck_assert_int_eq(bus_queue_list(&q, &n, b), 0);
	list = find_queue(q, n, "pause.list");
	ck_assert_ptr_nonnull(list);
	ck_assert_int_eq(list->paused, 0);
	ck_assert_int_eq(list->counts[BUS_JOB_AVAILABLE], 1);
	bus_free(q);
	bus_close(b);
}
END_TEST

/* bus_handle_any_job runs the jobs whose handler this worker lacks; a
 * registered handler still runs its own. */
static int any_job_run(bus_ctx *ctx, void *udata)
{
	const bus_job *job = bus_ctx_job(ctx);
	ck_assert_ptr_nonnull(job);
	if (strcmp(job->kind, "pause.any.fail") == 0)
		return bus_ctx_fail(ctx, "any-job handler failed %s",
				    job->kind);
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

START_TEST(any_job_handler_runs_unregistered_kinds)
{
	bus *b;
	atomic_int any_runs = 0, own_runs = 0;
	contract_open(&b);
	contract_handle(b, "pause.any.own", count_run, &own_runs, NULL,
			"default");
	ck_assert_int_eq(bus_handle_any_job(b, any_job_run, &any_runs, NULL),
			 0);
	ck_assert_int_eq(bus_handle_any_job(b, any_job_run, &any_runs, NULL),
			 BUS_EEXISTS);
	bus_handler_opts bad = BUS_HANDLER_OPTS_INIT;
	bad.queue = "x";
	ck_assert_int_eq(bus_handle_any_job(b, any_job_run, NULL, &bad),
			 BUS_EINVAL);
	int64_t a = enqueue_ok(b, "pause.any.a", "{\"n\":1}", NULL,
			       BUS_INSERTED);
	int64_t own = enqueue_ok(b, "pause.any.own", "{}", NULL, BUS_INSERTED);
	bus_job_opts once = BUS_JOB_OPTS_INIT;
	once.max_attempts = 1;
	int64_t f = enqueue_ok(b, "pause.any.fail", "{}", &once, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "default" });
	bus_job_free(wait_job(b, a, BUS_JOB_COMPLETED, 1));
	bus_job_free(wait_job(b, own, BUS_JOB_COMPLETED, 1));
	bus_job *j = wait_job(b, f, BUS_JOB_DISCARDED, 1);
	ck_assert_ptr_nonnull(strstr(j->errors, "any-job handler failed "
						"pause.any.fail"));
	bus_job_free(j);
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&any_runs), 1);
	ck_assert_int_eq(atomic_load(&own_runs), 1);
	bus_close(b);
}
END_TEST

TCase *contract_pause(void)
{
	TCase *tc = contract_tcase("pause");
	tcase_add_test(tc, paused_queue_is_not_claimed_until_resumed);
	tcase_add_test(tc, queue_list_tells_counts_and_paused_flags);
	tcase_add_test(tc, any_job_handler_runs_unregistered_kinds);
	return tc;
}
