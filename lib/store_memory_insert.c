/*
 * The in-memory store's insert: copies the new jobs outside the lock, then
 * reserves room for the whole batch and links it in, resolving each unique
 * key conflict as a duplicate or a replace (see store_memory_impl.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memindex.h"
#include "store_memory_impl.h"

static int unique_eq(const void *item, const void *key)
{
	return strcmp(((const struct mjob *)item)->unique_key, key) == 0;
}

static int new_job_check(bus_store *s, const bus_store_new_job *nj, size_t i)
{
	const char *missing = nj->kind == NULL      ? "kind"
			      : nj->handler == NULL ? "handler"
			      : nj->queue == NULL   ? "queue"
			      : nj->payload == NULL ? "payload"
						    : NULL;
	if (missing != NULL)
		return s->error(BUS_EINVAL,
				"memory store: insert: job %zu has no %s", i,
				missing);
	if (nj->unique_key != NULL && nj->unique_key[0] == '\0')
		return s->error(BUS_EINVAL,
				"memory store: insert: job %zu has an empty "
				"unique key",
				i);
	return 0;
}

/* The strings a replace could hand from this new job to an existing one:
 * they get allocations of their own, since the new job is freed after the
 * insert. The others share the job's single allocation. */
static unsigned replace_strings(const bus_store_new_job *nj)
{
	if (nj->unique_key == NULL || nj->replace == NULL)
		return 0;
	unsigned any = 0;
	for (int st = 0; st < BUS_JOB_STATE_COUNT; st++)
		any |= nj->replace[st];
	return (any & BUS_REPLACE_PAYLOAD ? OWN_PAYLOAD : 0) |
	       (any & BUS_REPLACE_META ? OWN_META : 0) |
	       (any & BUS_REPLACE_TAGS ? OWN_TAGS : 0);
}

/* Copies `len` bytes of `src` to *p (or alone with `own`). */
static char *put_str(char **p, const char *src, size_t len, int own)
{
	char *d = own ? malloc(len) : *p;
	if (d == NULL)
		return NULL;
	memcpy(d, src, len);
	if (!own)
		*p += len;
	return d;
}

/* A job as `nj` asks, not yet in the store (no id, no queue). */
static int job_new(struct mjob **out, const bus_store_new_job *nj,
		   int64_t now)
{
	const char *meta = nj->meta ? nj->meta : "{}";
	const char *tags = nj->tags ? nj->tags : "[]";
	unsigned own = replace_strings(nj);
	size_t lk = strlen(nj->kind) + 1, lh = strlen(nj->handler) + 1;
	size_t lp = strlen(nj->payload) + 1, lm = strlen(meta) + 1;
	size_t lt = strlen(tags) + 1;
	size_t lu = nj->unique_key ? strlen(nj->unique_key) + 1 : 0;
	size_t size = sizeof(struct mjob) + lk + lh + lu +
		      (own & OWN_PAYLOAD ? 0 : lp) + (own & OWN_META ? 0 : lm) +
		      (own & OWN_TAGS ? 0 : lt);
	struct mjob *j = malloc(size);
	if (j == NULL)
		return BUS_ENOMEM;
	memset(j, 0, sizeof *j);
	char *p = j->blob;
	j->kind = put_str(&p, nj->kind, lk, 0);
	j->handler = put_str(&p, nj->handler, lh, 0);
	j->unique_key = lu ? put_str(&p, nj->unique_key, lu, 0) : NULL;
	j->payload = put_str(&p, nj->payload, lp, own & OWN_PAYLOAD);
	j->meta = put_str(&p, meta, lm, own & OWN_META);
	j->tags = put_str(&p, tags, lt, own & OWN_TAGS);
	j->owned = own;
	if (j->payload == NULL || j->meta == NULL || j->tags == NULL) {
		bus__memory_job_free(j);
		return BUS_ENOMEM;
	}
	j->unique_states = nj->unique_states;
	j->priority = nj->priority;
	j->max_attempts = nj->max_attempts;
	j->timeout_ms = nj->timeout_ms;
	j->scheduled_at =
		nj->scheduled_at ? nj->scheduled_at : now + nj->delay_us;
	j->inserted_at = now;
	j->state = j->scheduled_at <= now ? BUS_JOB_AVAILABLE
					  : BUS_JOB_SCHEDULED;
	*out = j;
	return 0;
}

/* Finds the queues of the batch and makes room in every table and heap the
 * batch can grow, so that applying it cannot fail. */
static int insert_reserve(struct bus_store *s, const bus_store_new_job *jobs,
			  struct mjob **nj, size_t n)
{
	struct queue *q = NULL;
	size_t keyed = 0;
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		/* Batches mostly go to one queue: skip the lookup then. */
		if (q == NULL || strcmp(q->name, jobs[i].queue) != 0)
			q = bus__memory_queue_get(s, jobs[i].queue, 1);
		if (q == NULL) {
			rc = BUS_ENOMEM;
			break;
		}
		nj[i]->q = q;
		q->batch++;
		keyed += nj[i]->unique_key != NULL;
	}
	if (rc == 0)
		rc = bus__table_reserve(&s->ids, s->n_jobs + n);
	if (rc == 0)
		rc = bus__table_reserve(&s->uniques, s->uniques.n + keyed);
	if (rc == 0)
		rc = bus__heap_reserve(&s->leases, s->n_jobs + n);
	if (rc == 0)
		rc = bus__heap_reserve(&s->finished, s->n_jobs + n);
	for (size_t i = 0; i < n; i++) {
		q = nj[i]->q;
		if (q == NULL || q->batch == 0)
			continue;
		/* A replace may move a job here: n_jobs + batch bounds both. */
		if (rc == 0)
			rc = bus__heap_reserve(&q->due, q->n_jobs + q->batch);
		if (rc == 0)
			rc = bus__heap_reserve(&q->waiting,
					       q->n_jobs + q->batch);
		q->batch = 0;
	}
	return rc;
}

