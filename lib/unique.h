/* Unique jobs: the key that the store's unique index enforces. */
#ifndef BUS_LIB_UNIQUE_H
#define BUS_LIB_UNIQUE_H

#include <stdint.h>

#include "bus/bus.h"

#define BUS_UNIQUE_KEY_LEN 64 /* hex SHA-256 */

/* What a key is computed from: the job as it will be inserted. */
struct bus_unique_input {
	const char *kind;
	const char *handler;
	const char *queue;
	int priority;
	int max_attempts;
	int64_t timeout_ms;
	const char *payload; /* valid JSON */
	const char *tags;    /* valid JSON array */
	const char *meta;    /* valid JSON object (free keys) */
	int64_t inserted_at;  /* for the period bucket */
	int64_t scheduled_at; /* likewise, with BUS_UNIQUE_BY_SCHEDULED_AT */
};

/* Checks unique options: known fields, payload keys (non-empty strings, not
 * with BUS_UNIQUE_PAYLOAD), period >= 0, known base, and states holding every
 * unfinished state. BUS_EINVAL names what is wrong. */
int bus__unique_opts_check(const bus_unique_opts *u);

/* The states that count: u->states, or the default when 0. */
unsigned bus__unique_states(const bus_unique_opts *u);

/*
 * Writes the hex SHA-256 of the canonical encoding of kind, handler, the
 * fields `u` names (payload as canonical JSON: keys sorted, no white space,
 * numbers normalised; or only the named payload keys, a missing key counting
 * as absent) and the period bucket, and a NUL, into `out`.
 */
int bus__unique_key(char out[BUS_UNIQUE_KEY_LEN + 1], const bus_unique_opts *u,
		    const struct bus_unique_input *in);

/* Canonical JSON of `json` (valid JSON) into *out (malloc'd, caller frees).
 * Exposed for tests. */
int bus__json_canonical(char **out, const char *json);

#endif
