/*
 * Recording the start of jobs before they run (store op start, ABI 6).
 *
 * Why: a worker claims jobs ahead (its prefetch), spending an attempt on
 * each at claim. When the worker dies, the rescuer must tell a job whose
 * handler may have begun -- whose attempt is spent, or a job that crashes
 * its worker (a poison job) would be rescued for ever without spending its
 * attempts -- from one that only waited in the prefetch, whose attempt it
 * refunds (worker_maint.c). So the start is written to the store, and the
 * write has succeeded, before any executor takes the job: a job in a
 * queue's FIFO with started_at 0 is never handed to an executor.
 *
 * Cost: one store call per wave, not per job. A wave is the start of the
 * jobs the worker's idle executors take now, plus those its executors are
 * expected to take during about one such call (at least START_AHEAD_MIN_NS;
 * from the queue's average run time), so that executors of short jobs do
 * not wait for a store round trip every few jobs. The fetcher records a
 * wave as soon as a claim lands, while the executors still run the jobs
 * recorded before (so that, with short jobs, the call overlaps their work
 * and a claim costs one more store call, not a stall); an executor that
 * finds the head of its FIFO not started records one itself. Those few jobs count as
 * started a moment early: if the worker dies just then, their attempt is
 * charged, as it was for every prefetched job before. Jobs of long-running
 * queues are recorded as their executors free up, one call each.
 *
 * One wave is recorded at a time per worker (w->starting), through a
 * connection of its own (w->start_store), for every queue with idle
 * executors and a head not yet started.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "core.h"
#include "error.h"
#include "jobrow.h"
#include "worker.h"

/* Jobs recorded ahead cover at least this much of their executors' time. */
#define START_AHEAD_MIN_NS INT64_C(1000000)
/* After a failed call, executors wait this long before the next. */
#define START_RETRY_MS 100

struct wave_item {
	struct worker_queue *q;
	int64_t id;
	int attempt;
};

size_t bus__worker_start_ahead(const struct bus_worker *w,
			       const struct worker_queue *q)
{
	int64_t idle = (int64_t)q->concurrency - q->busy;
	int64_t ahead = 0;
	if (q->avg_run_ns > 0) {
		/* One call: a start's, or a claim's while no start has been
		 * timed (the claims may record every start). */
		uint64_t claims = atomic_load_explicit(&w->stats.claims,
						       memory_order_relaxed);
		int64_t claim_ns =
			claims ? (int64_t)(atomic_load_explicit(
						   &w->stats.claim_ns,
						   memory_order_relaxed) /
					   claims)
			       : 0;
		int64_t call = w->start_avg_ns > claim_ns ? w->start_avg_ns
							  : claim_ns;
		if (call < START_AHEAD_MIN_NS)
			call = START_AHEAD_MIN_NS;
		ahead = (int64_t)q->concurrency * (call / q->avg_run_ns);
	}
	int64_t want = idle > ahead ? idle : ahead;
	return want > 0 ? (size_t)want : 0;
}

/* Lists the wave (under the lock): of each queue with an idle executor,
 * the jobs not started from the head of its FIFO. */
static int wave_collect(struct bus_worker *w, struct wave_item **out,
			size_t *n_out)
{
	size_t cap = 0;
	for (size_t i = 0; i < w->n_queues; i++)
		cap += w->queues[i].pending.len;
	*out = NULL;
	*n_out = 0;
	if (cap == 0)
		return 0;
	struct wave_item *items = malloc(cap * sizeof *items);
	if (items == NULL)
		return BUS_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < w->n_queues; i++) {
		struct worker_queue *q = &w->queues[i];
		const struct job_fifo *f = &q->pending;
		size_t want = bus__worker_start_ahead(w, q);
		for (size_t k = 0; k < f->len && want > 0; k++) {
			const bus_job *job = &f->items[(f->head + k) % f->cap];
			if (job->started_at != 0)
				continue;
			items[n++] = (struct wave_item){ q, job->id,
							 job->attempt };
			want--;
		}
	}
	*out = items;
	*n_out = n;
	return 0;
}

/* Removes entry k of f (under the lock), keeping the order. */
static void fifo_remove(struct job_fifo *f, size_t k)
{
	for (size_t m = k; m + 1 < f->len; m++)
		f->items[(f->head + m) % f->cap] =
			f->items[(f->head + m + 1) % f->cap];
	f->len--;
}

/*
 * Applies the store's answer to the FIFOs (under the lock): a job held is
 * marked started; one not held is no longer this worker's (rescued,
 * cancelled meanwhile) and is dropped unrun. A job gone from its FIFO
 * meanwhile (given back at shutdown, its lease lost) is left alone. The
 * wave was listed in FIFO order, which removals, pops at the head and
 * pushes at the tail keep: one pass per queue finds them all.
 */
static void wave_apply(struct bus_worker *w, const struct wave_item *items,
		       size_t n, const unsigned char *held, int64_t stamp)
{
	struct worker_queue *q = NULL;
	size_t at = 0; /* the FIFO position to search q's next item from */
	for (size_t i = 0; i < n; i++) {
		if (items[i].q != q) {
			q = items[i].q;
			at = 0;
		}
		struct job_fifo *f = &q->pending;
		size_t k = at;
		while (k < f->len) {
			const bus_job *job = &f->items[(f->head + k) % f->cap];
			if (job->id == items[i].id &&
			    job->attempt == items[i].attempt)
				break;
			k++;
		}
		if (k == f->len)
			continue; /* gone: look for the next from `at` */
		bus_job *job = &f->items[(f->head + k) % f->cap];
		if (held[i]) {
			job->started_at = stamp;
			at = k + 1;
			continue;
		}
		bus__job_clear(job);
		fifo_remove(f, k);
		at = k;
		atomic_fetch_add(&w->stats.lost, 1);
		if (bus__queue_low(q))
			pthread_cond_signal(&w->room);
	}
}

