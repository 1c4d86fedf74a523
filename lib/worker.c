/* Workers: options, life cycle (start, run, stop, free) and the fetcher. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "core.h"
#include "error.h"
#include "jobrow.h"
#include "names.h"
#include "worker.h"
#include "zygote.h"

/* The defaults, and why, are in include/bus/worker.h. */
#define DEFAULT_CONCURRENCY 4
#define DEFAULT_FETCH_BATCH 256
#define DEFAULT_COMPLETER_BATCH 256
#define DEFAULT_POLL_MS 1000
#define MAX_CONCURRENCY 1000
#define MAX_FETCH_BATCH 10000

static int64_t or_default(int64_t v, int64_t dflt)
{
	return v != 0 ? v : dflt;
}

static int check_interval(const char *name, int64_t v)
{
	if (v < 0 || v > BUS_WORKER_INTERVAL_MAX_MS)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts.%s is %lld; it must be 0 "
				      "(the default) up to %lld "
				      "(BUS_WORKER_INTERVAL_MAX_MS, one day)",
				      name, (long long)v,
				      (long long)BUS_WORKER_INTERVAL_MAX_MS);
	return 0;
}

static int check_opts(const bus_worker_opts *o)
{
	if (o->version != BUS_WORKER_OPTS_VERSION)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts.version is %u, expected "
				      "%u: initialise it with "
				      "BUS_WORKER_OPTS_INIT",
				      o->version, BUS_WORKER_OPTS_VERSION);
	if (o->n_queues > 0 && o->queues == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts: n_queues is %zu but "
				      "queues is NULL",
				      o->n_queues);
	for (size_t i = 0; i < o->n_queues; i++) {
		size_t len;
		uint64_t hash;
		int rc = bus__name_check("worker queue name", o->queues[i].name,
					 &len, &hash);
		if (rc != 0)
			return rc;
		if (o->queues[i].concurrency < 0 ||
		    o->queues[i].concurrency > MAX_CONCURRENCY)
			return bus__error_set(BUS_EINVAL,
					      "bus_worker_opts: queue '%s' has "
					      "concurrency %d; it must be 0 (the "
					      "default, %d) or up to %d",
					      o->queues[i].name,
					      o->queues[i].concurrency,
					      DEFAULT_CONCURRENCY,
					      MAX_CONCURRENCY);
		for (size_t j = 0; j < i; j++)
			if (strcmp(o->queues[i].name, o->queues[j].name) == 0)
				return bus__error_set(
					BUS_EINVAL,
					"bus_worker_opts: queue '%s' is listed "
					"twice",
					o->queues[i].name);
	}
	if (o->prefetch < -1 || o->prefetch > MAX_FETCH_BATCH)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts.prefetch is %d; it must "
				      "be -1 (none), 0 (the default) or up to %d",
				      o->prefetch, MAX_FETCH_BATCH);
	if (o->fetch_batch < 0 || o->fetch_batch > MAX_FETCH_BATCH)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts.fetch_batch is %d; it "
				      "must be 0 (the default) to %d",
				      o->fetch_batch, MAX_FETCH_BATCH);
	if (o->completer_batch < 0 || o->completer_batch > MAX_FETCH_BATCH)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts.completer_batch is %d; "
				      "it must be 0 (the default) to %d",
				      o->completer_batch, MAX_FETCH_BATCH);
	int rc;
	if ((rc = check_interval("poll_interval_ms", o->poll_interval_ms)) ||
	    (rc = check_interval("lease_ms", o->lease_ms)) ||
	    (rc = check_interval("rescue_interval_ms",
				 o->rescue_interval_ms)) ||
	    (rc = check_interval("completer_flush_ms",
				 o->completer_flush_ms)) ||
	    (rc = check_interval("shutdown_grace_ms", o->shutdown_grace_ms)) ||
	    (rc = check_interval("rescue_delay_ms", o->rescue_delay_ms)) ||
	    (rc = check_interval("cancel_check_ms", o->cancel_check_ms)))
		return rc;
	if (o->retention_s > BUS_DELAY_MAX_S)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts.retention_s is %lld; it "
				      "must be at most %lld (BUS_DELAY_MAX_S), "
				      "or negative (never prune)",
				      (long long)o->retention_s,
				      (long long)BUS_DELAY_MAX_S);
	if (o->isolation != BUS_ISOLATION_DEFAULT &&
	    o->isolation != BUS_ISOLATION_THREAD &&
	    o->isolation != BUS_ISOLATION_PROCESS)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_opts.isolation %d is unknown",
				      (int)o->isolation);
	if (o->node != NULL) {
		size_t len;
		uint64_t hash;
		if ((rc = bus__name_check("worker node name", o->node, &len,
					  &hash)) != 0)
			return rc;
	}
	return 0;
}

