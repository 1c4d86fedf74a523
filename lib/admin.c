/* Administration of stored jobs: each call borrows a pooled connection for
 * one store operation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"
#include "names.h"

/* Borrows a connection, or says why there is none. */
static int borrow(bus *b, bus_store **s)
{
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	return bus__store_acquire(&b->store, s);
}

int bus_job_get(bus_job **out, bus *b, int64_t id)
{
	if (out == NULL)
		return bus__error_set(BUS_EINVAL, "bus_job_get: out is NULL");
	*out = NULL;
	bus_store *s;
	int rc = borrow(b, &s);
	if (rc != 0)
		return rc;
	rc = b->store.ops->get(s, id, out);
	bus__store_release(&b->store, s);
	return rc;
}

int bus_job_list(bus_job **out, size_t *n, bus *b, const bus_job_filter *f)
{
	static const bus_job_filter all = BUS_JOB_FILTER_INIT;
	if (out == NULL || n == NULL)
		return bus__error_set(BUS_EINVAL, "bus_job_list: NULL output");
	*out = NULL;
	*n = 0;
	if (f == NULL)
		f = &all;
	if (f->version != BUS_JOB_FILTER_VERSION)
		return bus__error_set(BUS_EINVAL,
				      "bus_job_filter.version is %u, expected "
				      "%u: initialise it with "
				      "BUS_JOB_FILTER_INIT",
				      f->version, BUS_JOB_FILTER_VERSION);
	if (f->states & ~BUS_STATES_ALL)
		return bus__error_set(BUS_EINVAL,
				      "bus_job_filter.states has unknown bits "
				      "0x%x",
				      f->states & ~BUS_STATES_ALL);
	/* Names are checked as where they are stored: a name no job can have
	 * is an error on every store, not an empty list on one and an SQL
	 * error on another. */
	size_t len;
	uint64_t hash;
	int nrc = 0;
	if (f->queue != NULL)
		nrc = bus__name_check("bus_job_filter.queue", f->queue, &len,
				      &hash);
	if (nrc == 0 && f->kind != NULL)
		nrc = bus__name_check("bus_job_filter.kind", f->kind, &len,
				      &hash);
	if (nrc != 0)
		return nrc;
	bus_job_filter filter = *f;
	if (filter.limit == 0)
		filter.limit = 100;
	bus_store *s;
	int rc = borrow(b, &s);
	if (rc != 0)
		return rc;
	rc = b->store.ops->list(s, &filter, out, n);
	bus__store_release(&b->store, s);
	return rc;
}

/* The shape of cancel, retry and delete: one job, one operation. */
static int one_job(bus *b, int64_t id, int which)
{
	bus_store *s;
	int rc = borrow(b, &s);
	if (rc != 0)
		return rc;
	const struct bus_store_ops *ops = b->store.ops;
	switch (which) {
	case 0: rc = ops->cancel(s, bus__now(b), id); break;
	case 1: rc = ops->retry(s, bus__now(b), id); break;
	default: rc = ops->remove(s, id); break;
	}
	bus__store_release(&b->store, s);
	return rc;
}

int bus_job_cancel(bus *b, int64_t id)
{
	return one_job(b, id, 0);
}

int bus_job_retry(bus *b, int64_t id)
{
	return one_job(b, id, 1);
}

int bus_job_delete(bus *b, int64_t id)
{
	return one_job(b, id, 2);
}

static int set_paused(bus *b, const char *queue, int paused)
{
	size_t len;
	uint64_t hash;
	int rc = bus__name_check("queue name", queue, &len, &hash);
	if (rc != 0)
		return rc;
	bus_store *s;
	if ((rc = borrow(b, &s)) != 0)
		return rc;
	rc = b->store.ops->set_paused(s, queue, paused);
	bus__store_release(&b->store, s);
	return rc;
}

int bus_queue_pause(bus *b, const char *queue)
{
	return set_paused(b, queue, 1);
}

int bus_queue_resume(bus *b, const char *queue)
{
	return set_paused(b, queue, 0);
}

