/* Names of messages and handlers: validation and hashing in one pass. */
#ifndef BUS_LIB_NAMES_H
#define BUS_LIB_NAMES_H

#include <stddef.h>
#include <stdint.h>

#define BUS_NAME_MAX 255

/* Checks that `name` is 1..BUS_NAME_MAX bytes without control characters,
 * and stores its length and hash. On failure returns BUS_EINVAL with a
 * message that starts with `what` ("event name", "handler name", ...). */
int bus__name_check(const char *what, const char *name, size_t *len,
		    uint64_t *hash);

#endif
