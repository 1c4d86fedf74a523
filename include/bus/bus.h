/*
 * libbus — a command, query and event bus with durable background jobs.
 *
 * This is the application API, the only header most programs include.
 *
 * Conventions (after libgit2):
 *  - every name starts with `bus_`; handles are opaque;
 *  - functions return 0 on success or a negative BUS_E* code; the message of
 *    the last failure on the calling thread is in bus_error_last();
 *  - out-parameters come first;
 *  - option structs carry a `version` field: initialise them with their
 *    *_INIT macro, then set what you need;
 *  - what the library hands you, you free with the function named beside it
 *    (bus_free for strings).
 *
 * Threads: a bus may be used from any number of threads at once. Registration
 * (bus_on, bus_handle_command, bus_handle_query, bus_use) is safe at any time,
 * also while other threads dispatch: a dispatch already running keeps the
 * handlers and middleware it started with, later dispatches see the new ones.
 * A bus_ctx belongs to the one handler call it was made for: do not keep it
 * past that call nor share it with another thread.
 */
#ifndef BUS_BUS_H
#define BUS_BUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BUS_EXTERN __attribute__((visibility("default")))
#define BUS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BUS_EXTERN
#define BUS_PRINTF(f, a)
#endif

#define BUS_VERSION "0.1.0"

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

enum bus_error_code {
	BUS_OK = 0,
	BUS_ERROR = -1,     /* unclassified failure */
	BUS_EINVAL = -2,    /* bad argument or input (JSON, name, URL, option) */
	BUS_ENOTFOUND = -3, /* no such handler, backend, job, ... */
	BUS_EEXISTS = -4,   /* already registered */
	BUS_ENOMEM = -5,    /* out of memory */
	BUS_ETIMEOUT = -6,  /* the context's deadline has passed */
	BUS_EHANDLER = -7,  /* a handler reported failure (bus_ctx_fail) */
	BUS_ESTATE = -8,    /* not allowed in the current state */
	BUS_EBACKEND = -9,  /* the storage backend failed */
	BUS_ESCHEMA = -10,  /* the store's schema is missing or old: migrate */
	BUS_ESNOOZE = -11,  /* a durable handler asked to run again later */
	BUS_ECANCEL = -12,  /* a durable handler cancelled its job */
};

/* The last failure on this thread. Never NULL: without a failure, code is 0
 * and message is "no error". Valid until the next libbus call on the thread. */
typedef struct bus_error {
	int code;
	const char *message;
} bus_error;

BUS_EXTERN const bus_error *bus_error_last(void);
BUS_EXTERN void bus_error_clear(void);
/* A short name for a code: "BUS_EINVAL", ... ("unknown" for others). */
BUS_EXTERN const char *bus_error_name(int code);

/* Frees a string or buffer that libbus handed to the caller. NULL is fine. */
BUS_EXTERN void bus_free(void *ptr);

BUS_EXTERN const char *bus_version(void);

/* ------------------------------------------------------------------------ */
/* The bus                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct bus bus;
typedef struct bus_ctx bus_ctx;

#include "job.h" /* durable jobs */

/*
 * Opens a bus on the store named by `url`:
 *   NULL       the value of $BUS_URL, or "memory:" when that is unset;
 *   "memory:"  the in-memory bus (also "memory://"): nothing to set up.
 *   "mysql://...", "postgres://..."  a store plug-in, loaded from
 *              $(pkglibdir)/<scheme>.so or $BUS_BACKEND_DIR/<scheme>.so.
 * A URL whose scheme has no store is BUS_ENOTFOUND, naming the file looked
 * for; a plug-in that does not load or fits another ABI is BUS_EBACKEND
 * saying why; a URL that is not `scheme:rest` is BUS_EINVAL. Error messages
 * never contain the URL's password. The caller owns *out: bus_close.
 */
BUS_EXTERN int bus_open(bus **out, const char *url);

/* Closes the bus and frees everything it owns. NULL is fine. No dispatch may
 * be running on it, and its workers must have been freed. */
