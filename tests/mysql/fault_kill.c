/*
 * kill -9 of one of three worker processes mid-run. Its jobs stay
 * executing until their leases run out; the survivors' rescuers then
 * retry them and the survivors complete them. At the end every job is
 * completed and recorded. A job may run twice only if it was in flight
 * at the killed worker: claimed by it and not yet recorded as finished.
 * Those are the jobs executing under its name right after it died, and
 * the worker's options bound how many they can be.
 */
#include <stdlib.h>

#include "fault_run.h"

#define CONCURRENCY 8
#define FETCH_BATCH 4

/* The killed worker's jobs, read right after it died. */
static int64_t *inflight;
static size_t n_inflight;

static void kill_worker(struct fault_run *r)
{
	fault_run_kill(r, 0);
	inflight = fault_run_executing(r, r->node[0], &n_inflight);
	fault_note("killed worker %s with SIGKILL after %lld completions; it "
		   "held %zu jobs",
		   r->node[0], (long long)r->completed_at_fault, n_inflight);
}

static int was_inflight(int64_t id)
{
	for (size_t i = 0; i < n_inflight; i++)
		if (inflight[i] == id)
			return 1;
	return 0;
}

int main(void)
{
	struct fault_env env;
	fault_init(&env, "fault_kill", "fk", 300);
	static const struct fault_scenario sc = {
		.n_jobs = 20000,
		.n_workers = 3,
		.concurrency = CONCURRENCY,
		.fetch_batch = FETCH_BATCH,
		.lease_ms = 2000,
		.rescue_ms = 500,
		.fault_at = 4000,
		.fault = kill_worker,
		.timeout_ms = 120000,
	};
	/*
	 * What the killed worker can hold: a job per executor, plus claimed
	 * jobs waiting for one (the fetcher claims only up to the free
	 * executors, at most FETCH_BATCH at a time), plus finished jobs
	 * whose outcome the completer had not written yet.
	 */
	const size_t bound = CONCURRENCY + FETCH_BATCH;
	struct fault_run r;
	fault_run_scenario(&r, &env, &sc);
	if (r.completed_at_fault >= (int64_t)r.n)
		fault_fail("the worker was killed only after all jobs were "
			   "done: the test proved nothing");
	if (n_inflight == 0)
		fault_fail("the killed worker held no jobs when it died: the "
			   "test proved nothing");
	if (r.reclaimed == 0)
		fault_fail("no job was claimed twice, yet the killed worker "
			   "held %zu",
			   n_inflight);
	for (size_t i = 0; i < r.n; i++)
		if (r.seen[i] > 1 && !was_inflight(r.id[i]))
			fault_fail("job %lld ran %d times but was not in "
				   "flight at the killed worker",
				   (long long)r.id[i], r.seen[i]);
	if (r.duplicates > bound)
		fault_fail("%zu jobs ran twice; the killed worker could hold "
			   "at most %zu (concurrency %d + fetch batch %d)",
			   r.duplicates, bound, CONCURRENCY, FETCH_BATCH);
	free(inflight);
	fault_pass("after kill -9 of 1 of %d workers all %zu jobs completed; "
		   "%zu were in flight at the dead worker, %zu ran twice "
		   "(bound %zu)",
		   sc.n_workers, r.n, n_inflight, r.duplicates, bound);
}
