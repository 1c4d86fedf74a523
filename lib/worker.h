/*
 * A worker's parts and how they share work:
 *
 *   fetcher ──claim──▶ per-queue FIFO ──▶ executors (one thread per slot)
 *                                           │ outcome, decided by policy.c
 *   leases: renew, cancel requests          ▼
 *   lease watch (no store calls): stop    completer ──finish (batched)──▶ store
 *     jobs whose lease ran out
 *   maintenance: rescue, prune
 *
 * One mutex guards the FIFOs, the slots and the completer's batch; store
 * calls are made outside it, each thread on its own connection.
 */
#ifndef BUS_LIB_WORKER_H
#define BUS_LIB_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus/backend.h"
#include "child.h"

enum abort_reason {
	ABORT_NONE = 0,
	ABORT_LOST,     /* rescued, or its lease ran out: not ours any more */
	ABORT_SHUTDOWN, /* past the grace period: stop (bus_ctx_expired) */
	ABORT_CANCEL,   /* bus_job_cancel: record it cancelled once stopped */
};

/* Claimed jobs waiting for an executor of their queue. */
struct job_fifo {
	bus_job *items; /* a ring of owned rows */
	size_t head, len, cap;
};

struct worker_queue {
	char *name;         /* owned */
	int concurrency;    /* executor slots */
	int prefetch;       /* jobs that may wait beyond the busy slots, now */
	int prefetch_auto;  /* the default: prefetch follows avg_run_ns */
	int64_t avg_run_ns; /* moving average of a job's run time; 0: none */
	int unwritten;      /* run; the outcome waits for the completer */
	int busy;           /* slots running a job */
	/* The fetcher's: the last claim came back short, so nothing more is
	 * due here; not asked again before this (monotonic ns) unless jobs
	 * are stored on this bus. 0: ask. */
	int64_t dry_until_ns;
	struct job_fifo pending;
};

/*
 * The default prefetch (bus_worker_opts.prefetch 0) adapts to the queue's
 * jobs: a queue holds about PREFETCH_HORIZON_MS of work waiting beyond its
 * busy executors, i.e. concurrency * horizon / average run time, between 0
 * and the worker's fetch_batch. Short jobs (the common case: a no-op runs
 * in microseconds) get the whole fetch_batch, so claims and outcomes go in
 * batches and the worker runs as fast as with the benchmark's tuned
 * settings; long jobs get none, so a slow queue does not hold jobs that
 * another worker could start now (what a River or Oban user expects). A
 * queue starts at 0 and takes the measured value after its first job.
 */
#define PREFETCH_HORIZON_MS 100

/* Under the lock: a job of `q` ran for `ns`; adapts the default prefetch. */
void bus__queue_ran(struct worker_queue *q, int64_t ns, int max_prefetch);

/* An executor and the job it runs. */
struct worker_slot {
	struct bus_worker *w;
	struct worker_queue *queue;
	pthread_t thread;
	int started;
	struct bus_child *child; /* process isolation */
	int running;             /* a job is claimed by this slot */
	bus_job job;             /* owned while running */
	atomic_int abort;        /* enum abort_reason, set by others */
};

/* Outcomes waiting to be written; strings owned. owners[i] is the queue
 * whose executor ran items[i] (NULL for a give-back), so that the job still
 * counts against what that queue may hold until its outcome is stored. */
struct finish_batch {
	bus_store_finish *items;
	struct worker_queue **owners;
	size_t len, cap;
};

/* What the lease watch knows of a job the worker holds: when its lease
 * runs out on this machine's monotonic clock, unless the keeper renews it
 * (worker_lease.c). */
struct lease_entry {
	int64_t id;
	int attempt;
	int64_t deadline_ns;
};

enum worker_state { W_NEW, W_RUNNING, W_STOPPING, W_STOPPED };

struct bus_worker {
	bus *bus;
	char *node; /* owned */
	struct worker_queue *queues;
	size_t n_queues;
	struct worker_slot *slots;
	size_t n_slots;
	bus_isolation isolation;
	/* Process isolation: forks the children (zygote.h); owned, from
	 * bus_worker_start until the children are freed. */
	struct bus_zygote *zygote;
	int fetch_batch;
	int64_t poll_ms, lease_us, rescue_ms, retention_s, grace_ms;
	int completer_batch;
	int64_t flush_ms;
	int64_t rescue_delay_us; /* a rescued job runs again this much later */
	int64_t cancel_check_ms; /* how often cancel requests are read */

	pthread_mutex_t lock;
	pthread_cond_t work;      /* executors: a job arrived, or stopping */
	pthread_cond_t room;      /* fetcher: a slot freed up, or stopping */
	pthread_cond_t flush;     /* completer: outcomes waiting, or stopping */
	pthread_cond_t idle;      /* stop: a slot finished */
	pthread_cond_t tick;      /* maintenance and fetcher sleep on it */
	int state;                /* enum worker_state */
	int claiming;             /* the fetcher may claim */
	/* The fetcher waits for room that outcomes not yet taken by the
	 * completer hold: the completer writes what it has at once. */
	int fetcher_starved;
	int completer_done;       /* completer: flush and exit */
	int maintenance_go;       /* maintenance and leases: 0 to exit */
	unsigned wakes;           /* bumped when jobs were stored locally */
	struct bus_worker *next_on_bus;
	struct finish_batch batch;
	/* The outcomes the completer is writing now (its own copy, read by
	 * the lease keeper under the lock, so that their leases are renewed
	 * until they are stored). */
	const bus_store_finish *writing;
	size_t n_writing;
	/* The lease watch's table, sorted by (id, attempt), under the lock:
	 * the watch owns it (adds, drops, frees), the keeper moves the
	 * deadlines of the jobs it renewed. */
	struct lease_entry *leases;
	size_t n_leases;
	/* Recording starts (worker_start.c), under the lock: an executor is
	 * recording a wave; the next try not before this (monotonic ns); the
	 * average call time; failures in a row. */
	int starting;
	int64_t start_retry_ns, start_avg_ns;
	int start_failures;

