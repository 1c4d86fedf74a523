/*
 * via_pooler URL THREADS: the producer side of the PostgreSQL store works
 * through PgBouncer in transaction mode, where consecutive transactions of
 * one client run on different server connections and no session state
 * survives between them: migrate, enqueue (single, batch, unique), and the
 * admin calls, from several threads each with its own bus. Run by
 * pgbouncer.sh with a URL that names the pooler and ?prepare=off. Exits 0
 * or 1.
 */
#include <bus/bus.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 50

static const char *url;
static int failed;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(int t, const char *what)
{
	pthread_mutex_lock(&out_lock);
	printf("FAIL: thread %d: %s: %s\n", t, what, bus_error_last()->message);
	failed = 1;
	pthread_mutex_unlock(&out_lock);
}

static int one_round(bus *b, int t, int round)
{
	char kind[64], payload[64];
	snprintf(kind, sizeof kind, "pooler.t%d", t);
	snprintf(payload, sizeof payload, "{\"round\":%d}", round);
	bus_enqueue_result r;
	if (bus_enqueue(&r, b, kind, payload, NULL) != 0)
		return fail(t, "bus_enqueue"), -1;
	bus_enqueue_item items[5];
	bus_enqueue_result rs[5];
	for (int i = 0; i < 5; i++)
		items[i] = (bus_enqueue_item){ kind, NULL, payload, NULL };
	if (bus_enqueue_many(rs, b, items, 5) != 0)
		return fail(t, "bus_enqueue_many"), -1;
	/* A unique job, twice: the second is a duplicate of the first. */
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	bus_enqueue_result u1, u2;
	if (bus_enqueue(&u1, b, kind, payload, &o) != 0 ||
	    bus_enqueue(&u2, b, kind, payload, &o) != 0)
		return fail(t, "a unique bus_enqueue"), -1;
	if (u1.status != BUS_INSERTED || u2.status != BUS_DUPLICATE ||
	    u1.id != u2.id) {
		pthread_mutex_lock(&out_lock);
		printf("FAIL: thread %d: unique enqueue gave %d/%d, ids %lld "
		       "%lld\n",
		       t, u1.status, u2.status, (long long)u1.id,
		       (long long)u2.id);
		failed = 1;
		pthread_mutex_unlock(&out_lock);
		return -1;
	}
	bus_job *j = NULL;
	if (bus_job_get(&j, b, r.id) != 0)
		return fail(t, "bus_job_get"), -1;
	int ok = strcmp(j->payload, payload) == 0;
	bus_job_free(j);
	if (!ok)
		return fail(t, "the job read back differs"), -1;
	if (bus_job_cancel(b, rs[0].id) != 0 || bus_job_retry(b, rs[0].id) != 0 ||
	    bus_job_delete(b, rs[1].id) != 0)
		return fail(t, "cancel, retry or delete"), -1;
	char queue[32];
	snprintf(queue, sizeof queue, "pooler.q%d", t);
	if (bus_queue_pause(b, queue) != 0 || bus_queue_resume(b, queue) != 0)
		return fail(t, "pause or resume"), -1;
	bus_job_count *c = NULL;
	size_t n = 0;
	if (bus_job_counts(&c, &n, b) != 0)
		return fail(t, "bus_job_counts"), -1;
	bus_free(c);
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = kind;
	bus_job *list = NULL;
	if (bus_job_list(&list, &n, b, &f) != 0)
		return fail(t, "bus_job_list"), -1;
	bus_job_list_free(list, n);
	return 0;
}

static void *producer(void *arg)
{
	int t = (int)(intptr_t)arg;
	bus *b = NULL;
	if (bus_open(&b, url) != 0) {
		fail(t, "bus_open");
		return NULL;
	}
	bus_set_logger(b, BUS_LOG_ERROR, NULL, NULL);
	for (int round = 0; round < ROUNDS && !failed; round++)
		if (one_round(b, t, round) != 0)
			break;
	/* Every job of this thread: 1 + 5 - 1 deleted + 1 unique a round. */
	char kind[64];
	snprintf(kind, sizeof kind, "pooler.t%d", t);
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = kind;
	f.limit = 1000;
	bus_job *list = NULL;
	size_t n = 0;
	if (!failed && bus_job_list(&list, &n, b, &f) == 0 &&
	    n != 6 * ROUNDS) {
		pthread_mutex_lock(&out_lock);
		printf("FAIL: thread %d: %zu jobs stored, expected %d\n", t, n,
		       6 * ROUNDS);
		failed = 1;
		pthread_mutex_unlock(&out_lock);
	}
	bus_job_list_free(list, n);
	bus_close(b);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: via_pooler URL THREADS\n");
		return 2;
	}
	url = argv[1];
	int threads = atoi(argv[2]);
	bus *b = NULL;
	if (bus_open(&b, url) != 0 || bus_migrate(b) != 0) {
		printf("FAIL: bus_open/bus_migrate through the pooler: %s\n",
		       bus_error_last()->message);
		return 1;
	}
	/* Start from nothing: a run that failed may have left jobs. */
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.limit = 1000;
	for (;;) {
		bus_job *list = NULL;
		size_t n = 0;
		if (bus_job_list(&list, &n, b, &f) != 0)
			break;
		for (size_t i = 0; i < n; i++)
			bus_job_delete(b, list[i].id);
		bus_job_list_free(list, n);
		if (n == 0)
			break;
	}
	bus_close(b);
	pthread_t th[16];
	if (threads < 1 || threads > 16)
		threads = 4;
	for (int t = 0; t < threads; t++)
		pthread_create(&th[t], NULL, producer, (void *)(intptr_t)t);
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	if (failed)
		return 1;
	printf("PASS: %d threads x %d rounds of enqueue, batch, unique and "
	       "admin calls through PgBouncer in transaction mode\n",
	       threads, ROUNDS);
	return 0;
}
