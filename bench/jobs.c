/*
 * bench/jobs: how fast durable jobs go into a store, how fast a worker runs
 * them, and how long a job waits between its enqueue and its handler's
 * start.
 *
 *   bench/jobs [--url URL] [--runs R] [--jobs N]
 *              [--only insert|work|workers|latency] [--raw R1,R2]
 *              [--prefetch P]
 *   bench/jobs --defaults [--url URL] [--runs R] [--jobs N]
 *
 * Measurements, each on a fresh bus (bus_open + bus_migrate) on URL
 * (default "memory:"), with the payload {"user_id":42,"email":"a@example.com"}:
 *
 *   insert   N jobs through bus_enqueue_many in batches of 1,000; then N
 *            single bus_enqueue calls. Figure: jobs/s.
 *   work     N jobs inserted first (not timed), then one worker with a no-op
 *            durable handler, thread isolation with concurrency 2 and 8, and
 *            process isolation (N / 10 jobs: one socketpair round trip per
 *            job) with concurrency 2 and 8. Timed from bus_worker_start until
 *            bus_worker_get_stats, polled every 1 ms, shows every job
 *            completed. Figure: jobs/s.
 *   workers  (not on memory:, whose jobs live in one process) N jobs
 *            inserted first, then 1 and 2 worker processes (fork; each
 *            opens its own bus and runs one worker: thread isolation,
 *            concurrency 8 and 32, the no-op handler) on the same queue.
 *            Timed from the moment the processes, their workers made, are
 *            told to start until their stats, polled every 1 ms through
 *            shared memory, add up to N outcomes. Figure: jobs/s.
 *   latency  a running worker (thread isolation, concurrency 2); 2,000 jobs
 *            enqueued one per millisecond, each carrying its enqueue time
 *            (CLOCK_MONOTONIC) in its payload; the handler records its start
 *            time minus that. Once with poll_interval_ms 1 and once with the
 *            default. Figures: p50 and p99.
 *
 *   --defaults  (instead of the above) the worker at its default options
 *            beside the tuned one, in the same run: N jobs inserted first,
 *            then "tuned": one queue, concurrency 4, thread isolation and
 *            the settings below (poll_interval_ms 1); then "defaults": a
 *            worker made from BUS_WORKER_OPTS_INIT with only its queues
 *            set, two of them at the default concurrency ({q, 0}), the
 *            second always empty, and the default isolation (thread on
 *            memory:, process on SQL stores); then the same with thread
 *            isolation ("defaults, thread"). Figures: jobs/s and each
 *            defaults case's rate over the tuned one, per run, medians.
 *
 * Workers run with fetch_batch 256, completer_batch 256 and prefetch
 * --prefetch (default 256). A worker holds at most concurrency + prefetch
 * jobs claimed and not yet recorded, and claims once half its prefetch or
 * less is waiting or unrecorded: with prefetch 256, a no-op handler's
 * worker claims its next 256 only once the last 256 outcomes are stored;
 * prefetch 512 (twice fetch_batch) lets that claim overlap the write.
 *
 * Each figure is the median of R runs; "spread" is (max - min) / median over
 * the runs. Nothing here asserts on time: the checks are that every call
 * succeeds and that every job completed exactly once.
 *
 * Other stores than memory: keep their rows across buses, so each
 * measurement uses a queue of its own (bench.<pid>.<n>) and deletes its jobs
 * afterwards (bus_job_prune, which deletes every finished job of the store,
 * then bus_job_delete for the rest), then pauses SETTLE_MS for the server to
 * purge them; the batch insert is measured before the single one, whose
 * jobs take longest to delete. Point URL at a database kept for
 * benchmarks. There the targets are the MySQL store's: batch insert at least
 * 50,000 jobs/s, and, given --raw with the rates bench/mysql-raw printed
 * for one loop and two, the work rate of 1 and 2 worker processes at least
 * 80% of them.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"

#define PAYLOAD "{\"user_id\":42,\"email\":\"a@example.com\"}"
#define KIND_NOOP "bench.noop"
#define KIND_LATENCY "bench.latency"

#define DEFAULT_JOBS 200000
#define ENQUEUE_BATCH 1000
#define FETCH_BATCH 256
#define COMPLETER_BATCH 256
#define WORK_POLL_MS 1
/* Process isolation pays a round trip per job: it runs this fraction. */
#define PROCESS_JOBS_DIVISOR 10

#define LATENCY_SAMPLES 2000
#define LATENCY_GAP_NS 1000000 /* one job per millisecond */
#define LATENCY_CONCURRENCY 2

/* Give up when a worker makes no progress for this long. */
#define STALL_NS (60LL * 1000000000)

/* Worker processes: at most this many; the concurrencies measured. */
#define MAX_PROCS 2
#define PROCS_CONC_LOW 8
#define PROCS_CONC_HIGH 32

/* After deleting a measurement's jobs from a store other than memory:,
 * the pause that lets the server purge them before the next measurement
 * (InnoDB's purge of 20,000 deleted rows takes well under this). */
#define SETTLE_MS 1000

/* Targets on a store other than memory: (the MySQL store's). */
#define SQL_INSERT_TARGET 5e4
#define RAW_RATIO_TARGET 0.8