int bus_job_counts(bus_job_count **out, size_t *n, bus *b)
{
	if (out == NULL || n == NULL)
		return bus__error_set(BUS_EINVAL, "bus_job_counts: NULL output");
	*out = NULL;
	*n = 0;
	bus_store *s;
	int rc = borrow(b, &s);
	if (rc != 0)
		return rc;
	rc = b->store.ops->counts(s, out, n);
	bus__store_release(&b->store, s);
	return rc;
}

/* Prunes in slices, so that one call never holds the store for long. */
#define PRUNE_SLICE 10000

int bus_job_prune(int64_t *deleted, bus *b, int64_t age_s)
{
	if (deleted != NULL)
		*deleted = 0;
	if (age_s < 0 || age_s > BUS_DELAY_MAX_S)
		return bus__error_set(BUS_EINVAL,
				      "bus_job_prune: age_s %lld is outside "
				      "0..%lld (BUS_DELAY_MAX_S)",
				      (long long)age_s,
				      (long long)BUS_DELAY_MAX_S);
	bus_store *s;
	int rc = borrow(b, &s);
	if (rc != 0)
		return rc;
	int64_t total = 0, n;
	do {
		n = 0;
		rc = b->store.ops->prune(s, bus__now(b), age_s * 1000000,
					 PRUNE_SLICE, &n);
		total += n;
	} while (rc == 0 && n == PRUNE_SLICE);
	bus__store_release(&b->store, s);
	if (deleted != NULL)
		*deleted = total;
	return rc;
}

static int queue_info_cmp(const void *a, const void *b)
{
	return strcmp(((const bus_queue_info *)a)->name,
		      ((const bus_queue_info *)b)->name);
}

/* The entry for `name` in out[0..n), added when missing. Lookups are
 * linear: a store has few queues, and the caller sorts at the end. */
static bus_queue_info *queue_info_get(bus_queue_info **out, size_t *n,
				      size_t *cap, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*out)[i].name, name) == 0)
			return &(*out)[i];
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		bus_queue_info *g = realloc(*out, ncap * sizeof *g);
		if (g == NULL)
			return NULL;
		*out = g;
		*cap = ncap;
	}
	bus_queue_info *q = &(*out)[(*n)++];
	memset(q, 0, sizeof *q);
	snprintf(q->name, sizeof q->name, "%s", name);
	return q;
}

int bus_queue_list(bus_queue_info **out, size_t *n, bus *b)
{
	if (out == NULL || n == NULL)
		return bus__error_set(BUS_EINVAL, "bus_queue_list: NULL output");
	*out = NULL;
	*n = 0;
	bus_store *s;
	int rc = borrow(b, &s);
	if (rc != 0)
		return rc;
	const struct bus_store_ops *ops = b->store.ops;
	if (ops->paused_queues == NULL) {
		bus__store_release(&b->store, s);
		return bus__error_set(BUS_EBACKEND,
				      "the %s store cannot tell which queues are "
				      "paused (it lacks the paused_queues "
				      "operation)",
				      ops->name);
	}
	bus_job_count *counts = NULL;
	bus_queue_info *paused = NULL;
	size_t n_counts = 0, n_paused = 0;
	rc = ops->counts(s, &counts, &n_counts);
	if (rc == 0)
		rc = ops->paused_queues(s, &paused, &n_paused);
	bus__store_release(&b->store, s);

	bus_queue_info *list = NULL;
	size_t len = 0, cap = 0;
	for (size_t i = 0; rc == 0 && i < n_counts; i++) {
		bus_queue_info *q = queue_info_get(&list, &len, &cap,
						   counts[i].queue);
		if (q == NULL)
			rc = bus__error_oom();
		else if ((unsigned)counts[i].state < BUS_JOB_STATE_COUNT)
			q->counts[counts[i].state] += counts[i].count;
	}
	for (size_t i = 0; rc == 0 && i < n_paused; i++) {
		bus_queue_info *q = queue_info_get(&list, &len, &cap,
						   paused[i].name);
		if (q == NULL)
			rc = bus__error_oom();
		else
			q->paused = 1;
	}
	free(counts);
	free(paused);
	if (rc != 0) {
		free(list);
		return rc;
	}
	if (len > 1)
		qsort(list, len, sizeof *list, queue_info_cmp);
	*out = list;
	*n = len;
	return 0;
}
