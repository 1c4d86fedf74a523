/* The completer: writes outcomes in batches, so that a busy worker makes one
 * store call per batch instead of one per job. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "error.h"
#include "worker.h"

int bus__worker_submit(struct bus_worker *w, const bus_store_finish *f,
		       struct worker_queue *owner)
{
	bus_store_finish copy = *f;
	copy.node = strdup(f->node);
	copy.error = f->error ? strdup(f->error) : NULL;
	if (copy.node == NULL || (f->error != NULL && copy.error == NULL)) {
		/* The job stays executing and is rescued when its lease runs
		 * out: late, but not lost. */
		free((char *)copy.node);
		free((char *)copy.error);
		return bus__error_oom();
	}
	pthread_mutex_lock(&w->lock);
	struct finish_batch *b = &w->batch;
	if (b->len == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		bus_store_finish *items = realloc(b->items, cap * sizeof *items);
		if (items != NULL)
			b->items = items;
		struct worker_queue **owners =
			items ? realloc(b->owners, cap * sizeof *owners) : NULL;
		if (owners != NULL)
			b->owners = owners;
		if (items == NULL || owners == NULL) {
			pthread_mutex_unlock(&w->lock);
			free((char *)copy.node);
			free((char *)copy.error);
			return bus__error_oom();
		}
		b->cap = cap;
	}
	b->owners[b->len] = owner;
	b->items[b->len++] = copy;
	if (owner != NULL)
		owner->unwritten++;
	if (b->len == 1 || b->len >= (size_t)w->completer_batch)
		pthread_cond_signal(&w->flush);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static void count(struct bus_worker *w, const bus_store_finish *f,
		  int applied)
{
	if (!applied) {
		atomic_fetch_add(&w->stats.lost, 1);
		return;
	}
	switch (f->state) {
	case BUS_JOB_COMPLETED: atomic_fetch_add(&w->stats.completed, 1); break;
	case BUS_JOB_RETRYABLE: atomic_fetch_add(&w->stats.retried, 1); break;
	case BUS_JOB_DISCARDED: atomic_fetch_add(&w->stats.discarded, 1); break;
	case BUS_JOB_SCHEDULED: atomic_fetch_add(&w->stats.snoozed, 1); break;
	case BUS_JOB_CANCELLED: atomic_fetch_add(&w->stats.cancelled, 1); break;
	default: atomic_fetch_add(&w->stats.given_back, 1); break;
	}
}

/* Writes one batch, retrying while the store fails: outcomes are not
 * dropped while the worker runs. Once it is shutting down a few tries are
 * made; a batch that still fails is left to the rescuer (the jobs stay
 * executing until their leases run out, then run again). */
/* Under the lock: the completer has taken these outcomes to write, so their
 * jobs stop holding their queues' room. Counting them until written would
 * make the fetcher wait for every commit; so a worker holds at most
 * concurrency + prefetch + one completer batch of jobs. */
static void release_owners(struct bus_worker *w, struct worker_queue **owners,
			   size_t n)
{
	int freed = 0;
	for (size_t i = 0; i < n; i++) {
		if (owners[i] != NULL) {
			owners[i]->unwritten--;
			freed = 1;
		}
	}
	if (freed)
		pthread_cond_signal(&w->room);
}

static void write_batch(struct bus_worker *w, bus_store_finish *items,
			size_t n)
{
	bus *b = w->bus;
	unsigned char stack_applied[128];
	unsigned char *applied = n <= sizeof stack_applied ? stack_applied
							   : malloc(n);
	int tries = 0;
	for (;;) {
		int rc = applied == NULL
				 ? bus__error_oom()
				 : b->store.ops->finish(w->complete_store,
							bus__now(b), items, n,
							applied);
		if (rc == 0)
			break;
		pthread_mutex_lock(&w->lock);
		int stopping = w->completer_done;
		pthread_mutex_unlock(&w->lock);
		bus__log(&b->log, BUS_LOG_ERROR,
			 "worker '%s': recording %zu outcomes failed%s: %s",
			 w->node, n, stopping && tries >= 4 ? ", giving up" : "",
			 bus_error_last()->message);
		if (stopping && ++tries > 4)
			goto out;
		struct timespec ts = { 0, 100 * 1000000 };
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < n; i++)
		count(w, &items[i], applied[i]);
out:
	if (applied != stack_applied)
		free(applied);
	for (size_t i = 0; i < n; i++) {
		free((char *)items[i].node);
		free((char *)items[i].error);
	}
}

void *bus__worker_completer(void *arg)
{
	struct bus_worker *w = arg;
	struct finish_batch mine = { NULL, NULL, 0, 0 };
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->batch.len == 0 && !w->completer_done)
			pthread_cond_wait(&w->flush, &w->lock);
		if (w->batch.len == 0)
			break;
		if (w->batch.len < (size_t)w->completer_batch &&
		    !w->completer_done && !w->fetcher_starved) {
			/* Let a few more outcomes join this batch, unless the
			 * fetcher waits for the room they hold. */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += w->flush_ms * 1000000;
			ts.tv_sec += ts.tv_nsec / 1000000000;
			ts.tv_nsec %= 1000000000;
			while (w->batch.len < (size_t)w->completer_batch &&
			       !w->completer_done && !w->fetcher_starved &&
			       pthread_cond_timedwait(&w->flush, &w->lock,
						      &ts) != ETIMEDOUT)
				;
		}
		struct finish_batch full = w->batch;
		w->batch = mine;
		release_owners(w, full.owners, full.len);
		pthread_mutex_unlock(&w->lock);
		write_batch(w, full.items, full.len);
		full.len = 0;
		mine = full;
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	free(mine.items);
	free(mine.owners);
	return NULL;
}