static const char *url = "memory:";
/* The workers' prefetch (--prefetch). */
static int prefetch = FETCH_BATCH;
static int is_memory;
static unsigned queue_seq;

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static void die(const char *what)
{
	const bus_error *e = bus_error_last();
	fprintf(stderr, "jobs: %s: %s (%s)\n", what, e->message,
		bus_error_name(e->code));
	exit(1);
}

static void die_msg(const char *msg)
{
	fprintf(stderr, "jobs: %s\n", msg);
	exit(1);
}

static void *xmalloc(size_t size)
{
	void *p = malloc(size);
	if (p == NULL)
		die_msg("out of memory");
	return p;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000),
			       (long)(t % 1000000000) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static void sleep_ms(int ms)
{
	sleep_until_ns(now_ns() + (int64_t)ms * 1000000);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Sorts `v`. */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof v[0], cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* (max - min) / median, in percent; sorts `v`. */
static double spread(double *v, int n)
{
	double m = median(v, n);
	return m > 0 ? 100.0 * (v[n - 1] - v[0]) / m : 0;
}

static void fmt_rate(char *buf, size_t size, double r)
{
	if (r >= 1e6)
		snprintf(buf, size, "%.2fM", r / 1e6);
	else if (r >= 1e4)
		snprintf(buf, size, "%.1fk", r / 1e3);
	else
		snprintf(buf, size, "%.0f", r);
}

static void fmt_ms(char *buf, size_t size, double ms)
{
	if (ms >= 100)
		snprintf(buf, size, "%.0f ms", ms);
	else if (ms >= 1)
		snprintf(buf, size, "%.2f ms", ms);
	else
		snprintf(buf, size, "%.0f us", ms * 1000);
}

/* The URL as it may be printed: "memory:" as it is, any other only with
 * its scheme (the rest may hold a password). */
static void url_shown(char *buf, size_t size, const char *u)
{
	const char *colon = strchr(u, ':');
	if (colon == NULL || colon[1] == '\0' || strcmp(colon + 1, "//") == 0)
		snprintf(buf, size, "%s", u);
	else
		snprintf(buf, size, "%.*s://...", (int)(colon - u), u);
}

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */
/* ------------------------------------------------------------------------ */

static atomic_ulong noop_calls;

static int h_noop(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	atomic_fetch_add_explicit(&noop_calls, 1, memory_order_relaxed);
	return 0;
}

/* Start-time minus enqueue-time of the jobs run, in ns. */
struct latency {
	int64_t *ns;
	size_t cap;
	atomic_size_t n;
};

static int h_latency(bus_ctx *ctx, void *udata)
{
	int64_t start = now_ns();
	struct latency *l = udata;
	const char *t = strstr(bus_ctx_payload(ctx), "\"t\":");
	if (t == NULL)
		return bus_ctx_fail(ctx, "payload has no \"t\"");
	int64_t sent = strtoll(t + 4, NULL, 10);
	size_t i = atomic_fetch_add(&l->n, 1);
	if (i < l->cap)
		l->ns[i] = start - sent;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* A fresh bus and its queue                                                 */
/* ------------------------------------------------------------------------ */

struct bench_bus {
	bus *b;
	char queue[64];
};

/* A queue of its own for a measurement. */
static void queue_name(char *buf, size_t size)
{
	if (is_memory)
		snprintf(buf, size, "bench");
	else
		snprintf(buf, size, "bench.%ld.%u", (long)getpid(),
			 ++queue_seq);
}

/* Opens bb->b, its no-op handler on queue `queue` (NULL: a new one). */
static void bench_open_on(struct bench_bus *bb, struct latency *lat,
			  const char *queue)
{
	if (bus_open(&bb->b, url) != 0)
		die("bus_open");
	if (bus_migrate(bb->b) != 0)
		die("bus_migrate");
	if (queue != NULL)
		snprintf(bb->queue, sizeof bb->queue, "%s", queue);
	else
		queue_name(bb->queue, sizeof bb->queue);
	bus_handler_opts o = BUS_HANDLER_OPTS_INIT;
	o.durable = 1;
	o.queue = bb->queue;
	if (bus_handle_command(bb->b, KIND_NOOP, h_noop, NULL, &o) != 0)
		die("bus_handle_command");
	if (lat != NULL &&
	    bus_handle_command(bb->b, KIND_LATENCY, h_latency, lat, &o) != 0)
		die("bus_handle_command");
}

static void bench_open(struct bench_bus *bb, struct latency *lat)
{
	bench_open_on(bb, lat, NULL);
}

/* Deletes the jobs of the bench's queue: a store other than memory: keeps
 * them past bus_close. Not timed. */
static void clean_queue(struct bench_bus *bb)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.queue = bb->queue;
	f.limit = 1000;
	for (;;) {
		bus_job *jobs;
		size_t n;
		if (bus_job_list(&jobs, &n, bb->b, &f) != 0)
			die("bus_job_list");
		for (size_t i = 0; i < n; i++)
			if (bus_job_delete(bb->b, jobs[i].id) != 0)
				die("bus_job_delete");
		bus_job_list_free(jobs, n);
		if (n == 0)
			break;
	}
}

static void bench_close(struct bench_bus *bb)
{
	/* Finished jobs go in a few statements, the rest one by one. */
	if (!is_memory && bus_job_prune(NULL, bb->b, 0) != 0)
		die("bus_job_prune");
	if (!is_memory)
		clean_queue(bb);
	bus_close(bb->b);
	bb->b = NULL;
	if (!is_memory)
		sleep_ms(SETTLE_MS);
}

/* Inserts `n` no-op jobs in batches; returns the time taken in ns. */
static int64_t insert_batched(bus *b, size_t n)
{
	bus_enqueue_item items[ENQUEUE_BATCH];
	for (size_t i = 0; i < ENQUEUE_BATCH; i++)
		items[i] = (bus_enqueue_item){ KIND_NOOP, NULL, PAYLOAD, NULL };
	int64_t t0 = now_ns();
	for (size_t done = 0; done < n;) {
		size_t k = n - done < ENQUEUE_BATCH ? n - done : ENQUEUE_BATCH;
		if (bus_enqueue_many(NULL, b, items, k) != 0)
			die("bus_enqueue_many");
		done += k;
	}
	return now_ns() - t0;
}

/* ------------------------------------------------------------------------ */
/* Measurements                                                              */
/* ------------------------------------------------------------------------ */

static double measure_insert_single(size_t n)
{
	struct bench_bus bb;
	bench_open(&bb, NULL);
	int64_t t0 = now_ns();
	for (size_t i = 0; i < n; i++)
		if (bus_enqueue(NULL, bb.b, KIND_NOOP, PAYLOAD, NULL) != 0)
			die("bus_enqueue");
	int64_t dt = now_ns() - t0;
	bench_close(&bb);
	return (double)n * 1e9 / (double)dt;
}

static double measure_insert_batched(size_t n)
{
	struct bench_bus bb;
	bench_open(&bb, NULL);
	int64_t dt = insert_batched(bb.b, n);
	bench_close(&bb);
	return (double)n * 1e9 / (double)dt;
}

static uint64_t outcomes(const bus_worker_stats *st)
{
	return st->completed + st->retried + st->discarded + st->snoozed +
	       st->cancelled + st->given_back + st->lost;
}

/* Polls the worker every millisecond until `n` outcomes are recorded;
 * dies when it stalls. */
static void wait_outcomes(bus_worker *w, uint64_t n, bus_worker_stats *st)
{
	uint64_t last = 0;
	int64_t last_t = now_ns();
	for (;;) {
		bus_worker_get_stats(st, w);
		uint64_t done = outcomes(st);
		if (done >= n)
			return;
		int64_t t = now_ns();
		if (done != last) {
			last = done;
			last_t = t;
		} else if (t - last_t > STALL_NS) {
			fprintf(stderr,
				"jobs: the worker made no progress for 60 s: "
				"%llu of %llu outcomes, %llu claimed\n",
				(unsigned long long)done, (unsigned long long)n,
				(unsigned long long)st->claimed);
			exit(1);
		}
		sleep_ms(1);
	}
}

static void worker_opts(bus_worker_opts *o, bus_worker_queue *q,
			bus_isolation iso)
{
	*o = (bus_worker_opts)BUS_WORKER_OPTS_INIT;
	o->queues = q;
	o->n_queues = 1;
	o->isolation = iso;
	o->fetch_batch = FETCH_BATCH;
	o->completer_batch = COMPLETER_BATCH;
	o->prefetch = prefetch;
}

static double measure_work(size_t n, bus_isolation iso, int concurrency)
{
	struct bench_bus bb;
	bench_open(&bb, NULL);
	insert_batched(bb.b, n);

	bus_worker_queue q = { bb.queue, concurrency };
	bus_worker_opts o;
	worker_opts(&o, &q, iso);
	o.poll_interval_ms = WORK_POLL_MS;
	bus_worker *w;
	if (bus_worker_new(&w, bb.b, &o) != 0)
		die("bus_worker_new");
	atomic_store(&noop_calls, 0);

	bus_worker_stats st;
	int64_t t0 = now_ns();
	if (bus_worker_start(w) != 0)
		die("bus_worker_start");
	wait_outcomes(w, n, &st);
	int64_t dt = now_ns() - t0;

	if (bus_worker_stop(w, 10000) != 0)
		die("bus_worker_stop");
	bus_worker_free(w);
	/* Under process isolation the handler runs in the children, whose
	 * counts the parent does not see. */
	unsigned long calls = atomic_load(&noop_calls);
	if (st.completed != n ||
	    (iso == BUS_ISOLATION_THREAD && calls != n)) {
		fprintf(stderr,
			"jobs: %zu jobs, but %llu completed, %llu retried, "
			"%llu lost, %lu handler calls\n",
			n, (unsigned long long)st.completed,
			(unsigned long long)st.retried,
			(unsigned long long)st.lost, calls);
		exit(1);
	}
	bench_close(&bb);
	return (double)n * 1e9 / (double)dt;
}

/* --defaults: N jobs through a worker at its defaults, serving the bench's
 * queue and an empty one ({name, 0}: the default concurrency);
 * `iso` BUS_ISOLATION_DEFAULT or THREAD. Nothing else is set. */
static double measure_defaults(size_t n, bus_isolation iso)
{
	struct bench_bus bb;
	bench_open(&bb, NULL);
	insert_batched(bb.b, n);
	char empty[80];
	snprintf(empty, sizeof empty, "%s.empty", bb.queue);
	bus_worker_queue qs[2] = { { bb.queue, 0 }, { empty, 0 } };
	bus_worker_opts o = BUS_WORKER_OPTS_INIT;
	o.queues = qs;
	o.n_queues = 2;
	o.isolation = iso;
	bus_worker *w;
	if (bus_worker_new(&w, bb.b, &o) != 0)
		die("bus_worker_new");
	atomic_store(&noop_calls, 0);
	bus_worker_stats st;
	int64_t t0 = now_ns();
	if (bus_worker_start(w) != 0)
		die("bus_worker_start");
	wait_outcomes(w, n, &st);
	int64_t dt = now_ns() - t0;
	if (bus_worker_stop(w, 10000) != 0)
		die("bus_worker_stop");
	bus_worker_free(w);
	if (st.completed != n) {
		fprintf(stderr, "jobs: --defaults: %zu jobs, but %llu completed\n",
			n, (unsigned long long)st.completed);
		exit(1);
	}
	bench_close(&bb);
	return (double)n * 1e9 / (double)dt;
}

#define DEFAULTS_CONCURRENCY 4 /* the library's default */
#define DEFAULTS_TARGET 0.5

static int run_defaults(int runs, size_t n)
{
	double(*fig)[3] = xmalloc((size_t)runs * sizeof *fig);
	double *v = xmalloc((size_t)runs * sizeof *v);
	for (int r = 0; r < runs; r++) {
		fig[r][0] = measure_work(n, BUS_ISOLATION_THREAD,
					 DEFAULTS_CONCURRENCY);
		fig[r][1] = measure_defaults(n, BUS_ISOLATION_DEFAULT);
		fig[r][2] = measure_defaults(n, BUS_ISOLATION_THREAD);
		fprintf(stderr, "jobs: run %d of %d done\n", r + 1, runs);
	}
	static const char *const label[3] = {
		"tuned: 1 queue x 4, thread",
		"defaults: 2 queues, 1 empty",
		"defaults, thread isolation",
	};
	printf("%-31s %8s %10s %7s %12s\n", "case", "jobs", "jobs/s", "spread",
	       "/ tuned");
	double ratio[3] = { 1, 0, 0 };
	for (int k = 0; k < 3; k++) {
		char rate[32];
		for (int r = 0; r < runs; r++)
			v[r] = fig[r][k];
		fmt_rate(rate, sizeof rate, median(v, runs));
		double sp = spread(v, runs);
		/* The ratio within each run, then the median of those. */
		for (int r = 0; r < runs; r++)
			v[r] = fig[r][k] / fig[r][0];
		ratio[k] = median(v, runs);
		printf("%-31s %8zu %10s %6.0f%% %11.0f%%\n", label[k], n, rate,
		       sp, 100.0 * ratio[k]);
	}
	printf("\ntarget: defaults (2 queues, 1 empty) >= %.0f%% of tuned: "
	       "%.0f%%, %s\n",
	       100 * DEFAULTS_TARGET, 100.0 * ratio[1],
	       ratio[1] >= DEFAULTS_TARGET ? "met" : "NOT met");
	free(v);
	free(fig);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Worker processes                                                          */
/* ------------------------------------------------------------------------ */

/* Shared (MAP_SHARED) between the parent and its worker processes: the
 * steps of a measurement, each process's outcomes so far, and the handler
 * calls of all. */
struct board {
	atomic_int inserted, ready, go, stop, failed;
	atomic_ulong calls;
	atomic_ullong outcomes[MAX_PROCS], completed[MAX_PROCS];
};

static int h_count(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add_explicit((atomic_ulong *)udata, 1,
				  memory_order_relaxed);
	return 0;
}

static _Noreturn void child_die(struct board *bd, const char *what)
{
	const bus_error *e = bus_error_last();
	fprintf(stderr, "jobs: worker process %ld: %s: %s (%s)\n",
		(long)getpid(), what, e->message, bus_error_name(e->code));
	atomic_store(&bd->failed, 1);
	_exit(1);
}

/* Waits for `flag` (polled every millisecond); leaves when the parent is
 * gone or the measurement failed. */
static void child_wait(struct board *bd, atomic_int *flag, pid_t parent)
{
	while (!atomic_load(flag)) {
		if (getppid() != parent || atomic_load(&bd->failed))
			_exit(1);
		sleep_ms(1);
	}
}

/* A worker process: opens its own bus once the jobs are in (nothing of the
 * parent's is used: it had no bus open when it forked), makes its worker,
 * starts it when told, publishes its outcomes until told to stop. */
static _Noreturn void proc_child(struct board *bd, int i, const char *queue,
				 int concurrency, pid_t parent)
{
	child_wait(bd, &bd->inserted, parent);
	bus *b;
	if (bus_open(&b, url) != 0)
		child_die(bd, "bus_open");
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	ho.queue = queue;
	if (bus_handle_command(b, KIND_NOOP, h_count, &bd->calls, &ho) != 0)
		child_die(bd, "bus_handle_command");
	bus_worker_queue q = { queue, concurrency };
	bus_worker_opts o;
	worker_opts(&o, &q, BUS_ISOLATION_THREAD);
	o.poll_interval_ms = WORK_POLL_MS;
	bus_worker *w;
	if (bus_worker_new(&w, b, &o) != 0)
		child_die(bd, "bus_worker_new");
	atomic_fetch_add(&bd->ready, 1);
	child_wait(bd, &bd->go, parent);
	if (bus_worker_start(w) != 0)
		child_die(bd, "bus_worker_start");
	bus_worker_stats st;
	for (;;) {
		int stop = atomic_load(&bd->stop);
		if (stop && bus_worker_stop(w, 10000) != 0)
			child_die(bd, "bus_worker_stop");
		bus_worker_get_stats(&st, w);
		atomic_store(&bd->outcomes[i], outcomes(&st));
		atomic_store(&bd->completed[i], st.completed);
		if (stop)
			break;
		if (getppid() != parent)
			_exit(1);
		sleep_ms(1);
	}
	bus_worker_free(w);
	bus_close(b);
	_exit(0);
}

static void procs_kill(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGKILL);
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			waitpid(pids[i], NULL, 0);
}

/* The sum of the processes' outcomes. */
static uint64_t board_sum(struct board *bd, int procs, int completed)
{
	uint64_t sum = 0;
	for (int i = 0; i < procs; i++)
		sum += atomic_load(completed ? &bd->completed[i]
					     : &bd->outcomes[i]);
	return sum;
}

/* Waits until `done(bd)` reaches `n`; kills the processes and dies when
 * one fails or nothing moves for STALL_NS. */
static void procs_wait(struct board *bd, const pid_t *pids, int procs,
		       uint64_t n, int ready)
{
	uint64_t last = 0;
	int64_t last_t = now_ns();
	for (;;) {
		uint64_t done = ready ? (uint64_t)atomic_load(&bd->ready)
				      : board_sum(bd, procs, 0);
		if (done >= n)
			return;
		int64_t t = now_ns();
		if (done != last) {
			last = done;
			last_t = t;
		}
		if (atomic_load(&bd->failed) || t - last_t > STALL_NS) {
			fprintf(stderr,
				"jobs: worker processes: %s (%llu of %llu "
				"%s)\n",
				atomic_load(&bd->failed) ? "one failed"
							 : "no progress for "
							   "60 s",
				(unsigned long long)done, (unsigned long long)n,
				ready ? "ready" : "outcomes");
			procs_kill(pids, procs);
			exit(1);
		}
		sleep_ms(1);
	}
}

static double measure_procs(size_t n, int procs, int concurrency)
{
	struct board *bd = mmap(NULL, sizeof *bd, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (bd == MAP_FAILED)
		die_msg("mmap failed");
	memset(bd, 0, sizeof *bd);
	char queue[64];
	queue_name(queue, sizeof queue);
	/* Forked before the parent opens its bus: no connection is shared. */
	pid_t parent = getpid(), pids[MAX_PROCS] = { 0 };
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			proc_child(bd, i, queue, concurrency, parent);
		if (pids[i] < 0) {
			procs_kill(pids, i);
			die_msg("fork failed");
		}
	}
	struct bench_bus bb;
	bench_open_on(&bb, NULL, queue);
	insert_batched(bb.b, n);
	atomic_store(&bd->inserted, 1);
	procs_wait(bd, pids, procs, (uint64_t)procs, 1);

	int64_t t0 = now_ns();
	atomic_store(&bd->go, 1);
	procs_wait(bd, pids, procs, n, 0);
	int64_t dt = now_ns() - t0;

	atomic_store(&bd->stop, 1);
	int bad = 0;
	for (int i = 0; i < procs; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) != pids[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			bad = 1;
	}
	uint64_t completed = board_sum(bd, procs, 1);
	unsigned long calls = atomic_load(&bd->calls);
	if (bad || completed != n || calls != n) {
		fprintf(stderr,
			"jobs: %zu jobs, but %llu completed and %lu handler "
			"calls in %d worker processes%s\n",
			n, (unsigned long long)completed, calls, procs,
			bad ? ", and one exited badly" : "");
		exit(1);
	}
	bench_close(&bb);
	munmap(bd, sizeof *bd);
	return (double)n * 1e9 / (double)dt;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* p50 and p99, in ms, of enqueue-to-start with poll interval `poll_ms`
 * (0: the default). */
static void measure_latency(int64_t poll_ms, double *p50, double *p99)
{
	struct latency lat;
	lat.cap = LATENCY_SAMPLES;
	lat.ns = xmalloc(lat.cap * sizeof *lat.ns);
	atomic_init(&lat.n, 0);
	struct bench_bus bb;
	bench_open(&bb, &lat);

	bus_worker_queue q = { bb.queue, LATENCY_CONCURRENCY };
	bus_worker_opts o;
	worker_opts(&o, &q, BUS_ISOLATION_THREAD);
	o.poll_interval_ms = poll_ms;
	bus_worker *w;
	if (bus_worker_new(&w, bb.b, &o) != 0)
		die("bus_worker_new");
	if (bus_worker_start(w) != 0)
		die("bus_worker_start");
	/* Let the worker reach its first idle wait. */
	sleep_ms(10);

	int64_t t = now_ns();
	for (size_t i = 0; i < LATENCY_SAMPLES; i++) {
		t += LATENCY_GAP_NS;
		sleep_until_ns(t);
		char payload[128];
		snprintf(payload, sizeof payload,
			 "{\"user_id\":42,\"email\":\"a@example.com\","
			 "\"t\":%lld}",
			 (long long)now_ns());
		if (bus_enqueue(NULL, bb.b, KIND_LATENCY, payload, NULL) != 0)
			die("bus_enqueue");
	}
	bus_worker_stats st;
	wait_outcomes(w, LATENCY_SAMPLES, &st);
	if (bus_worker_stop(w, 10000) != 0)
		die("bus_worker_stop");
	bus_worker_free(w);
	size_t n = atomic_load(&lat.n);
	if (st.completed != LATENCY_SAMPLES || n != LATENCY_SAMPLES) {
		fprintf(stderr,
			"jobs: latency: %d jobs, but %llu completed and %zu "
			"samples\n",
			LATENCY_SAMPLES, (unsigned long long)st.completed, n);
		exit(1);
	}
	qsort(lat.ns, n, sizeof *lat.ns, cmp_i64);
	/* Nearest rank. */
	*p50 = (double)lat.ns[(n * 50 + 99) / 100 - 1] / 1e6;
	*p99 = (double)lat.ns[(n * 99 + 99) / 100 - 1] / 1e6;
	free(lat.ns);
	bench_close(&bb);
}

/* ------------------------------------------------------------------------ */
/* The table                                                                 */
/* ------------------------------------------------------------------------ */

enum {
	M_INSERT_SINGLE,
	M_INSERT_BATCH,
	M_WORK_T2,
	M_WORK_T8,
	M_WORK_P2,
	M_WORK_P8,
	M_PROCS_1_LOW, /* worker processes x concurrency */
	M_PROCS_1_HIGH,
	M_PROCS_2_LOW,
	M_PROCS_2_HIGH,
	M_RATES, /* rates above, latencies below */
	M_LAT_FAST_P50 = M_RATES,
	M_LAT_FAST_P99,
	M_LAT_DFLT_P50,
	M_LAT_DFLT_P99,
	M_COUNT
};

static const char *const labels[M_RATES] = {
	"insert  bus_enqueue (single)",
	"insert  bus_enqueue_many x1000",
	"work    thread   concurrency 2",
	"work    thread   concurrency 8",
	"work    process  concurrency 2",
	"work    process  concurrency 8",
	"work    1 worker process  x 8",
	"work    1 worker process  x 32",
	"work    2 worker processes x 8",
	"work    2 worker processes x 32",
};

/* The worker processes and concurrency of a M_PROCS_* case. */
static int procs_of(int m)
{
	return m <= M_PROCS_1_HIGH ? 1 : 2;
}

static int conc_of(int m)
{
	return (m - M_PROCS_1_LOW) % 2 ? PROCS_CONC_HIGH : PROCS_CONC_LOW;
}

enum only { ONLY_ALL, ONLY_INSERT, ONLY_WORK, ONLY_WORKERS, ONLY_LATENCY };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: jobs [--url URL] [--runs R] [--jobs N] "
		"[--only insert|work|workers|latency]\n"
		"            [--raw R1,R2] [--prefetch P]\n"
		"       jobs --defaults [--url URL] [--runs R] [--jobs N]\n"
		"  --url URL     the store (default memory:)\n"
		"  --runs R      runs; figures are medians (default 3)\n"
		"  --jobs N      jobs per insert, thread-isolation and worker "
		"process\n"
		"                measurement; process isolation runs N/%d "
		"(default %d)\n"
		"  --only X      only the insert, work, workers (worker "
		"processes, not\n"
		"                on memory:) or latency measurements\n"
		"  --raw R1,R2   the jobs/s of bench/mysql-raw for one loop "
		"and two:\n"
		"                prints the ratio of 1 and 2 worker processes "
		"to them\n"
		"  --prefetch P  the workers' prefetch (default %d, as "
		"fetch_batch)\n"
		"  --defaults    the worker at its defaults (2 queues, one "
		"empty) beside\n"
		"                the tuned one (1 queue), side by side\n",
		PROCESS_JOBS_DIVISOR, DEFAULT_JOBS, FETCH_BATCH);
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi) {
		fprintf(stderr, "jobs: bad %s '%s' (%ld to %ld)\n", what, s, lo,
			hi);
		exit(2);
	}
	return v;
}

