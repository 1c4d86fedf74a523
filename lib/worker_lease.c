/*
 * The lease keeper: a thread with its own store connection that
 *  - renews the leases of every job the worker holds (running, waiting in a
 *    queue's prefetch, or done with its outcome waiting for the completer),
 *    in small batches, one job at a time for a batch the store refuses, so
 *    that one locked row cannot stop the renewal of the others;
 *  - stops the jobs that are no longer this worker's (rescued meanwhile);
 *  - reads the cancel requests of the jobs it holds (every cancel_check_ms)
 *    and stops those: a running handler is aborted, a waiting job is not
 *    started, and both are recorded cancelled.
 *
 * The lease watch: a thread that never calls the store, and stops a job
 * whose lease has run out without a renewal (the store is unreachable,
 * say): another node may rescue and rerun it, so it must not run on here.
 * Its outcome is not recorded; the rescue decides. It is not the keeper's
 * job, since a store call of the keeper's may hang for longer than a lease
 * (a reconnect cycle, a server that does not answer), and the stop would
 * come that much late.
 *
 * Deadlines are kept on this machine's monotonic clock, in the watch's
 * table: a renewal that began at t holds the lease until t + lease; a job
 * the watch first sees at a tick was claimed after its tick before, whose
 * time is taken as its start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "core.h"
#include "error.h"
#include "jobrow.h"
#include "worker.h"

/* Jobs per extend call: small, so that one slow or locked batch delays
 * few leases. */
#define RENEW_CHUNK 64

enum held_kind { HELD_RUNNING, HELD_WAITING, HELD_OUTCOME };

struct held {
	int64_t id;
	int attempt;
	enum held_kind kind;
};

/* Everything the worker holds, under the lock. */
static int collect(struct bus_worker *w, struct held **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	size_t cap = w->n_slots + w->batch.len + w->n_writing;
	for (size_t i = 0; i < w->n_queues; i++)
		cap += w->queues[i].pending.len;
	if (cap == 0)
		return 0;
	struct held *h = malloc(cap * sizeof *h);
	if (h == NULL)
		return BUS_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < w->n_slots; i++)
		if (w->slots[i].running)
			h[n++] = (struct held){ w->slots[i].job.id,
						w->slots[i].job.attempt,
						HELD_RUNNING };
	for (size_t i = 0; i < w->n_queues; i++) {
		const struct job_fifo *f = &w->queues[i].pending;
		for (size_t k = 0; k < f->len; k++) {
			const bus_job *job = &f->items[(f->head + k) % f->cap];
			h[n++] = (struct held){ job->id, job->attempt,
						HELD_WAITING };
		}
	}
	for (size_t i = 0; i < w->batch.len; i++)
		h[n++] = (struct held){ w->batch.items[i].id,
					w->batch.items[i].attempt,
					HELD_OUTCOME };
	for (size_t i = 0; i < w->n_writing; i++)
		h[n++] = (struct held){ w->writing[i].id,
					w->writing[i].attempt, HELD_OUTCOME };
	*out = h;
	*n_out = n;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct lease_entry *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return (x->attempt > y->attempt) - (x->attempt < y->attempt);
}

static struct lease_entry *entry_find(struct bus_worker *w, int64_t id,
				      int attempt)
{
	struct lease_entry key = { id, attempt, 0 };
	return w->n_leases ? bsearch(&key, w->leases, w->n_leases,
				     sizeof key, entry_cmp)
			   : NULL;
}

/* The table for what is held now: known jobs keep their deadline, new ones
 * get `fresh`. On failure the old table stays (and new jobs wait a tick). */
static void table_update(struct bus_worker *w, const struct held *h, size_t n,
			 int64_t fresh)
{
	struct lease_entry *t = n ? malloc(n * sizeof *t) : NULL;
	if (n > 0 && t == NULL)
		return;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct lease_entry *e = entry_find(w, h[i].id,
							 h[i].attempt);
		t[k++] = (struct lease_entry){ h[i].id, h[i].attempt,
					       e ? e->deadline_ns : fresh };
	}
	if (k > 1)
		qsort(t, k, sizeof *t, entry_cmp);
	/* An outcome and its running slot can both be listed for a moment:
	 * keep one entry. */
	size_t u = 0;
	for (size_t i = 0; i < k; i++)
		if (u == 0 || entry_cmp(&t[u - 1], &t[i]) != 0)
			t[u++] = t[i];
	free(w->leases);
	w->leases = t;
	w->n_leases = u;
}

