/* Workers at their defaults, and the rules that make them safe there:
 * a worker serving an empty queue beside a busy one drains the busy one; a
 * threaded handler still running past the shutdown grace is waited for,
 * never run in two places at once; a producer that declares a handler's
 * job options stores them; names are UTF-8 and bounded on every store. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract.h"

/* The documented bound of a name, in bytes (bus/bus.h). */
#define BUS_NAME_MAX_TEST 255

/* ---- a 2-queue worker at its defaults ---------------------------------- */

#define DRAIN_JOBS 10000
#define DRAIN_BATCH 1000
/* Far above what any store needs for DRAIN_JOBS no-op jobs, far below what
 * a worker that naps whenever one queue is empty takes (8 jobs/s: 20
 * minutes). A liveness bound, not a speed test. */
#define DRAIN_BOUND_MS 100000

static int count_call(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(two_queue_worker_at_defaults_drains_10000_jobs)
{
	bus *b;
	atomic_int calls = 0;
	contract_open(&b);
	contract_handle(b, "dflt.noop", count_call, &calls, NULL, "dflt.q");
	bus_enqueue_item items[DRAIN_BATCH];
	for (int i = 0; i < DRAIN_BATCH; i++)
		items[i] = (bus_enqueue_item){ "dflt.noop", NULL, "{}", NULL };
	for (int k = 0; k < DRAIN_JOBS / DRAIN_BATCH; k++)
		ck_assert_msg(bus_enqueue_many(NULL, b, items, DRAIN_BATCH) == 0,
			      "bus_enqueue_many: %s",
			      bus_error_last()->message);

	/* Nothing set but the queues, at the default concurrency. */
	bus_worker_queue qs[2] = { { "dflt.q", 0 }, { "dflt.empty", 0 } };
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.queues = qs;
	wo.n_queues = 2;
	bus_worker *w;
	ck_assert_msg(bus_worker_new(&w, b, &wo) == 0, "bus_worker_new: %s",
		      bus_error_last()->message);
	ck_assert_msg(bus_worker_start(w) == 0, "bus_worker_start: %s",
		      bus_error_last()->message);
	int64_t deadline = mono_ms() + DRAIN_BOUND_MS;
	bus_worker_stats st;
	for (;;) {
		bus_worker_get_stats(&st, w);
		if (st.completed >= DRAIN_JOBS)
			break;
		ck_assert_msg(mono_ms() < deadline,
			      "a worker at its defaults, serving 2 queues (one "
			      "empty), completed %llu of %d jobs in %d s",
			      (unsigned long long)st.completed, DRAIN_JOBS,
			      DRAIN_BOUND_MS / 1000);
		sleep_ms(10);
	}
	ck_assert_int_eq(bus_worker_stop(w, 10000), 0);
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.completed, DRAIN_JOBS);
	ck_assert_int_eq(st.retried + st.discarded + st.lost, 0);
	bus_worker_free(w);
	ck_assert_int_eq(count_jobs(b, BUS_STATE_BIT(BUS_JOB_COMPLETED),
				    "dflt.q", NULL),
			 DRAIN_JOBS);
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), DRAIN_JOBS);
	/* Under process isolation (SQL stores) the calls are the children's. */
	if (strncmp(contract_url(), "memory:", 7) == 0)
		ck_assert_int_eq(atomic_load(&calls), DRAIN_JOBS);
	bus_close(b);
}
END_TEST

/* ---- a job stored through the bus wakes a dry queue --------------------- */

/* The longest poll interval there is (a day): a job found only by polling
 * fails. */
#define NEVER_POLL_MS BUS_WORKER_INTERVAL_MAX_MS

/* Stores a job in `queue` and waits for it to complete. */
static void stored_job_wakes(bus *b, const char *queue)
{
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = queue;
	int64_t id = enqueue_ok(b, "wake.job", "{}", &o, BUS_INSERTED);
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
}