static void job_add(struct bus_store *s, struct mjob *j)
{
	j->id = s->next_id++;
	bus__table_put(&s->ids, id_hash(j->id), j);
	j->prev = s->tail;
	if (s->tail != NULL)
		s->tail->next = j;
	else
		s->head = j;
	s->tail = j;
	s->n_jobs++;
	j->q->n_jobs++;
	j->q->count[j->state]++;
	if (j->unique_key != NULL)
		bus__table_put(&s->uniques, str_hash(j->unique_key), j);
	place(s, j, j->inserted_at);
}

/* Swaps one string of `e` and `n` (with the ownership bit): `n`, freed
 * after the insert, then takes the old string of `e` along. */
static void swap_str(struct mjob *e, struct mjob *n, char **fe, char **fn,
		     unsigned bit)
{
	char *t = *fe;
	*fe = *fn;
	*fn = t;
	unsigned oe = e->owned & bit, on = n->owned & bit;
	e->owned = (e->owned & ~bit) | on;
	n->owned = (n->owned & ~bit) | oe;
}

/* Overwrites the fields of `e` that `mask` allows with those of `n`. */
static void replace_job(struct bus_store *s, struct mjob *e, struct mjob *n,
			unsigned mask, int64_t now)
{
	int pending = IS_PENDING(e->state);
	if (pending)
		unplace(e);
	if (mask & BUS_REPLACE_PAYLOAD)
		swap_str(e, n, &e->payload, &n->payload, OWN_PAYLOAD);
	if (mask & BUS_REPLACE_META)
		swap_str(e, n, &e->meta, &n->meta, OWN_META);
	if (mask & BUS_REPLACE_TAGS)
		swap_str(e, n, &e->tags, &n->tags, OWN_TAGS);
	if (mask & BUS_REPLACE_PRIORITY)
		e->priority = n->priority;
	if (mask & BUS_REPLACE_MAX_ATTEMPTS)
		e->max_attempts = n->max_attempts;
	if (mask & BUS_REPLACE_TIMEOUT)
		e->timeout_ms = n->timeout_ms;
	if ((mask & BUS_REPLACE_QUEUE) && n->q != e->q) {
		e->q->count[e->state]--;
		e->q->n_jobs--;
		n->q->count[e->state]++;
		n->q->n_jobs++;
		e->q = n->q;
	}
	if (mask & BUS_REPLACE_SCHEDULED_AT) {
		e->scheduled_at = n->scheduled_at;
		bus_job_state st = e->scheduled_at <= now ? BUS_JOB_AVAILABLE
							  : BUS_JOB_SCHEDULED;
		if ((e->state == BUS_JOB_AVAILABLE ||
		     e->state == BUS_JOB_SCHEDULED) &&
		    st != e->state) {
			bus__memory_set_state(s, e, st, now);
			return;
		}
	}
	if (pending)
		place(s, e, now);
}

/* Applies one new job: inserts it (the store takes *pj, set to NULL), or
 * resolves its conflict with the job holding its key. */
static void insert_one(struct bus_store *s, const bus_store_new_job *in,
		       struct mjob **pj, int64_t now, bus_enqueue_result *res)
{
	struct mjob *n = *pj, *e = NULL;
	/* A job that would not hold its key in its first state neither
	 * conflicts nor enters the index. */
	if (n->unique_key != NULL &&
	    !(n->unique_states & BUS_STATE_BIT(n->state)))
		n->unique_key = NULL;
	if (n->unique_key != NULL)
		e = bus__table_find(&s->uniques, str_hash(n->unique_key),
				    unique_eq, n->unique_key);
	if (e == NULL) {
		job_add(s, n);
		*pj = NULL;
		res->id = n->id;
		res->status = BUS_INSERTED;
		return;
	}
	unsigned mask = in->replace ? in->replace[e->state] & BUS_REPLACE_ALL
				    : 0;
	res->id = e->id;
	res->status = mask ? BUS_REPLACED : BUS_DUPLICATE;
	if (mask != 0)
		replace_job(s, e, n, mask, now);
}

int bus__memory_insert(bus_store *s, int64_t now, const bus_store_new_job *jobs,
		       size_t n, bus_enqueue_result *results)
{
	if (n == 0)
		return 0;
	if (jobs == NULL || results == NULL)
		return s->error(BUS_EINVAL, "memory store: insert: jobs or "
					    "results is NULL");
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = new_job_check(s, &jobs[i], i);
	if (rc != 0)
		return rc;
	now = clock_now(now);
	struct mjob **nj = calloc(n, sizeof *nj);
	if (nj == NULL)
		return s->error(BUS_ENOMEM, "memory store: out of memory "
					    "inserting %zu jobs",
				n);
	/* Copy the jobs before taking the lock: the critical section only
	 * links them in. */
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = job_new(&nj[i], &jobs[i], now);
	if (rc == 0) {
		pthread_mutex_lock(&s->lock);
		rc = insert_reserve(s, jobs, nj, n);
		for (size_t i = 0; rc == 0 && i < n; i++)
			insert_one(s, &jobs[i], &nj[i], now, &results[i]);
		pthread_mutex_unlock(&s->lock);
	}
	/* What is left: duplicates, replacements, or all on failure. */
	for (size_t i = 0; i < n; i++)
		bus__memory_job_free(nj[i]);
	free(nj);
	if (rc != 0)
		return s->error(rc, "memory store: out of memory inserting "
				    "%zu jobs; none was inserted",
				n);
	return 0;
}