static char *default_node(void)
{
	char host[256];
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	char *node = NULL;
	if (asprintf(&node, "%s:%ld", host, (long)getpid()) < 0)
		return NULL;
	return node;
}

static void worker_destroy(struct bus_worker *w)
{
	for (size_t i = 0; w->queues != NULL && i < w->n_queues; i++) {
		struct job_fifo *f = &w->queues[i].pending;
		for (size_t k = 0; k < f->len; k++)
			bus__job_clear(&f->items[(f->head + k) % f->cap]);
		free(f->items);
		free(w->queues[i].name);
	}
	free(w->queues);
	free(w->slots);
	free(w->batch.items);
	free(w->batch.owners);
	free(w->node);
	if (w->stop_pipe[0] >= 0) {
		close(w->stop_pipe[0]);
		close(w->stop_pipe[1]);
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->work);
	pthread_cond_destroy(&w->room);
	pthread_cond_destroy(&w->flush);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->tick);
	free(w);
}

static int init_sync(struct bus_worker *w)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work, &ca);
	pthread_cond_init(&w->room, &ca);
	pthread_cond_init(&w->flush, &ca);
	pthread_cond_init(&w->idle, &ca);
	pthread_cond_init(&w->tick, &ca);
	pthread_condattr_destroy(&ca);
	if (pipe2(w->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		w->stop_pipe[0] = w->stop_pipe[1] = -1;
		return bus__error_set(BUS_ERROR, "cannot make a pipe: %s",
				      strerror(errno));
	}
	return 0;
}

int bus_worker_new(bus_worker **out, bus *b, const bus_worker_opts *opts)
{
	static const bus_worker_opts dflt = BUS_WORKER_OPTS_INIT;
	static const bus_worker_queue default_queue = { "default",
							DEFAULT_CONCURRENCY };
	if (out == NULL)
		return bus__error_set(BUS_EINVAL, "bus_worker_new: out is NULL");
	*out = NULL;
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	if (opts == NULL)
		opts = &dflt;
	int rc = check_opts(opts);
	if (rc != 0)
		return rc;

	struct bus_worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return bus__error_oom();
	w->stop_pipe[0] = w->stop_pipe[1] = -1;
	if ((rc = init_sync(w)) != 0) {
		worker_destroy(w);
		return rc;
	}
	w->bus = b;
	const bus_worker_queue *qs = opts->n_queues ? opts->queues
						    : &default_queue;
	w->n_queues = opts->n_queues ? opts->n_queues : 1;
	w->queues = calloc(w->n_queues, sizeof *w->queues);
	w->node = opts->node ? strdup(opts->node) : default_node();
	if (w->queues == NULL || w->node == NULL) {
		worker_destroy(w);
		return bus__error_oom();
	}
	w->fetch_batch = opts->fetch_batch ? opts->fetch_batch
					   : DEFAULT_FETCH_BATCH;
	for (size_t i = 0; i < w->n_queues; i++) {
		struct worker_queue *q = &w->queues[i];
		q->concurrency = qs[i].concurrency ? qs[i].concurrency
						   : DEFAULT_CONCURRENCY;
		/* The default adapts, starting from none (see worker.h). */
		q->prefetch_auto = opts->prefetch == 0;
		q->prefetch = opts->prefetch > 0 ? opts->prefetch : 0;
		w->n_slots += (size_t)q->concurrency;
		if ((w->queues[i].name = strdup(qs[i].name)) == NULL) {
			worker_destroy(w);
			return bus__error_oom();
		}
	}
	w->slots = calloc(w->n_slots, sizeof *w->slots);
	if (w->slots == NULL) {
		worker_destroy(w);
		return bus__error_oom();
	}
	for (size_t i = 0, s = 0; i < w->n_queues; i++) {
		for (int k = 0; k < w->queues[i].concurrency; k++, s++) {
			w->slots[s].w = w;
			w->slots[s].queue = &w->queues[i];
			atomic_init(&w->slots[s].abort, ABORT_NONE);
		}
	}
	w->isolation = opts->isolation;
	if (w->isolation == BUS_ISOLATION_DEFAULT)
		w->isolation = (b->store.ops->flags & BUS_STORE_SHARED)
				       ? BUS_ISOLATION_THREAD
				       : BUS_ISOLATION_PROCESS;
	w->poll_ms = or_default(opts->poll_interval_ms, DEFAULT_POLL_MS);
	w->lease_us = or_default(opts->lease_ms, 30000) * 1000;
	w->rescue_ms = or_default(opts->rescue_interval_ms, 5000);
	w->retention_s = or_default(opts->retention_s, 86400);
	w->grace_ms = or_default(opts->shutdown_grace_ms, 30000);
	w->completer_batch = opts->completer_batch ? opts->completer_batch
						   : DEFAULT_COMPLETER_BATCH;
	w->flush_ms = or_default(opts->completer_flush_ms, 5);
	w->rescue_delay_us = or_default(opts->rescue_delay_ms, 5000) * 1000;
	w->cancel_check_ms = or_default(opts->cancel_check_ms, 500);
	atomic_init(&w->stop_requested, 0);
	w->state = W_NEW;
	*out = w;
	return 0;
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	int64_t ns = ts->tv_nsec + (ms % 1000) * 1000000;
	ts->tv_sec += ms / 1000 + ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
}