BUS_EXTERN void bus_close(bus *b);

/* Creates or updates the store's schema (nothing to do for memory:).
 * Idempotent, and safe when several nodes migrate at once. A store whose
 * schema is missing or old makes job calls fail with BUS_ESCHEMA. */
BUS_EXTERN int bus_migrate(bus *b);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum bus_log_level {
	BUS_LOG_DEBUG = 0,
	BUS_LOG_INFO = 1,
	BUS_LOG_WARN = 2,
	BUS_LOG_ERROR = 3,
	BUS_LOG_OFF = 4,
} bus_log_level;

/* `message` is one line without the newline, valid during the call. */
typedef void (*bus_log_fn)(bus_log_level level, const char *message,
			   void *udata);

/*
 * Replaces the bus's logger. Messages below `min_level` are dropped before
 * they are formatted. `fn` NULL restores the default, which writes to stderr.
 * The default level is BUS_LOG_WARN, or $BUS_LOG (debug|info|warn|error|off)
 * when set at bus_open. Set the logger before other threads dispatch.
 */
BUS_EXTERN void bus_set_logger(bus *b, bus_log_level min_level, bus_log_fn fn,
			       void *udata);

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum bus_kind {
	BUS_KIND_EVENT = 0,
	BUS_KIND_COMMAND = 1,
	BUS_KIND_QUERY = 2,
} bus_kind;

/*
 * A handler returns 0 on success. On failure it returns a negative code,
 * best through `return bus_ctx_fail(ctx, "what went wrong");`, which also
 * records the message. A command or query handler hands back its result with
 * bus_ctx_set_result.
 */
typedef int (*bus_handler_fn)(bus_ctx *ctx, void *udata);

typedef struct bus_handler_opts {
	unsigned int version;
	/* The handler's name, unique among the handlers of one message; it names
	 * the handler in logs, metrics and errors, and a durable handler's
	 * stored jobs find it by this name. Copied. Default: the message's
	 * name for commands and queries, "<event>#<n>" (n counting from 1 in
	 * registration order) for in-process event handlers. A durable event
	 * handler must be given a name (BUS_EINVAL otherwise): its jobs outlive
	 * the process, and a positional name would strand them when handlers
	 * are added or reordered. */
	const char *name;

	/* Durable: each call becomes a job, stored and run by a worker
	 * (bus/worker.h) instead of in the dispatching thread. The fields below
	 * are the defaults of its jobs; bus_job_opts may override them. */
	int durable;
	const char *queue;    /* NULL: "default" */
	int priority;         /* BUS_UNSET: 0; smaller runs first */
	int max_attempts;     /* BUS_UNSET: 3 */
	int64_t timeout_ms;   /* 0: none */
	bus_backoff_fn backoff; /* NULL: the default */
	void *backoff_udata;
	const bus_unique_opts *unique;   /* copied; NULL: not unique */
	const bus_replace_opts *replace; /* copied; NULL: never replace */
} bus_handler_opts;

#define BUS_HANDLER_OPTS_VERSION 1
#define BUS_HANDLER_OPTS_INIT                                                  \
	{ BUS_HANDLER_OPTS_VERSION, NULL, 0, NULL, BUS_UNSET, BUS_UNSET, 0,      \
	  NULL, NULL, NULL, NULL }

/*
 * Names of events, commands, queries, handlers, queues, worker nodes and job
 * tags are 1 to 255 bytes of well-formed UTF-8 without control characters
 * (C0, DEL, C1), on every store; anything else is BUS_EINVAL naming the
 * field. `opts` may be NULL. `udata` is handed to every call of `fn`; it
 * stays the caller's.
 *
 * `fn` may be NULL for a durable handler (opts->durable set): that
 * *declares* the handler's job options (queue, priority, attempts, timeout,
 * unique, ...) on a bus that only produces its jobs, so that they are
 * stored as its workers expect, as a Sidekiq or Oban worker class does
 * without running there. The workers register the same handler with its
 * function (and should give it the same options). A worker on a bus where
 * the handler is only declared cannot run its jobs.
 */

