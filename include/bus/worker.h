/*
 * libbus workers: run the durable jobs of a bus's store. Any number of
 * workers, in any number of processes on any number of machines, may serve
 * one store; they coordinate through it. Included by <bus/bus.h>.
 *
 * A worker claims due jobs of its queues (highest priority, then oldest
 * first), runs each job's handler through the bus's middleware, and records
 * the outcome: completed; retryable after a backoff, or discarded when the
 * attempts are spent; snoozed; cancelled. While a job runs its lease is
 * renewed; a job whose lease runs out (its worker died) is rescued by any
 * worker and retried after rescue_delay_ms.
 *
 * Failure rules:
 *  - An outcome the store refuses (while it answers) is recorded as the
 *    job's failure instead: discarded, with the store's refusal as its
 *    error; it never holds up the other outcomes (stats.refused). While
 *    the store does not answer, outcomes wait for it, retried with backoff.
 *  - One expired job the store refuses to rescue never stops the rescue of
 *    the others.
 *  - Leases are renewed by a thread of their own (every lease_ms / 3), in
 *    small batches; a batch that fails is renewed job by job while the
 *    store answers (a locked row), and not at all while it does not. A job whose
 *    lease runs out on this worker without a renewal (the store is
 *    unreachable) is stopped -- its handler sees bus_ctx_expired, a child
 *    process is killed -- and its outcome is not recorded, since another
 *    worker may rescue and rerun it (stats.lease_lost).
 *  - A job cancelled with bus_job_cancel while this worker holds it is
 *    stopped within cancel_check_ms and recorded cancelled (see
 *    bus_job_cancel in <bus/job.h>).
 */
#ifndef BUS_WORKER_H
#define BUS_WORKER_H

#ifndef BUS_BUS_H
#error "include <bus/bus.h>, not <bus/worker.h>"
#endif

typedef struct bus_worker bus_worker;

typedef enum bus_isolation {
	/* process for SQL stores; thread for memory:, whose jobs and effects
	 * are lost with the process anyway */
	BUS_ISOLATION_DEFAULT = 0,
	/* Handlers run on worker threads; a timeout is cooperative (the handler
	 * checks bus_ctx_expired), a crash takes the process down. */
	BUS_ISOLATION_THREAD = 1,
	/* Handlers run in pre-forked child processes. A child that crashes or
	 * overruns its job's timeout is killed and replaced, and the job is
	 * retried with the cause recorded. Middleware still runs in the worker
	 * process, around the hand-off. */
	BUS_ISOLATION_PROCESS = 2,
} bus_isolation;

typedef struct bus_worker_queue {
	const char *name;
	int concurrency; /* jobs of this queue run at once; 0: 4 */
} bus_worker_queue;

/*
 * The defaults are meant to be fast without tuning. bench/jobs --defaults
 * (BENCHMARKS.md) runs a worker made from BUS_WORKER_OPTS_INIT with two
 * queues, one of them empty, beside the benchmark's tuned one-queue worker;
 * the defaults must reach half its rate or more, on memory: and MySQL.
 *
 *  - Claims: each queue is claimed from on its own terms. A queue whose
 *    claim came back full is claimed from again as soon as it has room; a
 *    queue whose claim came back short has nothing more due, and is asked
 *    again after poll_interval_ms, or at once when a job is stored through
 *    this bus. An empty queue so costs one query per poll interval and
 *    never holds the others back.
 *  - fetch_batch 256 and completer_batch 256, as tuned: on MySQL one claim
 *    and one finish statement then carry up to 256 jobs (bench/mysql-raw
 *    shows the statements' cost is per statement far more than per row).
 *  - prefetch adapts (0, the default): a queue keeps about 100 ms of its
 *    jobs waiting beyond its busy executors, measured from their average
 *    run time, up to fetch_batch. Short jobs so get the tuned 256 (and the
 *    tuned speed); jobs of a second or more get none, so a slow queue does
 *    not hold jobs another worker could start now.
 *  - poll_interval_ms 1000: it only matters for jobs stored by other
 *    processes or buses, or by bus_enqueue_tx (visible only at the
 *    application's commit); a job stored through this bus otherwise wakes
 *    the worker.
 */

