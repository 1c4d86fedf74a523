/* The completer: writes outcomes in batches, so that a busy worker makes one
 * store call per batch instead of one per job. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "core.h"
#include "error.h"
#include "json_check.h"
#include "worker.h"

/* The longest error text recorded for one attempt (job.h). */
#define ERROR_TEXT_MAX 16384

/* `text` as every store takes it: valid UTF-8 (a byte that is not becomes
 * U+FFFD) of at most ERROR_TEXT_MAX bytes, cut on a character and then
 * marked "...". A handler's message may hold anything; one a store would
 * refuse must not cost the job its outcome. NULL when out of memory. */
static char *error_text_dup(const char *text)
{
	size_t len = strlen(text);
	char *out = malloc(len < ERROR_TEXT_MAX ? len * 3 + 1
						: ERROR_TEXT_MAX + 8);
	if (out == NULL)
		return NULL;
	const unsigned char *p = (const unsigned char *)text;
	size_t k = 0;
	while (*p != '\0' && k < ERROR_TEXT_MAX) {
		int n = *p < 0x80 ? 1 : bus__utf8_seq(p);
		if (n == 0) {
			memcpy(out + k, "\xef\xbf\xbd", 3);
			k += 3;
			p++;
			continue;
		}
		if (k + (size_t)n > ERROR_TEXT_MAX)
			break;
		memcpy(out + k, p, (size_t)n);
		k += (size_t)n;
		p += n;
	}
	if (*p != '\0') {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
	return out;
}

int bus__worker_submit(struct bus_worker *w, const bus_store_finish *f,
		       struct worker_queue *owner)
{
	bus_store_finish copy = *f;
	copy.node = strdup(f->node);
	copy.error = f->error ? error_text_dup(f->error) : NULL;
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
	if (applied == 2) { /* refused, recorded discarded instead */
		atomic_fetch_add(&w->stats.discarded, 1);
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

/* ---- Writing outcomes, one refused item never blocking the others ---- */

/* Failures that trying again cannot cure. */
static int permanent(int rc)
{
	return rc == BUS_EINVAL || rc == BUS_ENOTFOUND || rc == BUS_ESTATE ||
	       rc == BUS_EEXISTS || rc == BUS_ESCHEMA;
}

/* Whether the thread writing should give up soon: read under the lock. */
static int stopping(struct bus_worker *w, const int *go)
{
	pthread_mutex_lock(&w->lock);
	int stop = !*go;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

/* The pause before try `tries` + 1: 100 ms doubling, at most 5 s. */
static void backoff_sleep(int tries)
{
	int64_t ms = 100;
	for (int i = 0; i < tries && ms < 5000; i++)
		ms *= 2;
	if (ms > 5000)
		ms = 5000;
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* `text` as printable ASCII (anything else becomes '?'), so that the
 * store's refusal, quoted in the job's errors, cannot itself be refused. */
static void ascii_copy(char *dst, size_t size, const char *text)
{
	size_t k = 0;
	for (; text != NULL && text[k] != '\0' && k + 1 < size; k++) {
		unsigned char c = (unsigned char)text[k];
		dst[k] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[k] = '\0';
}

struct isolation {
	struct bus_worker *w;
	bus_store *s;
	const int *go;
	size_t unwritten;
};

/* Whether the store answers at all (a read of one job succeeds or says it
 * is not there): then a failed write is refused for what it holds, not
 * for want of a store. */
static int reachable(struct isolation *x, int64_t id)
{
	bus *b = x->w->bus;
	bus_job *job = NULL;
	int rc = b->store.ops->get(x->s, id, &job);
	bus_job_free(job);
	return rc == 0 || rc == BUS_ENOTFOUND;
}

/* One item the store refuses for good: recorded as the job's failure,
 * discarded with the refusal as its error (it can be retried by hand).
 * When even that is refused, the job is left executing for the rescuer. */
static void write_refused(struct isolation *x, const bus_store_finish *it,
			  const char *cause, unsigned char *applied)
{
	bus *b = x->w->bus;
	char why[512];
	snprintf(why, sizeof why,
		 "the store refused this job's outcome (%s): %s",
		 bus_job_state_name(it->state), cause);
	bus_store_finish f = *it;
	f.state = BUS_JOB_DISCARDED;
	f.delay_us = -1;
	f.refund_attempt = 0;
	f.error = why;
	if (b->store.ops->finish(x->s, bus__now(b), &f, 1, applied) == 0) {
		if (!*applied) {
			/* Its guard failed: rescued or finished meanwhile, it
			 * is not this worker's any more (counted lost). */
			bus__log(&b->log, BUS_LOG_WARN,
				 "worker '%s': job %lld: %s; it is no longer "
				 "this worker's, so its fate stands",
				 x->w->node, (long long)it->id, why);
			return;
		}
		*applied = 2; /* recorded, as discarded */
		atomic_fetch_add(&x->w->stats.refused, 1);
		bus__log(&b->log, BUS_LOG_ERROR,
			 "worker '%s': job %lld: %s; it was recorded "
			 "discarded",
			 x->w->node, (long long)it->id, why);
		return;
	}
	bus__log(&b->log, BUS_LOG_ERROR,
		 "worker '%s': job %lld: %s, and its failure too (%s); it "
		 "stays executing until its lease runs out",
		 x->w->node, (long long)it->id, why, bus_error_last()->message);
	x->unwritten++;
}

/*
 * Writes items[0..n): in one call when the store takes it. When it fails
 * and the store still answers (or the failure is one that trying again
 * cannot cure), the batch is halved until the items it refuses are alone,
 * each then tried a few more times and recorded by write_refused: a store changes nothing when it
 * fails, so the halves are written as if the batch never was. When the
 * store does not answer, the batch waits for it with backoff while the
 * worker runs (a few tries once it stops; what is left then runs again
 * after its lease).
 */
static void write_range(struct isolation *x, const bus_store_finish *items,
			size_t n, unsigned char *applied)
{
	bus *b = x->w->bus;
	for (int tries = 0;; tries++) {
		int rc = b->store.ops->finish(x->s, bus__now(b), items, n,
					      applied);
		if (rc == 0)
			return;
		char cause[300];
		ascii_copy(cause, sizeof cause, bus_error_last()->message);
		if (permanent(rc) || reachable(x, items[0].id)) {
			/* Alone, and refused while the store answers: a few
			 * more tries first, in case it was a passing lock
			 * conflict rather than a refusal. */
			if (n == 1 && !permanent(rc) && tries < 3) {
				backoff_sleep(tries);
				continue;
			}
			if (n == 1) {
				write_refused(x, items, cause, applied);
				return;
			}
			size_t half = n / 2;
			write_range(x, items, half, applied);
			write_range(x, items + half, n - half, applied + half);
			return;
		}
		if (tries == 0 || tries % 10 == 9)
			bus__log(&b->log, BUS_LOG_ERROR,
				 "worker '%s': recording %zu outcomes failed, "
				 "the store does not answer (%s); trying again",
				 x->w->node, n, cause);
		if (stopping(x->w, x->go) && tries >= 4) {
			bus__log(&b->log, BUS_LOG_ERROR,
				 "worker '%s': giving up recording %zu "
				 "outcomes (%s); their jobs run again after "
				 "their leases",
				 x->w->node, n, cause);
			x->unwritten += n;
			return;
		}
		backoff_sleep(tries);
	}
}

size_t bus__worker_finish_isolated(struct bus_worker *w, bus_store *s,
				   const bus_store_finish *items, size_t n,
				   unsigned char *applied, const int *go)
{
	struct isolation x = { w, s, go, 0 };
	memset(applied, 0, n);
	if (n > 0)
		write_range(&x, items, n, applied);
	return x.unwritten;
}

/* `go`: maintenance_go, cleared just before completer_done when the
 * worker stops (once the lease keeper is joined). */
static void write_batch(struct bus_worker *w, bus_store_finish *items,
			size_t n, const int *go)
{
	unsigned char stack_applied[128];
	unsigned char *applied = n <= sizeof stack_applied ? stack_applied
							   : malloc(n);
	/* The time a batch takes to be written, retries included, for
	 * bus_metrics_render. */
	int64_t t0 = bus__mono_ns();
	if (applied == NULL) {
		/* Out of memory: one at a time needs one byte. */
		for (size_t i = 0; i < n; i++) {
			unsigned char one = 0;
			bus__worker_finish_isolated(w, w->complete_store,
						    &items[i], 1, &one, go);
			count(w, &items[i], one);
		}
	} else {
		bus__worker_finish_isolated(w, w->complete_store, items, n,
					    applied, go);
		for (size_t i = 0; i < n; i++)
			count(w, &items[i], applied[i]);
	}
	atomic_fetch_add(&w->stats.finishes, 1);
	atomic_fetch_add(&w->stats.finish_ns, (uint64_t)(bus__mono_ns() - t0));
	if (applied != stack_applied)
		free(applied);
	pthread_mutex_lock(&w->lock);
	w->writing = NULL;
	w->n_writing = 0;
	pthread_mutex_unlock(&w->lock);
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
		w->writing = full.items;
		w->n_writing = full.len;
		release_owners(w, full.owners, full.len);
		pthread_mutex_unlock(&w->lock);
		write_batch(w, full.items, full.len, &w->maintenance_go);
		full.len = 0;
		mine = full;
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	free(mine.items);
	free(mine.owners);
	return NULL;
}