/* Adds a handler to an event. An event may have any number of handlers;
 * they run in registration order. A second handler with the same name on the
 * same event is BUS_EEXISTS. */
BUS_EXTERN int bus_on(bus *b, const char *event, bus_handler_fn fn,
		      void *udata, const bus_handler_opts *opts);

/* Sets the one handler of a command (or query): a second is BUS_EEXISTS.
 * Commands and queries are separate namespaces. */
BUS_EXTERN int bus_handle_command(bus *b, const char *command,
				  bus_handler_fn fn, void *udata,
				  const bus_handler_opts *opts);
BUS_EXTERN int bus_handle_query(bus *b, const char *query, bus_handler_fn fn,
				void *udata, const bus_handler_opts *opts);

/*
 * Sets the handler of last resort for durable jobs: a worker of this bus
 * runs with it every job whose handler name is not registered here. It lets
 * one program serve jobs of any kind (the `bus work --exec` runner does).
 * The job is in bus_ctx_job(ctx) (its kind, handler, attempt, ...);
 * bus_ctx_handler names this handler. Of `opts` (may be NULL) only `name`
 * (default "(any job)") and `backoff` apply; setting job defaults there is
 * BUS_EINVAL, since a job reaches a worker with its own. One per bus: a
 * second is BUS_EEXISTS. Register it before starting workers.
 */
BUS_EXTERN int bus_handle_any_job(bus *b, bus_handler_fn fn, void *udata,
				  const bus_handler_opts *opts);

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

/* bus_publish: run every handler even after one fails, and report how many
 * failed, instead of stopping at the first failure. */
#define BUS_PUBLISH_RUN_ALL (1u << 0)

typedef struct bus_dispatch_opts {
	unsigned int version;
	/* A JSON object: "request_id" and "correlation_id" (UUID strings) when
	 * the caller has them, and any other keys the handlers should see
	 * (bus_ctx_meta). NULL: none. A nested dispatch inherits the parent's. */
	const char *meta;
	/* Handed to handlers as bus_ctx_user; a nested dispatch inherits the
	 * parent's when this is NULL. */
	void *user;
	/* Milliseconds from now until the deadline; 0: none (a nested dispatch
	 * keeps the parent's, and never extends it). */
	int64_t timeout_ms;
	/* BUS_PUBLISH_* flags. */
	unsigned int flags;
	/* The outbox: the application's own open connection (MYSQL *,
	 * PGconn *) in a transaction. Jobs of durable handlers are then
	 * written through it and exist exactly when the application commits.
	 * NULL: the bus's own connections. A nested dispatch inherits it. */
	void *tx;
} bus_dispatch_opts;

#define BUS_DISPATCH_OPTS_VERSION 1
#define BUS_DISPATCH_OPTS_INIT                                                 \
	{ BUS_DISPATCH_OPTS_VERSION, NULL, NULL, 0, 0, NULL }

typedef struct bus_publish_result {
	size_t handlers; /* in-process handlers that ran */
	size_t failed;   /* of those, how many failed */
	size_t jobs;     /* jobs stored for durable handlers */
} bus_publish_result;

/*
 * Payloads are JSON text (NULL means JSON null). Invalid JSON is BUS_EINVAL
 * with the byte offset of the first error in bus_error_last(), and nothing
 * runs. Payloads over 16 MiB are BUS_EINVAL, and so are arrays and objects
 * nested more than 31 deep (MariaDB's JSON_VALID refuses 32, and every
 * store gives the same answer: the limit applies to every payload, result
 * and metadata, whatever the store).
 */

