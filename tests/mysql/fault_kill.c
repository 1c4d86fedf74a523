/*
 * kill -9 of one of three worker processes mid-run. Its jobs stay
 * executing until their leases run out; the survivors' rescuers then
 * retry them and the survivors complete them. At the end every job is
 * completed and recorded, and a job ran twice only if it was in flight at
 * the killed worker: executing under its name when it died (claimed, and
 * its outcome not yet recorded).
 *
 * The in-flight jobs are read from the store while the worker is frozen
 * just before the kill, which makes the check exact per job. They are not bounded by the worker's
 * options alone: besides one job per executor and `prefetch` claimed ones
 * waiting, a worker holds the finished jobs whose outcomes its completer
 * has not written yet, and nothing caps those.
 */
#include <stdlib.h>
#include <string.h>

#include "fault_run.h"

#define CONCURRENCY 8
#define PREFETCH 4
#define FETCH_BATCH 4

/* The killed worker's jobs, read right after it died. */
static int64_t *inflight;
static size_t n_inflight;
static int victim = -1;

/* Kills a worker that holds jobs: killing an idle one (between two claims,
 * say) would prove nothing. The busiest is frozen first (SIGSTOP), so that
 * what it holds can be read before it dies and cannot change after (once
 * its last statements have landed on the server); one
 * found holding nothing is let go and another moment tried. */
static void kill_worker(struct fault_run *r)
{
	for (int tries = 0; tries < 200; tries++, fault_sleep_ms(10)) {
		size_t held[FAULT_MAX_WORKERS];
		fault_run_held(r, held);
		int busiest = 0;
		for (int i = 1; i < r->sc->n_workers; i++)
			if (held[i] > held[busiest])
				busiest = i;
		if (held[busiest] == 0)
			continue;
		fault_run_pause(r, busiest, 1);
		/* A statement the worker sent before it stopped still runs
		 * on the server (a batch of outcomes, a claim): let it land,
		 * so that what is read next is what the dead worker held. */
		fault_sleep_ms(300);
		inflight = fault_run_executing(r, r->node[busiest],
					       &n_inflight);
		if (n_inflight == 0) {
			free(inflight);
			fault_run_pause(r, busiest, 0);
			continue;
		}
		victim = busiest;
		fault_run_kill(r, victim);
		fault_note("killed worker %s with SIGKILL after %lld "
			   "completions; it held %zu jobs",
			   r->node[victim], (long long)r->completed_at_fault,
			   n_inflight);
		return;
	}
	fault_fail("no worker held a job at any of 200 looks: nothing to "
		   "kill mid-run");
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
		.prefetch = PREFETCH,
		.fetch_batch = FETCH_BATCH,
		.lease_ms = 2000,
		.rescue_ms = 500,
		.fault_at = 4000,
		.fault = kill_worker,
		.timeout_ms = 120000,
	};
	struct fault_run r;
	fault_run_scenario(&r, &env, &sc);
	if (r.completed_at_fault >= (int64_t)r.n)
		fault_fail("the worker was killed only after all jobs were "
			   "done: the test proved nothing");
	if (n_inflight == 0)
		fault_fail("the killed worker held no jobs when it died: the "
			   "test proved nothing");
	size_t rescued = 0;
	for (size_t i = 0; i < n_inflight; i++) {
		long at = fault_run_find(&r, inflight[i]);
		if (at < 0)
			fault_fail("job %lld, in flight at the killed worker, "
				   "was never enqueued",
				   (long long)inflight[i]);
		rescued += r.attempt[at] > 1;
	}
	/* Only an outcome already on its way to the server when the worker
	 * died can have completed one of them without a second claim. */
	if (rescued == 0)
		fault_fail("none of the %zu jobs in flight at the killed "
			   "worker was claimed again",
			   n_inflight);
	for (size_t i = 0; i < r.n; i++)
		if (r.seen[i] > 1 && !was_inflight(r.id[i]))
			fault_fail("job %lld ran %d times but was not in "
				   "flight at the killed worker",
				   (long long)r.id[i], r.seen[i]);
	free(inflight);
	fault_run_free(&r);
	fault_pass("after kill -9 of 1 of %d workers all %zu jobs completed; "
		   "jobs in flight at the dead worker: %zu (%d executors, "
		   "prefetch %d), rescued: %zu, run twice: %zu",
		   sc.n_workers, r.n, n_inflight, CONCURRENCY, PREFETCH,
		   rescued, r.duplicates);
}
