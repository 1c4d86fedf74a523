/* Administration: get, list (paging and filters), retry, delete, counts, and
 * state names. */
#include <string.h>

#include "contract.h"

START_TEST(job_get_of_unknown_id_is_enotfound)
{
	bus *b;
	contract_open(&b);
	bus_job *j = NULL;
	ck_assert_int_eq(bus_job_get(&j, b, 987654321), BUS_ENOTFOUND);
	ck_assert_int_eq(bus_error_last()->code, BUS_ENOTFOUND);
	ck_assert_ptr_null(j);
	int64_t id = enqueue_ok(b, "admin.get", "{}", NULL, BUS_INSERTED);
	ck_assert_int_eq(bus_job_get(&j, b, id + 1000), BUS_ENOTFOUND);
	bus_close(b);
}
END_TEST

/* Lists with `f` and asserts the ids are `want[0..n)`. */
static void assert_list(bus *b, const bus_job_filter *f, const int64_t *want,
			size_t n)
{
	bus_job *jobs = NULL;
	size_t got = 0;
	ck_assert_int_eq(bus_job_list(&jobs, &got, b, f), 0);
	ck_assert_int_eq(got, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(jobs[i].id, want[i]);
	bus_job_list_free(jobs, got);
}

START_TEST(job_list_pages_by_id_and_filters)
{
	bus *b;
	contract_open(&b);
	bus_job_opts qa = BUS_JOB_OPTS_INIT, qb = BUS_JOB_OPTS_INIT;
	qa.queue = "admin.qa";
	qb.queue = "admin.qb";
	int64_t a[5], c[3], all[8];
	for (int i = 0; i < 8; i++) {
		int is_a = i % 3 != 1; /* a c a a c a a c */
		all[i] = enqueue_ok(b, is_a ? "admin.a" : "admin.b", "{}",
				    is_a ? &qa : &qb, BUS_INSERTED);
	}
	for (int i = 0, na = 0, nc = 0; i < 8; i++) {
		if (i % 3 != 1)
			a[na++] = all[i];
		else
			c[nc++] = all[i];
	}

	/* Pages of three, then an empty page. */
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.limit = 3;
	assert_list(b, &f, all, 3);
	f.after_id = all[2];
	assert_list(b, &f, all + 3, 3);
	f.after_id = all[5];
	assert_list(b, &f, all + 6, 2);
	f.after_id = all[7];
	assert_list(b, &f, NULL, 0);
	/* The default limit holds them all. */
	bus_job_filter every = BUS_JOB_FILTER_INIT;
	assert_list(b, &every, all, 8);

	bus_job_filter by_queue = BUS_JOB_FILTER_INIT;
	by_queue.queue = "admin.qb";
	assert_list(b, &by_queue, c, 3);
	bus_job_filter by_kind = BUS_JOB_FILTER_INIT;
	by_kind.kind = "admin.a";
	assert_list(b, &by_kind, a, 5);
	by_kind.limit = 2;
	by_kind.after_id = a[1];
	assert_list(b, &by_kind, a + 2, 2);
	bus_job_filter none = BUS_JOB_FILTER_INIT;
	none.kind = "admin.b";
	none.queue = "admin.qa";
	assert_list(b, &none, NULL, 0);

	ck_assert_int_eq(bus_job_cancel(b, a[2]), 0);
	bus_job_filter by_state = BUS_JOB_FILTER_INIT;
	by_state.states = BUS_STATE_BIT(BUS_JOB_CANCELLED);
	assert_list(b, &by_state, &a[2], 1);
	by_state.states = BUS_STATE_BIT(BUS_JOB_AVAILABLE);
	by_state.kind = "admin.a";
	const int64_t avail[] = { a[0], a[1], a[3], a[4] };
	assert_list(b, &by_state, avail, 4);
	by_state.states = BUS_STATE_BIT(BUS_JOB_AVAILABLE) |
			  BUS_STATE_BIT(BUS_JOB_CANCELLED);
	assert_list(b, &by_state, a, 5);
	bus_close(b);
}
END_TEST

struct toggled {
	atomic_int runs;
	atomic_int fail;
	atomic_int block; /* 1: hold the job until cleared */
	atomic_int started;
};

static int toggled_handler(bus_ctx *ctx, void *udata)
{
	struct toggled *t = udata;
	atomic_fetch_add(&t->runs, 1);
	atomic_fetch_add(&t->started, 1);
	for (int i = 0; i < CONTRACT_LIVENESS_MS && atomic_load(&t->block);
	     i++)
		sleep_ms(1);
	if (atomic_load(&t->fail))
		return bus_ctx_fail(ctx, "failing on purpose");
	return 0;
}

START_TEST(job_retry_gives_discarded_job_another_attempt)
{
	bus *b;
	struct toggled t = { 0, 1, 0, 0 };
	contract_open(&b);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 1;
	contract_handle(b, "admin.retry", toggled_handler, &t, &ho,
			"admin.r");
	int64_t id = enqueue_ok(b, "admin.retry", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "admin.r" });
	bus_job_free(wait_job(b, id, BUS_JOB_DISCARDED, 1));

	atomic_store(&t.fail, 0);
	ck_assert_int_eq(bus_job_retry(b, id), 0);
	bus_job *j = wait_job(b, id, BUS_JOB_COMPLETED, -1);
	ck_assert_int_le(j->attempt, j->max_attempts);
	ck_assert_int_eq(j->attempt, 2);
	assert_errors(j, 1, "failing on purpose");
	bus_job_free(j);
	ck_assert_int_eq(atomic_load(&t.runs), 2);

	/* A completed job may be run again, too. */
	ck_assert_int_eq(bus_job_retry(b, id), 0);
	wait_atomic(&t.runs, 3, "the retried completed job to run");
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, -1));
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