/*
 * Publishes an event: runs its in-process handlers in registration order.
 * Stops at the first failure and returns that handler's code, unless
 * BUS_PUBLISH_RUN_ALL is set, in which case all run and the result is
 * BUS_EHANDLER when any failed (bus_error_last() tells the first). Then,
 * unless a handler failed and stopped it, stores one job per durable handler,
 * all in one atomic insert. An event without handlers is not an error.
 * `out` (may be NULL) tells how many ran, failed and were stored.
 * `opts` may be NULL.
 */
BUS_EXTERN int bus_publish(bus_publish_result *out, bus *b, const char *event,
			   const char *payload, const bus_dispatch_opts *opts);

/*
 * Sends a command to its handler, or asks a query of its handler, and hands
 * back the handler's result in *result (JSON text the caller frees with
 * bus_free; NULL when the handler set none). `result` may be NULL. No handler
 * is BUS_ENOTFOUND. A durable command is stored as a job instead, and the
 * result is {"job_id":N,"status":"inserted"|"replaced"|"duplicate"}.
 */
BUS_EXTERN int bus_send(char **result, bus *b, const char *command,
			const char *payload, const bus_dispatch_opts *opts);
BUS_EXTERN int bus_ask(char **result, bus *b, const char *query,
		       const char *payload, const bus_dispatch_opts *opts);

/* The same from inside a handler: the new message inherits the context's
 * request and correlation ids, metadata, user pointer and deadline, and its
 * causation id is the context's message id. `opts` may be NULL. */
BUS_EXTERN int bus_ctx_publish(bus_publish_result *out, bus_ctx *ctx,
			       const char *event, const char *payload,
			       const bus_dispatch_opts *opts);
BUS_EXTERN int bus_ctx_send(char **result, bus_ctx *ctx, const char *command,
			    const char *payload, const bus_dispatch_opts *opts);
BUS_EXTERN int bus_ctx_ask(char **result, bus_ctx *ctx, const char *query,
			   const char *payload, const bus_dispatch_opts *opts);

/* ------------------------------------------------------------------------ */
/* The context handed to handlers and middleware                             */
/* ------------------------------------------------------------------------ */

struct cJSON; /* <cjson/cJSON.h>; include it to use the parsed forms */

/* Strings returned here belong to the context and live as long as the call. */
BUS_EXTERN bus *bus_ctx_bus(const bus_ctx *ctx);
BUS_EXTERN bus_kind bus_ctx_kind(const bus_ctx *ctx);
BUS_EXTERN const char *bus_ctx_name(const bus_ctx *ctx);    /* the message */
BUS_EXTERN const char *bus_ctx_handler(const bus_ctx *ctx); /* handler name */
BUS_EXTERN const char *bus_ctx_id(bus_ctx *ctx); /* message id, UUIDv7 */
BUS_EXTERN const char *bus_ctx_payload(const bus_ctx *ctx); /* JSON text */
BUS_EXTERN size_t bus_ctx_payload_len(const bus_ctx *ctx);
/* The payload parsed, on first use (handlers that never ask pay nothing).
 * NULL only when out of memory. */
BUS_EXTERN const struct cJSON *bus_ctx_json(bus_ctx *ctx);

/* Correlation: request_id names the outside request (the caller's, or the
 * first message's id), correlation_id the whole conversation (likewise),
 * causation_id the message whose handler dispatched this one (NULL for a
 * message dispatched from outside a handler). */
BUS_EXTERN const char *bus_ctx_request_id(bus_ctx *ctx);
BUS_EXTERN const char *bus_ctx_correlation_id(bus_ctx *ctx);
BUS_EXTERN const char *bus_ctx_causation_id(bus_ctx *ctx);
/* The free metadata keys (a JSON object, "{}" when none) and their parsed
 * form (NULL only when out of memory). The ids above are not among them. */
BUS_EXTERN const char *bus_ctx_meta(const bus_ctx *ctx);
BUS_EXTERN const struct cJSON *bus_ctx_meta_json(bus_ctx *ctx);

BUS_EXTERN void *bus_ctx_user(const bus_ctx *ctx);