static enum only parse_only(const char *s)
{
	if (strcmp(s, "insert") == 0)
		return ONLY_INSERT;
	if (strcmp(s, "work") == 0)
		return ONLY_WORK;
	if (strcmp(s, "workers") == 0)
		return ONLY_WORKERS;
	if (strcmp(s, "latency") == 0)
		return ONLY_LATENCY;
	fprintf(stderr,
		"jobs: bad --only '%s' (insert, work, workers or latency)\n",
		s);
	exit(2);
}

/* Echoes the command line, the URL shown by its scheme only. argv[0] is
 * left out: under libtool it names the binary in bench/.libs. */
static void echo_command(int argc, char **argv)
{
	printf("$ bench/jobs");
	for (int i = 1; i < argc; i++) {
		if (i > 0 && strcmp(argv[i - 1], "--url") == 0) {
			char shown[300];
			url_shown(shown, sizeof shown, argv[i]);
			printf(" %s", shown);
		} else {
			printf(" %s", argv[i]);
		}
	}
	printf("\n");
}

static void print_rates(double (*fig)[M_COUNT], int runs, const int *done,
			size_t n_thread, size_t n_process)
{
	double *v = xmalloc((size_t)runs * sizeof *v);
	printf("%-31s %8s %10s %7s\n", "case", "jobs", "jobs/s", "spread");
	for (int m = 0; m < M_RATES; m++) {
		if (!done[m])
			continue;
		for (int r = 0; r < runs; r++)
			v[r] = fig[r][m];
		char rate[32];
		fmt_rate(rate, sizeof rate, median(v, runs));
		size_t n = m == M_WORK_P2 || m == M_WORK_P8 ? n_process
							    : n_thread;
		printf("%-31s %8zu %10s %6.0f%%\n", labels[m], n, rate,
		       spread(v, runs));
	}
	free(v);
}

