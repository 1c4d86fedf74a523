/*
 * Isolation. With process isolation a handler that crashes or overruns its
 * timeout takes only its child down: the job is retried with the cause
 * recorded and the worker goes on. With thread isolation a timeout is
 * cooperative. Handlers in children cannot tell the test anything through
 * memory, so these tests look at the jobs in the store.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

/* Does what the payload's "do" says: "segv", "abort", "loop" (for ever,
 * ignoring any deadline), "fail", or succeed. */
static int misbehave(bus_ctx *ctx, void *udata)
{
	(void)udata;
	const cJSON *d =
		cJSON_GetObjectItemCaseSensitive(bus_ctx_json(ctx), "do");
	const char *what = cJSON_IsString(d) ? d->valuestring : "ok";
	if (strcmp(what, "segv") == 0) {
		/* The default action: a sanitizer's handler would turn the
		 * crash into an exit status. */
		signal(SIGSEGV, SIG_DFL);
		raise(SIGSEGV);
	}
	else if (strcmp(what, "abort") == 0)
		abort();
	else if (strcmp(what, "loop") == 0)
		for (;;)
			sleep_ms(5);
	else if (strcmp(what, "fail") == 0)
		return bus_ctx_fail(ctx, "nope");
	return 0;
}

/* A bus with the misbehaving handler (two attempts) and a process-isolated
 * worker of one child. The handler is registered before the worker starts,
 * so its children have it. */
static bus_worker *isolated_worker(bus *b, struct test_clock *clock)
{
	contract_clock_install(b, clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 2;
	contract_handle(b, "iso.job", misbehave, NULL, &ho, "iso.q");
	return contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "iso.q",
						   .concurrency = 1,
						   .process = 1 });
}

static int64_t enqueue_do(bus *b, const char *what, int64_t timeout_ms)
{
	char payload[64];
	snprintf(payload, sizeof payload, "{\"do\":\"%s\"}", what);
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.timeout_ms = timeout_ms;
	return enqueue_ok(b, "iso.job", payload, &o, BUS_INSERTED);
}

/* A job that kills its child: retried with `cause`, the worker still runs
 * a good job after it, and the second attempt discards the job. */
static void assert_child_failure(const char *what, int64_t timeout_ms,
				 const char *cause)
{
	bus *b;
	struct test_clock clock;
	contract_open(&b);
	bus_worker *w = isolated_worker(b, &clock);
	int64_t bad = enqueue_do(b, what, timeout_ms);
	bus_job *j = wait_job(b, bad, BUS_JOB_RETRYABLE, 1);
	assert_errors(j, 1, cause);
	bus_job_free(j);

	int64_t good = enqueue_do(b, "ok", 0);
	bus_job_free(wait_job(b, good, BUS_JOB_COMPLETED, 1));

	clock_advance(&clock, 10 * MIN_US);
	j = wait_job(b, bad, BUS_JOB_DISCARDED, 2);
	assert_errors(j, 2, cause);
	bus_job_free(j);

	good = enqueue_do(b, "ok", 0);
	bus_job_free(wait_job(b, good, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	bus_close(b);
}

START_TEST(process_isolation_sigsegv_is_retried_worker_survives)
{
	assert_child_failure("segv", 0, "SIGSEGV");
}
END_TEST

START_TEST(process_isolation_abort_is_recorded_as_sigabrt)
{
	assert_child_failure("abort", 0, "SIGABRT");
}
END_TEST

START_TEST(process_isolation_timeout_kills_overrunning_handler)
{
	assert_child_failure("loop", 300, "timeout after 0.3s");
}
END_TEST

/* Middleware in the worker process: what it saw of each job. */
struct seen {
	pthread_mutex_t lock;
	int calls;
	int failures;
	char error[128];
};

static int watch(bus_ctx *ctx, bus_next *next, void *udata)
{
	struct seen *s = udata;
	int rc = bus_next_call(next);
	pthread_mutex_lock(&s->lock);
	s->calls++;
	if (rc != 0) {
		s->failures++;
		const char *e = bus_ctx_error(ctx);
		snprintf(s->error, sizeof s->error, "%s", e ? e : "");
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

START_TEST(process_isolation_runs_middleware_in_worker_process)
{
	bus *b;
	struct test_clock clock;
	struct seen s = { PTHREAD_MUTEX_INITIALIZER, 0, 0, "" };
	contract_open(&b);
	ck_assert_int_eq(bus_use(b, watch, &s), 0);
	bus_worker *w = isolated_worker(b, &clock);
	int64_t ok = enqueue_do(b, "ok", 0);
	int64_t failing = enqueue_do(b, "fail", 0);
	bus_job_free(wait_job(b, ok, BUS_JOB_COMPLETED, 1));
	bus_job *j = wait_job(b, failing, BUS_JOB_RETRYABLE, 1);
	assert_errors(j, 1, "nope");
	bus_job_free(j);
	bus_worker_free(w);

	ck_assert_int_eq(s.calls, 2);
	ck_assert_int_eq(s.failures, 1);
	ck_assert_str_eq(s.error, "nope");
	bus_close(b);
}
END_TEST

struct cooperative {
	atomic_llong first_remaining_ms;
	atomic_int returned;
};

static int run_until_deadline(bus_ctx *ctx, void *udata)
{
	struct cooperative *c = udata;
	atomic_store(&c->first_remaining_ms,
		     (long long)bus_ctx_remaining_ms(ctx));
	for (int i = 0; i < CONTRACT_LIVENESS_MS / 2 && !bus_ctx_expired(ctx);
	     i++)
		sleep_ms(2);
	atomic_store(&c->returned, 1);
	return 0;
}

START_TEST(thread_isolation_timeout_is_cooperative_and_retried)
{
	bus *b;
	struct test_clock clock;
	struct cooperative c = { 0, 0 };
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "iso.slow", run_until_deadline, &c, NULL,
			"iso.slow");
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.timeout_ms = 300;
	int64_t id = enqueue_ok(b, "iso.slow", "{}", &o, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "iso.slow" });
	bus_job *j = wait_job(b, id, BUS_JOB_RETRYABLE, 1);
	ck_assert_int_eq(j->timeout_ms, 300);
	assert_errors(j, 1, "timeout after 0.3s");
	bus_job_free(j);
	bus_worker_free(w);

	ck_assert_int_eq(atomic_load(&c.returned), 1);
	long long first = atomic_load(&c.first_remaining_ms);
	ck_assert_msg(first > 0 && first <= 300,
		      "bus_ctx_remaining_ms() was %lld at the start of a job "
		      "with a 300 ms timeout",
		      first);
	bus_close(b);
}
END_TEST

TCase *contract_isolation(void)
{
	TCase *tc = contract_tcase("isolation");
	/* Forks process-isolation children (contract_mysql.sh leaves these
	 * out under the sanitizers: see there). */
	tcase_set_tags(tc, "process");
	tcase_add_test(tc,
		       process_isolation_sigsegv_is_retried_worker_survives);
	tcase_add_test(tc, process_isolation_abort_is_recorded_as_sigabrt);
	tcase_add_test(tc, process_isolation_timeout_kills_overrunning_handler);
	tcase_add_test(tc, process_isolation_runs_middleware_in_worker_process);
	tcase_add_test(tc, thread_isolation_timeout_is_cooperative_and_retried);
	return tc;
}
