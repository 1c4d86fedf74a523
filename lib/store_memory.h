/* The in-memory store: the default, embedded in libbus ("memory:"). It
 * implements the same operations as the SQL stores (bus/backend.h), with one
 * lock and indexed queues, and is lost when the process exits. */
#ifndef BUS_LIB_STORE_MEMORY_H
#define BUS_LIB_STORE_MEMORY_H

#include "bus/backend.h"

/* Flags BUS_STORE_SHARED: the core opens one instance per bus and uses it
 * from every thread. Each open() makes a new, empty store. */
extern const struct bus_store_ops bus__memory_store_ops;

#endif
