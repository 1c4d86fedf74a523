/* Helpers for bus_job rows the core holds by value (in arrays, FIFOs and
 * executor slots) rather than through bus_job_free. */
#ifndef BUS_LIB_JOBROW_H
#define BUS_LIB_JOBROW_H

#include "bus/bus.h"

/* Frees the row's strings and zeroes it; the row itself stays. */
void bus__job_clear(bus_job *job);

#endif
