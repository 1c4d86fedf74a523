/* Clocks used by the core. Monotonic time measures durations and deadlines;
 * wall time stamps identifiers. */
#ifndef BUS_LIB_CLOCK_H
#define BUS_LIB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t bus__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds since the epoch, from the cheap coarse clock (a few ms of
 * resolution, which is all a UUIDv7 timestamp needs). */
static inline uint64_t bus__wall_ms_coarse(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
