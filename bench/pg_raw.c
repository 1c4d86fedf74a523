/*
 * bench/pg-raw: the limit the PostgreSQL store's worker can approach. The
 * store's own operations (its insert, claim and finish statements, with
 * their binary parameters and results) called in a plain loop: no
 * executors, no handler, no fetcher or completer queues, no stats. It
 * links the plug-in's code, so its statements are the store's by
 * construction, not copies.
 *
 *   bench/pg-raw --url URL [--runs R] [--jobs N]
 *
 * The schema is applied once. Then, per run and per case, N jobs go into
 * a queue of their own (raw.<pid>.<n>), are claimed and completed until
 * none is left, checked (N completed outcomes), and pruned:
 *
 *   insert    the jobs of the "serial" case, timed, inserted as
 *             bus_enqueue_many x1000 inserts them: ops->insert of 1,000
 *             jobs (one INSERT ... SELECT FROM unnest). Figure: jobs/s.
 *   serial    one connection: claim up to 256, finish them as completed
 *             (one UPDATE ... FROM unnest), again.
 *   pipeline  a claimer and a completer thread on a connection each, the
 *             shape of one bus worker (its fetcher and completer): the
 *             claimer takes 256 whenever at most 256 are claimed and not
 *             finished; the completer finishes what is claimed, 256 at
 *             most at a time.
 *   x2        two such pipelines at once on the same queue.
 *
 * Figures are jobs/s from the start of the loops to the last finish, the
 * median of R runs. Times are the server's (now = 0), as a bus without a
 * clock of its own passes them. The last line gives the rates bench/jobs
 * --raw compares the library with: the faster of serial and pipeline, and
 * the x2 pipeline.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "pg_store.h"

#define BATCH 256
#define INSERT_BATCH 1000

static const struct bus_store_ops *ops;
static const char *url;
static const char payload[] = "{\"user_id\":42,\"email\":\"a@example.com\"}";

static void quiet(void *u, bus_log_level l, const char *fmt, ...) {}
static const bus_store_env env = { BUS_STORE_ABI_VERSION, bus__error_set,
				   quiet, NULL };

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "pg-raw: %s: %s\n", what, bus_error_last()->message);
	exit(1);
}

static bus_store *connect_store(void)
{
	bus_store *s = NULL;
	if (ops->open(&s, url, &env) != 0)
		die("open");
	return s;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void insert_jobs(bus_store *s, const char *queue, size_t n)
{
	bus_store_new_job *j = calloc(INSERT_BATCH, sizeof *j);
	bus_enqueue_result *r = calloc(INSERT_BATCH, sizeof *r);
	if (j == NULL || r == NULL)
		die("calloc");
	for (size_t i = 0; i < INSERT_BATCH; i++) {
		j[i].kind = j[i].handler = "raw.job";
		j[i].queue = queue;
		j[i].payload = payload;
		j[i].max_attempts = 3;
	}
	for (size_t done = 0; done < n;) {
		size_t k = n - done < INSERT_BATCH ? n - done : INSERT_BATCH;
		if (ops->insert(s, 0, j, k, r) != 0)
			die("insert");
		done += k;
	}
	free(j);
	free(r);
}

/* Completes `rows` (claimed by `node`); returns how many held. */
static size_t finish_rows(bus_store *s, const char *node, bus_job *rows,
			  size_t n)
{
	bus_store_finish f[BATCH] = { { 0 } };
	unsigned char applied[BATCH];
	if (n > BATCH) {
		fprintf(stderr, "pg-raw: a claim of %d returned %zu jobs\n",
			BATCH, n);
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		memset(&f[i], 0, sizeof f[i]);
		f[i].id = rows[i].id;
		f[i].node = node;
		f[i].attempt = rows[i].attempt;
		f[i].state = BUS_JOB_COMPLETED;
		f[i].delay_us = -1;
	}
	if (ops->finish(s, 0, f, n, applied) != 0)
		die("finish");
	size_t held = 0;
	for (size_t i = 0; i < n; i++)
		held += applied[i];
	return held;
}

static size_t serial_loop(bus_store *s, const char *queue, const char *node)
{
	bus_store_claim c = { queue, BATCH };
	size_t done = 0;
	for (;;) {
		bus_job *rows = NULL;
		size_t n = 0;
		if (ops->claim(s, 0, node, 30000000, &c, 1, &rows, &n) != 0)
			die("claim");
		if (n == 0)
			return done;
		done += finish_rows(s, node, rows, n);
		bus_job_list_free(rows, n);
	}
}

/* ---- pipeline: a claimer and a completer ---- */

struct batch {
	bus_job *rows;
	size_t n;
	struct batch *next;
};

struct pipe {
	const char *queue;
	char node[64];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct batch *head, *tail;
	size_t in_flight; /* claimed, not finished */
	int claimer_done;
	size_t done;
};

static void *claimer(void *arg)
{
	struct pipe *p = arg;
	bus_store *s = connect_store();
	bus_store_claim c = { p->queue, BATCH };
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->in_flight > BATCH)
			pthread_cond_wait(&p->cond, &p->lock);
		pthread_mutex_unlock(&p->lock);
		struct batch *b = calloc(1, sizeof *b);
		if (b == NULL)
			die("calloc");
		if (ops->claim(s, 0, p->node, 30000000, &c, 1, &b->rows,
			       &b->n) != 0)
			die("claim");
		pthread_mutex_lock(&p->lock);
		if (b->n == 0) {
			free(b);
			p->claimer_done = 1;
			pthread_cond_broadcast(&p->cond);
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->in_flight += b->n;
		if (p->tail)
			p->tail->next = b;
		else
			p->head = b;
		p->tail = b;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	ops->close(s);
	return NULL;
}