	atomic_int stop_requested; /* set from a signal handler */
	int stop_pipe[2];          /* written from a signal handler */
	pthread_t fetcher, completer, maintenance, lease_keeper, lease_watch;
	int fetcher_started, completer_started, maintenance_started,
		lease_keeper_started, lease_watch_started;
	/* Each thread's own connection (one shared instance for memory:). */
	bus_store *fetch_store, *complete_store, *maint_store, *lease_store;
	/* The executors' connection for start, NULL when the store has no
	 * start (its jobs run as claimed, and rescues never refund). */
	bus_store *start_store;
	/* Push wake-up (worker_listen.c), when the store has it. */
	pthread_t listener;
	int listener_started;
	bus_store *listen_store;

	struct {
		atomic_uint_fast64_t claimed, completed, retried, discarded,
			snoozed, cancelled, given_back, rescued, lost,
			refused, lease_lost;
		/* Store round trips: claims, and the completer's batches. */
		atomic_uint_fast64_t claims, claim_ns, finishes, finish_ns;
	} stats;
};

/* Whether few enough claimed jobs wait in `q` to claim more (under the
 * lock). */
static inline int bus__queue_low(const struct worker_queue *q)
{
	return q->pending.len + (size_t)q->unwritten <= (size_t)q->prefetch / 2;
}

/* worker_start.c, under the lock: whether the head of q's FIFO may be
 * handed to an executor (its start is recorded, or the store records
 * none); and recording a wave of starts (the lock is released during the
 * store call, or the caller waits on w->work while another records one;
 * the fetcher does not wait, and leaves it to the other). Either way the
 * caller looks at the FIFO again afterwards. */
int bus__worker_head_ready(const struct bus_worker *w,
			   const struct worker_queue *q);
void bus__worker_start_wave(struct bus_worker *w, int fetcher);
/* worker_start.c, under the lock: how many of q's waiting jobs a wave
 * records -- those its idle executors take now and those its executors
 * are expected to take during one store call. A claim whose jobs all fall
 * within it records their start itself (ops->claim_start). */
size_t bus__worker_start_ahead(const struct bus_worker *w,
			       const struct worker_queue *q);
/* worker_start.c, under the lock: the fetcher drops from the FIFOs the
 * entries of jobs its claim just returned again (stale: refunded by a
 * rescue while they waited, and claimed anew with the same attempt). */
void bus__worker_drop_reclaimed(struct bus_worker *w, const bus_job *rows,
				size_t n);

/* worker_exec.c: an executor thread. */
void *bus__worker_executor(void *slot);
/* worker_complete.c: the completer thread, and handing it an outcome
 * (copies the strings; takes the lock itself). `owner` is the queue whose
 * executor produced it, or NULL. */
void *bus__worker_completer(void *w);
int bus__worker_submit(struct bus_worker *w, const bus_store_finish *f,
		       struct worker_queue *owner);
/* worker_maint.c: the maintenance thread (rescue, prune). */
void *bus__worker_maintenance(void *w);
/* worker_lease.c: the lease keeper thread (renewals, cancel requests),
 * and the lease watch (stops jobs whose lease ran out; no store calls). */
void *bus__worker_lease_keeper(void *w);
void *bus__worker_lease_watch(void *w);

/* worker_complete.c: records outcomes with per-item isolation: a batch the
 * store refuses while it answers is halved until the refused items are
 * alone; each is then recorded discarded with the store's refusal as its
 * error (or, that refused too, left to the rescuer). While the store does
 * not answer, the batch is retried with backoff as long as *go (read under
 * w->lock) holds, and a few times after. applied[i] is 1 for the items
 * whose guard held, 2 for those recorded discarded instead, 0 for the
 * others. Returns how many items could not be written at all. */
size_t bus__worker_finish_isolated(struct bus_worker *w, bus_store *s,
				   const bus_store_finish *items, size_t n,
				   unsigned char *applied, const int *go);

/* worker_exec.c: the outcome recorded for a job stopped by a cancel
 * request. */
void bus__finish_cancelled(bus_store_finish *f, const bus_job *job,
			   const char *node);

/* Wakes the worker's fetcher (and naps that are wakeable): jobs may have
 * been stored for it. Takes w->lock. */
void bus__worker_wake(struct bus_worker *w);

/* Sleeps on w->tick for up to `ms`, returning early once *go is 0 (read
 * under the lock; whoever clears it broadcasts tick), or, when `wakeable`,
 * once jobs were stored on this bus. */
void bus__worker_nap(struct bus_worker *w, int64_t ms, const int *go,
		     int wakeable);
/* worker_listen.c: the listener thread, when the store has push wake-up
 * (ops->listen): it wakes the fetcher as soon as another process or node
 * inserts jobs into this worker's queues. start opens its connection and
 * starts it (0 when the store has none: workers poll); stop joins it once
 * w->claiming is 0, and closes the connection. */
int bus__worker_listen_start(struct bus_worker *w);
void bus__worker_listen_stop(struct bus_worker *w);

#endif