START_TEST(job_stored_through_the_bus_wakes_its_dry_queue)
{
	bus *b;
	atomic_int calls = 0;
	contract_open(&b);
	contract_handle(b, "wake.job", count_call, &calls, NULL, "wake.a");
	bus_worker_queue qs[2] = { { "wake.a", 0 }, { "wake.b", 0 } };
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.queues = qs;
	wo.n_queues = 2;
	wo.isolation = BUS_ISOLATION_THREAD;
	wo.poll_interval_ms = NEVER_POLL_MS;
	bus_worker *w;
	ck_assert_int_eq(bus_worker_new(&w, b, &wo), 0);
	ck_assert_int_eq(bus_worker_start(w), 0);
	/* Both queues came back empty: neither is polled again. */
	sleep_ms(CONTRACT_SETTLE_MS);
	stored_job_wakes(b, "wake.b");
	sleep_ms(CONTRACT_SETTLE_MS);
	stored_job_wakes(b, "wake.a");
	/* And again, once the queues are dry after those jobs. */
	sleep_ms(CONTRACT_SETTLE_MS);
	stored_job_wakes(b, "wake.b");
	ck_assert_int_eq(bus_worker_stop(w, 1000), 0);
	ck_assert_int_eq(atomic_load(&calls), 3);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

/* ---- shutdown never runs a job in two places --------------------------- */

#define ISO_JOBS 8
/* Longer than the lease: the lease must be renewed while stop waits. */
#define ISO_RUN_MS 2500
#define ISO_LEASE_MS 2000

struct iso_record {
	pthread_mutex_t lock;
	int64_t ids[ISO_JOBS];
	int active[ISO_JOBS], runs[ISO_JOBS];
	int overlap; /* a job ran in two places at once */
	int unknown; /* a job that is not one of ours ran */
	atomic_int started, ended;
};

static int iso_slot(struct iso_record *r, int64_t id)
{
	for (int i = 0; i < ISO_JOBS; i++)
		if (r->ids[i] == id)
			return i;
	return -1;
}

/* Ignores bus_ctx_expired on purpose, as a careless handler would. */
static int slow_ignoring_shutdown(bus_ctx *ctx, void *udata)
{
	struct iso_record *r = udata;
	int64_t id = bus_ctx_job(ctx)->id;
	pthread_mutex_lock(&r->lock);
	int k = iso_slot(r, id);
	if (k < 0) {
		r->unknown = 1;
	} else {
		r->runs[k]++;
		if (++r->active[k] > 1)
			r->overlap = 1;
	}
	pthread_mutex_unlock(&r->lock);
	atomic_fetch_add(&r->started, 1);
	sleep_ms(ISO_RUN_MS);
	pthread_mutex_lock(&r->lock);
	if (k >= 0)
		r->active[k]--;
	pthread_mutex_unlock(&r->lock);
	atomic_fetch_add(&r->ended, 1);
	return 0;
}

START_TEST(stop_past_grace_waits_for_threaded_handlers_and_keeps_outcomes)
{
	bus *b;
	static struct iso_record r;
	memset(&r, 0, sizeof r);
	pthread_mutex_init(&r.lock, NULL);
	contract_open(&b);
	contract_handle(b, "iso.slow", slow_ignoring_shutdown, &r, NULL,
			"iso.q");
	pthread_mutex_lock(&r.lock);
	for (int i = 0; i < ISO_JOBS; i++)
		r.ids[i] = enqueue_ok(b, "iso.slow", "{}", NULL, BUS_INSERTED);
	pthread_mutex_unlock(&r.lock);

	/* A takes all eight; B waits beside it for anything given back or
	 * rescued. */
	bus_worker *a = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "iso.q",
						   .concurrency = ISO_JOBS,
						   .prefetch = -1,
						   .lease_ms = ISO_LEASE_MS,
						   .node = "iso.A" });
	wait_atomic(&r.started, ISO_JOBS, "A to start all its jobs");
	bus_worker *w2 = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "iso.q",
						   .concurrency = ISO_JOBS,
						   .lease_ms = ISO_LEASE_MS,
						   .node = "iso.B" });
	/* A short grace: every handler is still running when it ends. */
	ck_assert_int_eq(bus_worker_stop(a, 50), 0);
	ck_assert_msg(atomic_load(&r.ended) == ISO_JOBS,
		      "bus_worker_stop returned with %d of %d handlers still "
		      "running",
		      ISO_JOBS - atomic_load(&r.ended), ISO_JOBS);
	/* Give B the time to claim or rescue anything left behind. */
	sleep_ms(CONTRACT_SETTLE_MS + ISO_LEASE_MS / 2);
	bus_worker_stats sa, sb;
	bus_worker_get_stats(&sa, a);
	bus_worker_get_stats(&sb, w2);
	ck_assert_int_eq(bus_worker_stop(w2, 5000), 0);

	ck_assert_msg(!r.overlap, "a job ran in two places at once");
	ck_assert(!r.unknown);
	for (int i = 0; i < ISO_JOBS; i++) {
		ck_assert_msg(r.runs[i] == 1, "job %lld ran %d times",
			      (long long)r.ids[i], r.runs[i]);
		bus_job *j = get_job(b, r.ids[i]);
		ck_assert_msg(j->state == BUS_JOB_COMPLETED,
			      "job %lld is %s: its finished run was not "
			      "recorded",
			      (long long)j->id, bus_job_state_name(j->state));
		ck_assert_int_eq(j->attempt, 1);
		ck_assert_str_eq(j->attempted_by, "iso.A");
		bus_job_free(j);
	}
	ck_assert_int_eq(sa.completed, ISO_JOBS);
	ck_assert_int_eq(sa.given_back + sa.lost, 0);
	ck_assert_int_eq(sb.claimed + sb.rescued, 0);
	bus_worker_free(a);
	bus_worker_free(w2);
	bus_close(b);
	pthread_mutex_destroy(&r.lock);
}
END_TEST