static void print_latency(double (*fig)[M_COUNT], int runs)
{
	double *v = xmalloc((size_t)runs * sizeof *v);
	printf("enqueue to handler start: thread isolation, concurrency %d, "
	       "%d jobs at one per %d ms\n",
	       LATENCY_CONCURRENCY, LATENCY_SAMPLES, LATENCY_GAP_NS / 1000000);
	printf("%-31s %10s %10s\n", "poll_interval_ms", "p50", "p99");
	for (int k = 0; k < 2; k++) {
		char p50[32], p99[32];
		int m = k == 0 ? M_LAT_FAST_P50 : M_LAT_DFLT_P50;
		for (int r = 0; r < runs; r++)
			v[r] = fig[r][m];
		fmt_ms(p50, sizeof p50, median(v, runs));
		for (int r = 0; r < runs; r++)
			v[r] = fig[r][m + 1];
		fmt_ms(p99, sizeof p99, median(v, runs));
		printf("%-31s %10s %10s\n",
		       k == 0 ? "1" : "1000 (default)", p50, p99);
	}
	free(v);
}

static void print_targets(double (*fig)[M_COUNT], int runs, const int *done)
{
	double *v = xmalloc((size_t)runs * sizeof *v);
	char rate[32];
	if (done[M_LAT_FAST_P50])
		printf("\n");
	if (done[M_INSERT_BATCH]) {
		for (int r = 0; r < runs; r++)
			v[r] = fig[r][M_INSERT_BATCH];
		double m = median(v, runs);
		fmt_rate(rate, sizeof rate, m);
		printf("target: insert in batches >= 1.00M jobs/s: %s, %s\n",
		       rate, m >= 1e6 ? "met" : "NOT met");
	}
	for (int k = M_WORK_T2; k <= M_WORK_T8; k++) {
		if (!done[k])
			continue;
		for (int r = 0; r < runs; r++)
			v[r] = fig[r][k];
		double m = median(v, runs);
		fmt_rate(rate, sizeof rate, m);
		printf("target: work, thread isolation, concurrency %d >= "
		       "300.0k jobs/s: %s, %s\n",
		       k == M_WORK_T2 ? 2 : 8, rate,
		       m >= 3e5 ? "met" : "NOT met");
	}
	free(v);
}

