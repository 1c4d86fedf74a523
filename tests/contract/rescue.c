/*
 * Leases: a running job's lease is renewed; a job whose lease ran out (its
 * worker crashed or hung) is rescued by another worker, and the outcome the
 * stale worker reports afterwards is refused.
 *
 * A "dead" worker is simulated without killing anything: worker A holds the
 * job with a 60 s lease (renewed every 20 s of real time, so never during
 * the test), and the test clock jumps 120 s past it. Worker B, rescuing
 * every 20 ms, is what gets the job rescued within the liveness bound; A's
 * own rescuer runs every 600 s, though it may make one pass as it starts,
 * which may come after the jump, so which worker rescued is not asserted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "contract.h"

/* A handler that holds its job until `release` reaches the job's attempt
 * (or a safety cap), then succeeds. */
struct blocker {
	atomic_int started;
	atomic_int release;
	atomic_int returned;
};

#define RELEASE_ALL 1000

static int block_until_released(bus_ctx *ctx, void *udata)
{
	struct blocker *bl = udata;
	const bus_job *job = bus_ctx_job(ctx);
	int attempt = job ? job->attempt : 1;
	atomic_fetch_add(&bl->started, 1);
	for (int i = 0;
	     i < CONTRACT_LIVENESS_MS && atomic_load(&bl->release) < attempt;
	     i++)
		sleep_ms(1);
	atomic_fetch_add(&bl->returned, 1);
	return 0;
}

struct stranded {
	bus *b;
	struct test_clock clock;
	struct blocker bl;
	bus_worker *dead, *rescuer;
	int64_t id;
};

/* Starts worker "dead" on a job, lets its lease run out by the clock, and
 * starts worker "b", which rescues it. */