void bus__worker_nap(struct bus_worker *w, int64_t ms, const int *go,
		     int wakeable)
{
	struct timespec ts;
	deadline_in(&ts, ms);
	pthread_mutex_lock(&w->lock);
	unsigned wakes = w->wakes;
	while (*go && !(wakeable && w->wakes != wakes) &&
	       pthread_cond_timedwait(&w->tick, &w->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&w->lock);
}

void bus__worker_wake(struct bus_worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->wakes++;
	pthread_cond_broadcast(&w->tick);
	/* The fetcher waits on room, also while its queues are dry. */
	pthread_cond_broadcast(&w->room);
	pthread_mutex_unlock(&w->lock);
}

void bus__wake_workers(bus *b)
{
	/* A handler in a child (process isolation) that enqueues has only a
	 * copy of the parent's workers, with its locks as some other thread
	 * held them at fork(): taking one could wait for ever, and there is
	 * nobody here to wake. The parent's workers find the job by polling. */
	if (b->store.in_child)
		return;
	if (atomic_load_explicit(&b->n_workers, memory_order_relaxed) == 0)
		return;
	pthread_mutex_lock(&b->workers_lock);
	for (struct bus_worker *w = b->workers; w != NULL; w = w->next_on_bus)
		bus__worker_wake(w);
	pthread_mutex_unlock(&b->workers_lock);
}

static void attach_to_bus(struct bus_worker *w)
{
	bus *b = w->bus;
	pthread_mutex_lock(&b->workers_lock);
	w->next_on_bus = b->workers;
	b->workers = w;
	atomic_fetch_add(&b->n_workers, 1);
	pthread_mutex_unlock(&b->workers_lock);
}

static void detach_from_bus(struct bus_worker *w)
{
	bus *b = w->bus;
	pthread_mutex_lock(&b->workers_lock);
	for (struct bus_worker **p = &b->workers; *p != NULL;
	     p = &(*p)->next_on_bus) {
		if (*p == w) {
			*p = w->next_on_bus;
			atomic_fetch_sub(&b->n_workers, 1);
			break;
		}
	}
	pthread_mutex_unlock(&b->workers_lock);
}

/* ---- the fetcher -------------------------------------------------------- */

static int fifo_push(struct job_fifo *f, bus_job *job)
{
	if (f->len == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		bus_job *items = malloc(cap * sizeof *items);
		if (items == NULL)
			return -1;
		for (size_t k = 0; k < f->len; k++)
			items[k] = f->items[(f->head + k) % f->cap];
		free(f->items);
		f->items = items;
		f->head = 0;
		f->cap = cap;
	}
	f->items[(f->head + f->len) % f->cap] = *job;
	f->len++;
	return 0;
}

static struct worker_queue *queue_named(struct bus_worker *w,
					const char *name)
{
	for (size_t i = 0; i < w->n_queues; i++)
		if (strcmp(w->queues[i].name, name) == 0)
			return &w->queues[i];
	return NULL;
}

/* Gives a claimed job back: available again, its attempt not spent. */
static void give_back(struct bus_worker *w, const bus_job *job)
{
	bus_store_finish f = { job->id, w->node, job->attempt, 0,
			       BUS_JOB_AVAILABLE, -1, NULL, 1 };
	bus__worker_submit(w, &f, NULL);
}

void bus__queue_ran(struct worker_queue *q, int64_t ns, int max_prefetch)
{
	/* An average over the last eight jobs or so: one slow job does not
	 * empty the prefetch, a queue whose jobs turn slow soon does. (Also
	 * kept with a fixed prefetch: worker_start.c reads it.) */
	q->avg_run_ns = q->avg_run_ns == 0 ? ns + 1
					   : q->avg_run_ns +
						     (ns - q->avg_run_ns) / 8;
	if (!q->prefetch_auto)
		return;
	int64_t avg = q->avg_run_ns > 1000 ? q->avg_run_ns : 1000;
	int64_t p = (int64_t)q->concurrency * PREFETCH_HORIZON_MS * 1000000 /
		    avg;
	q->prefetch = p > max_prefetch ? max_prefetch : (int)p;
}

/*
 * How much to claim per queue: enough to fill its idle executors and its
 * prefetch, once what waits has fallen to half the prefetch (so that claims
 * come in batches rather than one job per finished one). A dry queue (its
 * last claim came back short) is left out until its next poll; *next_ns is
 * the earliest such poll of a queue that has room (0: none). *starved is
 * set when a queue could claim but for outcomes the completer has not
 * taken yet.
 */
static size_t room_for(struct bus_worker *w, bus_store_claim *req,
		       unsigned char *start, int64_t now, int64_t *next_ns,
		       int *starved)
{
	size_t total = 0;
	*next_ns = 0;
	*starved = 0;
	for (size_t i = 0; i < w->n_queues; i++) {
		struct worker_queue *q = &w->queues[i];
		/* Jobs run but not yet recorded still hold the queue's room:
		 * a worker never holds more than concurrency + prefetch. */
		int64_t free_slots = (int64_t)q->concurrency + q->prefetch -
				     q->busy - (int64_t)q->pending.len;
		int64_t room = free_slots - q->unwritten;
		int has_room = room > 0 && bus__queue_low(q);
		size_t want = 0;
		if (has_room && q->dry_until_ns > now) {
			if (*next_ns == 0 || q->dry_until_ns < *next_ns)
				*next_ns = q->dry_until_ns;
		} else if (has_room) {
			want = (size_t)room;
		} else if (q->unwritten > 0 && free_slots > 0 &&
			   q->pending.len <= (size_t)q->prefetch / 2 &&
			   q->dry_until_ns <= now) {
			*starved = 1;
		}
		if (total + want > (size_t)w->fetch_batch)
			want = (size_t)w->fetch_batch - total;
		req[i].queue = q->name;
		req[i].limit = want;
		/* Their start recorded by the claim itself when its executors
		 * reach them all within about one store call. */
		start[i] = want > 0 && w->start_store != NULL &&
			   q->pending.len + want <=
				   bus__worker_start_ahead(w, q);
		total += want;
	}
	return total;
}

/* Under the lock: waits until an executor frees room, jobs are stored on
 * this bus, the worker stops, or (when `until_ns` is set) a dry queue's
 * next poll is due. */
static void fetcher_wait(struct bus_worker *w, int64_t until_ns)
{
	if (until_ns == 0) {
		pthread_cond_wait(&w->room, &w->lock);
		return;
	}
	struct timespec ts = { (time_t)(until_ns / 1000000000),
			       (long)(until_ns % 1000000000) };
	pthread_cond_timedwait(&w->room, &w->lock, &ts);
}

/*
 * The fetcher: one claim for all the queues that have room and are not
 * dry. A queue whose claim came back short has nothing more due: it is
 * asked again after the poll interval, or at once when jobs are stored on
 * this bus. A queue that came back full is asked again as soon as it has
 * room. So an empty queue costs one query per poll interval, and never
 * slows the others down.
 */
static void *fetcher(void *arg)
{
	struct bus_worker *w = arg;
	bus *b = w->bus;
	bus_store_claim *req = calloc(w->n_queues, sizeof *req);
	size_t *got = calloc(w->n_queues, sizeof *got);
	unsigned char *start = calloc(w->n_queues, 1);
	int complained = 0;
	pthread_mutex_lock(&w->lock);
	unsigned seen_wakes = w->wakes;
	while (req != NULL && got != NULL && start != NULL && w->claiming) {
		int64_t now = bus__mono_ns();
		if (w->wakes != seen_wakes) {
			/* Jobs were stored here: every queue may have some. */
			seen_wakes = w->wakes;
			for (size_t i = 0; i < w->n_queues; i++)
				w->queues[i].dry_until_ns = 0;
		}
		int64_t next_ns;
		int starved;
		size_t want = room_for(w, req, start, now, &next_ns, &starved);
		if (want == 0) {
			w->fetcher_starved = starved;
			if (starved)
				pthread_cond_signal(&w->flush);
			fetcher_wait(w, next_ns);
			w->fetcher_starved = 0;
			continue;
		}
		pthread_mutex_unlock(&w->lock);

		bus_job *rows = NULL;
		size_t n = 0;
		int64_t t0 = bus__mono_ns();
		int rc = w->start_store != NULL &&
					 b->store.ops->claim_start != NULL
				 ? b->store.ops->claim_start(
					   w->fetch_store, bus__now(b), w->node,
					   w->lease_us, req, start, w->n_queues,
					   &rows, &n)
				 : b->store.ops->claim(w->fetch_store,
						       bus__now(b), w->node,
						       w->lease_us, req,
						       w->n_queues, &rows, &n);
		atomic_fetch_add(&w->stats.claims, 1);
		atomic_fetch_add(&w->stats.claim_ns,
				 (uint64_t)(bus__mono_ns() - t0));
		if (rc != 0) {
			/* Keep going: the store may come back. */
			if (!complained++)
				bus__log(&b->log, BUS_LOG_ERROR,
					 "worker '%s': claim failed: %s",
					 w->node, bus_error_last()->message);
			bus__worker_nap(w, w->poll_ms, &w->claiming, 1);
			pthread_mutex_lock(&w->lock);
			continue;
		}
		complained = 0;
		atomic_fetch_add(&w->stats.claimed, n);

		pthread_mutex_lock(&w->lock);
		bus__worker_drop_reclaimed(w, rows, n);
		memset(got, 0, w->n_queues * sizeof *got);
		for (size_t i = 0; i < n; i++) {
			struct worker_queue *q = queue_named(w, rows[i].queue);
			if (q != NULL)
				got[q - w->queues]++;
			if (w->claiming && q != NULL &&
			    fifo_push(&q->pending, &rows[i]) == 0)
				continue;
			/* Stopping, or no room to keep it: not ours to run. */
			pthread_mutex_unlock(&w->lock);
			give_back(w, &rows[i]);
			bus__job_clear(&rows[i]);
			pthread_mutex_lock(&w->lock);
		}
		free(rows);
		if (n > 0)
			pthread_cond_broadcast(&w->work);
		/* Their start, recorded now, while the executors may still
		 * run the jobs recorded before (worker_start.c). */
		if (n > 0 && w->start_store != NULL && w->claiming)
			bus__worker_start_wave(w, 1);
		/* poll_ms is at most a day (check_opts): no overflow. */
		int64_t next_poll = now + w->poll_ms * 1000000;
		for (size_t i = 0; i < w->n_queues; i++)
			if (req[i].limit > 0)
				w->queues[i].dry_until_ns =
					got[i] < req[i].limit ? next_poll : 0;
	}
	pthread_mutex_unlock(&w->lock);
	free(req);
	free(got);
	free(start);
	return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

static void join_all(struct bus_worker *w);

static int open_connections(struct bus_worker *w)
{
	struct bus_store_pool *p = &w->bus->store;
	int rc = bus__store_open(p, &w->fetch_store);
	if (rc == 0)
		rc = p->ops->schema_check(w->fetch_store);
	if (rc == 0)
		rc = bus__store_open(p, &w->complete_store);
	if (rc == 0)
		rc = bus__store_open(p, &w->maint_store);
	if (rc == 0)
		rc = bus__store_open(p, &w->lease_store);
	if (rc == 0 && p->ops->start != NULL)
		rc = bus__store_open(p, &w->start_store);
	return rc;
}

static void close_connections(struct bus_worker *w)
{
	struct bus_store_pool *p = &w->bus->store;
	bus__store_close(p, w->fetch_store);
	bus__store_close(p, w->complete_store);
	bus__store_close(p, w->maint_store);
	bus__store_close(p, w->lease_store);
	bus__store_close(p, w->start_store);
	w->fetch_store = w->complete_store = w->maint_store = NULL;
	w->lease_store = w->start_store = NULL;
}

static void free_children(struct bus_worker *w)
{
	for (size_t i = 0; i < w->n_slots; i++) {
		bus__child_free(w->slots[i].child);
		w->slots[i].child = NULL;
	}
	bus__zygote_stop(w->zygote);
	w->zygote = NULL;
}

int bus_worker_start(bus_worker *w)
{
	if (w == NULL)
		return bus__error_set(BUS_EINVAL, "worker is NULL");
	pthread_mutex_lock(&w->lock);
	int state = w->state;
	pthread_mutex_unlock(&w->lock);
	if (state != W_NEW)
		return bus__error_set(BUS_ESTATE,
				      "worker '%s' was already started", w->node);
	/* The zygote, which forks the children, is forked first: before this
	 * worker's threads exist (zygote.h says why), and before its
	 * connections, which it must not hold. */
	int rc = 0;
	if (w->isolation == BUS_ISOLATION_PROCESS)
		rc = bus__zygote_start(&w->zygote, w->bus);
	if (rc == 0)
		rc = open_connections(w);
	for (size_t i = 0; rc == 0 && w->isolation == BUS_ISOLATION_PROCESS &&
			   i < w->n_slots;
	     i++)
		rc = bus__child_spawn(&w->slots[i].child, w->bus, w->zygote);
	if (rc != 0) {
		free_children(w);
		close_connections(w);
		return rc;
	}

	pthread_mutex_lock(&w->lock);
	w->state = W_RUNNING;
	w->claiming = 1;
	w->maintenance_go = 1;
	pthread_mutex_unlock(&w->lock);
	for (size_t i = 0; rc == 0 && i < w->n_slots; i++) {
		if (pthread_create(&w->slots[i].thread, NULL,
				   bus__worker_executor, &w->slots[i]) != 0)
			rc = bus__error_set(BUS_ERROR,
					    "cannot start an executor thread");
		else
			w->slots[i].started = 1;
	}
	if (rc == 0) {
		if (pthread_create(&w->completer, NULL, bus__worker_completer,
				   w) != 0)
			rc = bus__error_set(BUS_ERROR,
					    "cannot start the completer");
		else
			w->completer_started = 1;
	}
	if (rc == 0) {
		if (pthread_create(&w->maintenance, NULL,
				   bus__worker_maintenance, w) != 0)
			rc = bus__error_set(BUS_ERROR,
					    "cannot start maintenance");
		else
			w->maintenance_started = 1;
	}
	/* On the bus before the fetcher's first claim: a job stored from now
	 * on wakes it, so none is left to the next poll. */
	if (rc == 0)
		attach_to_bus(w);
	if (rc == 0) {
		if (pthread_create(&w->lease_keeper, NULL,
				   bus__worker_lease_keeper, w) != 0)
			rc = bus__error_set(BUS_ERROR,
					    "cannot start the lease keeper");
		else
			w->lease_keeper_started = 1;
	}
	if (rc == 0)
		rc = bus__worker_listen_start(w);
	if (rc == 0) {
		if (pthread_create(&w->lease_watch, NULL,
				   bus__worker_lease_watch, w) != 0)
			rc = bus__error_set(BUS_ERROR,
					    "cannot start the lease watch");
		else
			w->lease_watch_started = 1;
	}
	if (rc == 0) {
		if (pthread_create(&w->fetcher, NULL, fetcher, w) != 0)
			rc = bus__error_set(BUS_ERROR,
					    "cannot start the fetcher");
		else
			w->fetcher_started = 1;
	}
	if (rc != 0) {
		/* Nothing was claimed yet: stop what started, and say why. */
		int err = rc;
		char why[1024];
		snprintf(why, sizeof why, "%s", bus_error_last()->message);
		pthread_mutex_lock(&w->lock);
		w->state = W_STOPPING;
		w->claiming = 0;
		pthread_mutex_unlock(&w->lock);
		join_all(w); /* detaches it too */
		return bus__error_set(err, "%s", why);
	}
	bus__log(&w->bus->log, BUS_LOG_INFO,
		 "worker '%s' started: %zu executors (%s isolation)", w->node,
		 w->n_slots,
		 w->isolation == BUS_ISOLATION_PROCESS ? "process" : "thread");
	return 0;
}

/* Joins every thread that was started (the fetcher last started, first
 * stopped; every thread that submits outcomes before the completer's final
 * flush), then frees children and connections. */
static void join_all(struct bus_worker *w)
{
	detach_from_bus(w);
	pthread_mutex_lock(&w->lock);
	w->claiming = 0;
	pthread_cond_broadcast(&w->room);
	pthread_cond_broadcast(&w->tick);
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->lock);
	if (w->fetcher_started)
		pthread_join(w->fetcher, NULL);
	bus__worker_listen_stop(w);
	for (size_t i = 0; i < w->n_slots; i++)
		if (w->slots[i].started)
			pthread_join(w->slots[i].thread, NULL);
	/* The lease keeper submits outcomes too (a waiting job cancelled):
	 * it stops before the completer's final flush, so that none comes
	 * after it and is neither written nor freed. */
	pthread_mutex_lock(&w->lock);
	w->maintenance_go = 0;
	pthread_cond_broadcast(&w->tick);
	pthread_mutex_unlock(&w->lock);
	if (w->lease_keeper_started)
		pthread_join(w->lease_keeper, NULL);
	if (w->lease_watch_started)
		pthread_join(w->lease_watch, NULL);
	pthread_mutex_lock(&w->lock);
	w->completer_done = 1;
	pthread_cond_broadcast(&w->flush);
	pthread_mutex_unlock(&w->lock);
	if (w->completer_started)
		pthread_join(w->completer, NULL);
	if (w->maintenance_started)
		pthread_join(w->maintenance, NULL);
	w->fetcher_started = w->completer_started = w->maintenance_started = 0;
	w->lease_keeper_started = w->lease_watch_started = 0;
	for (size_t i = 0; i < w->n_slots; i++)
		w->slots[i].started = 0;
	free_children(w);
	close_connections(w);
	pthread_mutex_lock(&w->lock);
	w->state = W_STOPPED;
	pthread_mutex_unlock(&w->lock);
}

static int any_running(const struct bus_worker *w)
{
	for (size_t i = 0; i < w->n_slots; i++)
		if (w->slots[i].running)
			return 1;
	return 0;
}

/* How long, past the grace period, stop waits for stopped jobs before it
 * says in the log that it still waits for handlers that ignore it. */
#define ABORT_WARN_MS 2000

int bus_worker_stop(bus_worker *w, int64_t grace_ms)
{
	if (w == NULL)
		return bus__error_set(BUS_EINVAL, "worker is NULL");
	if (grace_ms < 0 || grace_ms > BUS_WORKER_INTERVAL_MAX_MS)
		return bus__error_set(BUS_EINVAL,
				      "bus_worker_stop: grace %lld ms is "
				      "outside 0..%lld (one day)",
				      (long long)grace_ms,
				      (long long)BUS_WORKER_INTERVAL_MAX_MS);
	pthread_mutex_lock(&w->lock);
	if (w->state != W_RUNNING) {
		if (w->state == W_NEW)
			w->state = W_STOPPED;
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	/* 1. Stop claiming, and give back what waits for an executor. */
	w->state = W_STOPPING;
	w->claiming = 0;
	pthread_cond_broadcast(&w->room);
	pthread_cond_broadcast(&w->tick);
	pthread_cond_broadcast(&w->work);
	for (size_t i = 0; i < w->n_queues; i++) {
		struct job_fifo *f = &w->queues[i].pending;
		while (f->len > 0) {
			bus_job job = f->items[f->head];
			f->head = (f->head + 1) % f->cap;
			f->len--;
			pthread_mutex_unlock(&w->lock);
			give_back(w, &job);
			bus__job_clear(&job);
			pthread_mutex_lock(&w->lock);
		}
	}

	/* 2. Let running jobs finish within the grace period. */
	struct timespec ts;
	deadline_in(&ts, grace_ms);
	while (any_running(w) &&
	       pthread_cond_timedwait(&w->idle, &w->lock, &ts) != ETIMEDOUT)
		;
	/* 3. Stop the rest: children are killed (their jobs given back),
	 * threaded handlers see bus_ctx_expired. */
	if (any_running(w)) {
		/* A job being stopped already (cancelled, lost) keeps its
		 * reason: its outcome is that one's. */
		for (size_t i = 0; i < w->n_slots; i++) {
			int none = ABORT_NONE;
			if (w->slots[i].running)
				atomic_compare_exchange_strong(
					&w->slots[i].abort, &none,
					ABORT_SHUTDOWN);
		}
		deadline_in(&ts, ABORT_WARN_MS);
		while (any_running(w) &&
		       pthread_cond_timedwait(&w->idle, &w->lock, &ts) !=
			       ETIMEDOUT)
			;
	}
	/* 4. A threaded handler that ignores its context keeps running (a
	 * thread cannot be killed safely). Its job is not given back while it
	 * runs, or another worker could run it at the same time: stop waits
	 * for it (join_all), its lease still renewed, and records its outcome
	 * when it returns. */
	size_t still = 0;
	for (size_t i = 0; i < w->n_slots; i++)
		still += w->slots[i].running ? 1 : 0;
	pthread_mutex_unlock(&w->lock);
	if (still > 0)
		bus__log(&w->bus->log, BUS_LOG_WARN,
			 "worker '%s': %zu handlers ignore the shutdown "
			 "(bus_ctx_expired); waiting for them to return",
			 w->node, still);
	join_all(w);
	return 0;
}

void bus_worker_request_stop(bus_worker *w)
{
	if (w == NULL)
		return;
	/* Only async-signal-safe calls: an atomic store and write(2). */
	atomic_store(&w->stop_requested, 1);
	int saved = errno;
	ssize_t n = write(w->stop_pipe[1], "s", 1);
	(void)n;
	errno = saved;
}

int bus_worker_run(bus_worker *w)
{
	if (w == NULL)
		return bus__error_set(BUS_EINVAL, "worker is NULL");
	pthread_mutex_lock(&w->lock);
	int state = w->state;
	pthread_mutex_unlock(&w->lock);
	int rc = state == W_NEW ? bus_worker_start(w) : 0;
	if (rc != 0)
		return rc;
	struct pollfd pfd = { w->stop_pipe[0], POLLIN, 0 };
	while (!atomic_load(&w->stop_requested)) {
		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
			break;
	}
	char drain[16];
	while (read(w->stop_pipe[0], drain, sizeof drain) > 0)
		;
	return bus_worker_stop(w, w->grace_ms);
}

void bus_worker_free(bus_worker *w)
{
	if (w == NULL)
		return;
	bus_worker_stop(w, 0);
	worker_destroy(w);
}

void bus_worker_get_stats(bus_worker_stats *out, const bus_worker *cw)
{
	if (out == NULL)
		return;
	memset(out, 0, sizeof *out);
	if (cw == NULL)
		return;
	struct bus_worker *w = (struct bus_worker *)cw;
	out->claimed = atomic_load(&w->stats.claimed);
	out->completed = atomic_load(&w->stats.completed);
	out->retried = atomic_load(&w->stats.retried);
	out->discarded = atomic_load(&w->stats.discarded);
	out->snoozed = atomic_load(&w->stats.snoozed);
	out->cancelled = atomic_load(&w->stats.cancelled);
	out->given_back = atomic_load(&w->stats.given_back);
	out->rescued = atomic_load(&w->stats.rescued);
	out->lost = atomic_load(&w->stats.lost);
	out->refused = atomic_load(&w->stats.refused);
	out->lease_lost = atomic_load(&w->stats.lease_lost);
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->n_slots; i++)
		out->running += w->slots[i].running ? 1 : 0;
	pthread_mutex_unlock(&w->lock);
}
