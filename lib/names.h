/* Names of messages, handlers, queues, nodes and tags: validation and
 * hashing in one pass. */
#ifndef BUS_LIB_NAMES_H
#define BUS_LIB_NAMES_H

#include <stddef.h>
#include <stdint.h>

/* In bytes. The SQL stores keep names in VARCHAR(255) columns of utf8mb4
 * (migration/mysql.sql), which count characters: 255 bytes of UTF-8 always
 * fit, whatever the characters. */
#define BUS_NAME_MAX 255

/* Checks that `name` is 1..BUS_NAME_MAX bytes of well-formed UTF-8 without
 * control characters, and stores its length and hash. On failure returns
 * BUS_EINVAL with a message that starts with `what` ("event name",
 * "handler name", "queue name", ...). */
int bus__name_check(const char *what, const char *name, size_t *len,
		    uint64_t *hash);

#endif
