/*
 * What both SQL stores do alike with an insert batch read back after a
 * lost connection (its rows found by the call's insert token): the jobs
 * with a row are inserted, with that row's id; the jobs without one must
 * be unique jobs that met an existing job (their upserts wrote no row of
 * this call), which are run again, with the same token and places (they
 * change nothing twice). Compiled into each store plug-in; the names are
 * bus__ and hidden (-fvisibility=hidden).
 */
#ifndef BUS_BACKENDS_LANDED_H
#define BUS_BACKENDS_LANDED_H

#include <stddef.h>
#include <stdint.h>

#include "bus/backend.h"

/* Runs the upserts of jobs[0..n) again, jobs[k] being the batch's job
 * seqs[k], results to results[k]; 0 or the store's own error code. */
typedef int (*bus_landed_rerun_fn)(void *ctx, const bus_store_new_job *jobs,
				   size_t n, const int *seqs,
				   bus_enqueue_result *results);

/*
 * found[i]: the id of the row of job i (0: none); n_found of them are not
 * 0 (at least one: the batch committed). Sets results[i] of each job
 * found, and runs the others again with rerun(ctx, ...), their results
 * put in place. Returns 0; BUS_ENOMEM; BUS_ESTATE with *missing the
 * first job without a row that is not unique (the batch then did not
 * commit whole, which cannot be); or what rerun returned.
 */
int bus__landed_apply(const bus_store_new_job *jobs, size_t n,
		      const int64_t *found, size_t n_found,
		      bus_enqueue_result *results, bus_landed_rerun_fn rerun,
		      void *ctx, size_t *missing);

#endif