/* Runs past any timeout or grace a test gives it, in a child that is
 * killed before it returns. */
static int outlive_any_timeout(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	sleep_ms(CONTRACT_LIVENESS_MS);
	return 0;
}

/* Under process isolation a child still running past the grace is killed:
 * that is the shutdown's doing, not the job's, so the job goes back
 * unspent, never cancelled. */

static int worker_running_one(void *arg)
{
	bus_worker_stats st;
	bus_worker_get_stats(&st, arg);
	return st.running == 1;
}

START_TEST(stop_past_grace_gives_back_a_killed_childs_job)
{
	bus *b;
	contract_open(&b);
	contract_handle(b, "kill.slow", outlive_any_timeout, NULL, NULL, "kill.q");
	int64_t id = enqueue_ok(b, "kill.slow", "{}", NULL, BUS_INSERTED);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "kill.q",
						   .process = 1 });
	/* Handed to the child (claimed is not enough: a job still waiting
	 * for its executor is given back before the grace). */
	wait_for(worker_running_one, w, "the job to reach its child");
	ck_assert_int_eq(bus_worker_stop(w, 50), 0);
	bus_job *j = get_job(b, id);
	ck_assert_msg(j->state == BUS_JOB_AVAILABLE,
		      "a job whose child the shutdown killed is %s, expected "
		      "available (given back)",
		      bus_job_state_name(j->state));
	ck_assert_int_eq(j->attempt, 0);
	ck_assert_int_eq(j->finished_at, 0);
	bus_job_free(j);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_int_eq(st.given_back, 1);
	ck_assert_int_eq(st.cancelled + st.completed + st.retried, 0);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

/* ---- a child's enqueue never waits for the parent's locks ------------- */

/* A handler under process isolation that enqueues runs in a child forked
 * while other threads of the parent held the bus's locks; it must not take
 * them. Every other job crashes its child, so that children are forked
 * again and again while a producer thread keeps those locks busy. */
#define FORK_JOBS 100

static int chain_or_crash(bus_ctx *ctx, void *udata)
{
	(void)udata;
	const cJSON *c =
		cJSON_GetObjectItemCaseSensitive(bus_ctx_json(ctx), "crash");
	if (cJSON_IsTrue(c))
		abort();
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = "cfork.next";
	if (bus_enqueue(NULL, bus_ctx_bus(ctx), "cfork.next", "{}", &o) != 0)
		return bus_ctx_fail(ctx, "%s", bus_error_last()->message);
	return 0;
}

