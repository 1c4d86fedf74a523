/* The timing and counting middleware. Counters are atomics in entries found
 * through a lock-free map keyed by handler name; the mutex is taken only the
 * first time a handler is counted. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "error.h"
#include "strmap.h"

struct metric {
	struct bus_strmap_key key; /* name owned */
	atomic_uint_fast64_t calls, failures, total_ns, max_ns;
};

struct bus_metrics {
	pthread_mutex_t lock; /* serialises adding entries */
	struct bus_strmap by_handler;
	struct metric total;
};

static void metric_init(struct metric *e)
{
	atomic_init(&e->calls, 0);
	atomic_init(&e->failures, 0);
	atomic_init(&e->total_ns, 0);
	atomic_init(&e->max_ns, 0);
}

int bus_metrics_new(bus_metrics **out)
{
	if (out == NULL)
		return bus__error_set(BUS_EINVAL, "bus_metrics_new: out is NULL");
	*out = NULL;
	bus_metrics *m = calloc(1, sizeof *m);
	if (m == NULL)
		return bus__error_oom();
	int rc = bus__strmap_init(&m->by_handler);
	if (rc != 0) {
		free(m);
		return rc;
	}
	pthread_mutex_init(&m->lock, NULL);
	metric_init(&m->total);
	*out = m;
	return 0;
}

static int free_metric(struct bus_strmap_key *key, void *udata)
{
	(void)udata;
	free((char *)key->name);
	free(key);
	return 0;
}

void bus_metrics_free(bus_metrics *m)
{
	if (m == NULL)
		return;
	bus__strmap_foreach(&m->by_handler, free_metric, NULL);
	bus__strmap_destroy(&m->by_handler);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static struct metric *metric_for(bus_metrics *m, const struct bus_handler *h)
{
	struct metric *e = (struct metric *)bus__strmap_find(
		&m->by_handler, 0, h->name, h->name_len, h->name_hash);
	if (e != NULL)
		return e;
	pthread_mutex_lock(&m->lock);
	e = (struct metric *)bus__strmap_find(&m->by_handler, 0, h->name,
					      h->name_len, h->name_hash);
	if (e == NULL) {
		e = calloc(1, sizeof *e);
		char *name = strdup(h->name);
		if (e == NULL || name == NULL) {
			free(e);
			free(name);
			e = NULL;
		} else {
			e->key = (struct bus_strmap_key){ h->name_hash, 0,
							  h->name_len, name };
			metric_init(e);
			if (bus__strmap_add(&m->by_handler, &e->key) != 0) {
				free(name);
				free(e);
				e = NULL;
			}
		}
	}
	pthread_mutex_unlock(&m->lock);
	return e;
}

static void record(struct metric *e, int failed, uint64_t ns)
{
	atomic_fetch_add_explicit(&e->calls, 1, memory_order_relaxed);
	if (failed)
		atomic_fetch_add_explicit(&e->failures, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->total_ns, ns, memory_order_relaxed);
	uint_fast64_t max = atomic_load_explicit(&e->max_ns,
						 memory_order_relaxed);
	while (ns > max && !atomic_compare_exchange_weak_explicit(
				   &e->max_ns, &max, ns, memory_order_relaxed,
				   memory_order_relaxed))
		;
}

int bus_middleware_metrics(bus_ctx *ctx, bus_next *next, void *metrics)
{
	bus_metrics *m = metrics;
	int rc = bus_next_call(next);
	if (m == NULL)
		return rc;
	int64_t ns = bus_next_elapsed_ns(next);
	uint64_t uns = ns > 0 ? (uint64_t)ns : 0;
	record(&m->total, rc != 0, uns);
	/* Out of memory for a new entry: the total still counts the call. */
	struct metric *e = metric_for(m, ctx->handler);
	if (e != NULL)
		record(e, rc != 0, uns);
	return rc;
}

static void snapshot(bus_metrics_stats *out, const struct metric *e)
{
	out->calls = atomic_load_explicit(&e->calls, memory_order_relaxed);
	out->failures =
		atomic_load_explicit(&e->failures, memory_order_relaxed);
	out->total_ns =
		atomic_load_explicit(&e->total_ns, memory_order_relaxed);
	out->max_ns = atomic_load_explicit(&e->max_ns, memory_order_relaxed);
}

void bus_metrics_total(bus_metrics_stats *out, const bus_metrics *m)
{
	if (out == NULL)
		return;
	if (m == NULL) {
		memset(out, 0, sizeof *out);
		return;
	}
	snapshot(out, &m->total);
}

int bus_metrics_get(bus_metrics_stats *out, const bus_metrics *m,
		    const char *handler)
{
	if (out == NULL || m == NULL || handler == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus_metrics_get: NULL argument");
	size_t len = strlen(handler);
	const struct metric *e = (const struct metric *)bus__strmap_find(
		&m->by_handler, 0, handler, len, bus__name_hash(handler, len));
	if (e == NULL)
		return bus__error_set(BUS_ENOTFOUND,
				      "no calls of handler '%.255s' were counted",
				      handler);
	snapshot(out, e);
	return 0;
}

struct foreach_args {
	int (*cb)(const char *, const bus_metrics_stats *, void *);
	void *udata;
};

static int foreach_one(struct bus_strmap_key *key, void *udata)
{
	struct foreach_args *a = udata;
	bus_metrics_stats s;
	snapshot(&s, (const struct metric *)key);
	return a->cb(key->name, &s, a->udata);
}

int bus_metrics_foreach(const bus_metrics *m,
			int (*cb)(const char *handler,
				  const bus_metrics_stats *stats, void *udata),
			void *udata)
{
	if (m == NULL || cb == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus_metrics_foreach: NULL argument");
	struct foreach_args a = { cb, udata };
	return bus__strmap_foreach(&m->by_handler, foreach_one, &a);
}
