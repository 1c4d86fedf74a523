/*
 * A claim whose COMMIT landed on a connection that was lost before the
 * reply is recovered: through the fault proxy, the reply to the COMMIT of
 * the worker's claim transaction is swallowed and the connection reset.
 * The store must read the claim back (its claim token) instead of running
 * it again: every job then runs once, on the attempt the claim spent, and
 * completes. With max_attempts 1 and a lease far longer than the test,
 * a claim that was run again would leave its first jobs executing with
 * nobody running them (then discarded by a rescue, never run).
 *
 * On PostgreSQL ($BUS_FAULT_STORE=postgres, tests/postgres/net_claim.sh)
 * a claim is one statement, committed at its Sync: its reply is the one
 * lost; and the session left alive on the server is one the proxy cut
 * before that Sync, so that it holds the claimed rows locked in a
 * transaction that never ends: the store must terminate it (the same
 * backend, by pid and start time) before it claims again, or SKIP LOCKED
 * passes over those jobs for as long as the session lives.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "fault_proxy.h"

#define JOBS 6

static struct fault_env env;
static struct fault_proxy proxy;
static atomic_int runs;

static int handler(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	atomic_fetch_add(&runs, 1);
	return 0;
}

static size_t jobs_in(bus *b, const char *kind, bus_job_state state,
		      int *attempt_max)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = kind;
	f.limit = 1000;
	bus_job *jobs;
	size_t n, k = 0;
	if (bus_job_list(&jobs, &n, b, &f) != 0)
		fault_fail("bus_job_list: %s", bus_error_last()->message);
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].state != state)
			continue;
		k++;
		if (attempt_max != NULL && jobs[i].attempt > *attempt_max)
			*attempt_max = jobs[i].attempt;
	}
	bus_job_list_free(jobs, n);
	return k;
}

/* The rule that interrupts the first claim that takes jobs (its UPDATE
 * writes claim_token). */
static const char *claim_rule(int orphan)
{
	if (!env.dsn.postgres)
		return "drop-reply COMMIT after claim_token";
	return orphan ? "reset-mid claim_token" : "drop-reply claim_token";
}

/* With `orphan`, the proxy keeps the server's side of the reset
 * connection open: the lost session lives on, holding its session lock
 * (MySQL) or the claimed rows (PostgreSQL), and the store must end it
 * before it reads the claim back. */
static void scenario(bus *direct, const char *kind, int orphan)
{
	atomic_store(&runs, 0);
	bus_job_opts jo = BUS_JOB_OPTS_INIT;
	jo.max_attempts = 1;
	for (int i = 0; i < JOBS; i++)
		if (bus_enqueue(NULL, direct, kind, "{}", &jo) != 0)
			fault_fail("bus_enqueue: %s",
				   bus_error_last()->message);

	bus *b = fault_proxy_bus(&env, &proxy,
				 "connect-timeout=5&read-timeout=10");
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	if (bus_handle_command(b, kind, handler, NULL, &ho) != 0)
		fault_fail("bus_handle_command: %s", bus_error_last()->message);
	if (orphan)
		fault_proxy_cmd(&proxy, "orphan");
	long fired0 = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "%s", claim_rule(orphan));

	bus_worker_queue q = { "default", JOBS };
	bus_worker_opts o = BUS_WORKER_OPTS_INIT;
	o.queues = &q;
	o.n_queues = 1;
	o.fetch_batch = JOBS;
	o.poll_interval_ms = 100;
	o.lease_ms = 600000; /* no rescue can hide a lost claim */
	o.isolation = BUS_ISOLATION_THREAD;
	o.retention_s = -1;
	bus_worker *w = NULL;
	if (bus_worker_new(&w, b, &o) != 0 || bus_worker_start(w) != 0)
		fault_fail("starting the worker: %s",
			   bus_error_last()->message);

	size_t done = 0;
	for (int waited = 0; waited < 60000; waited += 100) {
		if ((done = jobs_in(direct, kind, BUS_JOB_COMPLETED, NULL)) ==
		    JOBS)
			break;
		fault_sleep_ms(100);
	}
	long fired = fault_proxy_stat(&proxy, "fired") - fired0;
	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	if (bus_worker_stop(w, 5000) != 0)
		fault_fail("bus_worker_stop: %s", bus_error_last()->message);
	bus_worker_free(w);
	if (fired != 1)
		fault_fail("the proxy's rule '%s' fired %ld times, expected "
			   "once",
			   claim_rule(orphan), fired);
	int attempt_max = 0;
	size_t executing = jobs_in(direct, kind, BUS_JOB_EXECUTING, NULL);
	done = jobs_in(direct, kind, BUS_JOB_COMPLETED, &attempt_max);
	if (done != JOBS)
		fault_fail("%zu of %d jobs completed after the claim's COMMIT "
			   "reply was lost (%zu left executing, %d runs)",
			   done, JOBS, executing, atomic_load(&runs));
	if (attempt_max != 1)
		fault_fail("a job completed on attempt %d: the lost reply "
			   "spent an attempt",
			   attempt_max);
	if (atomic_load(&runs) != JOBS)
		fault_fail("the handler ran %d times for %d jobs",
			   atomic_load(&runs), JOBS);
	if (st.rescued != 0)
		fault_fail("%llu jobs were rescued",
			   (unsigned long long)st.rescued);
	fault_note("%s: %d jobs %s, each run once on attempt 1",
		   claim_rule(orphan), JOBS,
		   orphan && env.dsn.postgres
			   ? "claimed again once the lost session, alive "
			     "with their rows locked, was ended"
		   : orphan ? "read back (the lost session alive on the "
			      "server)"
			    : "read back");
	bus_close(b);
}

int main(void)
{
	fault_init(&env, "net_claim", "fnc", 180);
	bus *direct = fault_open_bus(&env);
	if (bus_migrate(direct) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	fault_proxy_start(&proxy, &env);
	scenario(direct, "net.claim", 0);
	scenario(direct, "net.claim.orphan", 1);
	bus_close(direct);
	fault_proxy_stop(&proxy);
	fault_pass("a claim whose COMMIT reply was lost is read back");
}
