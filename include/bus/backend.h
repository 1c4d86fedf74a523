/*
 * libbus storage plug-in interface.
 *
 * A store is a shared object ("<scheme>.so" in the backend directory) that
 * exports one symbol, bus_backend_entry, returning its operations. The core
 * owns policy (backoff, attempt limits, unique keys, what a replace may
 * change, when a lease has expired, what a rescued job becomes); a backend
 * turns each call into one atomic step in its storage and decides nothing.
 * All stores therefore behave alike, and one contract suite tests them all.
 *
 * Rules for every operation:
 *  - `s` is one connection; the core never uses one from two threads at once
 *    (unless the store sets BUS_STORE_SHARED) and never in a forked child.
 *  - `now` is the time (microseconds since the epoch) to compare and stamp
 *    with; 0 means the store's own clock (NOW(6), now()).
 *  - Returns 0 or a negative BUS_E* code, having called env->error() with a
 *    message that says what failed. Messages never contain a password.
 *  - Arrays and strings handed to the core (bus_job rows, counts) are
 *    allocated with malloc; the core frees them with free (bus_job_free).
 *  - Operations are append-only: a new ABI version only adds members at the
 *    end of struct bus_store_ops.
 */
#ifndef BUS_BACKEND_H
#define BUS_BACKEND_H