int bus__worker_head_ready(const struct bus_worker *w,
			   const struct worker_queue *q)
{
	const struct job_fifo *f = &q->pending;
	return f->len > 0 && (w->start_store == NULL ||
			      f->items[f->head].started_at != 0);
}

void bus__worker_start_wave(struct bus_worker *w, int fetcher)
{
	bus *b = w->bus;
	if (w->starting) {
		if (!fetcher)
			pthread_cond_wait(&w->work, &w->lock);
		return;
	}
	int64_t mono = bus__mono_ns();
	if (w->start_retry_ns > mono) {
		if (fetcher)
			return;
		struct timespec ts = { (time_t)(w->start_retry_ns / 1000000000),
				       (long)(w->start_retry_ns % 1000000000) };
		pthread_cond_timedwait(&w->work, &w->lock, &ts);
		return;
	}
	struct wave_item *items = NULL;
	size_t n = 0;
	if (wave_collect(w, &items, &n) != 0) {
		/* Out of memory: try again shortly. */
		w->start_retry_ns = mono + START_RETRY_MS * INT64_C(1000000);
		return;
	}
	if (n == 0) {
		free(items);
		return; /* every job waiting is recorded started */
	}
	int64_t *ids = malloc(n * sizeof *ids);
	int *attempts = malloc(n * sizeof *attempts);
	unsigned char *held = malloc(n);
	if (ids == NULL || attempts == NULL || held == NULL) {
		free(ids);
		free(attempts);
		free(held);
		free(items);
		w->start_retry_ns = mono + START_RETRY_MS * INT64_C(1000000);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		ids[i] = items[i].id;
		attempts[i] = items[i].attempt;
	}
	w->starting = 1;
	pthread_mutex_unlock(&w->lock);

	int64_t now = bus__now(b);
	int64_t t0 = bus__mono_ns();
	int rc = b->store.ops->start(w->start_store, now, w->node, ids,
				     attempts, n, held);
	int64_t took = bus__mono_ns() - t0;
	char why[512] = "";
	if (rc != 0)
		snprintf(why, sizeof why, "%s", bus_error_last()->message);

	pthread_mutex_lock(&w->lock);
	w->starting = 0;
	if (rc == 0) {
		/* An average over the last eight calls or so. */
		w->start_avg_ns = w->start_avg_ns == 0
					  ? took + 1
					  : w->start_avg_ns +
						    (took - w->start_avg_ns) / 8;
		wave_apply(w, items, n, held, now != 0 ? now : 1);
		w->start_failures = 0;
	} else {
		/* The jobs stay not started: none runs until a call
		 * succeeds; their leases are renewed meanwhile, and the
		 * lease watch drops them if the store stays away. */
		w->start_retry_ns = bus__mono_ns() +
				    START_RETRY_MS * INT64_C(1000000);
		if (!w->start_failures++) {
			pthread_mutex_unlock(&w->lock);
			bus__log(&b->log, BUS_LOG_ERROR,
				 "worker '%s': recording the start of %zu jobs "
				 "failed (%s); they wait until it succeeds",
				 w->node, n, why);
			pthread_mutex_lock(&w->lock);
		}
	}
	pthread_cond_broadcast(&w->work);
	free(ids);
	free(attempts);
	free(held);
	free(items);
}

static int id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/*
 * Drops from the FIFOs every job a claim just returned again. Such an
 * entry is stale: its lease ran out in the store while it waited here
 * (the worker stalled, or the store's clock moved on), and the rescue
 * refunded its attempt, since it had not started; the claim then gave
 * this worker the job again with the same attempt number, so the stale
 * entry would pass the start guard and run the job a second time.
 * Only a store with start refunds; the claim's ids are sorted for the
 * lookup, so this costs O(n log n) per claim.
 */
void bus__worker_drop_reclaimed(struct bus_worker *w, const bus_job *rows,
				size_t n)
{
	size_t waiting = 0;
	for (size_t i = 0; i < w->n_queues; i++)
		waiting += w->queues[i].pending.len;
	if (waiting == 0 || n == 0 || w->start_store == NULL)
		return;
	int64_t *ids = malloc(n * sizeof *ids);
	if (ids == NULL)
		return; /* the start guard still stops most of them */
	for (size_t i = 0; i < n; i++)
		ids[i] = rows[i].id;
	qsort(ids, n, sizeof *ids, id_cmp);
	for (size_t i = 0; i < w->n_queues; i++) {
		struct job_fifo *f = &w->queues[i].pending;
		size_t kept = 0;
		for (size_t k = 0; k < f->len; k++) {
			bus_job *job = &f->items[(f->head + k) % f->cap];
			if (bsearch(&job->id, ids, n, sizeof *ids, id_cmp)) {
				bus__job_clear(job);
				atomic_fetch_add(&w->stats.lost, 1);
				continue;
			}
			f->items[(f->head + kept) % f->cap] = *job;
			kept++;
		}
		f->len = kept;
	}
	free(ids);
}
