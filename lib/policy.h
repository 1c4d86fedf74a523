/* What an outcome means for a job: the core's retry policy. */
#ifndef BUS_LIB_POLICY_H
#define BUS_LIB_POLICY_H

#include "bus/backend.h"
#include "child.h"
#include "registry.h"

/* The default backoff: min(2^(attempt-1), 60) minutes, plus up to 10%
 * jitter, in microseconds. */
int64_t bus__backoff_default_us(int attempt);

/* The longest delay the core hands a store (BUS_DELAY_MAX_S). */
#define BUS_DELAY_MAX_US (BUS_DELAY_MAX_S * 1000000)

/* `us` within 0..BUS_DELAY_MAX_US. */
int64_t bus__delay_clamp_us(int64_t us);
/* Seconds as microseconds, within 0..BUS_DELAY_MAX_US (no overflow). */
int64_t bus__seconds_to_us(int64_t s);

/* The delay before retrying `job` after its failed attempt, from its
 * handler's backoff (h may be NULL: the default), clamped to
 * 0..BUS_DELAY_MAX_US. */
int64_t bus__backoff_us(const struct bus_handler *h, int attempt);

/*
 * Fills `f` (guarded by node and job->attempt) for the outcome `o` of
 * running `job`: completed; scheduled after a snooze (attempt refunded);
 * cancelled; retryable after the backoff, or discarded when the attempts
 * are spent. f->error points into `o`.
 */
void bus__policy_decide(bus_store_finish *f, const bus_job *job,
			const struct bus_handler *h, const char *node,
			const struct bus_outcome *o);

#endif
