/*
 * libbus durable jobs: handlers whose calls are stored as jobs and run by
 * workers (bus/worker.h), with retries, schedules, priorities, queues and
 * unique jobs. Included by <bus/bus.h>; do not include it alone.
 *
 * Times are microseconds since the Unix epoch (int64_t), durations are named
 * with their unit. A time of 0 means "none".
 */
#ifndef BUS_JOB_H
#define BUS_JOB_H

#ifndef BUS_BUS_H
#error "include <bus/bus.h>, not <bus/job.h>"
#endif

/* ------------------------------------------------------------------------ */
/* The job model                                                             */
/* ------------------------------------------------------------------------ */

typedef enum bus_job_state {
	BUS_JOB_AVAILABLE = 0, /* waiting to run now */
	BUS_JOB_SCHEDULED = 1, /* waiting for its scheduled_at */
	BUS_JOB_EXECUTING = 2, /* claimed by a worker */
	BUS_JOB_RETRYABLE = 3, /* failed; runs again at scheduled_at */
	BUS_JOB_COMPLETED = 4, /* finished: succeeded */
	BUS_JOB_CANCELLED = 5, /* finished: cancelled by hand or by its handler */
	BUS_JOB_DISCARDED = 6, /* finished: failed with no attempts left */
} bus_job_state;

#define BUS_JOB_STATE_COUNT 7
/* A set of states: BUS_STATE_BIT(BUS_JOB_COMPLETED) | ... */
#define BUS_STATE_BIT(s) (1u << (s))
#define BUS_STATES_UNFINISHED                                                  \
	(BUS_STATE_BIT(BUS_JOB_AVAILABLE) | BUS_STATE_BIT(BUS_JOB_SCHEDULED) |   \
	 BUS_STATE_BIT(BUS_JOB_EXECUTING) | BUS_STATE_BIT(BUS_JOB_RETRYABLE))
#define BUS_STATES_FINISHED                                                    \
	(BUS_STATE_BIT(BUS_JOB_COMPLETED) | BUS_STATE_BIT(BUS_JOB_CANCELLED) |   \
	 BUS_STATE_BIT(BUS_JOB_DISCARDED))
#define BUS_STATES_ALL (BUS_STATES_UNFINISHED | BUS_STATES_FINISHED)

/* "available", "scheduled", ...; NULL for a value out of range. */
BUS_EXTERN const char *bus_job_state_name(bus_job_state state);
/* The state named `name`; BUS_EINVAL for an unknown name. */
BUS_EXTERN int bus_job_state_parse(bus_job_state *out, const char *name);

/* A stored job, as the admin calls return it. The caller frees it with
 * bus_job_free, which frees the strings too. */
typedef struct bus_job {
	int64_t id;
	char *kind;    /* the event or command name */
	char *handler; /* the handler name */
	char *queue;
	int priority;     /* smaller runs first */
	char *payload;    /* JSON */
	char *meta;       /* JSON object: request_id, correlation_id, ... */
	char *tags;       /* JSON array of strings */
	bus_job_state state;
	int attempt;      /* attempts started so far */
	int max_attempts;
	int64_t timeout_ms; /* 0: none */
	int64_t scheduled_at, inserted_at, attempted_at, lease_until,
		finished_at;
	char *attempted_by; /* node of the last attempt, or NULL */
	/* JSON array of {"attempt","at","error"}; each error text is valid
	 * UTF-8 (a byte that is not becomes U+FFFD), at most 16 KiB. */
	char *errors;
	char *unique_key;   /* hex SHA-256 while the job counts as unique */
	unsigned unique_states; /* BUS_STATE_BIT set; 0 when not unique */
	/* When bus_job_cancel was called while the job was executing (the
	 * request is pending: see bus_job_cancel); 0 otherwise. */
	int64_t cancel_requested_at;
	/* When the worker recorded that this attempt's handler was about to
	 * begin (set while executing, cleared by the next claim); 0 when the
	 * attempt has not started: claimed and still waiting in its worker's
	 * prefetch, or the store cannot tell (store ABI 6, optional). */
	int64_t started_at;
} bus_job;

BUS_EXTERN void bus_job_free(bus_job *job);
/* Frees an array from bus_job_list and the jobs in it. */
BUS_EXTERN void bus_job_list_free(bus_job *jobs, size_t n);

/* ------------------------------------------------------------------------ */
/* Uniqueness and replace                                                    */
/* ------------------------------------------------------------------------ */

