/*
 * The bus's store connections. A backend instance is one connection; the
 * pool hands one to a producer (enqueue, admin calls) for the length of a
 * call, and workers open dedicated ones for their own threads. No connection
 * is used by two threads at once (except a BUS_STORE_SHARED store's single
 * instance) and none is used in a forked child.
 */
#ifndef BUS_LIB_STORE_H
#define BUS_LIB_STORE_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus/backend.h"

struct bus_logger;

struct bus_store_pool {
	const struct bus_store_ops *ops;
	char *url; /* owned; holds the password: never logged */
	bus_store_env env;
	pthread_mutex_t lock;
	bus_store **idle; /* owned connections not in use */
	size_t n_idle, cap;
	bus_store *shared; /* the one instance of a BUS_STORE_SHARED store */
	atomic_int schema_ok; /* schema_check passed (or migrate ran) */
	int in_child;         /* this copy of the pool is in a forked child */
};

/* The env handed to every backend: errors and logs go to the core. */
extern const bus_store_env bus__store_env;

/* Opens the first connection, so that a bad URL or an unreachable server
 * fails bus_open. `log` is the bus's logger. */
int bus__store_pool_init(struct bus_store_pool *p,
			 const struct bus_store_ops *ops, const char *url,
			 const struct bus_logger *log);
void bus__store_pool_destroy(struct bus_store_pool *p);

/* A connection for one call; give it back with release (or discard, when it
 * failed in a way that may have left it broken). Checks the schema once. */
int bus__store_acquire(struct bus_store_pool *p, bus_store **out);
void bus__store_release(struct bus_store_pool *p, bus_store *s);

/* A connection a worker thread keeps for itself. */
int bus__store_open(struct bus_store_pool *p, bus_store **out);
void bus__store_close(struct bus_store_pool *p, bus_store *s);

/* In a forked child: forgets the inherited connections (they are the
 * parent's; closing them would talk on the parent's sockets) so that the
 * child opens its own, and refuses a shared store, which lives in the
 * parent's memory. */
void bus__store_after_fork(struct bus_store_pool *p);

/* Applies the schema through a pooled connection. */
int bus__store_migrate(struct bus_store_pool *p);

#endif
