/* An executor: takes claimed jobs of its queue one at a time, runs each
 * job's handler through the middleware chain (in this thread, or handed to
 * its child process), and passes the outcome to the completer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "core.h"
#include "ctx.h"
#include "error.h"
#include "jobrow.h"
#include "policy.h"
#include "worker.h"

/* The limit a job runs under: its own (stored by the producer), else the
 * one its handler declares in this worker (a producer that did not know it
 * stored none), else none. */
static int64_t job_timeout_ms(const bus_job *job, const struct bus_handler *h)
{
	return job->timeout_ms > 0 ? job->timeout_ms
	       : h != NULL	   ? h->job.timeout_ms
				   : 0;
}

/* The innermost step under process isolation: the child runs the handler. */
static int hand_off(bus_ctx *ctx, void *arg)
{
	struct worker_slot *slot = arg;
	struct bus_outcome o = { 0, NULL, 0 };
	int rc = bus__child_run(slot->child, ctx->job,
				job_timeout_ms(ctx->job, ctx->handler),
				&slot->abort, &o);
	if (rc != 0)
		return rc;
	free(ctx->error);
	ctx->error = o.error;
	ctx->snooze_s = o.snooze_s;
	if (o.rc != 0 && o.error != NULL)
		bus__error_set(o.rc, "%s", o.error);
	return o.rc;
}

static char *format_timeout(int64_t timeout_ms)
{
	char *text = NULL;
	if (asprintf(&text, "timeout after %gs (the handler returned past its "
			    "deadline)",
		     (double)timeout_ms / 1000.0) < 0)
		return NULL;
	return text;
}

static void run_job(struct worker_slot *slot, struct bus_outcome *o)
{
	struct bus_worker *w = slot->w;
	bus *b = w->bus;
	const bus_job *job = &slot->job;
	const struct bus_handler *h =
		bus__registry_find_runner(&b->registry, job->handler);
	o->rc = 0;
	o->error = NULL;
	o->snooze_s = 0;
	if (h == NULL || h->fn == NULL) {
		/* A handler declared without a function gives its jobs'
		 * options to producers; it cannot run them. */
		o->rc = BUS_ENOTFOUND;
		if (asprintf(&o->error,
			     "no durable handler named '%s' is registered in "
			     "worker '%s'",
			     job->handler, w->node) < 0)
			o->error = NULL;
		return;
	}
	int64_t timeout_ms = job_timeout_ms(job, h);
	int64_t deadline =
		timeout_ms > 0 ? bus__mono_ns() + timeout_ms * 1000000 : 0;
	struct bus_message m;
	int rc = bus__message_from_job(&m, b, job, h->kind, deadline);
	if (rc != 0) {
		o->rc = rc;
		o->error = strdup(bus_error_last()->message);
		bus__message_fini(&m);
		return;
	}
	bus_ctx ctx = { &m, h, NULL, NULL, job, 0, NULL, NULL, &slot->abort };
	if (w->isolation == BUS_ISOLATION_PROCESS) {
		ctx.invoke = hand_off;
		ctx.invoke_arg = slot;
	}
	rc = bus__run_chain(&ctx, bus__registry_middleware(&b->registry));
	if (w->isolation == BUS_ISOLATION_THREAD && deadline != 0 &&
	    (rc == 0 || rc == BUS_ESNOOZE) && bus__mono_ns() >= deadline) {
		/* Threads cannot be stopped: a late success still counts as a
		 * timeout, so the job's limit means the same in both modes. */
		rc = BUS_ETIMEOUT;
		free(ctx.error);
		ctx.error = format_timeout(timeout_ms);
	}
	o->rc = rc;
	o->error = ctx.error;
	o->snooze_s = ctx.snooze_s;
	free(ctx.result);
	bus__message_fini(&m);
}

void bus__finish_cancelled(bus_store_finish *f, const bus_job *job,
			   const char *node)
{
	*f = (bus_store_finish){ job->id, node, job->attempt, 0,
				 BUS_JOB_CANCELLED, -1,
				 "cancelled by bus_job_cancel while it was "
				 "running",
				 0 };
}

