/*
 * A job's meta: the ids of the message that made it and its free keys, as
 * one JSON object written at enqueue and read back when the job runs:
 *
 *   {"message_id":"…","request_id":"…","correlation_id":"…"
 *    [,"causation_id":"…"][,<free keys>]}
 *
 * Both directions know this layout, so the hot paths copy bytes instead of
 * building and parsing JSON; a meta in any other form (a store may reorder
 * keys) is read with a full parse by the caller.
 */
#ifndef BUS_LIB_JOBMETA_H
#define BUS_LIB_JOBMETA_H

#include "ctx.h"

/* Writes the meta of message `m` into *out (malloc'd). */
int bus__job_meta_write(char **out, const struct bus_message *m);

/* Reads the ids of `meta` into `m` and points m->meta at a malloc'd copy of
 * its free keys (m->meta_owned). Returns 0, or 1 when `meta` is not in the
 * layout above (nothing changed), or BUS_ENOMEM. */
int bus__job_meta_read(struct bus_message *m, const char *meta);

#endif