struct busy_producer {
	bus *b;
	atomic_int stop;
};

static void *produce_until_stopped(void *arg)
{
	struct busy_producer *p = arg;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = "cfork.other";
	while (!atomic_load(&p->stop))
		if (bus_enqueue(NULL, p->b, "cfork.other", "{}", &o) != 0)
			break;
	return NULL;
}

struct fork_done {
	bus_worker *w;
};

static int fork_jobs_done(void *arg)
{
	bus_worker_stats st;
	bus_worker_get_stats(&st, ((struct fork_done *)arg)->w);
	return st.completed + st.discarded >= FORK_JOBS;
}

START_TEST(handler_in_child_enqueues_while_parent_is_busy)
{
	bus *b;
	contract_open(&b);
	if (strncmp(contract_url(), "memory:", 7) == 0) {
		/* memory: lives in the worker's process: a child cannot
		 * enqueue there at all (BUS_ESTATE, see isolation). */
		bus_close(b);
		return;
	}
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 1;
	contract_handle(b, "cfork.job", chain_or_crash, NULL, &ho, "cfork.q");
	/* Declared, so that the producer's enqueues are not warned about. */
	contract_handle(b, "cfork.other", count_call, NULL, NULL, "cfork.other");
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "cfork.q",
						   .concurrency = 2,
						   .process = 1 });
	struct busy_producer prod = { b, 0 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, produce_until_stopped, &prod),
			 0);
	for (int i = 0; i < FORK_JOBS; i++)
		enqueue_ok(b, "cfork.job", i % 2 ? "{\"crash\":true}" : "{}",
			   NULL, BUS_INSERTED);
	struct fork_done d = { w };
	int done = contract_poll(fork_jobs_done, &d);
	atomic_store(&prod.stop, 1);
	pthread_join(t, NULL);
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	ck_assert_msg(done,
		      "%llu of %d jobs ended (%llu running): a child hangs in "
		      "its enqueue",
		      (unsigned long long)(st.completed + st.discarded),
		      FORK_JOBS, (unsigned long long)st.running);
	ck_assert_int_eq(bus_worker_stop(w, 1000), 0);
	bus_worker_free(w);
	ck_assert_int_eq(count_jobs(b, BUS_STATE_BIT(BUS_JOB_COMPLETED),
				    "cfork.q", NULL),
			 FORK_JOBS / 2);
	ck_assert_int_eq(count_jobs(b, 0, "cfork.next", NULL), FORK_JOBS / 2);
	bus_close(b);
}
END_TEST

/* ---- a producer declares its jobs' options ----------------------------- */

START_TEST(declared_handler_gives_producer_its_job_options)
{
	bus *b;
	contract_open(&b);
	/* The producer has no function: it declares what the workers run. */
	bus_handler_opts o = BUS_HANDLER_OPTS_INIT;
	o.durable = 1;
	o.queue = "decl.q";
	o.max_attempts = 7;
	o.priority = 5;
	o.timeout_ms = 1234;
	ck_assert_msg(bus_handle_command(b, "decl.job", NULL, NULL, &o) == 0,
		      "declaring a durable command without a function: %s",
		      bus_error_last()->message);
	int64_t id = enqueue_ok(b, "decl.job", "{}", NULL, BUS_INSERTED);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(j->queue, "decl.q");
	ck_assert_str_eq(j->handler, "decl.job");
	ck_assert_int_eq(j->max_attempts, 7);
	ck_assert_int_eq(j->priority, 5);
	ck_assert_int_eq(j->timeout_ms, 1234);
	bus_job_free(j);

	/* bus_send of the declared command stores the same. */
	char *res = NULL;
	ck_assert_int_eq(bus_send(&res, b, "decl.job", "{}", NULL), 0);
	ck_assert_ptr_nonnull(strstr(res, "\"inserted\""));
	bus_free(res);
	ck_assert_int_eq(count_jobs(b, 0, "decl.q", "decl.job"), 2);

	/* An event's durable handler, declared by name, fans out to its
	 * queue. */
	o.queue = "decl.events";
	o.name = "decl.audit";
	ck_assert_int_eq(bus_on(b, "decl.happened", NULL, NULL, &o), 0);
	bus_publish_result pr;
	ck_assert_int_eq(bus_publish(&pr, b, "decl.happened", "{}", NULL), 0);
	ck_assert_int_eq(pr.jobs, 1);
	ck_assert_int_eq(count_jobs(b, 0, "decl.events", "decl.happened"), 1);

	/* Only a durable handler may lack its function. */
	bus_handler_opts plain = BUS_HANDLER_OPTS_INIT;
	ck_assert_int_eq(bus_handle_command(b, "decl.plain", NULL, NULL,
					    &plain),
			 BUS_EINVAL);
	ck_assert_int_eq(bus_on(b, "decl.plain", NULL, NULL, NULL),
			 BUS_EINVAL);
	bus_close(b);
}
END_TEST