/* What, beside kind and handler, makes two jobs the same. */
#define BUS_UNIQUE_PAYLOAD (1u << 0) /* the whole payload (canonical JSON) */
#define BUS_UNIQUE_QUEUE (1u << 1)
#define BUS_UNIQUE_PRIORITY (1u << 2)
#define BUS_UNIQUE_MAX_ATTEMPTS (1u << 3)
#define BUS_UNIQUE_TIMEOUT (1u << 4)
#define BUS_UNIQUE_TAGS (1u << 5)
#define BUS_UNIQUE_META (1u << 6) /* the free metadata keys */

typedef enum bus_unique_period_base {
	BUS_UNIQUE_BY_INSERTED_AT = 0,
	BUS_UNIQUE_BY_SCHEDULED_AT = 1,
} bus_unique_period_base;

typedef struct bus_unique_opts {
	unsigned int version;
	unsigned fields; /* BUS_UNIQUE_* */
	/* Only these top-level payload keys count (instead of the whole payload:
	 * do not also set BUS_UNIQUE_PAYLOAD). NULL/0: none. */
	const char *const *payload_keys;
	size_t n_payload_keys;
	/* 0: unique for ever (while in `states`). Otherwise jobs are the same
	 * only within one bucket floor(t / period) of inserted_at or
	 * scheduled_at. */
	int64_t period_s;
	bus_unique_period_base period_base;
	/* The states in which an existing job blocks a new one. It must hold
	 * every unfinished state (so a job never leaves the set and comes back);
	 * which finished states count is yours. 0: the default,
	 * BUS_STATES_UNFINISHED | completed. */
	unsigned states;
} bus_unique_opts;

#define BUS_UNIQUE_OPTS_VERSION 1
#define BUS_UNIQUE_OPTS_INIT { BUS_UNIQUE_OPTS_VERSION, 0, NULL, 0, 0, 0, 0 }

/* What a new job may overwrite in the existing one, per state of the
 * existing job. A state with no field allowed makes the new job a
 * duplicate. */
#define BUS_REPLACE_PAYLOAD (1u << 0)
#define BUS_REPLACE_QUEUE (1u << 1)
#define BUS_REPLACE_PRIORITY (1u << 2)
#define BUS_REPLACE_MAX_ATTEMPTS (1u << 3)
#define BUS_REPLACE_TIMEOUT (1u << 4)
#define BUS_REPLACE_TAGS (1u << 5)
#define BUS_REPLACE_META (1u << 6)
#define BUS_REPLACE_SCHEDULED_AT (1u << 7)
#define BUS_REPLACE_ALL 0xffu

typedef struct bus_replace_opts {
	unsigned int version;
	unsigned fields[BUS_JOB_STATE_COUNT]; /* indexed by bus_job_state */
} bus_replace_opts;

#define BUS_REPLACE_OPTS_VERSION 1
#define BUS_REPLACE_OPTS_INIT { BUS_REPLACE_OPTS_VERSION, { 0 } }

/* ------------------------------------------------------------------------ */
/* Enqueueing                                                                */
/* ------------------------------------------------------------------------ */

/* Marks an int option as "not set: use the handler's or the default". */
#define BUS_UNSET INT32_MIN

/* Limits, checked where options are given. */
#define BUS_PRIORITY_MIN (-32768) /* smaller runs first */
#define BUS_PRIORITY_MAX 32767
#define BUS_MAX_ATTEMPTS_MAX 1000
/* The longest duration of any kind: run_in_ms, timeout_ms, a unique
 * period_s, a snooze, a retention, and what a backoff function may return
 * (10 years, in seconds). An option beyond it is BUS_EINVAL naming it; a
 * backoff result beyond it is clamped to it, and delay arithmetic inside
 * saturates there, so no delay ever wraps around into the past. */
#define BUS_DELAY_MAX_S INT64_C(315360000)
/* The latest run_at: 9999-12-31T23:59:59Z, the last time every store
 * holds. */
#define BUS_TIME_MAX_US INT64_C(253402300799000000)

typedef struct bus_job_opts {
	unsigned int version;
	const char *queue;     /* NULL: the handler's, or "default" */
	int priority;          /* BUS_UNSET: the handler's, or 0 */
	int max_attempts;      /* BUS_UNSET: the handler's, or 3 */
	int64_t timeout_ms;    /* 0: the handler's (none unless set);
				  at most BUS_DELAY_MAX_S * 1000 */
	int64_t run_at;        /* absolute time, or 0; <= BUS_TIME_MAX_US */
	int64_t run_in_ms;     /* from now, or 0; not both with run_at;
				  at most BUS_DELAY_MAX_S * 1000 */
	const char *tags;      /* JSON array of strings, or NULL */
	const char *meta;      /* JSON object of free keys, or NULL */
	const bus_unique_opts *unique;   /* NULL: the handler's (or none) */
	const bus_replace_opts *replace; /* NULL: the handler's (or none) */
} bus_job_opts;

