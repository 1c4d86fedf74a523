/* Graceful shutdown: running jobs finish within the grace period; what is
 * left (claimed but not started, or still running after the grace) is given
 * back, not lost, with its attempt not spent. */
#include <pthread.h>

#include "contract.h"

#define SHUTDOWN_JOBS 5

struct sleeper {
	atomic_int started;
	atomic_int finished;
	atomic_llong first_id;
};

static int sleep_200ms(bus_ctx *ctx, void *udata)
{
	struct sleeper *s = udata;
	const bus_job *job = bus_ctx_job(ctx);
	long long none = 0;
	atomic_compare_exchange_strong(&s->first_id, &none,
				       job ? (long long)job->id : -1);
	atomic_fetch_add(&s->started, 1);
	sleep_ms(200);
	atomic_fetch_add(&s->finished, 1);
	return 0;
}

START_TEST(graceful_stop_finishes_running_job_gives_back_rest)
{
	bus *b;
	struct sleeper s = { 0, 0, 0 };
	contract_open(&b);
	contract_handle(b, "shutdown.sleep", sleep_200ms, &s, NULL,
			"shutdown.q");
	int64_t ids[SHUTDOWN_JOBS];
	for (int i = 0; i < SHUTDOWN_JOBS; i++)
		ids[i] = enqueue_ok(b, "shutdown.sleep", "{}", NULL,
				    BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "shutdown.q",
						   .concurrency = 1,
						   .fetch_batch = 10 });
	wait_atomic(&s.started, 1, "the first job to start");
	ck_assert_int_eq(bus_worker_stop(w, 5000), 0);

	ck_assert_int_eq(atomic_load(&s.started), 1);
	ck_assert_int_eq(atomic_load(&s.finished), 1);
	int64_t ran = (int64_t)atomic_load(&s.first_id);
	for (int i = 0; i < SHUTDOWN_JOBS; i++) {
		bus_job *j = get_job(b, ids[i]);
		if (ids[i] == ran) {
			ck_assert_str_eq(bus_job_state_name(j->state),
					 "completed");
			ck_assert_int_eq(j->attempt, 1);
		} else {
			ck_assert_msg(j->state == BUS_JOB_AVAILABLE,
				      "job %lld is %s after the stop, expected "
				      "available",
				      (long long)ids[i],
				      bus_job_state_name(j->state));
			ck_assert_int_eq(j->attempt, 0);
		}
		bus_job_free(j);
	}
	ck_assert_int_eq(count_jobs(b, BUS_STATE_BIT(BUS_JOB_EXECUTING), NULL,
				    NULL),
			 0);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

struct overrun {
	atomic_int started;
	atomic_int saw_expired;
};

static int run_until_told_to_stop(bus_ctx *ctx, void *udata)
{
	struct overrun *o = udata;
	atomic_store(&o->started, 1);
	for (int i = 0; i < CONTRACT_LIVENESS_MS / 2 && !bus_ctx_expired(ctx);
	     i++)
		sleep_ms(2);
	if (!bus_ctx_expired(ctx))
		return 0;
	atomic_store(&o->saw_expired, 1);
	return bus_ctx_fail(ctx, "stopped early: the worker is shutting down");
}

START_TEST(stop_gives_back_job_still_running_after_the_grace)
{
	bus *b;
	struct overrun o = { 0, 0 };
	contract_open(&b);
	contract_handle(b, "shutdown.long", run_until_told_to_stop, &o, NULL,
			"shutdown.l");
	int64_t id = enqueue_ok(b, "shutdown.long", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "shutdown.l" });
	wait_atomic(&o.started, 1, "the job to start");
	ck_assert_int_eq(bus_worker_stop(w, 100), 0);
	ck_assert_msg(atomic_load(&o.saw_expired),
		      "bus_ctx_expired was not true for a job past the "
		      "shutdown grace");

	bus_job *j = get_job(b, id);
	ck_assert_msg(j->state == BUS_JOB_AVAILABLE,
		      "job is %s after the stop, expected available (given "
		      "back)",
		      bus_job_state_name(j->state));
	ck_assert_int_eq(j->attempt, 0);
	ck_assert_int_eq(j->finished_at, 0);
	bus_job_free(j);
	ck_assert_int_eq(count_jobs(b, BUS_STATE_BIT(BUS_JOB_EXECUTING), NULL,
				    NULL),
			 0);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.given_back, 1);
	ck_assert_int_eq(st.running, 0);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

static int count_run(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

struct runner {
	bus_worker *w;
	int rc;
	atomic_int done;
};

static void *run_worker(void *arg)
{
	struct runner *r = arg;
	r->rc = bus_worker_run(r->w);
	atomic_store(&r->done, 1);
	return NULL;
}

START_TEST(request_stop_ends_worker_run)
{
	bus *b;
	atomic_int runs = 0;
	contract_open(&b);
	contract_handle(b, "shutdown.run", count_run, &runs, NULL,
			"shutdown.r");
	int64_t id = enqueue_ok(b, "shutdown.run", "{}", NULL, BUS_INSERTED);
	bus_worker_queue q = { "shutdown.r", 1 };
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.queues = &q;
	wo.n_queues = 1;
	wo.poll_interval_ms = 5;
	wo.isolation = BUS_ISOLATION_THREAD;
	wo.completer_flush_ms = 1;
	wo.shutdown_grace_ms = 1000;
	struct runner r = { NULL, -1, 0 };
	ck_assert_int_eq(bus_worker_new(&r.w, b, &wo), 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, run_worker, &r), 0);
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_request_stop(r.w);
	wait_atomic(&r.done, 1, "bus_worker_run to return");
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(r.rc, 0);
	bus_worker_free(r.w);
	ck_assert_int_eq(atomic_load(&runs), 1);
	bus_close(b);
}
END_TEST

TCase *contract_shutdown(void)
{
	TCase *tc = contract_tcase("shutdown");
	tcase_add_test(tc, graceful_stop_finishes_running_job_gives_back_rest);
	tcase_add_test(tc, stop_gives_back_job_still_running_after_the_grace);
	tcase_add_test(tc, request_stop_ends_worker_run);
	return tc;
}