/* The median of measurement `m`; sorts a copy. */
static double median_of(double (*fig)[M_COUNT], int runs, int m)
{
	double *v = xmalloc((size_t)runs * sizeof *v);
	for (int r = 0; r < runs; r++)
		v[r] = fig[r][m];
	double med = median(v, runs);
	free(v);
	return med;
}

/* The targets on a store other than memory: (the MySQL store's); `raw`
 * the rates of bench/mysql-raw for one loop and two (0: not given). */
static void print_sql_targets(double (*fig)[M_COUNT], int runs,
			      const int *done, const double *raw)
{
	char rate[32], limit[32];
	if (done[M_INSERT_BATCH]) {
		double m = median_of(fig, runs, M_INSERT_BATCH);
		fmt_rate(rate, sizeof rate, m);
		printf("target: insert in batches >= 50.0k jobs/s: %s, %s\n",
		       rate, m >= SQL_INSERT_TARGET ? "met" : "NOT met");
	}
	for (int k = M_PROCS_1_LOW; k <= M_PROCS_2_HIGH; k++) {
		double lim = raw[procs_of(k) - 1];
		if (!done[k] || lim <= 0)
			continue;
		double m = median_of(fig, runs, k);
		fmt_rate(rate, sizeof rate, m);
		fmt_rate(limit, sizeof limit, lim);
		printf("target: %d worker process%s x %d >= 80%% of the raw "
		       "loop%s (%s): %s, %.0f%%, %s\n",
		       procs_of(k), procs_of(k) == 1 ? "" : "es", conc_of(k),
		       procs_of(k) == 1 ? "" : "s x 2", limit, rate,
		       100.0 * m / lim,
		       m >= RAW_RATIO_TARGET * lim ? "met" : "NOT met");
	}
}