static void *completer(void *arg)
{
	struct pipe *p = arg;
	bus_store *s = connect_store();
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->head == NULL && !p->claimer_done)
			pthread_cond_wait(&p->cond, &p->lock);
		struct batch *b = p->head;
		if (b == NULL) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->head = b->next;
		if (p->head == NULL)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		size_t held = finish_rows(s, p->node, b->rows, b->n);
		pthread_mutex_lock(&p->lock);
		p->in_flight -= b->n;
		p->done += held;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		bus_job_list_free(b->rows, b->n);
		free(b);
	}
	ops->close(s);
	return NULL;
}

static size_t pipelines(const char *queue, int n_pipes)
{
	struct pipe p[2];
	pthread_t th[4];
	for (int i = 0; i < n_pipes; i++) {
		memset(&p[i], 0, sizeof p[i]);
		p[i].queue = queue;
		snprintf(p[i].node, sizeof p[i].node, "raw-%d-%d", (int)getpid(),
			 i);
		pthread_mutex_init(&p[i].lock, NULL);
		pthread_cond_init(&p[i].cond, NULL);
		pthread_create(&th[2 * i], NULL, claimer, &p[i]);
		pthread_create(&th[2 * i + 1], NULL, completer, &p[i]);
	}
	size_t done = 0;
	for (int i = 0; i < n_pipes; i++) {
		pthread_join(th[2 * i], NULL);
		pthread_join(th[2 * i + 1], NULL);
		done += p[i].done;
	}
	return done;
}

/* ---- the runs ---- */

enum { C_INSERT, C_SERIAL, C_PIPELINE, C_X2, C_COUNT };
static const char *const names[C_COUNT] = {
	"insert (ops->insert x1000)", "serial (claim, finish)",
	"pipeline (claimer+completer)", "x2 pipelines"
};

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double one_case(bus_store *s, int c, size_t n, int run)
{
	char queue[64];
	snprintf(queue, sizeof queue, "raw.%d.%d.%d", (int)getpid(), run, c);
	double t0 = now_s(), rate = 0;
	insert_jobs(s, queue, n);
	double t1 = now_s();
	size_t done;
	if (c == C_INSERT || c == C_SERIAL) {
		done = serial_loop(s, queue, "raw-serial");
	} else {
		done = pipelines(queue, c == C_X2 ? 2 : 1);
	}
	double t2 = now_s();
	if (done != n) {
		fprintf(stderr, "pg-raw: %s: %zu of %zu jobs completed\n",
			names[c], done, n);
		exit(1);
	}
	rate = c == C_INSERT ? n / (t1 - t0) : n / (t2 - t1);
	int64_t deleted = 0;
	if (ops->prune(s, 0, 0, (size_t)n * 2, &deleted) != 0)
		die("prune");
	sleep(1); /* let autovacuum and the WAL writer catch up */
	return rate;
}

int main(int argc, char **argv)
{
	int runs = 3;
	size_t n = 20000;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
			url = argv[++i];
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
			n = (size_t)atol(argv[++i]);
		else {
			fprintf(stderr, "usage: pg-raw --url URL [--runs R] "
					"[--jobs N]\n");
			return 2;
		}
	}
	if (url == NULL || runs < 1 || runs > 50 || n < 1) {
		fprintf(stderr, "usage: pg-raw --url URL [--runs R] [--jobs N]\n");
		return 2;
	}
	ops = bus_backend_entry(BUS_STORE_ABI_VERSION);
	bus_store *s = connect_store();
	if (ops->migrate(s) != 0)
		die("migrate");
	double fig[C_COUNT][50];
	printf("$ bench/pg-raw --url postgres://... --runs %d --jobs %zu\n",
	       runs, n);
	printf("claim batch %d, finish batch %d, insert batch %d, medians of "
	       "%d runs\n\n",
	       BATCH, BATCH, INSERT_BATCH, runs);
	for (int r = 0; r < runs; r++) {
		for (int c = 0; c < C_COUNT; c++)
			fig[c][r] = one_case(s, c, n, r);
		fprintf(stderr, "pg-raw: run %d of %d done\n", r + 1, runs);
	}
	double med[C_COUNT];
	printf("%-30s %8s %10s %7s\n", "case", "jobs", "jobs/s", "spread");
	for (int c = 0; c < C_COUNT; c++) {
		qsort(fig[c], (size_t)runs, sizeof fig[c][0], cmp_d);
		med[c] = fig[c][runs / 2];
		printf("%-30s %8zu %9.1fk %6.0f%%\n", names[c], n, med[c] / 1e3,
		       100 * (fig[c][runs - 1] - fig[c][0]) / med[c]);
	}
	double one = med[C_SERIAL] > med[C_PIPELINE] ? med[C_SERIAL]
						      : med[C_PIPELINE];
	printf("\nrates for bench/jobs --raw: %.0f,%.0f\n", one, med[C_X2]);
	ops->close(s);
	return 0;
}