#include "bus.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: cancel of an executing job records a request (cancel,
 * cancel_requested_at in bus_job, the finish rule below, cancel_pending);
 * retry keeps a due job's scheduled_at; claim returns rows in claim order.
 * 3: paused_queues (bus_queue_list).
 * 4: listen and wait_jobs (push wake-up, optional).
 * 5: the store's clock (now).
 * 6: the start of an attempt (start, claim_start, bus_job.started_at,
 *    claim clears it, finish's BUS_FINISH_IF_EXPIRED_UNSTARTED guard),
 *    optional. */
#define BUS_STORE_ABI_VERSION 6

typedef struct bus_store bus_store; /* the backend's connection */

/* What the core lends a backend, which cannot link against its internals. */
typedef struct bus_store_env {
	uint32_t abi_version;
	/* Records a failure for bus_error_last() and returns `code`. */
	int (*error)(int code, const char *fmt, ...) BUS_PRINTF(2, 3);
	/* Logs through the bus's logger. */
	void (*log)(void *log_udata, bus_log_level level, const char *fmt, ...)
		BUS_PRINTF(3, 4);
	void *log_udata;
} bus_store_env;

/* A job to insert. */
typedef struct bus_store_new_job {
	const char *kind;
	const char *handler;
	const char *queue;
	int priority;
	const char *payload; /* valid JSON */
	const char *meta;    /* JSON object */
	const char *tags;    /* JSON array of strings */
	int max_attempts;
	int64_t timeout_ms;
	/* scheduled_at = this when non-zero, else now + delay_us. The state is
	 * available when scheduled_at <= now, else scheduled. */
	int64_t scheduled_at;
	int64_t delay_us;
	/* Uniqueness. With a key, the store guarantees that at most one job
	 * holds it among jobs whose state is in their own unique_states: on a
	 * conflict nothing is inserted, and the existing job is updated with
	 * the fields replace[existing state] allows (status BUS_REPLACED; when
	 * scheduled_at changes on an available or scheduled job, its state
	 * follows), or left alone (BUS_DUPLICATE) when that is 0 or replace is
	 * NULL. The result's id is the existing job's. */
	const char *unique_key; /* 64 hex digits, or NULL */
	unsigned unique_states; /* BUS_STATE_BIT set */
	const unsigned *replace; /* [BUS_JOB_STATE_COUNT] BUS_REPLACE_*, or NULL */
} bus_store_new_job;

typedef struct bus_store_claim {
	const char *queue;
	size_t limit; /* at most this many from this queue */
} bus_store_claim;

/* An outcome to record for a claimed job. */
typedef struct bus_store_finish {
	int64_t id;
	/* Guard: applied only while the job is executing, attempted_by = node
	 * and attempt = attempt (and, with only_if_expired, lease_until < now),
	 * so that a worker that lost a job cannot overwrite its new fate. */
	const char *node;
	int attempt;
	/* 0, BUS_FINISH_IF_EXPIRED or BUS_FINISH_IF_EXPIRED_UNSTARTED. */
	int only_if_expired;
	/* completed, retryable, discarded, cancelled, scheduled (snooze) or
	 * available (given back). */
	bus_job_state state;
	/* For retryable, scheduled and available: scheduled_at = now + delay_us;
	 * negative: leave scheduled_at as it is. The core never passes more
	 * than BUS_DELAY_MAX_S seconds; a store may refuse more (BUS_EINVAL). */
	int64_t delay_us;
	/* Appended to errors as {"attempt":attempt,"at":now,"error":error};
	 * NULL: nothing appended. */
	const char *error;
	/* attempt = attempt - 1 (a snooze or a give-back spends no attempt). */
	int refund_attempt;
} bus_store_finish;

/* only_if_expired: also lease_until < now (a rescue)... */
#define BUS_FINISH_IF_EXPIRED 1
/* ... and the attempt has not started (started_at unset): the rescue of a
 * job its worker claimed but never began, whose attempt the core refunds.
 * Only with a store that has start (ABI 6). */
#define BUS_FINISH_IF_EXPIRED_UNSTARTED 2

/*
 * Every state change also keeps these invariants, in the same atomic step:
 * finished_at is set when the new state is completed, cancelled or
 * discarded (and cleared otherwise); lease_until is cleared when the state
 * is not executing; unique_key is cleared when the new state is not in the
 * job's unique_states (it is never set again); cancel_requested_at is
 * cleared (it is set only while the job is executing, see cancel).
 *
 * The life of a cancel request (a store needs one nullable time column,
 * cancel_requested_at, and nothing else):
 *  1. cancel of an executing job sets cancel_requested_at = now (once: a
 *     second cancel keeps the first time) and changes nothing else: the job
 *     stays executing with its attempt, lease and unique key, so no claim
 *     can take it and no twin can be inserted while its handler runs.
 *  2. The worker holding it asks cancel_pending, stops the handler, and
 *     records the outcome cancelled through finish.
 *  3. finish of a job with a cancel request, whatever state the item asks
 *     for except completed, makes it cancelled (finished_at = now, error
 *     appended, attempt refunded when the item says so, scheduled_at
 *     unchanged, unique key per its unique_states): so a retryable outcome written before the worker
 *     noticed the request, a give-back at shutdown, or the rescue of its
 *     expired lease all end the job cancelled. A completed outcome stands
 *     (the work was done before the request was seen).
 * retry and remove refuse an executing job (BUS_ESTATE), so they refuse a
 * job with a pending request until it is cancelled; prune never sees it.
 */

/* The store may be used by many threads at once through one instance (the
 * core then opens only one). */
#define BUS_STORE_SHARED (1u << 0)

struct bus_store_ops {
	uint32_t abi_version; /* BUS_STORE_ABI_VERSION the backend was built for */
	const char *name;     /* "mysql", ... */
	uint32_t flags;       /* BUS_STORE_* */

	/* Opens a connection for `url` (the whole URL, scheme included). */
	int (*open)(bus_store **out, const char *url, const bus_store_env *env);
	void (*close)(bus_store *s);

	/* BUS_ESCHEMA, saying how to migrate, when the schema is missing or
	 * older than this backend needs. */
	int (*schema_check)(bus_store *s);
	/* Applies what is missing of the schema; idempotent; safe when several
	 * nodes migrate at once. */
	int (*migrate)(bus_store *s);

	/* Inserts `n` jobs atomically (all or none); results[i] for jobs[i]. */
	int (*insert)(bus_store *s, int64_t now, const bus_store_new_job *jobs,
		      size_t n, bus_enqueue_result *results);

	/*
	 * Claims due jobs: for each queue that is not paused, up to its limit of
	 * jobs that are available, or scheduled or retryable with
	 * scheduled_at <= now, in order of priority, scheduled_at, id. Each
	 * becomes executing with attempt + 1, attempted_at = now, attempted_by =
	 * node and lease_until = now + lease_us, started_at unset (a store
	 * with start), and is returned as it is after the claim. Concurrent
	 * claims never return the same job.
	 * *out is in claim order: queue by queue in the order of `queues` (a
	 * queue listed twice counts once, at its first place), and within a
	 * queue by (priority, scheduled_at, id). The worker runs them
	 * in that order, so a store whose claim statement returns rows in
	 * another order (UPDATE ... RETURNING) must sort them.
	 */
	int (*claim)(bus_store *s, int64_t now, const char *node,
		     int64_t lease_us, const bus_store_claim *queues,
		     size_t n_queues, bus_job **out, size_t *n_out);

	/* Records outcomes; applied[i] = 1 when items[i]'s guard held. Items
	 * apply in order, as if one at a time, and should apply atomically:
	 * on failure nothing changed and applied[] all 0. The core isolates
	 * an item the store refuses by calling again with smaller batches (an
	 * item a failed call did apply is then refused by its guard, which is
	 * harmless), so a store refuses an item it cannot write (BUS_EINVAL
	 * naming it) rather than write part of it. See the cancel request
	 * rule above. */
	int (*finish)(bus_store *s, int64_t now, const bus_store_finish *items,
		      size_t n, unsigned char *applied);

	/* Sets lease_until = now + lease_us of the jobs still executing by
	 * `node` with the given attempt; held[i] tells which were. A pending
	 * cancel request does not stop a lease from being renewed. The core
	 * calls it with small batches from a thread and connection of its own;
	 * it should not wait long for a row lock (fail fast instead, e.g.
	 * FOR UPDATE NOWAIT): the core then renews the items one by one, so
	 * that one locked job cannot stop the renewal of the others. */
	int (*extend)(bus_store *s, int64_t now, const char *node,
		      int64_t lease_us, const int64_t *ids, const int *attempts,
		      size_t n, unsigned char *held);

	/* Executing jobs whose lease_until < now, oldest lease first. */
	int (*expired)(bus_store *s, int64_t now, size_t limit, bus_job **out,
		       size_t *n_out);

	/* Administration. BUS_ENOTFOUND for an id that does not exist. */
	int (*get)(bus_store *s, int64_t id, bus_job **out);
	int (*list)(bus_store *s, const bus_job_filter *filter, bus_job **out,
		    size_t *n_out);
	/* A job available, scheduled or retryable -> cancelled (finished_at =
	 * now). An executing job stays executing and records the request:
	 * cancel_requested_at = now unless already set (see above). 0 in both
	 * cases; BUS_ESTATE when it has finished. */
	int (*cancel)(bus_store *s, int64_t now, int64_t id);
	/* Job not executing -> available, finished_at cleared, max_attempts
	 * raised to attempt + 1 when spent. scheduled_at is kept when the job
	 * is already due -- its state is available, scheduled or retryable and
	 * scheduled_at <= now: it keeps its place in line -- else (a job due
	 * later, or a finished one) set to now. BUS_ESTATE when executing (a
	 * job with a pending cancel request included). */
	int (*retry)(bus_store *s, int64_t now, int64_t id);
	/* Deletes a job that is not executing; BUS_ESTATE when it is. */
	int (*remove)(bus_store *s, int64_t id);
	int (*set_paused)(bus_store *s, const char *queue, int paused);
	int (*counts)(bus_store *s, bus_job_count **out, size_t *n_out);
	/* Deletes up to `limit` finished jobs with finished_at < now - age_us. */
	int (*prune)(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		     int64_t *deleted);

	/* The outbox: like insert, but through the application's own open
	 * connection `tx` (MYSQL *, PGconn *) inside its transaction, which
	 * the backend neither begins nor ends; `s` supplies the configuration
	 * (table names). The jobs exist exactly when the application commits.
	 * May be NULL in a store without transactions (memory:). */
	int (*insert_tx)(bus_store *s, void *tx, int64_t now,
			 const bus_store_new_job *jobs, size_t n,
			 bus_enqueue_result *results);

	/* ---- ABI 2 ---- */

	/* pending[i] = 1 when job ids[i] is executing by `node` with attempt
	 * attempts[i] and has a cancel request (cancel_requested_at set), else
	 * 0. Reads only; the core calls it about twice a second with the jobs
	 * a worker holds, so it should be cheap (by primary key). It also
	 * serves as the probe of whether the store answers at all after a
	 * failed extend, so it must not wait for row locks. On failure
	 * pending[] is all 0. */
	int (*cancel_pending)(bus_store *s, const char *node,
			      const int64_t *ids, const int *attempts,
			      size_t n, unsigned char *pending);

	/* ---- ABI 3 ---- */

	/* The queues that are paused, in name order: *out holds *n_out
	 * entries with name set and paused = 1 (counts are zero). May be
	 * NULL: bus_queue_list then says the store cannot tell. */
	int (*paused_queues)(bus_store *s, bus_queue_info **out,
			     size_t *n_out);

	/* ---- ABI 4 ---- */

	/*
	 * Push wake-up, optional: NULL in a store without it, whose workers
	 * find new jobs by polling only (as they also do with it, at their
	 * poll interval, as the fallback). A worker gives these a connection
	 * of their own, used for nothing else.
	 *
	 * listen makes `s` a listener for jobs inserted, from now on, into
	 * any of `queues` (the strings need not outlive the call) by any
	 * process on any node; it reconnects first when `s` lost its
	 * server. wait_jobs blocks for up to timeout_ms and returns 1 when
	 * such an insert may have been committed since it last returned
	 * (a burst of inserts folded into one return; a spurious return is
	 * allowed, a missed one is not while the connection holds), 0 when
	 * the time passed, or a negative BUS_E* when the connection failed:
	 * inserts may then have gone unseen, and listen must be called
	 * again. The listener needs a direct connection to the server, not
	 * one through a pooler in transaction mode.
	 */
	int (*listen)(bus_store *s, const char *const *queues, size_t n);
	int (*wait_jobs)(bus_store *s, int timeout_ms);

	/* ---- ABI 5 ---- */

	/* The store's clock: the time (microseconds since the epoch) it
	 * stamps with when an operation is given now = 0. The core reads it
	 * where it must decide with the same time the store will store (a
	 * unique period's bucket), since producers' clocks may be skewed. */
	int (*now)(bus_store *s, int64_t *out);

	/* ---- ABI 6 ---- */

	/*
	 * The start of an attempt, optional (NULL: the store cannot tell, and
	 * a rescued job is always charged its attempt). Sets started_at = now,
	 * unless already set, of the jobs still executing by `node` with the
	 * given attempt (the guard of extend); held[i] tells which were. The
	 * core calls it, and waits for it to succeed, before it hands the
	 * jobs to their executors, so that a job whose handler may have
	 * begun always reads as started: a rescue then charges its attempt,
	 * and a job that kills its worker (a poison job) still spends its
	 * attempts. A store with start reports started_at in every row (get,
	 * list, expired), clears it at claim, and honours
	 * BUS_FINISH_IF_EXPIRED_UNSTARTED in finish.
	 */
	int (*start)(bus_store *s, int64_t now, const char *node,
		     const int64_t *ids, const int *attempts, size_t n,
		     unsigned char *held);
	/*
	 * claim, which also records the start (started_at = now) of every
	 * job it takes from queues[i] when start[i] is set, in the same
	 * atomic step: the core sets it for a queue whose jobs go to its
	 * executors at once, so that recording their start costs no call of
	 * its own. Optional (NULL: the core claims with claim, then calls
	 * start); only with start.
	 */
	int (*claim_start)(bus_store *s, int64_t now, const char *node,
			   int64_t lease_us, const bus_store_claim *queues,
			   const unsigned char *start, size_t n_queues,
			   bus_job **out, size_t *n_out);
};

/* The one symbol a backend exports. `core_abi` is the core's
 * BUS_STORE_ABI_VERSION. */
typedef const struct bus_store_ops *(*bus_backend_entry_fn)(uint32_t core_abi);
#define BUS_BACKEND_ENTRY "bus_backend_entry"

#ifdef __cplusplus
}
#endif

#endif /* BUS_BACKEND_H */