#define BUS_JOB_OPTS_VERSION 1
#define BUS_JOB_OPTS_INIT                                                      \
	{ BUS_JOB_OPTS_VERSION, NULL, BUS_UNSET, BUS_UNSET, 0, 0, 0,             \
	  NULL, NULL, NULL, NULL }

typedef enum bus_insert_status {
	BUS_INSERTED = 0,  /* a new job */
	BUS_REPLACED = 1,  /* an existing unique job was updated */
	BUS_DUPLICATE = 2, /* an existing unique job was left as it was */
} bus_insert_status;

typedef struct bus_enqueue_result {
	int64_t id; /* the new job, or the existing one it matched */
	bus_insert_status status;
} bus_enqueue_result;

/* Backoff: the delay in microseconds before the retry after failed attempt
 * `attempt` (1 for the first). Default: min(2^(attempt-1), 60) minutes, with
 * up to 10% jitter. A negative result counts as 0, one above
 * BUS_DELAY_MAX_S seconds as BUS_DELAY_MAX_S (and the worker logs a
 * warning naming the handler). */
typedef int64_t (*bus_backoff_fn)(int attempt, void *udata);

/*
 * Stores one durable job of command (or event) `kind`, run by the handler
 * named like the command (for an event, pass the handler's name through
 * bus_enqueue_to). Options not set come from the handler registered or
 * declared (bus_handle_command with a NULL function) on this bus, else the
 * defaults: queue "default", 3 attempts, no timeout. A producer should
 * declare the handlers it enqueues for: a handler neither registered nor
 * declared is logged as a warning (once per handler and bus), because its
 * jobs may land in a queue its workers do not serve. At run time a job
 * stored without a timeout runs under the timeout its worker's handler
 * declares, and its backoff is always the worker's handler's. `result` may
 * be NULL.
 */
BUS_EXTERN int bus_enqueue(bus_enqueue_result *result, bus *b,
			   const char *kind, const char *payload,
			   const bus_job_opts *opts);

/* The same for a named handler (an event handler, say). */
BUS_EXTERN int bus_enqueue_to(bus_enqueue_result *result, bus *b,
			      const char *kind, const char *handler,
			      const char *payload, const bus_job_opts *opts);

typedef struct bus_enqueue_item {
	const char *kind;
	const char *handler; /* NULL: the command's own handler */
	const char *payload;
	const bus_job_opts *opts; /* may be NULL */
} bus_enqueue_item;

/* bus_enqueue from inside a handler: the job's meta inherits the context's
 * request and correlation ids, and its causation id is the context's
 * message id. */
BUS_EXTERN int bus_ctx_enqueue(bus_enqueue_result *result, bus_ctx *ctx,
			       const char *kind, const char *payload,
			       const bus_job_opts *opts);

/* Stores `n` jobs in one atomic batch: all or none. results[i] tells about
 * items[i]; `results` may be NULL. */
BUS_EXTERN int bus_enqueue_many(bus_enqueue_result *results, bus *b,
				const bus_enqueue_item *items, size_t n);

/*
 * The outbox: the same, written through the application's own open
 * connection `tx` (a MYSQL * for mysql://, a PGconn * for postgres://)
 * inside the transaction the application has begun and will commit or roll
 * back itself. The jobs exist exactly when its own writes do. memory: has no
 * transactions: BUS_EINVAL.
 */
BUS_EXTERN int bus_enqueue_tx(bus_enqueue_result *result, bus *b, void *tx,
			      const char *kind, const char *payload,
			      const bus_job_opts *opts);
BUS_EXTERN int bus_enqueue_many_tx(bus_enqueue_result *results, bus *b,
				   void *tx, const bus_enqueue_item *items,
				   size_t n);

/* ------------------------------------------------------------------------ */
/* Inside a durable handler                                                  */
/* ------------------------------------------------------------------------ */

/* The job being run, or NULL for an in-process call. Owned by the context. */
BUS_EXTERN const bus_job *bus_ctx_job(const bus_ctx *ctx);

/* Asks to run the job again in `seconds`, not counting this attempt; for
 * `return bus_ctx_snooze(ctx, 30);`. Returns BUS_ESNOOZE; BUS_EINVAL (the
 * attempt then fails with that message) for seconds < 0 or above
 * BUS_DELAY_MAX_S. */
BUS_EXTERN int bus_ctx_snooze(bus_ctx *ctx, int64_t seconds);

/* Cancels the job for good (no retry), recording why; for
 * `return bus_ctx_cancel(ctx, "...");`. Returns BUS_ECANCEL. */
BUS_EXTERN int bus_ctx_cancel(bus_ctx *ctx, const char *fmt, ...)
	BUS_PRINTF(2, 3);