/* --raw R1,R2: two positive rates. */
static void parse_raw(const char *s, double *raw)
{
	char *end;
	raw[0] = strtod(s, &end);
	if (*end == ',')
		raw[1] = strtod(end + 1, &end);
	if (*end != '\0' || raw[0] <= 0 || raw[1] <= 0) {
		fprintf(stderr,
			"jobs: bad --raw '%s' (two rates, R1,R2, as "
			"bench/mysql-raw prints them)\n",
			s);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	int runs = 3;
	size_t n_jobs = DEFAULT_JOBS;
	enum only only = ONLY_ALL;
	double raw[2] = { 0, 0 };
	int defaults = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
			url = argv[++i];
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			runs = (int)parse_long(argv[++i], "--runs", 1, 1000);
		} else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
			n_jobs = (size_t)parse_long(argv[++i], "--jobs", 1,
						    100000000);
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			only = parse_only(argv[++i]);
		} else if (strcmp(argv[i], "--prefetch") == 0 &&
			   i + 1 < argc) {
			prefetch = (int)parse_long(argv[++i], "--prefetch", 0,
						   1000000);
		} else if (strcmp(argv[i], "--defaults") == 0) {
			defaults = 1;
		} else if (strcmp(argv[i], "--raw") == 0 && i + 1 < argc) {
			parse_raw(argv[++i], raw);
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	is_memory = strcmp(url, "memory:") == 0 ||
		    strcmp(url, "memory://") == 0;
	size_t n_process = n_jobs / PROCESS_JOBS_DIVISOR;
	if (n_process == 0)
		n_process = 1;
	if (is_memory && only == ONLY_WORKERS) {
		fprintf(stderr, "jobs: --only workers needs a store other than "
				"memory: (its jobs live in one process)\n");
		return 2;
	}
	int workers = !is_memory && (only == ONLY_ALL || only == ONLY_WORKERS);

	char shown[300];
	url_shown(shown, sizeof shown, url);
	echo_command(argc, argv);
	printf("libbus %s, store %s, %ld online CPUs, payload %zu bytes, "
	       "medians of %d run%s\n",
	       bus_version(), shown, sysconf(_SC_NPROCESSORS_ONLN),
	       strlen(PAYLOAD), runs, runs == 1 ? "" : "s");
	if (defaults) {
		printf("tuned: fetch_batch %d, prefetch %d, completer_batch %d, "
		       "poll_interval_ms %d; defaults: BUS_WORKER_OPTS_INIT "
		       "with 2 queues, concurrency 0 (default)\n\n",
		       FETCH_BATCH, prefetch, COMPLETER_BATCH, WORK_POLL_MS);
		fflush(stdout);
		return run_defaults(runs, n_jobs);
	}
	if (only == ONLY_ALL || only == ONLY_WORK || workers)
		printf("work: fetch_batch %d, prefetch %d, completer_batch %d, "
		       "completer_flush_ms 5 (default), poll_interval_ms %d, "
		       "timed from bus_worker_start to the last outcome "
		       "(stats polled every 1 ms)\n",
		       FETCH_BATCH, prefetch, COMPLETER_BATCH, WORK_POLL_MS);
	if (workers)
		printf("worker processes x concurrency: forked, a bus and one "
		       "worker each, thread isolation, all on one queue\n");
	printf("\n");
	fflush(stdout);

	double (*fig)[M_COUNT] = xmalloc((size_t)runs * sizeof *fig);
	int done[M_COUNT] = { 0 };
	for (int r = 0; r < runs; r++) {
		if (only == ONLY_ALL || only == ONLY_INSERT) {
			/* Batches first: one by one, the single inserts'
			 * jobs are slow to delete. */
			fig[r][M_INSERT_BATCH] = measure_insert_batched(n_jobs);
			fig[r][M_INSERT_SINGLE] = measure_insert_single(n_jobs);
			done[M_INSERT_SINGLE] = done[M_INSERT_BATCH] = 1;
		}
		if (only == ONLY_ALL || only == ONLY_WORK) {
			fig[r][M_WORK_T2] =
				measure_work(n_jobs, BUS_ISOLATION_THREAD, 2);
			fig[r][M_WORK_T8] =
				measure_work(n_jobs, BUS_ISOLATION_THREAD, 8);
			fig[r][M_WORK_P2] = measure_work(
				n_process, BUS_ISOLATION_PROCESS, 2);
			fig[r][M_WORK_P8] = measure_work(
				n_process, BUS_ISOLATION_PROCESS, 8);
			for (int m = M_WORK_T2; m <= M_WORK_P8; m++)
				done[m] = 1;
		}
		for (int m = M_PROCS_1_LOW; workers && m <= M_PROCS_2_HIGH;
		     m++) {
			fig[r][m] = measure_procs(n_jobs, procs_of(m),
						  conc_of(m));
			done[m] = 1;
		}
		if (only == ONLY_ALL || only == ONLY_LATENCY) {
			measure_latency(1, &fig[r][M_LAT_FAST_P50],
					&fig[r][M_LAT_FAST_P99]);
			measure_latency(0, &fig[r][M_LAT_DFLT_P50],
					&fig[r][M_LAT_DFLT_P99]);
			done[M_LAT_FAST_P50] = 1;
		}
		fprintf(stderr, "jobs: run %d of %d done\n", r + 1, runs);
	}

	if (only != ONLY_LATENCY) {
		print_rates(fig, runs, done, n_jobs, n_process);
		printf("\n");
	}
	if (done[M_LAT_FAST_P50])
		print_latency(fig, runs);
	if (is_memory && (done[M_INSERT_BATCH] || done[M_WORK_T2]))
		print_targets(fig, runs, done);
	if (!is_memory) {
		if (done[M_LAT_FAST_P50])
			printf("\n");
		print_sql_targets(fig, runs, done, raw);
	}
	free(fig);
	return 0;
}