static void strand_job(struct stranded *s, const char *kind, int max_attempts)
{
	memset(&s->bl, 0, sizeof s->bl);
	contract_open(&s->b);
	contract_clock_install(s->b, &s->clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = max_attempts;
	contract_handle(s->b, kind, block_until_released, &s->bl, &ho, kind);
	s->id = enqueue_ok(s->b, kind, "{}", NULL, BUS_INSERTED);

	s->dead = contract_start_worker(
		s->b, &(struct contract_worker_opts){
			      .queue = kind, .node = "dead", .lease_ms = 60000,
			      .rescue_interval_ms = 600000 });
	wait_atomic(&s->bl.started, 1, "the handler to start on 'dead'");
	bus_job *j = get_job(s->b, s->id);
	ck_assert_str_eq(bus_job_state_name(j->state), "executing");
	ck_assert_str_eq(j->attempted_by, "dead");
	ck_assert_int_eq(j->attempted_at, CONTRACT_T0_US);
	ck_assert_int_eq(j->lease_until, CONTRACT_T0_US + 60 * SEC_US);
	bus_job_free(j);

	clock_advance(&s->clock, 120 * SEC_US);
	s->rescuer = contract_start_worker(
		s->b, &(struct contract_worker_opts){ .queue = kind,
						      .node = "b" });
}

static void release_and_close(struct stranded *s)
{
	atomic_store(&s->bl.release, RELEASE_ALL);
	bus_worker_free(s->rescuer);
	bus_worker_free(s->dead);
	bus_close(s->b);
}

static int rescued_once(void *arg)
{
	struct stranded *s = arg;
	bus_worker_stats a, b;
	bus_worker_get_stats(&a, s->dead);
	bus_worker_get_stats(&b, s->rescuer);
	return a.rescued + b.rescued >= 1;
}

START_TEST(expired_lease_of_stalled_worker_is_rescued_to_retryable)
{
	struct stranded s;
	strand_job(&s, "rescue.retry", 3);
	bus_job *j = wait_job(s.b, s.id, BUS_JOB_RETRYABLE, 1);
	assert_errors(j, 1, "lease expired");
	assert_errors(j, 1, "dead");
	/* Soon (the workers' rescue_delay_ms, 5 s by default), not after the
	 * handler's backoff (a minute for attempt 1): the worker failed, not
	 * the job. */
	int64_t delay = j->scheduled_at - clock_now(&s.clock);
	ck_assert_msg(delay == 5 * SEC_US,
		      "rescued job retries in %lld us, expected the default "
		      "rescue delay of 5 s",
		      (long long)delay);
	bus_job_free(j);

	/* A worker counts a rescue once its store call returns, which may be
	 * after the change is visible to others: wait for the count. */
	wait_for(rescued_once, &s, "a worker to count the rescue");
	bus_worker_stats a, bst;
	bus_worker_get_stats(&a, s.dead);
	bus_worker_get_stats(&bst, s.rescuer);
	ck_assert_int_eq(a.rescued + bst.rescued, 1);
	release_and_close(&s);
}
END_TEST

struct lost_wait {
	bus_worker *w;
};

static int has_lost_one(void *arg)
{
	bus_worker_stats st;
	bus_worker_get_stats(&st, ((struct lost_wait *)arg)->w);
	return st.lost >= 1;
}

/*
 * The rescued job is due again and claimed for attempt 2 before the stale
 * attempt 1 reports success: the stale outcome must be refused, leaving
 * attempt 2 running, which then completes on its own.
 */
START_TEST(completion_by_worker_that_lost_its_lease_is_refused)
{
	struct stranded s;
	strand_job(&s, "rescue.stale", 3);
	bus_job *j = wait_job(s.b, s.id, BUS_JOB_RETRYABLE, 1);
	clock_advance(&s.clock, j->scheduled_at - clock_now(&s.clock));
	bus_job_free(j);
	j = wait_job(s.b, s.id, BUS_JOB_EXECUTING, 2);
	char holder[64];
	snprintf(holder, sizeof holder, "%s",
		 j->attempted_by ? j->attempted_by : "");
	bus_job_free(j);

	/* Attempt 1, on worker 'dead', now succeeds. */
	atomic_store(&s.bl.release, 1);
	struct lost_wait lw = { s.dead };
	wait_for(has_lost_one, &lw, "worker 'dead' to count a lost outcome");
	bus_worker_stats st;
	bus_worker_get_stats(&st, s.dead);
	ck_assert_int_eq(st.lost, 1);
	ck_assert_int_eq(st.completed, 0);
	j = get_job(s.b, s.id);
	ck_assert_msg(j->state == BUS_JOB_EXECUTING && j->attempt == 2,
		      "the stale outcome of attempt 1 changed the job: it is "
		      "%s with attempt %d",
		      bus_job_state_name(j->state), j->attempt);
	ck_assert_str_eq(j->attempted_by, holder);
	ck_assert_int_eq(j->finished_at, 0);
	bus_job_free(j);

	/* Attempt 2 is unharmed and completes. */
	atomic_store(&s.bl.release, 2);
	j = wait_job(s.b, s.id, BUS_JOB_COMPLETED, 2);
	assert_errors(j, 1, "lease expired");
	bus_job_free(j);
	release_and_close(&s);
}
END_TEST

START_TEST(expired_lease_with_no_attempts_left_is_discarded)
{
	struct stranded s;
	strand_job(&s, "rescue.discard", 1);
	bus_job *j = wait_job(s.b, s.id, BUS_JOB_DISCARDED, 1);
	ck_assert_int_eq(j->finished_at, clock_now(&s.clock));
	assert_errors(j, 1, "lease expired");
	bus_job_free(j);
	release_and_close(&s);
}
END_TEST

struct lease_wait {
	bus *b;
	int64_t id;
	int64_t want;
	/* What the last look saw. */
	bus_job_state state;
	int attempt;
	int64_t lease_until;
};

static int lease_reaches(void *arg)
{
	struct lease_wait *lw = arg;
	bus_job *j = get_job(lw->b, lw->id);
	lw->state = j->state;
	lw->attempt = j->attempt;
	lw->lease_until = j->lease_until;
	bus_job_free(j);
	return lw->lease_until == lw->want;
}

/* Moves the clock by less than the lease (so the lease never runs out, and
 * no rescuer may take the job) and waits for the renewal to now + lease. */
static void assert_renewed_after(bus *b, struct test_clock *c, int64_t id,
				 int64_t step_us, int64_t lease_us)
{
	clock_advance(c, step_us);
	struct lease_wait lw = { b, id, clock_now(c) + lease_us,
				 BUS_JOB_AVAILABLE, 0, 0 };
	ck_assert_msg(contract_poll(lease_reaches, &lw),
		      "the lease was not renewed to now + lease (%lld): the "
		      "job is %s, attempt %d, lease_until %lld",
		      (long long)lw.want, bus_job_state_name(lw.state),
		      lw.attempt, (long long)lw.lease_until);
}

START_TEST(running_job_lease_is_renewed)
{
	bus *b;
	struct test_clock clock;
	struct blocker bl = { 0, 0, 0 };
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "rescue.renew", block_until_released, &bl, NULL,
			"rescue.renew");
	int64_t id = enqueue_ok(b, "rescue.renew", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "rescue.renew",
						   .lease_ms = 1500 });
	wait_atomic(&bl.started, 1, "the handler to start");
	bus_job *j = get_job(b, id);
	ck_assert_int_eq(j->lease_until, CONTRACT_T0_US + 1500000);
	bus_job_free(j);

	/* Several renewals' worth of time, each step within the lease. */
	for (int i = 0; i < 3; i++)
		assert_renewed_after(b, &clock, id, 1000000, 1500000);

	atomic_store(&bl.release, 1);
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.lost, 0);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

