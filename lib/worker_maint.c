/* Maintenance: renews the leases of running jobs (and stops the ones that
 * are no longer ours), rescues jobs whose lease ran out on any node, and
 * prunes finished jobs past the retention period. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "core.h"
#include "error.h"
#include "jobrow.h"
#include "policy.h"
#include "worker.h"

#define RESCUE_BATCH 100
#define PRUNE_BATCH 10000
#define PRUNE_INTERVAL_MS 60000

/* Drops from the FIFOs the waiting jobs whose lease was not renewed: they
 * were cancelled or rescued meanwhile, and are not ours to run. */
static void drop_lost_waiting(struct bus_worker *w, int64_t id, int attempt)
{
	for (size_t i = 0; i < w->n_queues; i++) {
		struct job_fifo *f = &w->queues[i].pending;
		size_t kept = 0;
		for (size_t k = 0; k < f->len; k++) {
			bus_job *job = &f->items[(f->head + k) % f->cap];
			if (job->id == id && job->attempt == attempt) {
				bus__job_clear(job);
				atomic_fetch_add(&w->stats.lost, 1);
				continue;
			}
			f->items[(f->head + kept) % f->cap] = *job;
			kept++;
		}
		f->len = kept;
	}
}

/* Renews the leases of every job this worker holds, running or waiting; a
 * job it no longer holds is stopped (running) or dropped (waiting). */
static void renew_leases(struct bus_worker *w)
{
	bus *b = w->bus;
	pthread_mutex_lock(&w->lock);
	size_t cap = w->n_slots;
	for (size_t i = 0; i < w->n_queues; i++)
		cap += w->queues[i].pending.len;
	pthread_mutex_unlock(&w->lock);
	size_t n = 0;
	int64_t *ids = malloc(cap * sizeof *ids);
	int *attempts = malloc(cap * sizeof *attempts);
	unsigned char *held = malloc(cap);
	if (ids == NULL || attempts == NULL || held == NULL)
		goto out;
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->n_slots && n < cap; i++) {
		if (w->slots[i].running) {
			ids[n] = w->slots[i].job.id;
			attempts[n++] = w->slots[i].job.attempt;
		}
	}
	for (size_t i = 0; i < w->n_queues; i++) {
		const struct job_fifo *f = &w->queues[i].pending;
		for (size_t k = 0; k < f->len && n < cap; k++) {
			const bus_job *job = &f->items[(f->head + k) % f->cap];
			ids[n] = job->id;
			attempts[n++] = job->attempt;
		}
	}
	pthread_mutex_unlock(&w->lock);
	if (n == 0)
		goto out;
	if (b->store.ops->extend(w->maint_store, bus__now(b), w->node,
				 w->lease_us, ids, attempts, n, held) != 0) {
		bus__log(&b->log, BUS_LOG_WARN,
			 "worker '%s': renewing %zu leases failed: %s", w->node,
			 n, bus_error_last()->message);
		goto out;
	}
	pthread_mutex_lock(&w->lock);
	for (size_t k = 0; k < n; k++) {
		if (held[k])
			continue;
		int running = 0;
		for (size_t i = 0; i < w->n_slots; i++) {
			struct worker_slot *s = &w->slots[i];
			int expected = ABORT_NONE;
			if (s->running && s->job.id == ids[k] &&
			    s->job.attempt == attempts[k]) {
				running = 1;
				atomic_compare_exchange_strong(&s->abort,
							       &expected,
							       ABORT_LOST);
			}
		}
		if (!running)
			drop_lost_waiting(w, ids[k], attempts[k]);
	}
	pthread_mutex_unlock(&w->lock);
out:
	free(ids);
	free(attempts);
	free(held);
}

static void rescue(struct bus_worker *w)
{
	bus *b = w->bus;
	bus_job *rows = NULL;
	size_t n = 0;
	if (b->store.ops->expired(w->maint_store, bus__now(b), RESCUE_BATCH,
				  &rows, &n) != 0) {
		bus__log(&b->log, BUS_LOG_WARN,
			 "worker '%s': looking for expired leases failed: %s",
			 w->node, bus_error_last()->message);
		return;
	}
	if (n == 0)
		return;
	bus_store_finish *f = calloc(n, sizeof *f);
	char **why = calloc(n, sizeof *why);
	unsigned char *applied = malloc(n);
	if (f != NULL && why != NULL && applied != NULL) {
		for (size_t i = 0; i < n; i++) {
			const bus_job *job = &rows[i];
			if (asprintf(&why[i],
				     "lease expired: worker '%s' stopped "
				     "renewing it (it crashed, hung or lost the "
				     "store)",
				     job->attempted_by ? job->attempted_by
						       : "?") < 0)
				why[i] = NULL;
			struct bus_outcome o = { BUS_ETIMEOUT, why[i], 0 };
			const struct bus_handler *h =
				bus__registry_find_runner(&b->registry,
							   job->handler);
			bus__policy_decide(&f[i], job, h,
					   job->attempted_by ? job->attempted_by
							     : "",
					   &o);
			f[i].only_if_expired = 1;
		}
		if (b->store.ops->finish(w->maint_store, bus__now(b), f, n,
					 applied) == 0) {
			size_t done = 0;
			for (size_t i = 0; i < n; i++)
				done += applied[i];
			atomic_fetch_add(&w->stats.rescued, done);
			if (done > 0)
				bus__log(&b->log, BUS_LOG_WARN,
					 "worker '%s' rescued %zu jobs with "
					 "expired leases",
					 w->node, done);
		} else {
			bus__log(&b->log, BUS_LOG_WARN,
				 "worker '%s': rescuing %zu jobs failed: %s",
				 w->node, n, bus_error_last()->message);
		}
	}
	for (size_t i = 0; why != NULL && i < n; i++)
		free(why[i]);
	free(why);
	free(f);
	free(applied);
	bus_job_list_free(rows, n);
}

static void prune(struct bus_worker *w)
{
	bus *b = w->bus;
	int64_t deleted;
	do {
		deleted = 0;
		if (b->store.ops->prune(w->maint_store, bus__now(b),
					w->retention_s * 1000000, PRUNE_BATCH,
					&deleted) != 0) {
			bus__log(&b->log, BUS_LOG_WARN,
				 "worker '%s': pruning failed: %s", w->node,
				 bus_error_last()->message);
			return;
		}
	} while (deleted == PRUNE_BATCH);
}

void *bus__worker_maintenance(void *arg)
{
	struct bus_worker *w = arg;
	int64_t renew_ms = w->lease_us / 3000;
	if (renew_ms < 1)
		renew_ms = 1;
	int64_t now = bus__mono_ns() / 1000000;
	int64_t next_renew = now + renew_ms, next_rescue = now,
		next_prune = now;
	pthread_mutex_lock(&w->lock);
	while (w->maintenance_go) {
		pthread_mutex_unlock(&w->lock);
		now = bus__mono_ns() / 1000000;
		if (now >= next_renew) {
			renew_leases(w);
			next_renew = now + renew_ms;
		}
		if (now >= next_rescue) {
			rescue(w);
			next_rescue = now + w->rescue_ms;
		}
		if (w->retention_s >= 0 && now >= next_prune) {
			prune(w);
			next_prune = now + PRUNE_INTERVAL_MS;
		}
		int64_t next = next_renew < next_rescue ? next_renew
							: next_rescue;
		if (w->retention_s >= 0 && next_prune < next)
			next = next_prune;
		now = bus__mono_ns() / 1000000;
		bus__worker_nap(w, next > now ? next - now : 0,
				&w->maintenance_go, 0);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}
