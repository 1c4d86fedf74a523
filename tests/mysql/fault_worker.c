/* A worker process of the fault scenario, and its handler: each run of a
 * job adds one to the job's row in `<prefix>seen`, through a connection of
 * the executor thread's own. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_run.h"

/* Where the handler records runs. */
struct seen_sink {
	const struct fault_dsn *dsn;
	char table[128];
	pthread_key_t key; /* the thread's fault_db */
};

/* The thread key's destructor, when an executor thread ends. */
static void seen_conn_thread_end(void *p)
{
	fault_db_close(p);
	fault_db_thread_end();
}

/* The thread's connection, opened on first use or after a failure; NULL
 * with the reason in `why`. */
static fault_db *seen_conn_get(struct seen_sink *s, char *why, size_t why_len)
{
	fault_db *c = pthread_getspecific(s->key);
	if (c != NULL)
		return c;
	if ((c = fault_connect(s->dsn, why, why_len)) == NULL)
		return NULL;
	fault_db_seen_sql(c, s->table);
	pthread_setspecific(s->key, c);
	return c;
}

/* Adds one to job `id`'s count; 0, or -1 with the reason in `why`. */
static int seen_record(struct seen_sink *s, int64_t id, char *why,
		       size_t why_len)
{
	fault_db *c = seen_conn_get(s, why, why_len);
	if (c == NULL)
		return -1;
	if (fault_db_seen_add(c, id, why, why_len) == 0)
		return 0;
	/* Start afresh next time: the server may have gone away. */
	pthread_setspecific(s->key, NULL);
	fault_db_close(c);
	return -1;
}

static int seen_handler(bus_ctx *ctx, void *udata)
{
	const bus_job *job = bus_ctx_job(ctx);
	if (job == NULL)
		return bus_ctx_fail(ctx, "ran outside a job");
	char why[512];
	if (seen_record(udata, job->id, why, sizeof why) != 0)
		return bus_ctx_fail(ctx, "recording job %lld: %s",
				    (long long)job->id, why);
	return 0;
}

/* Retries come quickly: a failed run here is the server going away. */
static int64_t quick_backoff(int attempt, void *udata)
{
	(void)attempt;
	(void)udata;
	return 100 * 1000;
}

static bus_worker *running_worker;

static void on_term(int sig)
{
	(void)sig;
	bus_worker_request_stop(running_worker);
}

static void worker_fail(const char *node, const char *what)
{
	fprintf(stderr, "worker %s: %s: %s\n", node, what,
		bus_error_last()->message);
	_exit(1);
}

void fault_worker_main(const struct fault_env *e,
		       const struct fault_scenario *sc, const char *node)
{
	struct seen_sink sink = { .dsn = &e->dsn };
	snprintf(sink.table, sizeof sink.table, "%s" FAULT_SEEN, e->prefix);
	if (pthread_key_create(&sink.key, seen_conn_thread_end) != 0)
		_exit(1);

	bus *b = NULL;
	if (bus_open(&b, e->url) != 0)
		worker_fail(node, "bus_open");
	/* Warnings too: rescues and lost connections belong in the log. */
	if (getenv("BUS_LOG") == NULL)
		bus_set_logger(b, BUS_LOG_WARN, NULL, NULL);
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	ho.max_attempts = 25;
	ho.backoff = quick_backoff;
	if (bus_handle_command(b, FAULT_COMMAND, seen_handler, &sink, &ho) != 0)
		worker_fail(node, "bus_handle_command");

	bus_worker_queue q = { "default", sc->concurrency };
	bus_worker_opts o = BUS_WORKER_OPTS_INIT;
	o.queues = &q;
	o.n_queues = 1;
	o.prefetch = sc->prefetch;
	o.fetch_batch = sc->fetch_batch;
	o.completer_batch = sc->completer_batch;
	o.poll_interval_ms = 100;
	o.lease_ms = sc->lease_ms;
	o.rescue_interval_ms = sc->rescue_ms;
	o.node = node;
	o.isolation = BUS_ISOLATION_THREAD;
	o.retention_s = -1;
	o.shutdown_grace_ms = 5000;
	bus_worker *w = NULL;
	if (bus_worker_new(&w, b, &o) != 0)
		worker_fail(node, "bus_worker_new");
	running_worker = w;
	signal(SIGTERM, on_term);
	if (bus_worker_run(w) != 0)
		worker_fail(node, "bus_worker_run");

	bus_worker_stats st;
	bus_worker_get_stats(&st, w);
	fprintf(stderr,
		"worker %s: claimed %llu, completed %llu, retried %llu, "
		"rescued %llu, lost %llu, given back %llu\n",
		node, (unsigned long long)st.claimed,
		(unsigned long long)st.completed,
		(unsigned long long)st.retried, (unsigned long long)st.rescued,
		(unsigned long long)st.lost, (unsigned long long)st.given_back);
	bus_worker_free(w);
	bus_close(b);
	/* The executor threads are gone and freed their connections; this
	 * thread made none. */
	pthread_key_delete(sink.key);
	_exit(0);
}
