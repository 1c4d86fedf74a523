/* Claim order: smaller priority first, then older scheduled_at, then id; and
 * a worker claims only from its own queues. */
#include <pthread.h>

#include "contract.h"

#define MAX_RUNS 16

/* The ids of the jobs a handler ran, in the order it ran them. */
struct run_log {
	pthread_mutex_t lock;
	int n;
	int64_t ids[MAX_RUNS];
};

static int log_job(bus_ctx *ctx, void *udata)
{
	struct run_log *log = udata;
	const bus_job *job = bus_ctx_job(ctx);
	pthread_mutex_lock(&log->lock);
	if (log->n < MAX_RUNS)
		log->ids[log->n++] = job ? job->id : -1;
	pthread_mutex_unlock(&log->lock);
	return 0;
}

struct log_count {
	struct run_log *log;
	int want;
};

static int log_has(void *arg)
{
	struct log_count *c = arg;
	pthread_mutex_lock(&c->log->lock);
	int n = c->log->n;
	pthread_mutex_unlock(&c->log->lock);
	return n >= c->want;
}

static int64_t enqueue_at(bus *b, int priority, int64_t run_at)
{
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.priority = priority;
	o.run_at = run_at;
	return enqueue_ok(b, "claim.order", "{}", &o, BUS_INSERTED);
}

START_TEST(claim_order_is_priority_then_scheduled_at_then_id)
{
	bus *b;
	struct test_clock clock;
	struct run_log log = { PTHREAD_MUTEX_INITIALIZER, 0, { 0 } };
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "claim.order", log_job, &log, NULL, "claim.q");

	/* Inserted in an order unlike the order they must run in; every
	 * run_at is in the past, so all are due at once. */
	int64_t t = CONTRACT_T0_US;
	int64_t p2_old = enqueue_at(b, 2, t - 10 * SEC_US);
	int64_t p1_new = enqueue_at(b, 1, t - 5 * SEC_US);
	int64_t p1_oldest = enqueue_at(b, 1, t - 20 * SEC_US);
	int64_t p2_old_later_id = enqueue_at(b, 2, t - 10 * SEC_US);
	int64_t pneg_now = enqueue_at(b, -1, 0);
	int64_t p1_new_later_id = enqueue_at(b, 1, t - 5 * SEC_US);
	const int64_t want[] = { pneg_now, p1_oldest,     p1_new,
				 p1_new_later_id, p2_old, p2_old_later_id };
	const int n = (int)(sizeof want / sizeof *want);

	bus_job *j = get_job(b, p1_oldest);
	ck_assert_int_eq(j->state, BUS_JOB_AVAILABLE);
	ck_assert_int_eq(j->scheduled_at, t - 20 * SEC_US);
	bus_job_free(j);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "claim.q",
						   .concurrency = 1 });
	struct log_count c = { &log, n };
	wait_for(log_has, &c, "the worker to run all six jobs");
	bus_worker_free(w);

	ck_assert_int_eq(log.n, n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(log.ids[i] == want[i],
			      "run %d was job %lld, expected job %lld", i,
			      (long long)log.ids[i], (long long)want[i]);
	bus_close(b);
}
END_TEST

START_TEST(worker_claims_only_from_its_queues)
{
	bus *b;
	struct run_log log = { PTHREAD_MUTEX_INITIALIZER, 0, { 0 } };
	contract_open(&b);
	contract_handle(b, "claim.mine", log_job, &log, NULL, "claim.mine");
	contract_handle(b, "claim.other", log_job, &log, NULL, "claim.other");
	int64_t other = enqueue_ok(b, "claim.other", "{}", NULL, BUS_INSERTED);
	int64_t mine = enqueue_ok(b, "claim.mine", "{}", NULL, BUS_INSERTED);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "claim.mine" });
	bus_job_free(wait_job(b, mine, BUS_JOB_COMPLETED, 1));
	sleep_ms(CONTRACT_SETTLE_MS);
	bus_worker_free(w);

	bus_job *j = get_job(b, other);
	ck_assert_str_eq(bus_job_state_name(j->state), "available");
	ck_assert_int_eq(j->attempt, 0);
	bus_job_free(j);
	ck_assert_int_eq(log.n, 1);
	ck_assert_int_eq(log.ids[0], mine);
	bus_close(b);
}
END_TEST

TCase *contract_claim(void)
{
	TCase *tc = contract_tcase("claim");
	tcase_add_test(tc, claim_order_is_priority_then_scheduled_at_then_id);
	tcase_add_test(tc, worker_claims_only_from_its_queues);
	return tc;
}
