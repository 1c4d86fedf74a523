/*
 * The in-memory store ("memory:"): every operation of bus/backend.h over
 * structures in this process, under one mutex (store_memory_impl.h has the
 * layout). This file holds the store itself, its queues, nodes and job
 * states, and the worker's side: claim, finish, extend, expired. Inserting
 * is in store_memory_insert.c, the admin operations in store_memory_admin.c.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "memindex.h"
#include "store_memory.h"
#include "store_memory_impl.h"

/* ---- Heap orders ---- */

static int due_less(const struct bus__heap_node *na,
		    const struct bus__heap_node *nb)
{
	const struct mjob *a = mjob_of(na), *b = mjob_of(nb);
	if (a->priority != b->priority)
		return a->priority < b->priority;
	if (a->scheduled_at != b->scheduled_at)
		return a->scheduled_at < b->scheduled_at;
	return a->id < b->id;
}

static int waiting_less(const struct bus__heap_node *na,
			const struct bus__heap_node *nb)
{
	const struct mjob *a = mjob_of(na), *b = mjob_of(nb);
	if (a->scheduled_at != b->scheduled_at)
		return a->scheduled_at < b->scheduled_at;
	return a->id < b->id;
}

static int lease_less(const struct bus__heap_node *na,
		      const struct bus__heap_node *nb)
{
	const struct mjob *a = mjob_of(na), *b = mjob_of(nb);
	if (a->lease_until != b->lease_until)
		return a->lease_until < b->lease_until;
	return a->id < b->id;
}

static int finished_less(const struct bus__heap_node *na,
			 const struct bus__heap_node *nb)
{
	const struct mjob *a = mjob_of(na), *b = mjob_of(nb);
	if (a->finished_at != b->finished_at)
		return a->finished_at < b->finished_at;
	return a->id < b->id;
}

/* ---- Queues and nodes ---- */

static int queue_eq(const void *item, const void *key)
{
	return strcmp(((const struct queue *)item)->name, key) == 0;
}

static int node_eq(const void *item, const void *key)
{
	return strcmp(((const struct node *)item)->name, key) == 0;
}

struct queue *bus__memory_queue_get(struct bus_store *s, const char *name,
				    int create)
{
	uint64_t hash = str_hash(name);
	struct queue *q = bus__table_find(&s->queues, hash, queue_eq, name);
	if (q != NULL || !create)
		return q;
	size_t len = strlen(name);
	if (bus__table_reserve(&s->queues, s->queues.n + 1) != 0 ||
	    (q = calloc(1, sizeof *q + len + 1)) == NULL)
		return NULL;
	q->hash = hash;
	q->due.less = due_less;
	q->waiting.less = waiting_less;
	q->len = len;
	memcpy(q->name, name, len + 1);
	bus__table_put(&s->queues, hash, q);
	return q;
}

/* The store's copy of node name `name` (NULL: out of memory). */
static const char *node_get(struct bus_store *s, const char *name)
{
	uint64_t hash = str_hash(name);
	struct node *nd = bus__table_find(&s->nodes, hash, node_eq, name);
	if (nd != NULL)
		return nd->name;
	size_t len = strlen(name);
	if (bus__table_reserve(&s->nodes, s->nodes.n + 1) != 0 ||
	    (nd = malloc(sizeof *nd + len + 1)) == NULL)
		return NULL;
	nd->hash = hash;
	nd->len = len;
	memcpy(nd->name, name, len + 1);
	bus__table_put(&s->nodes, hash, nd);
	return nd->name;
}

/* ---- Jobs and their states ---- */

void bus__memory_job_free(struct mjob *j)
{
	if (j == NULL)
		return;
	if (j->owned & OWN_PAYLOAD)
		free(j->payload);
	if (j->owned & OWN_META)
		free(j->meta);
	if (j->owned & OWN_TAGS)
		free(j->tags);
	free(j->errors);
	free(j);
}

void bus__memory_set_state(struct bus_store *s, struct mjob *j,
			   bus_job_state st, int64_t now)
{
	unplace(j);
	j->q->count[j->state]--;
	j->q->count[st]++;
	j->state = st;
	j->finished_at = IS_FINISHED(st) ? now : 0;
	j->cancel_requested_at = 0;
	if (st != BUS_JOB_EXECUTING)
		j->lease_until = 0;
	if (!(j->unique_states & BUS_STATE_BIT(st)))
		unique_drop(s, j);
	place(s, j, now);
}

