/*
 * What is registered on a bus: topics (an event, command or query name with
 * its handlers) and the middleware chain.
 *
 * Dispatch reads without locks: every list it reads is immutable once
 * published through an atomic pointer. A writer (under the registry's mutex)
 * builds a new list and swaps the pointer; the old list is kept on a retired
 * chain until the registry is destroyed, because a dispatch on another
 * thread may still be walking it. Registrations are rare and small, so the
 * retired memory is bounded by what was registered.
 */
#ifndef BUS_LIB_REGISTRY_H
#define BUS_LIB_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "strmap.h"

/* The defaults of a durable handler's jobs (bus_handler_opts), deep-copied. */
struct bus_job_defaults {
	char *queue; /* owned; NULL: "default" */
	int priority;
	int max_attempts;
	int64_t timeout_ms;
	bus_backoff_fn backoff;
	void *backoff_udata;
	bus_unique_opts *unique;   /* owned, payload_keys too; NULL: none */
	bus_replace_opts *replace; /* owned; NULL: none */
};

struct bus_handler {
	struct bus_strmap_key durable_key; /* in the durable map; name aliased */
	char *name; /* owned */
	size_t name_len;
	uint64_t name_hash; /* for lookups keyed by handler (metrics) */
	bus_kind kind;
	const char *message; /* the topic's name (owned by the topic) */
	bus_handler_fn fn;
	void *udata; /* the application's */
	int durable;
	struct bus_job_defaults job;
};

/* A handler from registration options (names checked by the caller); the
 * caller owns *out until the registry takes it. */
int bus__handler_new(struct bus_handler **out, bus_kind kind,
		     const char *name, bus_handler_fn fn, void *udata,
		     const bus_handler_opts *opts);
void bus__handler_free(struct bus_handler *h);

/* Checks job options that a handler or an enqueue sets; BUS_EINVAL names
 * what is wrong, after `what` ("handler 'x'", "job of command 'y'"). */
int bus__job_defaults_check(const char *what, const char *queue,
			    int priority, int max_attempts, int64_t timeout_ms,
			    const bus_unique_opts *unique,
			    const bus_replace_opts *replace);

/* Frees a copy of unique options made by the registry. */
void bus__unique_free(bus_unique_opts *u);

struct bus_handler_list {
	struct bus_handler_list *retired_next; /* once replaced */
	size_t n;
	struct bus_handler *items[];
};

struct bus_topic {
	struct bus_strmap_key key; /* tag: the kind; name owned */
	/* NULL until the first handler; then never NULL again. */
	_Atomic(const struct bus_handler_list *) handlers;
};

struct bus_middleware {
	bus_middleware_fn fn;
	void *udata;
};

struct bus_middleware_list {
	struct bus_middleware_list *retired_next; /* once replaced */
	size_t n;
	struct bus_middleware items[];
};

struct bus_registry {
	pthread_mutex_t lock; /* serialises writers only */
	struct bus_strmap topics;
	struct bus_strmap durable; /* durable handlers by handler name */
	_Atomic(const struct bus_middleware_list *) middleware;
	/* bus_handle_any_job's handler (owned), or NULL; set once. */
	_Atomic(const struct bus_handler *) any_job;
	/* Replaced lists, freed at destroy: a dispatch may still walk them. */
	struct bus_handler_list *retired_handlers;
	struct bus_middleware_list *retired_middleware;
};

int bus__registry_init(struct bus_registry *r);
/* Frees every topic, handler and list. No dispatch may be running. */
void bus__registry_destroy(struct bus_registry *r);

/* The topic of (kind, name) or NULL. Lock-free; `len` and `hash` come from
 * bus__name_check. */
const struct bus_topic *bus__registry_find(const struct bus_registry *r,
					   bus_kind kind, const char *name,
					   size_t len, uint64_t hash);

/*
 * Adds `h` to the topic (kind, name), creating the topic when needed. When
 * `single` is set the topic may have only one handler. When h->name is NULL
 * it gets the default name. On success the registry owns `h`; on failure the
 * caller still does.
 */
int bus__registry_add_handler(struct bus_registry *r, bus_kind kind,
			      const char *name, size_t len, uint64_t hash,
			      struct bus_handler *h, int single);

/* The durable handler named `name` (any message), or NULL. Lock-free. */
const struct bus_handler *bus__registry_find_durable(
	const struct bus_registry *r, const char *name);

/* The handler that runs a job of handler `name` in a worker: the durable
 * handler of that name, else the any-job handler, else NULL. Lock-free. */
const struct bus_handler *bus__registry_find_runner(
	const struct bus_registry *r, const char *name);

/* Sets the any-job handler; BUS_EEXISTS when one is set. On success the
 * registry owns `h`. */
int bus__registry_set_any_job(struct bus_registry *r, struct bus_handler *h);

int bus__registry_add_middleware(struct bus_registry *r, bus_middleware_fn fn,
				 void *udata);

static inline const struct bus_handler_list *
bus__topic_handlers(const struct bus_topic *t)
{
	return atomic_load_explicit(&t->handlers, memory_order_acquire);
}

static inline const struct bus_middleware_list *
bus__registry_middleware(const struct bus_registry *r)
{
	return atomic_load_explicit(&r->middleware, memory_order_acquire);
}

#endif