struct captured {
	pthread_mutex_t lock;
	char text[2048];
	int warnings;
};

static void capture_log(bus_log_level level, const char *message,
			void *udata)
{
	struct captured *c = udata;
	if (level < BUS_LOG_WARN)
		return;
	pthread_mutex_lock(&c->lock);
	if (strstr(message, "no durable handler") != NULL) {
		c->warnings++;
		snprintf(c->text, sizeof c->text, "%s", message);
	}
	pthread_mutex_unlock(&c->lock);
}

START_TEST(enqueue_of_undeclared_kind_warns_once)
{
	bus *b;
	static struct captured c;
	memset(&c, 0, sizeof c);
	pthread_mutex_init(&c.lock, NULL);
	contract_open(&b);
	bus_set_logger(b, BUS_LOG_WARN, capture_log, &c);
	enqueue_ok(b, "undeclared.kind", "{}", NULL, BUS_INSERTED);
	enqueue_ok(b, "undeclared.kind", "{}", NULL, BUS_INSERTED);
	pthread_mutex_lock(&c.lock);
	ck_assert_int_eq(c.warnings, 1);
	ck_assert_ptr_nonnull(strstr(c.text, "'undeclared.kind'"));
	ck_assert_ptr_nonnull(strstr(c.text, "'default'"));
	pthread_mutex_unlock(&c.lock);
	/* A declared kind is not warned about. */
	bus_handler_opts o = BUS_HANDLER_OPTS_INIT;
	o.durable = 1;
	o.queue = "declared.q";
	ck_assert_int_eq(bus_handle_command(b, "declared.kind", NULL, NULL,
					    &o),
			 0);
	enqueue_ok(b, "declared.kind", "{}", NULL, BUS_INSERTED);
	pthread_mutex_lock(&c.lock);
	ck_assert_int_eq(c.warnings, 1);
	pthread_mutex_unlock(&c.lock);
	bus_set_logger(b, BUS_LOG_ERROR, NULL, NULL);
	bus_close(b);
	pthread_mutex_destroy(&c.lock);
}
END_TEST

/* The worker's handler declares a timeout the stored job lacks (its
 * producer knew nothing of it): the job runs under the worker's. */
struct deadline_seen {
	atomic_int ran;
	_Atomic int64_t remaining_ms;
};

static int note_deadline(bus_ctx *ctx, void *udata)
{
	struct deadline_seen *d = udata;
	atomic_store(&d->remaining_ms, bus_ctx_remaining_ms(ctx));
	atomic_store(&d->ran, 1);
	return 0;
}

START_TEST(worker_handler_timeout_applies_to_job_stored_without_one)
{
	bus *b;
	struct deadline_seen d = { 0, 0 };
	contract_open(&b);
	/* Stored before any handler is known: no timeout in the row. */
	bus_job_opts jo = BUS_JOB_OPTS_INIT;
	jo.queue = "tmo.q";
	int64_t id = enqueue_ok(b, "tmo.job", "{}", &jo, BUS_INSERTED);
	bus_job *j = get_job(b, id);
	ck_assert_int_eq(j->timeout_ms, 0);
	bus_job_free(j);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.timeout_ms = 60000;
	contract_handle(b, "tmo.job", note_deadline, &d, &ho, "tmo.q");
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "tmo.q" });
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	/* A thread-isolated worker: the handler ran here. */
	ck_assert(atomic_load(&d.ran));
	int64_t left = atomic_load(&d.remaining_ms);
	ck_assert_msg(left > 0 && left <= 60000,
		      "the handler saw %lld ms left: the worker's timeout_ms "
		      "was not applied",
		      (long long)left);
	bus_close(b);
}
END_TEST

