/* Turning dispatches into stored jobs: bus_enqueue*, and the durable
 * fan-out of bus_publish / bus_send. */
#ifndef BUS_LIB_ENQUEUE_H
#define BUS_LIB_ENQUEUE_H

#include "ctx.h"
#include "registry.h"

/* Stores one job per durable handler in handlers[0..n) for message `m`, in
 * one batch, with each handler's defaults. results may be NULL. */
int bus__enqueue_for_message(bus *b, const struct bus_message *m,
			     const struct bus_handler *const *handlers,
			     size_t n, bus_enqueue_result *results);

#endif