/* Stops a running job (under the lock) for `reason`, unless it is being
 * stopped already. Returns 0 when it is not running, 1 when it was being
 * stopped already, 2 when this stopped it. */
static int stop_running(struct bus_worker *w, int64_t id, int attempt,
			int reason)
{
	int found = 0;
	for (size_t i = 0; i < w->n_slots; i++) {
		struct worker_slot *s = &w->slots[i];
		int expected = ABORT_NONE;
		if (s->running && s->job.id == id &&
		    s->job.attempt == attempt)
			found = atomic_compare_exchange_strong(
					&s->abort, &expected, reason)
					? 2
					: 1;
	}
	return found;
}

/* Takes a waiting job out of its FIFO (under the lock) into *out; 1 when
 * it was there. */
static int take_waiting(struct bus_worker *w, int64_t id, int attempt,
			bus_job *out)
{
	int found = 0;
	for (size_t i = 0; i < w->n_queues; i++) {
		struct job_fifo *f = &w->queues[i].pending;
		size_t kept = 0;
		for (size_t k = 0; k < f->len; k++) {
			bus_job *job = &f->items[(f->head + k) % f->cap];
			if (!found && job->id == id && job->attempt == attempt) {
				*out = *job;
				found = 1;
				continue;
			}
			f->items[(f->head + kept) % f->cap] = *job;
			kept++;
		}
		f->len = kept;
		if (found && bus__queue_low(&w->queues[i]))
			pthread_cond_signal(&w->room);
	}
	return found;
}

/* A job that is not ours any more: stopped when running, dropped when
 * waiting; an outcome is left to the completer (its guard will fail). */
static void lose(struct bus_worker *w, int64_t id, int attempt)
{
	if (stop_running(w, id, attempt, ABORT_LOST))
		return;
	bus_job job;
	if (take_waiting(w, id, attempt, &job)) {
		bus__job_clear(&job);
		atomic_fetch_add(&w->stats.lost, 1);
	}
}

/* Whether the store answers at all: a read of one job's cancel request
 * (by primary key, taking no lock). */
static int store_answers(struct bus_worker *w, int64_t id, int attempt)
{
	unsigned char pending = 0;
	return w->bus->store.ops->cancel_pending(w->lease_store, w->node, &id,
						 &attempt, 1, &pending) == 0;
}

/* Renews ids[0..n): one call, or one call per job when the store refuses
 * the batch. held[i] = 1 renewed, 0 not ours, -1 unknown (failed). Returns
 * 0 when the store does not answer: then the jobs are not tried one by
 * one, since in an outage each call may last as long as the store's
 * reconnect cycle, and n of them would hold up this thread -- and with it
 * the renewal of the other jobs and the cancel checks -- n times as
 * long. */
static int renew_chunk(struct bus_worker *w, const int64_t *ids,
		       const int *attempts, size_t n, signed char *held,
		       int *failures)
{
	bus *b = w->bus;
	unsigned char got[RENEW_CHUNK];
	if (b->store.ops->extend(w->lease_store, bus__now(b), w->node,
				 w->lease_us, ids, attempts, n, got) == 0) {
		for (size_t i = 0; i < n; i++)
			held[i] = (signed char)got[i];
		return 1;
	}
	char cause[300];
	snprintf(cause, sizeof cause, "%s", bus_error_last()->message);
	int answers = store_answers(w, ids[0], attempts[0]);
	if (!(*failures)++)
		bus__log(&b->log, BUS_LOG_WARN,
			 "worker '%s': renewing %zu leases failed (%s); %s",
			 w->node, n, cause,
			 !answers ? "the store does not answer"
			 : n > 1  ? "renewing them one by one"
				  : "trying again later");
	for (size_t i = 0; i < n; i++) {
		unsigned char one = 0;
		held[i] = answers && n > 1 &&
				  b->store.ops->extend(
					     w->lease_store, bus__now(b),
					     w->node, w->lease_us, &ids[i],
					     &attempts[i], 1, &one) == 0
				  ? (signed char)one
				  : -1;
	}
	return answers;
}

