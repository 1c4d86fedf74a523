/* Failed attempts: retry after the backoff, discard when attempts are spent,
 * one error recorded per attempt, and a handler's own backoff. */
#include <cjson/cJSON.h>
#include <string.h>

#include "contract.h"

static int fail_always(bus_ctx *ctx, void *udata)
{
	atomic_fetch_add((atomic_int *)udata, 1);
	const bus_job *job = bus_ctx_job(ctx);
	return bus_ctx_fail(ctx, "boom on attempt %d", job ? job->attempt : -1);
}

/* Asserts the job waits for a retry `lo`..`hi` after now, and moves the
 * clock just past it. */
static void assert_retry_in(struct test_clock *c, const bus_job *j, int64_t lo,
			    int64_t hi)
{
	int64_t delay = j->scheduled_at - clock_now(c);
	ck_assert_msg(delay >= lo && delay <= hi,
		      "attempt %d: retry in %lld us, expected %lld..%lld",
		      j->attempt, (long long)delay, (long long)lo,
		      (long long)hi);
	ck_assert_int_eq(j->finished_at, 0);
	clock_advance(c, delay + SEC_US);
}

START_TEST(retry_backoff_grows_then_spent_job_is_discarded)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 3;
	contract_handle(b, "retry.fail", fail_always, &runs, &ho, "retry.q");
	int64_t id = enqueue_ok(b, "retry.fail", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "retry.q" });

	/* Default backoff: 1 min, then 2 min, each with up to 10% jitter. */
	bus_job *j = wait_job(b, id, BUS_JOB_RETRYABLE, 1);
	ck_assert_int_eq(j->max_attempts, 3);
	/* Not run again before its time. */
	sleep_ms(CONTRACT_SETTLE_MS);
	ck_assert_int_eq(atomic_load(&runs), 1);
	assert_retry_in(&clock, j, 60 * SEC_US, 66 * SEC_US);
	bus_job_free(j);

	j = wait_job(b, id, BUS_JOB_RETRYABLE, 2);
	assert_retry_in(&clock, j, 120 * SEC_US, 132 * SEC_US);
	bus_job_free(j);

	j = wait_job(b, id, BUS_JOB_DISCARDED, 3);
	ck_assert_int_eq(j->finished_at, clock_now(&clock));
	bus_job_free(j);
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), 3);
	bus_close(b);
}
END_TEST

START_TEST(errors_are_recorded_once_per_failed_attempt)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 2;
	contract_handle(b, "retry.errors", fail_always, &runs, &ho,
			"retry.e");
	int64_t id = enqueue_ok(b, "retry.errors", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "retry.e" });

	bus_job *j = wait_job(b, id, BUS_JOB_RETRYABLE, 1);
	assert_errors(j, 1, "boom on attempt 1");
	bus_job_free(j);
	clock_advance(&clock, 10 * MIN_US);
	j = wait_job(b, id, BUS_JOB_DISCARDED, 2);
	bus_worker_free(w);

	assert_errors(j, 2, "boom on attempt");
	cJSON *errors = job_errors(j);
	ck_assert_str_eq(job_error_text(errors, 0), "boom on attempt 1");
	ck_assert_str_eq(job_error_text(errors, 1), "boom on attempt 2");
	cJSON_Delete(errors);
	bus_job_free(j);
	bus_close(b);
}
END_TEST

struct backoff_seen {
	atomic_int calls;
	atomic_int last_attempt;
};

/* The delay is in microseconds, like every time in job.h. */
static int64_t five_seconds(int attempt, void *udata)
{
	struct backoff_seen *seen = udata;
	atomic_fetch_add(&seen->calls, 1);
	atomic_store(&seen->last_attempt, attempt);
	return 5 * SEC_US;
}

START_TEST(handler_backoff_replaces_the_default)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	struct backoff_seen seen = { 0, 0 };
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 3;
	ho.backoff = five_seconds;
	ho.backoff_udata = &seen;
	contract_handle(b, "retry.custom", fail_always, &runs, &ho,
			"retry.c");
	int64_t id = enqueue_ok(b, "retry.custom", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "retry.c" });

	bus_job *j = wait_job(b, id, BUS_JOB_RETRYABLE, 1);
	ck_assert_int_eq(j->scheduled_at, clock_now(&clock) + 5 * SEC_US);
	ck_assert_int_eq(atomic_load(&seen.last_attempt), 1);
	bus_job_free(j);

	clock_advance(&clock, 5 * SEC_US);
	j = wait_job(b, id, BUS_JOB_RETRYABLE, 2);
	ck_assert_int_eq(j->scheduled_at, clock_now(&clock) + 5 * SEC_US);
	ck_assert_int_eq(atomic_load(&seen.last_attempt), 2);
	bus_job_free(j);
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&seen.calls), 2);
	bus_close(b);
}
END_TEST

TCase *contract_retry(void)
{
	TCase *tc = contract_tcase("retry");
	tcase_add_test(tc, retry_backoff_grows_then_spent_job_is_discarded);
	tcase_add_test(tc, errors_are_recorded_once_per_failed_attempt);
	tcase_add_test(tc, handler_backoff_replaces_the_default);
	return tc;
}
