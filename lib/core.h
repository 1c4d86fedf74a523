/* The bus handle's internals, shared by the core's files. */
#ifndef BUS_LIB_CORE_H
#define BUS_LIB_CORE_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus/bus.h"
#include "log.h"
#include "registry.h"
#include "store.h"

struct bus {
	struct bus_registry registry;
	struct bus_logger log;
	struct bus_store_pool store;
	bus_clock_fn clock; /* NULL: the store's clock */
	void *clock_udata;
	/* Running workers, woken when this bus stores a job so that they need
	 * not wait for their next poll. */
	pthread_mutex_t workers_lock;
	struct bus_worker *workers; /* linked through next_on_bus */
	atomic_int n_workers;
	/* Hashes of handler names enqueued for without a handler registered
	 * or declared here, already warned about (a collision only repeats a
	 * warning). */
	_Atomic uint64_t unknown_warned[64];
};

/* Tells this bus's running workers that jobs were stored. */
void bus__wake_workers(bus *b);

/* The `now` for store operations: the bus's clock, or 0 (the store's). */
static inline int64_t bus__now(const bus *b)
{
	return b->clock ? b->clock(b->clock_udata) : 0;
}


/* "event", "command" or "query". */
const char *bus__kind_name(bus_kind kind);

#endif