/* Renews what is held; returns 0 when the store did not answer (the rest
 * of the jobs were then not tried this time). */
static int renew(struct bus_worker *w, const struct held *h, size_t n)
{
	bus *b = w->bus;
	int failures = 0, answered = 1;
	for (size_t done = 0; answered && done < n;) {
		size_t k = n - done < RENEW_CHUNK ? n - done : RENEW_CHUNK;
		int64_t ids[RENEW_CHUNK];
		int attempts[RENEW_CHUNK];
		signed char held[RENEW_CHUNK];
		for (size_t i = 0; i < k; i++) {
			ids[i] = h[done + i].id;
			attempts[i] = h[done + i].attempt;
		}
		int64_t began = bus__mono_ns();
		answered = renew_chunk(w, ids, attempts, k, held, &failures);
		pthread_mutex_lock(&w->lock);
		for (size_t i = 0; i < k; i++) {
			struct lease_entry *e =
				entry_find(w, ids[i], attempts[i]);
			if (held[i] == 1 && e != NULL)
				e->deadline_ns = began + w->lease_us * 1000;
			else if (held[i] == 0)
				lose(w, ids[i], attempts[i]);
		}
		pthread_mutex_unlock(&w->lock);
		done += k;
	}
	if (failures > 1)
		bus__log(&b->log, BUS_LOG_WARN,
			 "worker '%s': %d lease batches failed to renew", w->node,
			 failures);
	return answered;
}

/* Reads the cancel requests of the running and waiting jobs and acts on
 * them: a running handler is stopped (its executor records the job
 * cancelled), a waiting job is recorded cancelled without running. */
static void check_cancels(struct bus_worker *w, const struct held *h,
			  size_t n)
{
	bus *b = w->bus;
	int64_t *ids = malloc(n * sizeof *ids);
	int *attempts = malloc(n * sizeof *attempts);
	unsigned char *pending = malloc(n);
	size_t k = 0;
	for (size_t i = 0; ids && attempts && pending && i < n; i++) {
		if (h[i].kind == HELD_OUTCOME)
			continue; /* the store's finish rule covers these */
		ids[k] = h[i].id;
		attempts[k++] = h[i].attempt;
	}
	if (k == 0)
		goto out;
	if (b->store.ops->cancel_pending(w->lease_store, w->node, ids,
					 attempts, k, pending) != 0) {
		bus__log(&b->log, BUS_LOG_WARN,
			 "worker '%s': reading cancel requests failed: %s",
			 w->node, bus_error_last()->message);
		goto out;
	}
	for (size_t i = 0; i < k; i++) {
		if (!pending[i])
			continue;
		pthread_mutex_lock(&w->lock);
		bus_job job;
		int running = stop_running(w, ids[i], attempts[i],
					   ABORT_CANCEL);
		int waiting = !running &&
			      take_waiting(w, ids[i], attempts[i], &job);
		pthread_mutex_unlock(&w->lock);
		if (waiting) {
			bus_store_finish f;
			bus__finish_cancelled(&f, &job, w->node);
			if (bus__worker_submit(w, &f, NULL) != 0)
				bus__log(&b->log, BUS_LOG_ERROR,
					 "worker '%s': job %lld was cancelled "
					 "but that is not recorded (%s); its "
					 "rescue will",
					 w->node, (long long)job.id,
					 bus_error_last()->message);
			bus__job_clear(&job);
		}
	}
out:
	free(ids);
	free(attempts);
	free(pending);
}

/* Stops what holds a lease that ran out without a renewal (takes the lock
 * per job). Returns the earliest deadline still to come (monotonic ns;
 * INT64_MAX: none), so that the watch wakes for it. */
