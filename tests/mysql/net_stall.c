/*
 * A network that stops passing packets (no reset, no FIN: a cable pulled,
 * a firewall dropping a flow) must not hang the worker: through the fault
 * proxy, traffic stops while the worker runs, and bus_worker_stop must
 * return within its grace plus the time the store's calls take to give up
 * (read-timeout, then a bounded reconnect of at most about 5 s plus
 * connect-timeout per try), here configured short in the URL. Then the
 * network comes back, and a second worker on a direct connection finishes
 * every job: none was lost.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fault_proxy.h"

#define KIND "net.stall"
#define FIRST 4
#define MORE 4
#define GRACE_MS 2000
/* read-timeout 2 s, connect-timeout 2 s: a call gives up after some 15 s;
 * stop makes a few calls (the claim in flight, the give-backs, the
 * completer's flush). Far below "never". */
#define STOP_BOUND_S 90

static struct fault_env env;
static struct fault_proxy proxy;

static int handler(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	fault_sleep_ms(200);
	return 0;
}

/* A job rescued from the stalled worker is retried soon. */
static int64_t quick_backoff(int attempt, void *udata)
{
	(void)attempt;
	(void)udata;
	return 100 * 1000;
}

static size_t completed(bus *b)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = KIND;
	f.limit = 1000;
	bus_job *jobs;
	size_t n, k = 0;
	if (bus_job_list(&jobs, &n, b, &f) != 0)
		fault_fail("bus_job_list: %s", bus_error_last()->message);
	for (size_t i = 0; i < n; i++)
		k += jobs[i].state == BUS_JOB_COMPLETED;
	bus_job_list_free(jobs, n);
	return k;
}

static bus_worker *worker_on(bus *b, int64_t lease_ms)
{
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	ho.backoff = quick_backoff;
	ho.max_attempts = 10;
	if (bus_handle_command(b, KIND, handler, NULL, &ho) != 0)
		fault_fail("bus_handle_command: %s", bus_error_last()->message);
	bus_worker_queue q = { "default", 2 };
	bus_worker_opts o = BUS_WORKER_OPTS_INIT;
	o.queues = &q;
	o.n_queues = 1;
	o.poll_interval_ms = 100;
	o.lease_ms = lease_ms;
	o.rescue_interval_ms = 500;
	o.isolation = BUS_ISOLATION_THREAD;
	o.retention_s = -1;
	bus_worker *w = NULL;
	if (bus_worker_new(&w, b, &o) != 0 || bus_worker_start(w) != 0)
		fault_fail("starting a worker: %s", bus_error_last()->message);
	return w;
}

struct stopper {
	bus_worker *w;
	atomic_int done;
	int rc;
};

static void *stop_thread(void *arg)
{
	struct stopper *s = arg;
	s->rc = bus_worker_stop(s->w, GRACE_MS);
	atomic_store(&s->done, 1);
	return NULL;
}

int main(void)
{
	fault_init(&env, "net_stall", "fns", 300);
	bus *direct = fault_open_bus(&env);
	if (bus_migrate(direct) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	fault_proxy_start(&proxy, &env);
	bus *b = fault_proxy_bus(&env, &proxy,
				 "connect-timeout=2&read-timeout=2&"
				 "write-timeout=2&keepalive=1");
	bus_worker *w = worker_on(b, 3000);
	for (int i = 0; i < FIRST; i++)
		if (bus_enqueue(NULL, direct, KIND, "{}", NULL) != 0)
			fault_fail("bus_enqueue: %s",
				   bus_error_last()->message);
	for (int waited = 0; completed(direct) == 0; waited += 50) {
		if (waited > 30000)
			fault_fail("the worker completed nothing before the "
				   "stall");
		fault_sleep_ms(50);
	}
	fault_proxy_cmd(&proxy, "stall");
	for (int i = 0; i < MORE; i++)
		if (bus_enqueue(NULL, direct, KIND, "{}", NULL) != 0)
			fault_fail("bus_enqueue: %s",
				   bus_error_last()->message);
	fault_sleep_ms(500);
	fault_note("network stalled; stopping the worker (grace %d ms)",
		   GRACE_MS);

	struct stopper s = { w, 0, 0 };
	pthread_t t;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pthread_create(&t, NULL, stop_thread, &s) != 0)
		fault_fail("pthread_create");
	for (int waited = 0; !atomic_load(&s.done); waited += 50) {
		if (waited > STOP_BOUND_S * 1000)
			fault_fail("bus_worker_stop still blocked %d s into a "
				   "stalled network",
				   STOP_BOUND_S);
		fault_sleep_ms(50);
	}
	pthread_join(t, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) +
		      (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fault_note("bus_worker_stop returned %d after %.1f s of a stalled "
		   "network",
		   s.rc, took);
	bus_worker_free(w);
	fault_proxy_cmd(&proxy, "resume");
	bus_close(b);

	/* No job lost: a worker on a direct connection finishes them all
	 * (those the stalled worker held come back when their leases end). */
	bus_worker *w2 = worker_on(direct, 30000);
	size_t n = 0;
	for (int waited = 0; waited < 60000; waited += 100) {
		if ((n = completed(direct)) == FIRST + MORE)
			break;
		fault_sleep_ms(100);
	}
	bus_worker_stop(w2, 5000);
	bus_worker_free(w2);
	if (n != FIRST + MORE)
		fault_fail("%zu of %d jobs completed after the network came "
			   "back",
			   n, FIRST + MORE);
	bus_close(direct);
	fault_proxy_stop(&proxy);
	fault_pass("a stalled network ended bus_worker_stop in %.1f s; no "
		   "job lost",
		   took);
}