typedef struct bus_worker_opts {
	unsigned int version;
	const bus_worker_queue *queues; /* NULL: { "default", 4 } */
	size_t n_queues;
	int fetch_batch;            /* most jobs one claim takes; 0: 256 */
	/* Every interval below is 0 (the default) up to
	 * BUS_WORKER_INTERVAL_MAX_MS; outside that, bus_worker_new fails with
	 * BUS_EINVAL naming the option. */
	int64_t poll_interval_ms;   /* how often an idle worker looks; 0: 1000 */
	int64_t lease_ms;           /* lease of a claimed job; 0: 30000 */
	const char *node;           /* this worker's name; NULL: host:pid */
	bus_isolation isolation;
	int64_t rescue_interval_ms; /* how often expired leases are rescued;
				       0: 5000 */
	int64_t retention_s;        /* finished jobs older than this are
				       pruned; 0: 86400; negative: never */
	int completer_batch;        /* outcomes written per batch; 0: 256 */
	int64_t completer_flush_ms; /* longest an outcome waits; 0: 5 */
	int64_t shutdown_grace_ms;  /* bus_worker_run's grace; 0: 30000 */
	/* Claimed jobs a queue may hold waiting beyond its busy executors, so
	 * that claims come in batches. More speeds up short jobs; it also keeps
	 * those jobs from other workers for longer (their leases are renewed
	 * meanwhile, and they are given back at shutdown). 0: adapts to the
	 * queue's jobs (about 100 ms of them, up to fetch_batch: see above);
	 * -1: none (claim only for idle executors); N: N. */
	int prefetch;
	/* A job rescued from an expired lease (its worker died or lost the
	 * store) is retryable again this long after the rescue, instead of
	 * after its handler's backoff: the attempt did not fail, its worker
	 * did. 0: 5000. */
	int64_t rescue_delay_ms;
	/* How often the worker asks the store whether a job it holds (running
	 * or waiting) was cancelled with bus_job_cancel; a cancelled job is
	 * stopped within about this long. 0: 500. */
	int64_t cancel_check_ms;
} bus_worker_opts;

/* The largest interval option (and bus_worker_stop grace): one day. */
#define BUS_WORKER_INTERVAL_MAX_MS INT64_C(86400000)

#define BUS_WORKER_OPTS_VERSION 1
#define BUS_WORKER_OPTS_INIT                                                   \
	{ BUS_WORKER_OPTS_VERSION, NULL, 0, 0, 0, 0, NULL,                      \
	  BUS_ISOLATION_DEFAULT, 0, 0, 0, 0, 0, 0, 0, 0 }

/* Checks the options (a bad one is BUS_EINVAL naming it) and makes a worker
 * that is not running yet. The caller owns *out: bus_worker_free. The bus
 * must outlive the worker. */
BUS_EXTERN int bus_worker_new(bus_worker **out, bus *b,
			      const bus_worker_opts *opts);

/* Starts the worker's threads (and child processes) and returns. Under
 * process isolation the children are forked by a helper process that the
 * worker forks here, before its threads, so they run the handlers that were
 * registered on the bus before this call: register every durable handler
 * first (a job of a handler registered later fails in the child with "no
 * durable handler named ..."). */
BUS_EXTERN int bus_worker_start(bus_worker *w);

/* Starts the worker when needed and runs until it is asked to stop
 * (bus_worker_request_stop, from a signal handler say), then shuts down
 * gracefully with the shutdown_grace_ms option. */
BUS_EXTERN int bus_worker_run(bus_worker *w);

/* Asks the worker to stop. Async-signal-safe: call it from a SIGTERM or
 * SIGINT handler. bus_worker_run then shuts down and returns. */
BUS_EXTERN void bus_worker_request_stop(bus_worker *w);

/*
 * Graceful shutdown: stops claiming and gives back the jobs that wait for an
 * executor (available again, attempt not spent); lets running jobs finish
 * for up to `grace_ms`; then stops the rest:
 *  - process isolation: the child is killed, and the job given back;
 *  - thread isolation: bus_ctx_expired turns true, and stop waits for the
 *    handler to return, however long it takes (a thread cannot be killed
 *    safely), renewing the job's lease meanwhile. A job is never given back
 *    while its handler runs, so no other worker can start it meanwhile. What
 *    the handler returns is recorded: success completes the job, a snooze
 *    or cancel stands, a failure gives the job back unspent (the
 *    interruption's fault, not the job's).
 * Writes every outcome and returns once all threads and children are gone.
 * No job is lost, none is left executing, and none runs twice at once.
 */
BUS_EXTERN int bus_worker_stop(bus_worker *w, int64_t grace_ms);

/* Stops the worker (with no grace) if it runs, and frees it. NULL is fine.
 * Like bus_worker_stop, it waits for threaded handlers still running to
 * return, however long they take. */
BUS_EXTERN void bus_worker_free(bus_worker *w);

typedef struct bus_worker_stats {
	uint64_t claimed;   /* jobs claimed */
	uint64_t completed; /* outcomes recorded, by kind: */
	uint64_t retried;
	uint64_t discarded;
	uint64_t snoozed;
	uint64_t cancelled;
	uint64_t given_back;
	uint64_t rescued;   /* others' expired jobs this worker rescued */
	uint64_t lost;      /* outcomes refused: the job was no longer ours */
	uint64_t running;   /* jobs running now */
	/* outcomes the store refused for good, recorded discarded instead */
	uint64_t refused;
	/* jobs stopped because their lease ran out without a renewal */
	uint64_t lease_lost;
} bus_worker_stats;

BUS_EXTERN void bus_worker_get_stats(bus_worker_stats *out,
				     const bus_worker *w);

#endif /* BUS_WORKER_H */
