/* The bus's logger: a level filter in front of a replaceable callback. */
#ifndef BUS_LIB_LOG_H
#define BUS_LIB_LOG_H

#include "bus/bus.h"

struct bus_logger {
	bus_log_level level; /* messages below it are dropped unformatted */
	bus_log_fn fn;
	void *udata;
};

/* The default logger: stderr, at $BUS_LOG or BUS_LOG_WARN. */
void bus__logger_init(struct bus_logger *lg);

static inline int bus__log_enabled(const struct bus_logger *lg,
				   bus_log_level level)
{
	return level >= lg->level && level < BUS_LOG_OFF;
}

/* Formats and hands one line to the logger, when its level is enabled. */
void bus__log(const struct bus_logger *lg, bus_log_level level,
	      const char *fmt, ...) BUS_PRINTF(3, 4);

#endif
