/* Maintenance: rescues jobs whose lease ran out on any node, and prunes
 * finished jobs past the retention period. (Leases are renewed by the
 * lease keeper, worker_lease.c, on a thread and connection of its own, so
 * that a slow prune or rescue never delays a renewal.) */
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
#define RESCUE_ROUNDS 100
#define PRUNE_BATCH 10000
#define PRUNE_INTERVAL_MS 60000

/* The outcome of rescuing `job`, whose lease ran out: its worker died,
 * hung or lost the store, so the attempt says nothing about the job. It
 * runs again soon (rescue_delay_ms), not after its handler's backoff;
 * discarded when its attempts are spent. A job with a pending cancel
 * request ends cancelled instead (the store's rule, backend.h). */
static void rescue_decide(struct bus_worker *w, bus_store_finish *f,
			  const bus_job *job, const char *why)
{
	memset(f, 0, sizeof *f);
	f->id = job->id;
	f->node = job->attempted_by ? job->attempted_by : "";
	f->attempt = job->attempt;
	f->only_if_expired = BUS_FINISH_IF_EXPIRED;
	f->error = why;
	f->delay_us = -1;
	if (job->attempt >= job->max_attempts) {
		f->state = BUS_JOB_DISCARDED;
	} else {
		f->state = BUS_JOB_RETRYABLE;
		f->delay_us = w->rescue_delay_us;
	}
}

/*
 * The outcome of rescuing a job that was claimed but, as the store read
 * it, never started (it waited in its dead worker's prefetch): its
 * attempt is refunded and it is due at once, with no error entry (its
 * handler did nothing) and never discarded, as it used no attempt. The
 * store applies it only while the job has still not started
 * (BUS_FINISH_IF_EXPIRED_UNSTARTED); the caller sends the charged rescue
 * right after it for the same job, which applies instead when the start
 * was recorded between the read and this write. Since a worker records
 * the start before the handler begins (worker_start.c), a job whose
 * handler crashes its worker (a poison job) always reads as started here
 * and spends its attempts: it is discarded once they are spent, never
 * refunded for ever.
 */
static void refund_decide(bus_store_finish *f, const bus_job *job)
{
	memset(f, 0, sizeof *f);
	f->id = job->id;
	f->node = job->attempted_by ? job->attempted_by : "";
	f->attempt = job->attempt;
	f->only_if_expired = BUS_FINISH_IF_EXPIRED_UNSTARTED;
	f->state = BUS_JOB_AVAILABLE;
	f->delay_us = 0;
	f->refund_attempt = 1;
}

/* One round: up to RESCUE_BATCH expired jobs, each isolated from the
 * others (one the store refuses never stops the rest). Returns 1 when a
 * full batch was handled, so that there may be more. */
static int rescue_round(struct bus_worker *w)
{
	bus *b = w->bus;
	bus_job *rows = NULL;
	size_t n = 0;
	if (b->store.ops->expired(w->maint_store, bus__now(b), RESCUE_BATCH,
				  &rows, &n) != 0) {
		bus__log(&b->log, BUS_LOG_WARN,
			 "worker '%s': looking for expired leases failed: %s",
			 w->node, bus_error_last()->message);
		return 0;
	}
	if (n == 0)
		return 0;
	int more = 0;
	/* Up to two outcomes per job: the refund when it had not started,
	 * then the charged rescue (see refund_decide). */
	int refunds = b->store.ops->start != NULL;
	bus_store_finish *f = calloc(2 * n, sizeof *f);
	char **why = calloc(n, sizeof *why);
	unsigned char *applied = malloc(2 * n);
	if (f != NULL && why != NULL && applied != NULL) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			const bus_job *job = &rows[i];
			if (asprintf(&why[i],
				     "lease expired: worker '%s' stopped "
				     "renewing it (it crashed, hung or lost the "
				     "store)",
				     job->attempted_by ? job->attempted_by
						       : "?") < 0)
				why[i] = NULL;
			if (refunds && job->started_at == 0)
				refund_decide(&f[k++], job);
			rescue_decide(w, &f[k++], job,
				      why[i] ? why[i] : "lease expired");
		}
		size_t unwritten = bus__worker_finish_isolated(
			w, w->maint_store, f, k, applied, &w->maintenance_go);
		size_t done = 0, refunded = 0;
		for (size_t i = 0; i < k; i++) {
			done += applied[i] != 0;
			refunded += applied[i] == 1 &&
				    f[i].only_if_expired ==
					    BUS_FINISH_IF_EXPIRED_UNSTARTED;
		}
		atomic_fetch_add(&w->stats.rescued, done);
		if (done > 0)
			bus__log(&b->log, BUS_LOG_WARN,
				 "worker '%s' rescued %zu jobs with expired "
				 "leases (%zu of them never started: their "
				 "attempt is refunded)",
				 w->node, done, refunded);
		more = n == RESCUE_BATCH && unwritten == 0;
	}
	for (size_t i = 0; why != NULL && i < n; i++)
		free(why[i]);
	free(why);
	free(f);
	free(applied);
	bus_job_list_free(rows, n);
	return more;
}

/* Rescues every expired lease: rounds until one finds fewer than a full
 * batch (bounded, so that a store that keeps returning the same jobs
 * cannot hold the thread). */
static void rescue(struct bus_worker *w)
{
	for (int round = 0; round < RESCUE_ROUNDS && rescue_round(w); round++) {
		pthread_mutex_lock(&w->lock);
		int go = w->maintenance_go;
		pthread_mutex_unlock(&w->lock);
		if (!go)
			break;
	}
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
	int64_t now = bus__mono_ns() / 1000000;
	int64_t next_rescue = now, next_prune = now;
	pthread_mutex_lock(&w->lock);
	while (w->maintenance_go) {
		pthread_mutex_unlock(&w->lock);
		now = bus__mono_ns() / 1000000;
		if (now >= next_rescue) {
			rescue(w);
			next_rescue = now + w->rescue_ms;
		}
		if (w->retention_s >= 0 && now >= next_prune) {
			prune(w);
			next_prune = now + PRUNE_INTERVAL_MS;
		}
		int64_t next = next_rescue;
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