static int cancelled_one(void *arg)
{
	bus_worker_stats st;
	bus_worker_get_stats(&st, arg);
	return st.cancelled == 1;
}

/* Jobs a worker has claimed ahead (prefetched, waiting for an executor) are
 * its too: their leases are renewed, and one cancelled meanwhile is dropped
 * instead of run. */
START_TEST(prefetched_jobs_keep_their_leases_and_a_cancelled_one_is_dropped)
{
	bus *b;
	struct test_clock clock;
	struct blocker bl = { 0, 0, 0 };
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "rescue.prefetch", block_until_released, &bl, NULL,
			"rescue.prefetch");
	int64_t ids[3];
	for (int i = 0; i < 3; i++) {
		bus_job_opts o = BUS_JOB_OPTS_INIT;
		o.priority = i; /* claimed, and so run, in this order */
		ids[i] = enqueue_ok(b, "rescue.prefetch", "{}", &o,
				    BUS_INSERTED);
	}
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "rescue.prefetch",
						   .concurrency = 1,
						   .prefetch = 2,
						   .lease_ms = 1500 });
	wait_atomic(&bl.started, 1, "the first handler to start");
	/* The other two are claimed and wait: executing, attempt 1. */
	bus_job_free(wait_job(b, ids[1], BUS_JOB_EXECUTING, 1));
	bus_job_free(wait_job(b, ids[2], BUS_JOB_EXECUTING, 1));
	/* A cancel of a claimed job is a request: it stays executing until
	 * its worker takes it out of its prefetch and records it cancelled,
	 * without running it. */
	ck_assert_int_eq(bus_job_cancel(b, ids[2]), 0);
	bus_job *c = get_job(b, ids[2]);
	ck_assert_msg(c->state == BUS_JOB_EXECUTING ||
			      c->state == BUS_JOB_CANCELLED,
		      "a cancelled waiting job is %s",
		      bus_job_state_name(c->state));
	bus_job_free(c);
	for (int i = 0; i < 3; i++)
		assert_renewed_after(b, &clock, ids[1], 1000000, 1500000);
	bus_job_free(wait_job(b, ids[2], BUS_JOB_CANCELLED, 1));
	wait_for(cancelled_one, w, "the worker to count the cancel");

	atomic_store(&bl.release, RELEASE_ALL);
	bus_job_free(wait_job(b, ids[0], BUS_JOB_COMPLETED, 1));
	bus_job_free(wait_job(b, ids[1], BUS_JOB_COMPLETED, 1));
	c = get_job(b, ids[2]);
	ck_assert_int_eq(c->state, BUS_JOB_CANCELLED);
	bus_job_free(c);
	ck_assert_int_eq(atomic_load(&bl.started), 2);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

/*
 * A worker dies holding one job that started and two it claimed ahead
 * (prefetch) but never started. The rescue charges the started one as
 * before (discarded at max_attempts 1, else retryable after the rescue
 * delay) and refunds the others: available at once, attempt back to 0, no
 * error entry, not discarded even at max_attempts 1; then they run.
 */
