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
	char sql[256];
	pthread_key_t key; /* the thread's struct seen_conn */
};

/* One executor thread's connection; owned through the thread key. */
struct seen_conn {
	MYSQL *db;
	MYSQL_STMT *insert;
};

static void seen_conn_free(struct seen_conn *c)
{
	if (c->insert != NULL)
		mysql_stmt_close(c->insert);
	if (c->db != NULL)
		mysql_close(c->db);
	free(c);
}

/* The thread key's destructor, when an executor thread ends. */
static void seen_conn_thread_end(void *p)
{
	seen_conn_free(p);
	mysql_thread_end();
}

/* The thread's connection, opened (and the statement prepared) on first
 * use or after a failure; NULL with the reason in `why`. */
static struct seen_conn *seen_conn_get(struct seen_sink *s, char *why,
				       size_t why_len)
{
	struct seen_conn *c = pthread_getspecific(s->key);
	if (c != NULL)
		return c;
	if ((c = calloc(1, sizeof *c)) == NULL) {
		snprintf(why, why_len, "out of memory");
		return NULL;
	}
	c->db = fault_connect(s->dsn, why, why_len);
	if (c->db != NULL && (c->insert = mysql_stmt_init(c->db)) != NULL &&
	    mysql_stmt_prepare(c->insert, s->sql, strlen(s->sql)) == 0) {
		pthread_setspecific(s->key, c);
		return c;
	}
	if (c->db != NULL)
		snprintf(why, why_len, "preparing the insert: %s",
			 c->insert ? mysql_stmt_error(c->insert)
				   : mysql_error(c->db));
	seen_conn_free(c);
	return NULL;
}

/* Adds one to job `id`'s count; 0, or -1 with the reason in `why`. */
static int seen_record(struct seen_sink *s, int64_t id, char *why,
		       size_t why_len)
{
	struct seen_conn *c = seen_conn_get(s, why, why_len);
	if (c == NULL)
		return -1;
	long long v = id;
	MYSQL_BIND b = { 0 };
	b.buffer_type = MYSQL_TYPE_LONGLONG;
	b.buffer = &v;
	if (mysql_stmt_bind_param(c->insert, &b) == 0 &&
	    mysql_stmt_execute(c->insert) == 0)
		return 0;
	snprintf(why, why_len, "%s (error %u)", mysql_stmt_error(c->insert),
		 mysql_stmt_errno(c->insert));
	/* Start afresh next time: the server may have gone away. */
	pthread_setspecific(s->key, NULL);
	seen_conn_free(c);
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
	snprintf(sink.sql, sizeof sink.sql,
		 "INSERT INTO `%s" FAULT_SEEN "` (job_id, n) VALUES (?, 1) "
		 "ON DUPLICATE KEY UPDATE n = n + 1",
		 e->prefix);
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
