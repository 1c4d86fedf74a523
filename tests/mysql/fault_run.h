/*
 * The scenario the worker tests share: enqueue N jobs, run them on several
 * worker processes whose handler records each run in a table of its own
 * (`<prefix>seen`: job_id, n), optionally break something half-way, wait
 * until every job completed, stop the workers, and check the books:
 *
 *  - the store holds exactly the jobs enqueued, every one completed;
 *  - the seen table holds every job id, and no other;
 *  - no job ran more often than it was claimed (n <= attempt).
 *
 * What is left to each test is how many duplicates (n > 1) it allows.
 */
#ifndef BUS_TESTS_MYSQL_FAULT_RUN_H
#define BUS_TESTS_MYSQL_FAULT_RUN_H

#include "fault.h"

#define FAULT_MAX_WORKERS 8

struct fault_run;

struct fault_scenario {
	int n_jobs;
	int n_workers;
	/* Each worker's options (thread isolation, one queue). */
	int concurrency;
	int prefetch; /* claimed jobs held beyond the busy executors */
	int fetch_batch;
	int completer_batch;
	int64_t lease_ms;
	int64_t rescue_ms;
	/* Called once when at least `fault_at` jobs completed; NULL: none. */
	int64_t fault_at;
	void (*fault)(struct fault_run *r);
	/* How long all jobs may take once the workers run. */
	long timeout_ms;
};

struct fault_run {
	struct fault_env *env;
	const struct fault_scenario *sc;
	pid_t pid[FAULT_MAX_WORKERS]; /* 0 once reaped */
	char node[FAULT_MAX_WORKERS][64];
	bus *monitor; /* the parent's bus while the workers run */

	/* The jobs enqueued, ids in ascending order, and per job what the
	 * books say at the end. Arrays owned by the run. */
	size_t n;
	int64_t *id;
	int *attempt; /* from the store */
	int *seen;    /* runs recorded by the handler */

	size_t duplicates; /* jobs with seen > 1 */
	size_t reclaimed;  /* jobs with attempt > 1 */
	int64_t completed_at_fault;
	double run_s; /* from the workers' start to the last completion */
};

/* Runs the scenario to the end and checks the books; fails the test when
 * they do not add up. */
void fault_run_scenario(struct fault_run *r, struct fault_env *e,
			const struct fault_scenario *sc);

/* Frees the run's arrays (the counts stay). */
void fault_run_free(struct fault_run *r);

/* Index of `id` in r->id, or -1. */
long fault_run_find(const struct fault_run *r, int64_t id);

/* The ids of the jobs executing under `node` now (owned by the caller:
 * free). */
int64_t *fault_run_executing(struct fault_run *r, const char *node,
			     size_t *n);

/* How many jobs each worker holds executing now, by worker index. */
void fault_run_held(struct fault_run *r, size_t held[FAULT_MAX_WORKERS]);

/* Kills worker `i` with SIGKILL and reaps it. */
void fault_run_kill(struct fault_run *r, int i);

/* Freezes worker `i` with SIGSTOP (returning once it has stopped), or,
 * with `pause` 0, lets it go on with SIGCONT. */
void fault_run_pause(struct fault_run *r, int i, int pause);

/* The command every job is, and the seen table's name after the prefix. */
#define FAULT_COMMAND "fault.job"
#define FAULT_SEEN "seen"

/* fault_worker.c: the body of a worker process (forked by the scenario,
 * with no connection open): runs a worker named `node` until SIGTERM, then
 * exits 0 after a clean shutdown. */
_Noreturn void fault_worker_main(const struct fault_env *e,
				 const struct fault_scenario *sc,
				 const char *node);

#endif