/* ---- Rows for the core ---- */

static char *dup_str(const char *src, int *ok)
{
	if (src == NULL)
		return NULL;
	char *d = strdup(src);
	if (d == NULL)
		*ok = 0;
	return d;
}

int bus__memory_row_fill(bus_job *r, const struct mjob *j, const char *node)
{
	int ok = 1;
	r->id = j->id;
	r->kind = dup_str(j->kind, &ok);
	r->handler = dup_str(j->handler, &ok);
	r->queue = dup_str(j->q->name, &ok);
	r->priority = j->priority;
	r->payload = dup_str(j->payload, &ok);
	r->meta = dup_str(j->meta, &ok);
	r->tags = dup_str(j->tags, &ok);
	r->state = j->state;
	r->attempt = j->attempt;
	r->max_attempts = j->max_attempts;
	r->timeout_ms = j->timeout_ms;
	r->scheduled_at = j->scheduled_at;
	r->inserted_at = j->inserted_at;
	r->attempted_at = j->attempted_at;
	r->lease_until = j->lease_until;
	r->finished_at = j->finished_at;
	r->attempted_by = dup_str(node ? node : j->attempted_by, &ok);
	r->errors = dup_str(j->errors ? j->errors : "[]", &ok);
	r->unique_key = dup_str(j->unique_key, &ok);
	r->unique_states = j->unique_states;
	r->cancel_requested_at = j->cancel_requested_at;
	r->started_at = j->started_at;
	if (ok)
		return 0;
	/* bus_job_list_free with n = 1 would free `r` itself. */
	free(r->kind);
	free(r->handler);
	free(r->queue);
	free(r->payload);
	free(r->meta);
	free(r->tags);
	free(r->attempted_by);
	free(r->errors);
	free(r->unique_key);
	return BUS_ENOMEM;
}

/* ---- open, close, schema ---- */

static int mem_open(bus_store **out, const char *url, const bus_store_env *env)
{
	int (*error)(int, const char *, ...) =
		env != NULL && env->error != NULL ? env->error
						  : bus__error_set;
	*out = NULL;
	/* The URL is not repeated: whatever follows the scheme might be a
	 * password meant for another store. */
	if (url == NULL ||
	    (strcmp(url, "memory:") != 0 && strcmp(url, "memory://") != 0))
		return error(BUS_EINVAL,
			     "memory store: the URL must be 'memory:' (or "
			     "'memory://') with nothing after the scheme");
	struct bus_store *s = calloc(1, sizeof *s);
	if (s == NULL)
		return error(BUS_ENOMEM, "memory store: out of memory opening "
					 "the store");
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return error(BUS_ERROR, "memory store: cannot create its lock");
	}
	s->error = error;
	s->next_id = 1;
	s->leases.less = lease_less;
	s->finished.less = finished_less;
	*out = s;
	return 0;
}

