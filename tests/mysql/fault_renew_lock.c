/*
 * Lease renewal under a row lock (issue 11, item 2): another connection
 * holds a row lock on one of four running jobs for three leases' time. The
 * renewal of that one job fails (fast: NOWAIT), but the other three keep
 * their leases: their lease_until never falls into the past (a second
 * worker rescuing every 50 ms would take them), and they complete in their
 * first attempt. The locked one is stopped by
 * its worker once its lease has run out unrenewed, rescued after the lock
 * goes, and completes in its second attempt.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fault.h"

#define KIND "fault.renew"
#define N 4
#define LEASE_MS 3000

struct hold {
	atomic_int started;
	atomic_int release;
	atomic_int saw_expired;
};

static int hold_job(bus_ctx *ctx, void *udata)
{
	struct hold *h = udata;
	atomic_fetch_add(&h->started, 1);
	/* At most a minute, whatever happens. */
	for (int i = 0; i < 60000 && !atomic_load(&h->release); i++) {
		if (bus_ctx_expired(ctx)) {
			atomic_fetch_add(&h->saw_expired, 1);
			return bus_ctx_fail(ctx, "stopped: lease lost");
		}
		fault_sleep_ms(1);
	}
	return 0;
}

static bus_worker *start(bus *b, const char *node, const char *queue,
			 int concurrency)
{
	bus_worker_queue q = { queue, concurrency };
	bus_worker_opts o = BUS_WORKER_OPTS_INIT;
	o.queues = &q;
	o.n_queues = 1;
	o.node = node;
	o.isolation = BUS_ISOLATION_THREAD;
	o.lease_ms = LEASE_MS;
	o.rescue_interval_ms = 50;
	o.rescue_delay_ms = 100;
	o.poll_interval_ms = 20;
	o.retention_s = -1;
	bus_worker *w = NULL;
	if (bus_worker_new(&w, b, &o) != 0 || bus_worker_start(w) != 0)
		fault_fail("worker %s: %s", node, bus_error_last()->message);
	return w;
}

static bus_job *job(bus *b, int64_t id)
{
	bus_job *j = NULL;
	if (bus_job_get(&j, b, id) != 0)
		fault_fail("bus_job_get %lld: %s", (long long)id,
			   bus_error_last()->message);
	return j;
}

int main(void)
{
	struct fault_env e;
	fault_init(&e, "fault_renew_lock", "renew", 120);
	bus *b = fault_open_bus(&e);
	if (bus_migrate(b) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	struct hold h = { 0, 0, 0 };
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	ho.queue = KIND;
	if (bus_handle_command(b, KIND, hold_job, &h, &ho) != 0)
		fault_fail("register: %s", bus_error_last()->message);
	int64_t ids[N];
	for (int i = 0; i < N; i++) {
		bus_enqueue_result r;
		if (bus_enqueue(&r, b, KIND, "{}", NULL) != 0)
			fault_fail("enqueue: %s", bus_error_last()->message);
		ids[i] = r.id;
	}
	bus_worker *w = start(b, "holder", KIND, N);
	for (int i = 0; i < 2000 && atomic_load(&h.started) < N; i++)
		fault_sleep_ms(10);
	if (atomic_load(&h.started) < N)
		fault_fail("only %d of %d jobs started", atomic_load(&h.started),
			   N);
	/* Another worker, on another queue: it only rescues. */
	bus_worker *rescuer = start(b, "rescuer", "fault.renew.other", 1);

	char why[256];
	fault_db *db = fault_connect(&e.dsn, why, sizeof why);
	if (db == NULL)
		fault_fail("connect: %s", why);
	fault_sql(db, "START TRANSACTION");
	char sql[256];
	snprintf(sql, sizeof sql, "SELECT id FROM %sjobs WHERE id = %lld FOR UPDATE",
		 e.prefix, (long long)ids[0]);
	if (fault_db_exec(db, sql, why, sizeof why) != 0)
		fault_fail("lock: %s", why);
	fault_note("job %lld locked for %d ms", (long long)ids[0],
		   3 * LEASE_MS);

	/* Three leases' time: the others must hold theirs all along. */
	for (int t = 0; t < 3 * LEASE_MS / 100; t++) {
		fault_sleep_ms(100);
		for (int i = 1; i < N; i++) {
			bus_job *j = job(b, ids[i]);
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t now = (int64_t)ts.tv_sec * 1000000 +
				      ts.tv_nsec / 1000;
			/* The store's clock is this machine's: a lease in the
			 * past is one any rescuer may take. */
			int ok = j->state == BUS_JOB_EXECUTING &&
				 j->attempt == 1 &&
				 strcmp(j->attempted_by, "holder") == 0 &&
				 j->lease_until > now;
			bus_job_state st = j->state;
			int attempt = j->attempt;
			int64_t lease = j->lease_until;
			bus_job_free(j);
			if (!ok)
				fault_fail("job %lld lost its lease while "
					   "another job was locked: %s, attempt "
					   "%d, lease until %lld (now %lld)",
					   (long long)ids[i],
					   bus_job_state_name(st), attempt,
					   (long long)lease, (long long)now);
		}
	}
	fault_sql(db, "COMMIT");
	fault_db_close(db);
	fault_note("lock released");

	atomic_store(&h.release, 1);
	for (int i = 0; i < N; i++) {
		bus_job *j = NULL;
		for (int k = 0; k < 3000; k++) {
			j = job(b, ids[i]);
			if (j->state == BUS_JOB_COMPLETED)
				break;
			bus_job_free(j);
			j = NULL;
			fault_sleep_ms(10);
		}
		if (j == NULL)
			fault_fail("job %lld did not complete",
				   (long long)ids[i]);
		int attempt = j->attempt;
		bus_job_free(j);
		if (i > 0 && attempt != 1)
			fault_fail("job %lld completed in attempt %d, not 1",
				   (long long)ids[i], attempt);
	}
	bus_worker_stats st;
	bus_worker_get_stats(&st, rescuer);
	bus_worker_stats hs;
	bus_worker_get_stats(&hs, w);
	bus_worker_free(rescuer);
	bus_worker_free(w);
	bus_close(b);
	fault_pass("3 of 4 jobs kept their leases under a row lock on the 4th "
		   "(rescued by the other worker: %llu; stopped for a lost "
		   "lease: %llu)",
		   (unsigned long long)st.rescued,
		   (unsigned long long)hs.lease_lost);
}