static void finish_job(struct worker_slot *slot, const struct bus_outcome *o)
{
	struct bus_worker *w = slot->w;
	const bus_job *job = &slot->job;
	int reason = atomic_load(&slot->abort);
	if (reason == ABORT_LOST) {
		/* Rescued, or its lease ran out: its fate is the rescue's. */
		atomic_fetch_add(&w->stats.lost, 1);
		return;
	}
	bus_store_finish f;
	/* Stopped by a cancel request: whatever the handler returned once it
	 * was told, the job ends cancelled (as the request said). */
	if (reason == ABORT_CANCEL) {
		bus__finish_cancelled(&f, job, w->node);
		if (bus__worker_submit(w, &f, slot->queue) != 0)
			bus__log(&w->bus->log, BUS_LOG_ERROR,
				 "worker '%s': job %lld was cancelled but that "
				 "is not recorded (%s); its rescue will",
				 w->node, (long long)job->id,
				 bus_error_last()->message);
		return;
	}
	/* Stopped by shutdown: what the handler decided (done, snoozed,
	 * cancelled) stands; a failure is the interruption's, so the job goes
	 * back unspent. Either way it is written only now that the handler
	 * has returned: a job is never given back while it runs. A killed
	 * child reports BUS_ECANCEL ("cancelled while running"): that too is
	 * the interruption's, not a cancel the handler chose. */
	int interrupted = o->rc != 0 && o->rc != BUS_ESNOOZE &&
			  (o->rc != BUS_ECANCEL ||
			   w->isolation == BUS_ISOLATION_PROCESS);
	if (reason == ABORT_SHUTDOWN && interrupted) {
		f = (bus_store_finish){ job->id, w->node, job->attempt, 0,
					BUS_JOB_AVAILABLE, -1, NULL, 1 };
	} else {
		const struct bus_handler *h =
			bus__registry_find_runner(&w->bus->registry,
						   job->handler);
		bus__policy_decide(&f, job, h, w->node, o);
		if (f.state == BUS_JOB_RETRYABLE &&
		    f.delay_us == BUS_DELAY_MAX_US && h != NULL &&
		    h->job.backoff != NULL)
			bus__log(&w->bus->log, BUS_LOG_WARN,
				 "worker '%s': the backoff of handler '%s' "
				 "asked for BUS_DELAY_MAX_S or more; job %lld "
				 "retries in BUS_DELAY_MAX_S",
				 w->node, job->handler, (long long)job->id);
	}
	if (bus__worker_submit(w, &f, slot->queue) != 0)
		bus__log(&w->bus->log, BUS_LOG_ERROR,
			 "worker '%s': the outcome of job %lld is not recorded "
			 "(%s); it runs again after its lease",
			 w->node, (long long)job->id, bus_error_last()->message);
}

void *bus__worker_executor(void *arg)
{
	struct worker_slot *slot = arg;
	struct bus_worker *w = slot->w;
	struct worker_queue *q = slot->queue;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (q->pending.len == 0 && w->state == W_RUNNING)
			pthread_cond_wait(&w->work, &w->lock);
		if (w->state != W_RUNNING)
			break; /* stop() gives back what still waits */
		/* Never a job whose start the store has not recorded. */
		if (!bus__worker_head_ready(w, q)) {
			bus__worker_start_wave(w, 0);
			continue;
		}
		struct job_fifo *f = &q->pending;
		slot->job = f->items[f->head];
		f->head = (f->head + 1) % f->cap;
		f->len--;
		if (bus__queue_low(q))
			pthread_cond_signal(&w->room);
		slot->running = 1;
		atomic_store(&slot->abort, ABORT_NONE);
		q->busy++;
		pthread_mutex_unlock(&w->lock);

		struct bus_outcome o;
		int64_t t0 = bus__mono_ns();
		run_job(slot, &o);
		int64_t ran = bus__mono_ns() - t0;
		finish_job(slot, &o);
		free(o.error);

		pthread_mutex_lock(&w->lock);
		bus__queue_ran(q, ran, w->fetch_batch);
		bus__job_clear(&slot->job);
		slot->running = 0;
		q->busy--;
		if (bus__queue_low(q))
			pthread_cond_signal(&w->room);
		pthread_cond_broadcast(&w->idle);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}
