/* The bus handle's internals, shared by the core's files. */
#ifndef BUS_LIB_CORE_H
#define BUS_LIB_CORE_H

#include "bus/bus.h"
#include "log.h"
#include "registry.h"

struct bus {
	struct bus_registry registry;
	struct bus_logger log;
};

/* "event", "command" or "query". */
const char *bus__kind_name(bus_kind kind);

#endif