/* ------------------------------------------------------------------------ */
/* Administration                                                            */
/* ------------------------------------------------------------------------ */

/* *out is the caller's; free it with bus_job_free. */
BUS_EXTERN int bus_job_get(bus_job **out, bus *b, int64_t id);

typedef struct bus_job_filter {
	unsigned int version;
	unsigned states;     /* BUS_STATE_BIT set; 0: all */
	const char *queue;   /* NULL: all */
	const char *kind;    /* NULL: all */
	int64_t after_id;    /* paging: jobs with a larger id */
	size_t limit;        /* 0: 100 */
} bus_job_filter;

#define BUS_JOB_FILTER_VERSION 1
#define BUS_JOB_FILTER_INIT { BUS_JOB_FILTER_VERSION, 0, NULL, NULL, 0, 0 }

/* Jobs matching `filter` in id order; free with bus_job_list_free. For the
 * next page, set after_id to the last id returned. */
BUS_EXTERN int bus_job_list(bus_job **out, size_t *n, bus *b,
			    const bus_job_filter *filter);

/*
 * Cancels a job that has not finished. BUS_ESTATE when it has finished.
 *
 * A job waiting to run (available, scheduled, retryable) is cancelled at
 * once. A running (executing) job is not: the call records a request
 * (cancel_requested_at) and the job goes on being executing, holding its
 * unique key, so that neither a second run of it nor a run of a unique
 * twin can start while its handler may still be running. Then:
 *  - the worker running it learns of the request within its
 *    cancel_check_ms (0.5 s by default) and stops the handler: a threaded
 *    handler sees bus_ctx_expired() turn true, a child process is killed;
 *    a job still waiting in the worker's prefetch is not started;
 *  - once the handler has returned, the job becomes cancelled (finished_at
 *    set, its outcome not recorded) -- unless it had completed before the
 *    request was seen: a completed outcome stands;
 *  - should its worker be gone, the rescue of its expired lease makes it
 *    cancelled instead of retryable.
 * Until then bus_job_retry and bus_job_delete refuse it (BUS_ESTATE) and
 * bus_job_prune does not touch it. Poll bus_job_get for the end.
 */
BUS_EXTERN int bus_job_cancel(bus *b, int64_t id);
/* Makes a job that is not running available; a job out of attempts gets
 * one more. A job already due (available, or scheduled/retryable whose time
 * has come) keeps its scheduled_at, so its place in line; any other runs
 * from now. BUS_ESTATE when it is executing (also with a cancel pending).
 * A unique job keeps its key when
 * it still holds it (it finished in a state that counts); one that left its
 * unique states no longer counts as unique once retried. */
BUS_EXTERN int bus_job_retry(bus *b, int64_t id);
/* Deletes a job that is not running (BUS_ESTATE when it is). These three
 * return BUS_ENOTFOUND for an id that does not exist. */
BUS_EXTERN int bus_job_delete(bus *b, int64_t id);

/* A paused queue is not claimed from; jobs can still be enqueued. */
BUS_EXTERN int bus_queue_pause(bus *b, const char *queue);
BUS_EXTERN int bus_queue_resume(bus *b, const char *queue);

typedef struct bus_job_count {
	char queue[256];
	bus_job_state state;
	int64_t count;
} bus_job_count;

/* Counts per queue and state (only non-zero ones); free with bus_free. */
BUS_EXTERN int bus_job_counts(bus_job_count **out, size_t *n, bus *b);

typedef struct bus_queue_info {
	char name[256];
	int paused;                          /* 1: not claimed from */
	int64_t counts[BUS_JOB_STATE_COUNT]; /* jobs by bus_job_state */
} bus_queue_info;

/* Every queue that holds jobs or is paused, in name order, with its paused
 * flag and its job counts per state; free *out with bus_free. */
BUS_EXTERN int bus_queue_list(bus_queue_info **out, size_t *n, bus *b);

/* Deletes finished jobs (completed, cancelled, discarded) that finished more
 * than `age_s` seconds ago (0..BUS_DELAY_MAX_S); *deleted (may be NULL)
 * tells how many. */
BUS_EXTERN int bus_job_prune(int64_t *deleted, bus *b, int64_t age_s);

/* The bus's clock: microseconds since the epoch. NULL (the default) uses the
 * store's own clock for every decision, so that nodes with skewed clocks
 * agree. Tests set a clock they drive forward. Set it before starting
 * workers. */
typedef int64_t (*bus_clock_fn)(void *udata);
BUS_EXTERN void bus_set_clock(bus *b, bus_clock_fn fn, void *udata);

#endif /* BUS_JOB_H */