static void mem_close(bus_store *s)
{
	if (s == NULL)
		return;
	for (struct mjob *j = s->head, *next; j != NULL; j = next) {
		next = j->next;
		bus__memory_job_free(j);
	}
	for (size_t i = 0; i < s->queues.cap; i++) {
		struct queue *q = s->queues.slots[i].item;
		if (q != NULL) {
			bus__heap_fini(&q->due);
			bus__heap_fini(&q->waiting);
			free(q);
		}
	}
	for (size_t i = 0; i < s->nodes.cap; i++)
		free(s->nodes.slots[i].item);
	bus__table_fini(&s->ids);
	bus__table_fini(&s->uniques);
	bus__table_fini(&s->queues);
	bus__table_fini(&s->nodes);
	bus__heap_fini(&s->leases);
	bus__heap_fini(&s->finished);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int mem_schema_check(bus_store *s)
{
	return 0; /* nothing is stored outside this process */
}

static int mem_migrate(bus_store *s)
{
	return 0;
}

/* ---- claim ---- */

/* Claims up to `limit` due jobs of `q` into `rows`; returns how many. Sets
 * *oom when a row could not be copied (that job stays as it was). */
static size_t claim_queue(struct bus_store *s, struct queue *q, size_t limit,
			  int64_t now, const char *node, int64_t lease_us,
			  int start, bus_job *rows, int *oom)
{
	struct bus__heap_node *top;
	while ((top = bus__heap_top(&q->waiting)) != NULL &&
	       mjob_of(top)->scheduled_at <= now) {
		bus__heap_remove(&q->waiting, top);
		bus__heap_push(&q->due, top);
	}
	size_t k = 0;
	while (k < limit && (top = bus__heap_top(&q->due)) != NULL) {
		struct mjob *j = mjob_of(top);
		/* Moved to due by an earlier claim with a later `now`. */
		if (j->state != BUS_JOB_AVAILABLE && j->scheduled_at > now) {
			bus__heap_remove(&q->due, top);
			bus__heap_push(&q->waiting, top);
			continue;
		}
		bus_job *r = &rows[k];
		if (bus__memory_row_fill(r, j, node) != 0) {
			*oom = 1;
			break;
		}
		j->attempt++;
		j->attempted_at = now;
		j->attempted_by = node;
		j->lease_until = now + lease_us;
		j->started_at = start ? now : 0;
		bus__memory_set_state(s, j, BUS_JOB_EXECUTING, now);
		r->state = j->state;
		r->attempt = j->attempt;
		r->attempted_at = j->attempted_at;
		r->lease_until = j->lease_until;
		r->finished_at = j->finished_at;
		r->started_at = j->started_at;
		if (j->unique_key == NULL) {
			free(r->unique_key);
			r->unique_key = NULL;
		}
		k++;
	}
	return k;
}

static int mem_claim_start(bus_store *s, int64_t now, const char *node,
			   int64_t lease_us, const bus_store_claim *queues,
			   const unsigned char *start, size_t n_queues,
			   bus_job **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (node == NULL || (n_queues > 0 && queues == NULL))
		return s->error(BUS_EINVAL,
				"memory store: claim: node or queues is NULL");
	for (size_t i = 0; i < n_queues; i++)
		if (queues[i].queue == NULL)
			return s->error(BUS_EINVAL,
					"memory store: claim: queue %zu is "
					"NULL",
					i);
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	const char *nd = node_get(s, node);
	size_t cap = 0;
	for (size_t i = 0; nd != NULL && i < n_queues; i++) {
		const struct queue *q =
			bus__memory_queue_get(s, queues[i].queue, 0);
		if (q == NULL || q->paused)
			continue;
		size_t pending = q->due.n + q->waiting.n;
		cap += queues[i].limit < pending ? queues[i].limit : pending;
	}
	bus_job *rows = cap ? malloc(cap * sizeof *rows) : NULL;
	size_t k = 0;
	int oom = nd == NULL || (cap > 0 && rows == NULL);
	for (size_t i = 0; cap > 0 && !oom && i < n_queues; i++) {
		struct queue *q = bus__memory_queue_get(s, queues[i].queue, 0);
		if (q != NULL && !q->paused)
			k += claim_queue(s, q, queues[i].limit, now, nd,
					 lease_us, start != NULL && start[i],
					 rows + k, &oom);
	}
	pthread_mutex_unlock(&s->lock);
	/* A partial claim is returned as it is: its jobs are executing. */
	if (k == 0) {
		free(rows);
		if (oom)
			return s->error(BUS_ENOMEM, "memory store: out of "
						    "memory claiming jobs");
		return 0;
	}
	*out = rows;
	*n_out = k;
	return 0;
}

static int mem_claim(bus_store *s, int64_t now, const char *node,
		     int64_t lease_us, const bus_store_claim *queues,
		     size_t n_queues, bus_job **out, size_t *n_out)
{
	return mem_claim_start(s, now, node, lease_us, queues, NULL, n_queues,
			       out, n_out);
}

/* ---- finish, extend, expired ---- */

/* The errors entry for a failed attempt, as JSON text (malloc'd). */
static char *error_entry(int attempt, int64_t at, const char *error)
{
	cJSON *str = cJSON_CreateString(error);
	char *quoted = str ? cJSON_PrintUnformatted(str) : NULL;
	cJSON_Delete(str);
	if (quoted == NULL)
		return NULL;
	char *entry;
	if (asprintf(&entry, "{\"attempt\":%d,\"at\":%" PRId64 ",\"error\":%s}",
		     attempt, at, quoted) < 0)
		entry = NULL;
	cJSON_free(quoted);
	return entry;
}

static int errors_append(struct mjob *j, const char *entry)
{
	const char *old = j->errors ? j->errors : "[]";
	size_t lo = strlen(old), le = strlen(entry);
	char *e = malloc(lo + le + 2);
	if (e == NULL)
		return BUS_ENOMEM;
	/* "[...]" -> "[...,entry]"; "[]" -> "[entry]". */
	memcpy(e, old, lo - 1);
	size_t at = lo - 1;
	if (lo > 2)
		e[at++] = ',';
	memcpy(e + at, entry, le);
	at += le;
	e[at++] = ']';
	e[at] = '\0';
	free(j->errors);
	j->errors = e;
	return 0;
}

/* Whether `j` is still the attempt `node` ran. */
static int holds(const struct mjob *j, const char *node, int attempt)
{
	return j != NULL && j->state == BUS_JOB_EXECUTING &&
	       j->attempted_by != NULL && strcmp(j->attempted_by, node) == 0 &&
	       j->attempt == attempt;
}

static int finish_check(bus_store *s, const bus_store_finish *it, size_t i)
{
	if (it->node == NULL)
		return s->error(BUS_EINVAL,
				"memory store: finish: item %zu has no node",
				i);
	if (it->only_if_expired < 0 ||
	    it->only_if_expired > BUS_FINISH_IF_EXPIRED_UNSTARTED)
		return s->error(BUS_EINVAL,
				"memory store: finish: item %zu (job %" PRId64
				"): only_if_expired %d is unknown",
				i, it->id, it->only_if_expired);
	switch (it->state) {
	case BUS_JOB_COMPLETED:
	case BUS_JOB_RETRYABLE:
	case BUS_JOB_DISCARDED:
	case BUS_JOB_CANCELLED:
	case BUS_JOB_SCHEDULED:
	case BUS_JOB_AVAILABLE: return 0;
	default:
		return s->error(BUS_EINVAL,
				"memory store: finish: item %zu (job %" PRId64
				"): state %d is not an outcome",
				i, it->id, (int)it->state);
	}
}

/* now + delay, saturating (the core bounds delays; this is the last line
 * of defence against a wrap into the past). */
static int64_t time_after(int64_t now, int64_t delay_us)
{
	return delay_us > INT64_MAX - now ? INT64_MAX : now + delay_us;
}

static void finish_apply(struct bus_store *s, struct mjob *j,
			 const bus_store_finish *it, int64_t now)
{
	bus_job_state st = it->state;
	/* A pending cancel request ends every outcome but a success. */
	if (j->cancel_requested_at != 0 && st != BUS_JOB_COMPLETED)
		st = BUS_JOB_CANCELLED;
	if (it->refund_attempt && j->attempt > 0)
		j->attempt--;
	if ((st == BUS_JOB_RETRYABLE || st == BUS_JOB_SCHEDULED ||
	     st == BUS_JOB_AVAILABLE) &&
	    it->delay_us >= 0)
		j->scheduled_at = time_after(now, it->delay_us);
	bus__memory_set_state(s, j, st, now);
}

static void entries_free(char **entries, size_t n)
{
	for (size_t i = 0; entries != NULL && i < n; i++)
		free(entries[i]);
	free(entries);
}

static int mem_finish(bus_store *s, int64_t now, const bus_store_finish *items,
		      size_t n, unsigned char *applied)
{
	if (n == 0)
		return 0;
	if (items == NULL || applied == NULL)
		return s->error(BUS_EINVAL,
				"memory store: finish: items or applied is "
				"NULL");
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = finish_check(s, &items[i], i);
	if (rc != 0)
		return rc;
	now = clock_now(now);
	memset(applied, 0, n);
	/* The entries are built before the lock is taken. */
	char **entries = NULL;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (items[i].error == NULL)
			continue;
		if (entries == NULL &&
		    (entries = calloc(n, sizeof *entries)) == NULL)
			rc = BUS_ENOMEM;
		else if ((entries[i] = error_entry(items[i].attempt, now,
						   items[i].error)) == NULL)
			rc = BUS_ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const bus_store_finish *it = &items[i];
		struct mjob *j = job_find(s, it->id);
		if (!holds(j, it->node, it->attempt) ||
		    (it->only_if_expired && !(j->lease_until < now)) ||
		    (it->only_if_expired == BUS_FINISH_IF_EXPIRED_UNSTARTED &&
		     j->started_at != 0))
			continue;
		if (entries != NULL && entries[i] != NULL &&
		    (rc = errors_append(j, entries[i])) != 0)
			break;
		finish_apply(s, j, it, now);
		applied[i] = 1;
	}
	pthread_mutex_unlock(&s->lock);
	entries_free(entries, n);
	if (rc != 0)
		return s->error(rc, "memory store: out of memory recording "
				    "job outcomes (those marked applied were)");
	return 0;
}