/* The same under process isolation, where the parent enforces the limit by
 * killing the child: a job stored without a timeout is stopped at its
 * worker's handler's. */

START_TEST(worker_handler_timeout_kills_child_of_job_stored_without_one)
{
	bus *b;
	contract_open(&b);
	bus_job_opts jo = BUS_JOB_OPTS_INIT;
	jo.queue = "tmo.pq";
	int64_t id = enqueue_ok(b, "tmo.pjob", "{}", &jo, BUS_INSERTED);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.timeout_ms = 200;
	contract_handle(b, "tmo.pjob", outlive_any_timeout, NULL, &ho,
			"tmo.pq");
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "tmo.pq",
						   .process = 1 });
	bus_job *j = wait_job(b, id, BUS_JOB_RETRYABLE, 1);
	ck_assert_int_eq(j->timeout_ms, 0);
	assert_errors(j, 1, "timeout after 0.2s");
	bus_job_free(j);
	bus_worker_free(w);
	bus_close(b);
}
END_TEST

/* ---- names --------------------------------------------------------------- */

#define assert_bad_name(rc, part)                                              \
	do {                                                                   \
		int rc_ = (rc);                                                \
		ck_assert_msg(rc_ == BUS_EINVAL, "%s = %s, expected "          \
						 "BUS_EINVAL",                 \
			      #rc, bus_error_name(rc_));                       \
		ck_assert_msg(strstr(bus_error_last()->message, part),         \
			      "message \"%s\" lacks \"%s\"",                   \
			      bus_error_last()->message, part);                \
	} while (0)

START_TEST(names_are_utf8_and_bounded_on_every_store)
{
	bus *b;
	contract_open(&b);
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	/* kind: a stray byte; handler: an overlong NUL; queue: past
	 * U+10FFFF; tags: a UTF-16 surrogate; C1 control. */
	assert_bad_name(bus_enqueue(NULL, b, "bad\xffutf8", "{}", NULL),
			"job kind");
	assert_bad_name(bus_enqueue_to(NULL, b, "names.k", "h\xc0\x80", "{}",
				       NULL),
			"handler name");
	o.queue = "q\xf5\x80\x80\x80";
	assert_bad_name(bus_enqueue(NULL, b, "names.k", "{}", &o),
			"queue name");
	o.queue = "bad\xffutf8";
	assert_bad_name(bus_enqueue(NULL, b, "names.k", "{}", &o), "UTF-8");
	o.queue = "q\xc2\x85";
	assert_bad_name(bus_enqueue(NULL, b, "names.k", "{}", &o), "control");
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.tags = "[\"ok\",\"s\\ud800x\"]";
	assert_bad_name(bus_enqueue(NULL, b, "names.k", "{}", &o), "tag");
	char long_name[300];
	memset(long_name, 'q', 256);
	long_name[256] = '\0';
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.queue = long_name;
	assert_bad_name(bus_enqueue(NULL, b, "names.k", "{}", &o), "limit");
	char long_tag[300 + 8];
	snprintf(long_tag, sizeof long_tag, "[\"%s\"]", long_name);
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.tags = long_tag;
	assert_bad_name(bus_enqueue(NULL, b, "names.k", "{}", &o), "tag");
	assert_bad_name(bus_queue_pause(b, "p\xff"), "queue name");
	bus_job_filter jf = BUS_JOB_FILTER_INIT;
	bus_job *none = NULL;
	size_t n_none = 0;
	jf.kind = "k\xff";
	assert_bad_name(bus_job_list(&none, &n_none, b, &jf),
			"bus_job_filter.kind");
	jf.kind = NULL;
	jf.queue = long_name;
	assert_bad_name(bus_job_list(&none, &n_none, b, &jf),
			"bus_job_filter.queue");
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);

	/* Workers: queue and node names. */
	bus_worker_queue q = { "w\xff", 1 };
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.queues = &q;
	wo.n_queues = 1;
	bus_worker *w = NULL;
	assert_bad_name(bus_worker_new(&w, b, &wo), "queue name");
	q.name = "names.q";
	wo.node = "node\xe0\x80\xaf";
	assert_bad_name(bus_worker_new(&w, b, &wo), "node name");

	/* At the limit, in characters of 1 to 4 bytes: stored as given. */
	char name[BUS_NAME_MAX_TEST + 1];
	size_t n = 0;
	static const char *const chars[] = { "a", "\xc3\xa9", "\xe2\x82\xac",
					     "\xf0\x9f\x98\x80" };
	for (int i = 0; n + 4 <= BUS_NAME_MAX_TEST; i++) {
		size_t len = strlen(chars[i % 4]);
		memcpy(name + n, chars[i % 4], len);
		n += len;
	}
	while (n < BUS_NAME_MAX_TEST)
		name[n++] = 'z';
	name[n] = '\0';
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.queue = name;
	char tags[BUS_NAME_MAX_TEST + 8];
	snprintf(tags, sizeof tags, "[\"%s\"]", name);
	o.tags = tags;
	int64_t id = enqueue_ok(b, name, "{}", &o, BUS_INSERTED);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(j->kind, name);
	ck_assert_str_eq(j->queue, name);
	ck_assert_str_eq(j->tags, tags);
	bus_job_free(j);
	bus_close(b);
}
END_TEST