static void dead_worker_with_prefetched_jobs(int max_attempts)
{
	char kind[64];
	snprintf(kind, sizeof kind, "rescue.unstarted%d", max_attempts);
	bus *b;
	struct test_clock clock;
	struct blocker bl = { 0, 0, 0 };
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = max_attempts;
	contract_handle(b, kind, block_until_released, &bl, &ho, kind);
	int64_t ids[3];
	for (int i = 0; i < 3; i++) {
		bus_job_opts o = BUS_JOB_OPTS_INIT;
		o.priority = i; /* claimed, and so run, in this order */
		ids[i] = enqueue_ok(b, kind, "{}", &o, BUS_INSERTED);
	}
	bus_worker *dead = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = kind,
						   .node = "dead",
						   .concurrency = 1,
						   .prefetch = 2,
						   .lease_ms = 60000,
						   .rescue_interval_ms =
							   600000 });
	wait_atomic(&bl.started, 1, "the first handler to start on 'dead'");
	bus_job *j = get_job(b, ids[0]);
	ck_assert_int_eq(j->started_at, CONTRACT_T0_US);
	bus_job_free(j);
	for (int i = 1; i < 3; i++) {
		j = wait_job(b, ids[i], BUS_JOB_EXECUTING, 1);
		ck_assert_str_eq(j->attempted_by, "dead");
		ck_assert_msg(j->started_at == 0,
			      "job %d waits in the prefetch but reads as "
			      "started at %lld",
			      i, (long long)j->started_at);
		bus_job_free(j);
	}

	clock_advance(&clock, 120 * SEC_US);
	/* A rescuer of another queue: it rescues, and runs none of them. */
	bus_worker *rescuer = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "rescue.elsewhere",
						   .node = "b" });
	j = wait_job(b, ids[0],
		     max_attempts == 1 ? BUS_JOB_DISCARDED : BUS_JOB_RETRYABLE,
		     1);
	assert_errors(j, 1, "lease expired");
	if (max_attempts > 1)
		ck_assert_int_eq(j->scheduled_at,
				 clock_now(&clock) + 5 * SEC_US);
	bus_job_free(j);
	for (int i = 1; i < 3; i++) {
		j = wait_job(b, ids[i], BUS_JOB_AVAILABLE, 0);
		ck_assert_msg(j->scheduled_at == clock_now(&clock),
			      "a refunded job is due at %lld, expected now "
			      "(%lld): no rescue delay",
			      (long long)j->scheduled_at,
			      (long long)clock_now(&clock));
		assert_errors(j, 0, "");
		ck_assert_int_eq(j->finished_at, 0);
		ck_assert_int_eq(j->lease_until, 0);
		bus_job_free(j);
	}
	ck_assert_int_eq(atomic_load(&bl.started), 1);

	/* They run on their first attempt, on whichever worker claims them
	 * ('dead' finds they are not its any more once it goes on). */
	bus_worker *live = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = kind,
						   .node = "live" });
	atomic_store(&bl.release, RELEASE_ALL);
	for (int i = 1; i < 3; i++)
		bus_job_free(wait_job(b, ids[i], BUS_JOB_COMPLETED, 1));
	ck_assert_int_eq(atomic_load(&bl.started), 3);
	bus_worker_free(live);
	bus_worker_free(rescuer);
	bus_worker_free(dead);
	bus_close(b);
}

START_TEST(prefetched_jobs_that_never_started_get_their_attempt_back)
{
	dead_worker_with_prefetched_jobs(1);
}
END_TEST

START_TEST(unstarted_jobs_are_due_at_once_and_started_ones_wait)
{
	dead_worker_with_prefetched_jobs(3);
}
END_TEST

/* ---- a poison job: its handler kills its worker's whole process ---- */

#define POISON_EXIT 42

static int kill_the_process(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	_exit(POISON_EXIT);
}

/* In a forked process: a worker with thread isolation, its clock at
 * `now_us`, running the poison job, which ends the process. Exits 1 when
 * something else fails. */
