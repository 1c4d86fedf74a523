/*
 * Three worker processes share 20,000 jobs on one MySQL store. With no
 * fault, every job is claimed once, run once and completed: the handler's
 * own table holds each job id exactly once, and no job is lost or left in
 * another state.
 */
#include "fault_run.h"

int main(void)
{
	struct fault_env env;
	fault_init(&env, "fault_workers", "fw", 300);
	static const struct fault_scenario sc = {
		.n_jobs = 20000,
		.n_workers = 3,
		.concurrency = 8,
		.timeout_ms = 120000,
	};
	struct fault_run r;
	fault_run_scenario(&r, &env, &sc);
	if (r.duplicates != 0)
		fault_fail("%zu jobs ran more than once with no fault",
			   r.duplicates);
	if (r.reclaimed != 0)
		fault_fail("%zu jobs were claimed more than once with no "
			   "fault",
			   r.reclaimed);
	fault_run_free(&r);
	fault_pass("%d workers ran %zu jobs, each exactly once, in %.1f s",
		   sc.n_workers, r.n, r.run_s);
}
