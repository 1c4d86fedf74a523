/*
 * The in-memory store's admin operations: get, list, cancel, retry, remove,
 * pause, counts and prune (see store_memory_impl.h for the structures).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memindex.h"
#include "store_memory_impl.h"

#define LIST_LIMIT_DEFAULT 100

/* Takes `j` out of every index (not freeing it). */
static void job_unlink(struct bus_store *s, struct mjob *j)
{
	unplace(j);
	unique_drop(s, j);
	bus__table_del(&s->ids, id_hash(j->id), j);
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		s->head = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	else
		s->tail = j->prev;
	s->n_jobs--;
	j->q->n_jobs--;
	j->q->count[j->state]--;
}

static int not_found(bus_store *s, int64_t id)
{
	return s->error(BUS_ENOTFOUND,
			"memory store: job %" PRId64 " not found", id);
}

int bus__memory_get(bus_store *s, int64_t id, bus_job **out)
{
	*out = NULL;
	bus_job *r = malloc(sizeof *r);
	if (r == NULL)
		return s->error(BUS_ENOMEM, "memory store: out of memory");
	pthread_mutex_lock(&s->lock);
	const struct mjob *j = job_find(s, id);
	int rc = j ? bus__memory_row_fill(r, j, NULL) : BUS_ENOTFOUND;
	pthread_mutex_unlock(&s->lock);
	if (rc != 0) {
		free(r);
		return rc == BUS_ENOTFOUND
			       ? not_found(s, id)
			       : s->error(rc, "memory store: out of memory "
					      "reading job %" PRId64,
					  id);
	}
	*out = r;
	return 0;
}

/* The first job with an id above `after_id`. */
static struct mjob *list_start(const struct bus_store *s, int64_t after_id)
{
	if (s->head == NULL || after_id < s->head->id)
		return s->head;
	if (after_id >= s->tail->id)
		return NULL;
	struct mjob *j = job_find(s, after_id);
	if (j != NULL)
		return j->next;
	/* That job was deleted: walk from the nearer end. */
	if (after_id - s->head->id < s->tail->id - after_id) {
		for (j = s->head; j->id <= after_id; j = j->next)
			;
		return j;
	}
	for (j = s->tail; j->prev != NULL && j->prev->id > after_id;
	     j = j->prev)
		;
	return j;
}

int bus__memory_list(bus_store *s, const bus_job_filter *filter,
		     bus_job **out, size_t *n_out)
{
	static const bus_job_filter all = BUS_JOB_FILTER_INIT;
	const bus_job_filter *f = filter ? filter : &all;
	size_t limit = f->limit ? f->limit : LIST_LIMIT_DEFAULT;
	*out = NULL;
	*n_out = 0;
	pthread_mutex_lock(&s->lock);
	const struct queue *q =
		f->queue ? bus__memory_queue_get(s, f->queue, 0) : NULL;
	size_t cap = limit < s->n_jobs ? limit : s->n_jobs;
	if (cap == 0 || (f->queue != NULL && q == NULL)) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	bus_job *rows = malloc(cap * sizeof *rows);
	size_t k = 0;
	int rc = rows ? 0 : BUS_ENOMEM;
	for (const struct mjob *j = rc ? NULL : list_start(s, f->after_id);
	     j != NULL && k < cap; j = j->next) {
		if ((f->states && !(f->states & BUS_STATE_BIT(j->state))) ||
		    (q != NULL && j->q != q) ||
		    (f->kind != NULL && strcmp(j->kind, f->kind) != 0))
			continue;
		if ((rc = bus__memory_row_fill(&rows[k], j, NULL)) != 0)
			break;
		k++;
	}
	pthread_mutex_unlock(&s->lock);
	if (rc != 0 || k == 0) {
		bus_job_list_free(rows, k);
		return rc ? s->error(rc, "memory store: out of memory listing "
					 "jobs")
			  : 0;
	}
	*out = rows;
	*n_out = k;
	return 0;
}

int bus__memory_cancel(bus_store *s, int64_t now, int64_t id)
{
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	struct mjob *j = job_find(s, id);
	bus_job_state st = j ? j->state : BUS_JOB_AVAILABLE;
	if (j != NULL && st == BUS_JOB_EXECUTING) {
		/* A request: the job runs on until its worker stops it. */
		if (j->cancel_requested_at == 0)
			j->cancel_requested_at = now;
	} else if (j != NULL && !IS_FINISHED(st)) {
		bus__memory_set_state(s, j, BUS_JOB_CANCELLED, now);
	}
	pthread_mutex_unlock(&s->lock);
	if (j == NULL)
		return not_found(s, id);
	if (IS_FINISHED(st))
		return s->error(BUS_ESTATE,
				"memory store: cannot cancel job %" PRId64
				": it has already finished (%s)",
				id, bus_job_state_name(st));
	return 0;
}

int bus__memory_cancel_pending(bus_store *s, const char *node,
			       const int64_t *ids, const int *attempts,
			       size_t n, unsigned char *pending)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || pending == NULL)
		return s->error(BUS_EINVAL,
				"memory store: cancel_pending: node, ids, "
				"attempts or pending is NULL");
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		const struct mjob *j = job_find(s, ids[i]);
		pending[i] = j != NULL && j->state == BUS_JOB_EXECUTING &&
			     j->attempted_by != NULL &&
			     strcmp(j->attempted_by, node) == 0 &&
			     j->attempt == attempts[i] &&
			     j->cancel_requested_at != 0;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int bus__memory_retry(bus_store *s, int64_t now, int64_t id)
{
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	struct mjob *j = job_find(s, id);
	int executing = j != NULL && j->state == BUS_JOB_EXECUTING;
	if (j != NULL && !executing) {
		/* A job already due keeps its place in line. */
		if (!IS_PENDING(j->state) || j->scheduled_at > now)
			j->scheduled_at = now;
		if (j->attempt >= j->max_attempts)
			j->max_attempts = j->attempt + 1;
		bus__memory_set_state(s, j, BUS_JOB_AVAILABLE, now);
	}
	pthread_mutex_unlock(&s->lock);
	if (j == NULL)
		return not_found(s, id);
	if (executing)
		return s->error(BUS_ESTATE,
				"memory store: cannot retry job %" PRId64
				": it is executing",
				id);
	return 0;
}