static int64_t enforce(struct bus_worker *w, const struct held *h, size_t n,
		       int64_t now)
{
	bus *b = w->bus;
	int64_t next = INT64_MAX;
	for (size_t i = 0; i < n; i++) {
		if (h[i].kind == HELD_OUTCOME)
			continue;
		pthread_mutex_lock(&w->lock);
		const struct lease_entry *e =
			entry_find(w, h[i].id, h[i].attempt);
		int expired = e != NULL && e->deadline_ns <= now;
		if (e != NULL && !expired && e->deadline_ns < next)
			next = e->deadline_ns;
		int stopped = 0;
		if (expired) {
			bus_job job;
			int running = stop_running(w, h[i].id, h[i].attempt,
						   ABORT_LOST);
			if (running) {
				stopped = running == 2;
			} else if (take_waiting(w, h[i].id, h[i].attempt,
						&job)) {
				bus__job_clear(&job);
				stopped = 1;
			}
		}
		pthread_mutex_unlock(&w->lock);
		if (stopped) {
			atomic_fetch_add(&w->stats.lease_lost, 1);
			bus__log(&b->log, BUS_LOG_ERROR,
				 "worker '%s': the lease of job %lld ran out "
				 "without a renewal (is the store reachable?): "
				 "the job is stopped, as another worker may "
				 "rescue and rerun it",
				 w->node, (long long)h[i].id);
		}
	}
	return next;
}

void *bus__worker_lease_keeper(void *arg)
{
	struct bus_worker *w = arg;
	int64_t renew_ms = w->lease_us / 3000;
	if (renew_ms < 1)
		renew_ms = 1;
	int64_t check_ms = w->cancel_check_ms;
	int64_t now = bus__mono_ns() / 1000000;
	int64_t next_renew = now + renew_ms, next_check = now + check_ms;
	pthread_mutex_lock(&w->lock);
	while (w->maintenance_go) {
		struct held *h = NULL;
		size_t n = 0;
		int rc = collect(w, &h, &n);
		pthread_mutex_unlock(&w->lock);
		now = bus__mono_ns() / 1000000;
		/* A store that did not answer the renewal is not asked for
		 * cancel requests now either: a second slow failure would
		 * hold up the next renewal. */
		int answered = 1;
		if (rc == 0 && n > 0 && now >= next_renew)
			answered = renew(w, h, n);
		if (now >= next_renew)
			next_renew = now + renew_ms;
		if (rc == 0 && n > 0 && answered && now >= next_check)
			check_cancels(w, h, n);
		if (now >= next_check)
			next_check = now + check_ms;
		free(h);
		int64_t next = next_renew < next_check ? next_renew
						       : next_check;
		now = bus__mono_ns() / 1000000;
		bus__worker_nap(w, next > now ? next - now : 0,
				&w->maintenance_go, 0);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

void *bus__worker_lease_watch(void *arg)
{
	struct bus_worker *w = arg;
	/* Ticks as often as the keeper renews, so that a job first seen at
	 * a tick gets a deadline (the tick before + lease) at least two
	 * thirds of a lease away, and the keeper renews it before then. */
	int64_t period_ms = w->lease_us / 3000;
	if (period_ms < 1)
		period_ms = 1;
	int64_t last_tick_ns = bus__mono_ns();
	pthread_mutex_lock(&w->lock);
	while (w->maintenance_go) {
		struct held *h = NULL;
		size_t n = 0;
		int64_t tick_ns = bus__mono_ns();
		int64_t next_ns = tick_ns + period_ms * 1000000;
		int rc = collect(w, &h, &n);
		if (rc == 0)
			table_update(w, h, n, last_tick_ns + w->lease_us * 1000);
		last_tick_ns = tick_ns;
		pthread_mutex_unlock(&w->lock);
		if (rc == 0 && n > 0) {
			int64_t deadline_ns = enforce(w, h, n, bus__mono_ns());
			if (deadline_ns < next_ns)
				next_ns = deadline_ns;
		}
		free(h);
		int64_t wait_ns = next_ns - bus__mono_ns();
		/* Rounded up: woken a little after the deadline, not just
		 * before it. */
		bus__worker_nap(w, wait_ns > 0 ? wait_ns / 1000000 + 1 : 0,
				&w->maintenance_go, 0);
		pthread_mutex_lock(&w->lock);
	}
	free(w->leases);
	w->leases = NULL;
	w->n_leases = 0;
	pthread_mutex_unlock(&w->lock);
	return NULL;
}
