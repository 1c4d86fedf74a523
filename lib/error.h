/* Thread-local error state behind bus_error_last(). */
#ifndef BUS_LIB_ERROR_H
#define BUS_LIB_ERROR_H

#include "bus/bus.h"

/* Records `code` and the formatted message for this thread; returns `code`
 * so that callers can write `return bus__error_set(BUS_EINVAL, ...)`. */
int bus__error_set(int code, const char *fmt, ...) BUS_PRINTF(2, 3);

/* Records an out-of-memory failure (no allocation involved). */
int bus__error_oom(void);

/* The code of the last failure on this thread (0 when none). */
int bus__error_code(void);

/* Forgets the last failure: cheap, for hot paths. */
void bus__error_reset(void);

#endif