static int mem_extend(bus_store *s, int64_t now, const char *node,
		      int64_t lease_us, const int64_t *ids, const int *attempts,
		      size_t n, unsigned char *held)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || held == NULL)
		return s->error(BUS_EINVAL,
				"memory store: extend: node, ids, attempts or "
				"held is NULL");
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		struct mjob *j = job_find(s, ids[i]);
		held[i] = (unsigned char)holds(j, node, attempts[i]);
		if (held[i]) {
			j->lease_until = now + lease_us;
			bus__heap_fix(&s->leases, &j->hn);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int mem_start(bus_store *s, int64_t now, const char *node,
		     const int64_t *ids, const int *attempts, size_t n,
		     unsigned char *held)
{
	if (n == 0)
		return 0;
	if (node == NULL || ids == NULL || attempts == NULL || held == NULL)
		return s->error(BUS_EINVAL,
				"memory store: start: node, ids, attempts or "
				"held is NULL");
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		struct mjob *j = job_find(s, ids[i]);
		held[i] = (unsigned char)holds(j, node, attempts[i]);
		if (held[i] && j->started_at == 0)
			j->started_at = now;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int mem_expired(bus_store *s, int64_t now, size_t limit, bus_job **out,
		       size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	size_t cap = limit < s->leases.n ? limit : s->leases.n;
	if (cap == 0) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	struct mjob **taken = malloc(cap * sizeof *taken);
	bus_job *rows = malloc(cap * sizeof *rows);
	size_t k = 0, copied = 0;
	int rc = taken && rows ? 0 : BUS_ENOMEM;
	/* Pop the oldest leases to read them in order, then put them back. */
	struct bus__heap_node *top;
	while (rc == 0 && k < cap &&
	       (top = bus__heap_top(&s->leases)) != NULL &&
	       mjob_of(top)->lease_until < now) {
		taken[k++] = mjob_of(top);
		bus__heap_remove(&s->leases, top);
	}
	while (rc == 0 && copied < k)
		if ((rc = bus__memory_row_fill(&rows[copied], taken[copied],
					       NULL)) == 0)
			copied++;
	for (size_t i = 0; i < k; i++)
		bus__heap_push(&s->leases, &taken[i]->hn);
	pthread_mutex_unlock(&s->lock);
	free(taken);
	if (rc != 0) {
		bus_job_list_free(rows, copied);
		return s->error(rc, "memory store: out of memory reading "
				    "expired leases");
	}
	if (k == 0) {
		free(rows);
		return 0;
	}
	*out = rows;
	*n_out = k;
	return 0;
}

static int mem_now(bus_store *s, int64_t *out)
{
	(void)s;
	*out = clock_now(0);
	return 0;
}

const struct bus_store_ops bus__memory_store_ops = {
	.abi_version = BUS_STORE_ABI_VERSION,
	.name = "memory",
	.flags = BUS_STORE_SHARED,
	.open = mem_open,
	.close = mem_close,
	.schema_check = mem_schema_check,
	.migrate = mem_migrate,
	.insert = bus__memory_insert,
	.claim = mem_claim,
	.finish = mem_finish,
	.extend = mem_extend,
	.expired = mem_expired,
	.get = bus__memory_get,
	.list = bus__memory_list,
	.cancel = bus__memory_cancel,
	.retry = bus__memory_retry,
	.remove = bus__memory_remove,
	.set_paused = bus__memory_set_paused,
	.paused_queues = bus__memory_paused_queues,
	.counts = bus__memory_counts,
	.prune = bus__memory_prune,
	.cancel_pending = bus__memory_cancel_pending,
	/* No transactions (insert_tx), and no push wake-up: an insert wakes
	 * the workers of its own process directly (bus__wake_workers), the
	 * only ones that can see it. */
	.insert_tx = NULL,
	.listen = NULL,
	.wait_jobs = NULL,
	.now = mem_now,
	.start = mem_start,
	.claim_start = mem_claim_start,
};