START_TEST(job_retry_makes_a_discarded_job_available_with_an_attempt_left)
{
	bus *b;
	struct toggled t = { 0, 1, 0, 0 };
	contract_open(&b);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 1;
	contract_handle(b, "admin.retry2", toggled_handler, &t, &ho,
			"admin.r2");
	int64_t id = enqueue_ok(b, "admin.retry2", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "admin.r2" });
	bus_job_free(wait_job(b, id, BUS_JOB_DISCARDED, 1));
	ck_assert_int_eq(bus_worker_stop(w, 1000), 0);
	bus_worker_free(w);

	ck_assert_int_eq(bus_job_retry(b, id), 0);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "available");
	ck_assert_int_lt(j->attempt, j->max_attempts);
	ck_assert_int_eq(j->finished_at, 0);
	bus_job_free(j);
	bus_close(b);
}
END_TEST

START_TEST(job_retry_and_delete_of_executing_job_are_estate)
{
	bus *b;
	struct toggled t = { 0, 0, 1, 0 };
	contract_open(&b);
	contract_handle(b, "admin.busy", toggled_handler, &t, NULL, "admin.x");
	int64_t id = enqueue_ok(b, "admin.busy", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "admin.x" });
	wait_atomic(&t.started, 1, "the job to start");
	ck_assert_int_eq(bus_job_retry(b, id), BUS_ESTATE);
	ck_assert_int_eq(bus_error_last()->code, BUS_ESTATE);
	ck_assert_int_eq(bus_job_delete(b, id), BUS_ESTATE);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	bus_job_free(j);
	atomic_store(&t.block, 0);
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	ck_assert_int_eq(bus_job_retry(b, id + 1000000), BUS_ENOTFOUND);
	bus_close(b);
}
END_TEST

START_TEST(job_delete_removes_a_job)
{
	bus *b;
	contract_open(&b);
	int64_t keep = enqueue_ok(b, "admin.del", "{}", NULL, BUS_INSERTED);
	int64_t gone = enqueue_ok(b, "admin.del", "{}", NULL, BUS_INSERTED);
	ck_assert_int_eq(bus_job_delete(b, gone), 0);
	bus_job *j = NULL;
	ck_assert_int_eq(bus_job_get(&j, b, gone), BUS_ENOTFOUND);
	ck_assert_int_eq(bus_job_delete(b, gone), BUS_ENOTFOUND);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "admin.del"), 1);
	bus_job_free(get_job(b, keep));
	bus_close(b);
}
END_TEST

static int64_t count_of(const bus_job_count *c, size_t n, const char *queue,
			bus_job_state state)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(c[i].queue, queue) == 0 && c[i].state == state)
			return c[i].count;
	return 0;
}

START_TEST(job_counts_are_per_queue_and_state)
{
	bus *b;
	contract_open(&b);
	bus_job_opts qa = BUS_JOB_OPTS_INIT, qb = BUS_JOB_OPTS_INIT;
	qa.queue = "count.a";
	qb.queue = "count.b";
	qb.run_in_ms = 3600 * 1000;
	int64_t first = 0;
	for (int i = 0; i < 4; i++) {
		int64_t id = enqueue_ok(b, "admin.count", "{}", &qa,
					BUS_INSERTED);
		if (i == 0)
			first = id;
	}
	ck_assert_int_eq(bus_job_cancel(b, first), 0);
	enqueue_ok(b, "admin.count", "{}", &qb, BUS_INSERTED);
	enqueue_ok(b, "admin.count", "{}", &qb, BUS_INSERTED);

	bus_job_count *c = NULL;
	size_t n = 0;
	ck_assert_int_eq(bus_job_counts(&c, &n, b), 0);
	ck_assert_int_eq(n, 3);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_gt(c[i].count, 0);
	ck_assert_int_eq(count_of(c, n, "count.a", BUS_JOB_AVAILABLE), 3);
	ck_assert_int_eq(count_of(c, n, "count.a", BUS_JOB_CANCELLED), 1);
	ck_assert_int_eq(count_of(c, n, "count.b", BUS_JOB_SCHEDULED), 2);
	bus_free(c);
	bus_close(b);
}
END_TEST

START_TEST(job_state_names_round_trip)
{
	static const char *const names[BUS_JOB_STATE_COUNT] = {
		"available", "scheduled", "executing", "retryable",
		"completed", "cancelled", "discarded",
	};
	for (int s = 0; s < BUS_JOB_STATE_COUNT; s++) {
		ck_assert_str_eq(bus_job_state_name((bus_job_state)s),
				 names[s]);
		bus_job_state parsed = BUS_JOB_STATE_COUNT;
		ck_assert_int_eq(bus_job_state_parse(&parsed, names[s]), 0);
		ck_assert_int_eq(parsed, s);
	}
	ck_assert_ptr_null(bus_job_state_name(BUS_JOB_STATE_COUNT));
	bus_job_state parsed;
	ck_assert_int_eq(bus_job_state_parse(&parsed, "running"), BUS_EINVAL);
}
END_TEST

TCase *contract_admin(void)
{
	TCase *tc = contract_tcase("admin");
	tcase_add_test(tc, job_get_of_unknown_id_is_enotfound);
	tcase_add_test(tc, job_list_pages_by_id_and_filters);
	tcase_add_test(tc, job_retry_gives_discarded_job_another_attempt);
	tcase_add_test(
		tc,
		job_retry_makes_a_discarded_job_available_with_an_attempt_left);
	tcase_add_test(tc, job_retry_and_delete_of_executing_job_are_estate);
	tcase_add_test(tc, job_delete_removes_a_job);
	tcase_add_test(tc, job_counts_are_per_queue_and_state);
	tcase_add_test(tc, job_state_names_round_trip);
	return tc;
}