int bus__memory_remove(bus_store *s, int64_t id)
{
	pthread_mutex_lock(&s->lock);
	struct mjob *j = job_find(s, id);
	int executing = j != NULL && j->state == BUS_JOB_EXECUTING;
	if (j != NULL && !executing)
		job_unlink(s, j);
	pthread_mutex_unlock(&s->lock);
	if (j == NULL)
		return not_found(s, id);
	if (executing)
		return s->error(BUS_ESTATE,
				"memory store: cannot delete job %" PRId64
				": it is executing",
				id);
	bus__memory_job_free(j);
	return 0;
}

int bus__memory_set_paused(bus_store *s, const char *queue, int paused)
{
	if (queue == NULL)
		return s->error(BUS_EINVAL,
				"memory store: set_paused: queue is NULL");
	pthread_mutex_lock(&s->lock);
	/* Pausing a queue with no job yet makes it, so the pause holds for
	 * the jobs that come later. */
	struct queue *q = bus__memory_queue_get(s, queue, 1);
	if (q != NULL)
		q->paused = paused != 0;
	pthread_mutex_unlock(&s->lock);
	if (q == NULL)
		return s->error(BUS_ENOMEM, "memory store: out of memory "
					    "pausing queue '%.200s'",
				queue);
	return 0;
}

static int queue_info_cmp(const void *a, const void *b)
{
	return strcmp(((const bus_queue_info *)a)->name,
		      ((const bus_queue_info *)b)->name);
}

int bus__memory_paused_queues(bus_store *s, bus_queue_info **out,
			      size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	pthread_mutex_lock(&s->lock);
	size_t n = 0;
	for (size_t i = 0; i < s->queues.cap; i++) {
		const struct queue *q = s->queues.slots[i].item;
		n += q != NULL && q->paused;
	}
	bus_queue_info *p = n ? calloc(n, sizeof *p) : NULL;
	size_t k = 0;
	for (size_t i = 0; p != NULL && i < s->queues.cap; i++) {
		const struct queue *q = s->queues.slots[i].item;
		if (q == NULL || !q->paused)
			continue;
		size_t len = q->len < sizeof p[k].name - 1 ? q->len
							   : sizeof p[k].name - 1;
		memcpy(p[k].name, q->name, len);
		p[k].name[len] = '\0';
		p[k].paused = 1;
		k++;
	}
	pthread_mutex_unlock(&s->lock);
	if (n > 0 && p == NULL)
		return s->error(BUS_ENOMEM, "memory store: out of memory "
					    "listing paused queues");
	if (k > 1)
		qsort(p, k, sizeof *p, queue_info_cmp);
	*out = p;
	*n_out = k;
	return 0;
}

static int count_cmp(const void *a, const void *b)
{
	const bus_job_count *x = a, *y = b;
	int c = strcmp(x->queue, y->queue);
	return c ? c : (int)x->state - (int)y->state;
}

int bus__memory_counts(bus_store *s, bus_job_count **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	pthread_mutex_lock(&s->lock);
	size_t n = 0;
	for (size_t i = 0; i < s->queues.cap; i++) {
		const struct queue *q = s->queues.slots[i].item;
		for (int st = 0; q != NULL && st < BUS_JOB_STATE_COUNT; st++)
			n += q->count[st] != 0;
	}
	bus_job_count *c = n ? malloc(n * sizeof *c) : NULL;
	size_t k = 0;
	for (size_t i = 0; c != NULL && i < s->queues.cap; i++) {
		const struct queue *q = s->queues.slots[i].item;
		for (int st = 0; q != NULL && st < BUS_JOB_STATE_COUNT; st++) {
			if (q->count[st] == 0)
				continue;
			size_t len = q->len < sizeof c[k].queue - 1
					     ? q->len
					     : sizeof c[k].queue - 1;
			memcpy(c[k].queue, q->name, len);
			c[k].queue[len] = '\0';
			c[k].state = (bus_job_state)st;
			c[k].count = q->count[st];
			k++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (n > 0 && c == NULL)
		return s->error(BUS_ENOMEM, "memory store: out of memory "
					    "counting jobs");
	if (k > 1)
		qsort(c, k, sizeof *c, count_cmp);
	*out = c;
	*n_out = k;
	return 0;
}

int bus__memory_prune(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		      int64_t *deleted)
{
	now = clock_now(now);
	int64_t before = now - age_us;
	struct mjob *doomed = NULL;
	int64_t d = 0;
	pthread_mutex_lock(&s->lock);
	struct bus__heap_node *top;
	while ((size_t)d < limit &&
	       (top = bus__heap_top(&s->finished)) != NULL &&
	       mjob_of(top)->finished_at < before) {
		struct mjob *j = mjob_of(top);
		job_unlink(s, j);
		j->next = doomed;
		doomed = j;
		d++;
	}
	pthread_mutex_unlock(&s->lock);
	while (doomed != NULL) {
		struct mjob *next = doomed->next;
		bus__memory_job_free(doomed);
		doomed = next;
	}
	if (deleted != NULL)
		*deleted = d;
	return 0;
}