static void run_poison_worker(int64_t now_us)
{
	bus *b = NULL;
	if (bus_open(&b, contract_url()) != 0)
		_exit(1);
	bus_set_logger(b, BUS_LOG_ERROR, NULL, NULL);
	struct test_clock clock;
	contract_clock_install(b, &clock);
	clock_advance(&clock, now_us - CONTRACT_T0_US);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	ho.queue = "rescue.poison";
	if (bus_handle_command(b, "rescue.poison", kill_the_process, NULL,
			       &ho) != 0)
		_exit(1);
	bus_worker_queue q = { "rescue.poison", 1 };
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.queues = &q;
	wo.n_queues = 1;
	wo.node = "poisoned";
	wo.isolation = BUS_ISOLATION_THREAD;
	wo.poll_interval_ms = 5;
	wo.lease_ms = 60000;
	wo.rescue_interval_ms = 600000;
	bus_worker *w = NULL;
	if (bus_worker_new(&w, b, &wo) != 0 || bus_worker_start(w) != 0)
		_exit(1);
	sleep_ms(CONTRACT_LIVENESS_MS);
	_exit(2); /* the handler never ran */
}

/*
 * A job whose handler kills the worker's process is charged an attempt at
 * every rescue, and is discarded once they are spent: the worker records
 * its start before the handler begins, so the rescue never takes it for
 * a job that waited unstarted (whose attempt it would refund, for ever).
 * The worker runs in a process of its own (not on memory:, which lives in
 * the worker's process).
 */
START_TEST(a_job_that_kills_its_worker_spends_its_attempts)
{
	bus *b;
	contract_open(&b);
	if (strncmp(contract_url(), "memory:", 7) == 0) {
		bus_close(b);
		return;
	}
	struct test_clock clock;
	contract_clock_install(b, &clock);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 2;
	contract_handle(b, "rescue.poison", kill_the_process, NULL, &ho,
			"rescue.poison");
	int64_t id = enqueue_ok(b, "rescue.poison", "{}", NULL, BUS_INSERTED);
	for (int attempt = 1; attempt <= 2; attempt++) {
		fflush(NULL);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			run_poison_worker(clock_now(&clock));
		int status = 0;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFEXITED(status) &&
				      WEXITSTATUS(status) == POISON_EXIT,
			      "the poisoned worker's process ended with "
			      "status %#x, not by its handler",
			      status);
		bus_job *j = get_job(b, id);
		ck_assert_int_eq(j->state, BUS_JOB_EXECUTING);
		ck_assert_int_eq(j->attempt, attempt);
		ck_assert_msg(j->started_at == clock_now(&clock),
			      "the handler began, but the job's start reads "
			      "%lld",
			      (long long)j->started_at);
		bus_job_free(j);

		/* Past its lease, a rescuer (of another queue) charges it. */
		clock_advance(&clock, 120 * SEC_US);
		bus_worker *rescuer = contract_start_worker(
			b, &(struct contract_worker_opts){
				   .queue = "rescue.elsewhere",
				   .node = "b" });
		j = wait_job(b, id,
			     attempt < 2 ? BUS_JOB_RETRYABLE : BUS_JOB_DISCARDED,
			     attempt);
		assert_errors(j, attempt, "lease expired");
		int64_t due = j->scheduled_at;
		bus_job_free(j);
		bus_worker_free(rescuer);
		if (due > clock_now(&clock))
			clock_advance(&clock, due - clock_now(&clock));
	}
	bus_close(b);
}
END_TEST

TCase *contract_rescue(void)
{
	TCase *tc = contract_tcase("rescue");
	tcase_add_test(tc,
		       expired_lease_of_stalled_worker_is_rescued_to_retryable);
	tcase_add_test(tc, completion_by_worker_that_lost_its_lease_is_refused);
	tcase_add_test(tc, expired_lease_with_no_attempts_left_is_discarded);
	tcase_add_test(tc, running_job_lease_is_renewed);
	tcase_add_test(
		tc, prefetched_jobs_keep_their_leases_and_a_cancelled_one_is_dropped);
	tcase_add_test(tc,
		       prefetched_jobs_that_never_started_get_their_attempt_back);
	tcase_add_test(tc, unstarted_jobs_are_due_at_once_and_started_ones_wait);
	return tc;
}

TCase *contract_rescue_poison(void)
{
	/* It forks a worker process: left out where forking is (the
	 * sanitizer build), like the children's cases. */
	TCase *tc = contract_tcase("rescue_poison");
	tcase_set_tags(tc, "process");
	tcase_add_test(tc, a_job_that_kills_its_worker_spends_its_attempts);
	return tc;
}