START_TEST(durable_event_handler_needs_an_explicit_name)
{
	bus *b;
	contract_open(&b);
	bus_handler_opts o = BUS_HANDLER_OPTS_INIT;
	o.durable = 1;
	assert_bad_name(bus_on(b, "named.event", count_call, NULL, &o),
			"needs a name");
	/* Nothing was registered: a publish stores no job. */
	bus_publish_result pr;
	ck_assert_int_eq(bus_publish(&pr, b, "named.event", "{}", NULL), 0);
	ck_assert_int_eq(pr.jobs, 0);
	o.name = "named.event.audit";
	ck_assert_int_eq(bus_on(b, "named.event", count_call, NULL, &o), 0);
	ck_assert_int_eq(bus_publish(&pr, b, "named.event", "{}", NULL), 0);
	ck_assert_int_eq(pr.jobs, 1);
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = "named.event";
	bus_job *jobs;
	size_t n;
	ck_assert_int_eq(bus_job_list(&jobs, &n, b, &f), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(jobs[0].handler, "named.event.audit");
	bus_job_list_free(jobs, n);
	bus_close(b);
}
END_TEST

TCase *contract_defaults(void)
{
	TCase *tc = contract_tcase("defaults");
	/* At the defaults an SQL store's workers fork process-isolation
	 * children (see contract_mysql.sh for what this tag does). */
	tcase_set_tags(tc, "process");
	tcase_add_test(tc, two_queue_worker_at_defaults_drains_10000_jobs);
	tcase_add_test(tc, job_stored_through_the_bus_wakes_its_dry_queue);
	tcase_add_test(
		tc,
		stop_past_grace_waits_for_threaded_handlers_and_keeps_outcomes);
	tcase_add_test(tc, stop_past_grace_gives_back_a_killed_childs_job);
	tcase_add_test(tc, handler_in_child_enqueues_while_parent_is_busy);
	tcase_add_test(tc, declared_handler_gives_producer_its_job_options);
	tcase_add_test(tc, enqueue_of_undeclared_kind_warns_once);
	tcase_add_test(tc,
		       worker_handler_timeout_applies_to_job_stored_without_one);
	tcase_add_test(
		tc, worker_handler_timeout_kills_child_of_job_stored_without_one);
	tcase_add_test(tc, names_are_utf8_and_bounded_on_every_store);
	tcase_add_test(tc, durable_event_handler_needs_an_explicit_name);
	return tc;
}