/* Milliseconds until the deadline (INT64_MAX without one; 0 or less once it
 * has passed), and whether it has passed. Long handlers check it. For a
 * durable job, bus_ctx_expired also turns true when the job must stop early:
 * it was cancelled, its lease was lost, or its worker is shutting down. */
BUS_EXTERN int64_t bus_ctx_remaining_ms(const bus_ctx *ctx);
BUS_EXTERN int bus_ctx_expired(const bus_ctx *ctx);

/* Sets the result of a command or query (JSON text, copied; invalid JSON is
 * BUS_EINVAL). A second call replaces the first. */
BUS_EXTERN int bus_ctx_set_result(bus_ctx *ctx, const char *json);
BUS_EXTERN const char *bus_ctx_result(const bus_ctx *ctx); /* NULL: none */

/* Records why the handler failed and returns BUS_EHANDLER, for
 * `return bus_ctx_fail(ctx, "...", ...);`. The message also becomes
 * bus_error_last() of the dispatch that ran the handler. */
BUS_EXTERN int bus_ctx_fail(bus_ctx *ctx, const char *fmt, ...)
	BUS_PRINTF(2, 3);
/* The recorded failure, NULL when none. */
BUS_EXTERN const char *bus_ctx_error(const bus_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Middleware                                                                */
/* ------------------------------------------------------------------------ */

typedef struct bus_next bus_next;

/*
 * A middleware wraps every handler call. It may look at the context, call
 * the rest of the chain with bus_next_call (which returns the handler's
 * code), look at the outcome (bus_ctx_result, bus_ctx_error,
 * bus_next_elapsed_ns), or return without calling next to short-circuit
 * (setting a result or failing itself). Middleware run in the order they
 * were added; the first added is outermost.
 */
typedef int (*bus_middleware_fn)(bus_ctx *ctx, bus_next *next, void *udata);

BUS_EXTERN int bus_use(bus *b, bus_middleware_fn fn, void *udata);
BUS_EXTERN int bus_next_call(bus_next *next);
/* Wall time of the last bus_next_call on `next`, in nanoseconds. */
BUS_EXTERN int64_t bus_next_elapsed_ns(const bus_next *next);

/* Logging middleware: one line per handler call through the bus's logger:
 * debug on success, warn on failure, with kind, name, handler, message id,
 * outcome and elapsed time. `udata` is unused. */
BUS_EXTERN int bus_middleware_log(bus_ctx *ctx, bus_next *next, void *udata);

/* Timing and counting middleware: pass a bus_metrics as `udata`. Counters are
 * kept per handler name and in total, updated atomically, readable at any
 * time from any thread. */
typedef struct bus_metrics bus_metrics;

typedef struct bus_metrics_stats {
	uint64_t calls;
	uint64_t failures;
	uint64_t total_ns;
	uint64_t max_ns;
} bus_metrics_stats;

/* The caller owns *out and frees it with bus_metrics_free, after the last bus
 * that uses it is closed. */
BUS_EXTERN int bus_metrics_new(bus_metrics **out);
BUS_EXTERN void bus_metrics_free(bus_metrics *m);
BUS_EXTERN int bus_middleware_metrics(bus_ctx *ctx, bus_next *next,
				      void *metrics);
BUS_EXTERN void bus_metrics_total(bus_metrics_stats *out,
				  const bus_metrics *m);
/* BUS_ENOTFOUND when no call of that handler was counted. */
BUS_EXTERN int bus_metrics_get(bus_metrics_stats *out, const bus_metrics *m,
			       const char *handler);
/* Calls `cb` for every handler counted so far; a non-zero return stops and is
 * returned. */
BUS_EXTERN int bus_metrics_foreach(const bus_metrics *m,
				   int (*cb)(const char *handler,
					     const bus_metrics_stats *stats,
					     void *udata),
				   void *udata);

#include "worker.h" /* workers that run durable jobs */
#include "prometheus.h" /* metrics in the Prometheus text format */

#ifdef __cplusplus
}
#endif

#endif /* BUS_BUS_H */
