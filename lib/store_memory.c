/*
 * The in-memory store ("memory:"): every operation of bus/backend.h over
 * structures in this process, under one mutex.
 *
 * Jobs live in a hash table by id and in a list in id order (ids only grow,
 * so appending keeps it sorted). Each job sits in at most one heap, chosen
 * by its state:
 *  - pending (available, scheduled, retryable): its queue's `due` heap by
 *    (priority, scheduled_at, id) once claimable, else the queue's `waiting`
 *    heap by (scheduled_at, id). One heap by priority alone would let a job
 *    that is not due yet hide the due jobs of larger priority behind it; so
 *    a claim first moves the waiting jobs whose time has come.
 *  - executing: the store's `leases` heap by (lease_until, id), for expired.
 *  - finished: the store's `finished` heap by (finished_at, id), for prune.
 * The unique index maps unique_key to the one job that holds it.
 *
 * Nothing allocates in the middle of a change: every heap has room for all
 * the jobs that could enter it (a queue's heaps for the jobs of the queue,
 * the store's for all jobs), reserved when jobs are inserted, so claim,
 * finish and the admin writes can only fail before they change anything,
 * and a batch insert reserves everything before it applies the first job.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "store_memory.h"
#include "strmap.h"

#define LIST_LIMIT_DEFAULT 100

#define IS_FINISHED(st) ((BUS_STATE_BIT(st) & BUS_STATES_FINISHED) != 0)
#define IS_PENDING(st)                                                         \
	((st) == BUS_JOB_AVAILABLE || (st) == BUS_JOB_SCHEDULED ||             \
	 (st) == BUS_JOB_RETRYABLE)

/* The strings of a job that have their own allocation (see job_new). */
enum { OWN_PAYLOAD = 1u << 0, OWN_META = 1u << 1, OWN_TAGS = 1u << 2 };

struct mjob;
typedef int (*heap_less_fn)(const struct mjob *a, const struct mjob *b);

/* A binary min-heap of jobs; each job knows its heap and its index. */
struct heap {
	struct mjob **v;
	size_t n, cap;
	heap_less_fn less;
};

struct queue {
	uint64_t hash;
	struct heap due, waiting;
	size_t n_jobs; /* jobs of this queue in any state: its heaps' room */
	size_t batch;  /* scratch for insert: jobs of the batch for here */
	int64_t count[BUS_JOB_STATE_COUNT];
	int paused;
	size_t len;
	char name[];
};

/* A worker's node name, kept for the life of the store so that jobs can
 * point to it as their attempted_by. */
struct node {
	uint64_t hash;
	size_t len;
	char name[];
};

struct mjob {
	int64_t id;
	struct queue *q;
	struct heap *heap; /* NULL, or the heap holding the job at hidx */
	size_t hidx;
	struct mjob *prev, *next; /* id order */
	/* kind, handler and unique_key are in blob; payload, meta and tags
	 * too unless their OWN_* bit says they were malloc'd alone. */
	const char *kind, *handler;
	char *payload, *meta, *tags;
	char *errors;             /* malloc'd; NULL stands for "[]" */
	const char *unique_key;   /* NULL once the job left its states */
	const char *attempted_by; /* a struct node's name, or NULL */
	unsigned owned;
	unsigned unique_states;
	bus_job_state state;
	int priority, attempt, max_attempts;
	int64_t timeout_ms, scheduled_at, inserted_at, attempted_at,
		lease_until, finished_at;
	char blob[];
};

/* Open addressing, linear probing, load <= 1/2, backward-shift deletion. */
struct slot {
	uint64_t hash;
	void *item; /* NULL: free */
};

struct table {
	struct slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t n;
};

typedef int (*table_eq_fn)(const void *item, const void *key);

struct bus_store {
	pthread_mutex_t lock;
	int (*error)(int code, const char *fmt, ...) BUS_PRINTF(2, 3);
	int64_t next_id;
	size_t n_jobs;
	struct table ids;     /* struct mjob by id */
	struct table uniques; /* struct mjob by unique_key */
	struct table queues;  /* struct queue by name (owned) */
	struct table nodes;   /* struct node by name (owned) */
	struct heap leases, finished;
	struct mjob *head, *tail; /* owns the jobs */
};

static int64_t clock_now(int64_t now)
{
	if (now != 0)
		return now;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- Hash tables ---- */

static uint64_t id_hash(int64_t id)
{
	/* splitmix64's finaliser: sequential ids spread over the slots. */
	uint64_t x = (uint64_t)id;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t str_hash(const char *s)
{
	return bus__name_hash(s, strlen(s));
}

static void *table_find(const struct table *t, uint64_t hash, table_eq_fn eq,
			const void *key)
{
	if (t->cap == 0)
		return NULL;
	size_t mask = t->cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		const struct slot *sl = &t->slots[i];
		if (sl->item == NULL)
			return NULL;
		if (sl->hash == hash && eq(sl->item, key))
			return sl->item;
	}
}

/* Adds `item`, which is not in `t`; table_reserve made room. */
static void table_put(struct table *t, uint64_t hash, void *item)
{
	size_t mask = t->cap - 1, i = hash & mask;
	while (t->slots[i].item != NULL)
		i = (i + 1) & mask;
	t->slots[i].hash = hash;
	t->slots[i].item = item;
	t->n++;
}

/* Makes room for `want` items in all. */
static int table_reserve(struct table *t, size_t want)
{
	if (want <= t->cap / 2)
		return 0;
	size_t cap = t->cap ? t->cap : 16;
	while (cap / 2 < want) {
		if (cap > SIZE_MAX / 4 / sizeof(struct slot))
			return BUS_ENOMEM;
		cap *= 2;
	}
	struct table nt = { calloc(cap, sizeof(struct slot)), cap, 0 };
	if (nt.slots == NULL)
		return BUS_ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].item != NULL)
			table_put(&nt, t->slots[i].hash, t->slots[i].item);
	free(t->slots);
	*t = nt;
	return 0;
}

/* Removes `item`, which is in `t` under `hash`. */
static void table_del(struct table *t, uint64_t hash, const void *item)
{
	size_t mask = t->cap - 1, i = hash & mask;
	while (t->slots[i].item != item)
		i = (i + 1) & mask;
	/* Pull back each later entry of the run that may live in the hole:
	 * one whose home slot is not between the hole and itself. */
	for (size_t j = (i + 1) & mask; t->slots[j].item != NULL;
	     j = (j + 1) & mask) {
		size_t home = t->slots[j].hash & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].item = NULL;
	t->n--;
}

static int id_eq(const void *item, const void *key)
{
	return ((const struct mjob *)item)->id == *(const int64_t *)key;
}

static int unique_eq(const void *item, const void *key)
{
	return strcmp(((const struct mjob *)item)->unique_key, key) == 0;
}

static int queue_eq(const void *item, const void *key)
{
	return strcmp(((const struct queue *)item)->name, key) == 0;
}

static int node_eq(const void *item, const void *key)
{
	return strcmp(((const struct node *)item)->name, key) == 0;
}

static struct mjob *job_find(const struct bus_store *s, int64_t id)
{
	return table_find(&s->ids, id_hash(id), id_eq, &id);
}

/* ---- Heaps ---- */

static int due_less(const struct mjob *a, const struct mjob *b)
{
	if (a->priority != b->priority)
		return a->priority < b->priority;
	if (a->scheduled_at != b->scheduled_at)
		return a->scheduled_at < b->scheduled_at;
	return a->id < b->id;
}

static int waiting_less(const struct mjob *a, const struct mjob *b)
{
	if (a->scheduled_at != b->scheduled_at)
		return a->scheduled_at < b->scheduled_at;
	return a->id < b->id;
}

static int lease_less(const struct mjob *a, const struct mjob *b)
{
	if (a->lease_until != b->lease_until)
		return a->lease_until < b->lease_until;
	return a->id < b->id;
}

static int finished_less(const struct mjob *a, const struct mjob *b)
{
	if (a->finished_at != b->finished_at)
		return a->finished_at < b->finished_at;
	return a->id < b->id;
}

static int heap_reserve(struct heap *h, size_t want)
{
	if (want <= h->cap)
		return 0;
	size_t cap = h->cap ? h->cap : 16;
	while (cap < want) {
		if (cap > SIZE_MAX / 2 / sizeof(struct mjob *))
			return BUS_ENOMEM;
		cap *= 2;
	}
	struct mjob **v = realloc(h->v, cap * sizeof *v);
	if (v == NULL)
		return BUS_ENOMEM;
	h->v = v;
	h->cap = cap;
	return 0;
}

static void heap_set(struct heap *h, size_t i, struct mjob *j)
{
	h->v[i] = j;
	j->hidx = i;
}

static void sift_up(struct heap *h, size_t i)
{
	struct mjob *j = h->v[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!h->less(j, h->v[parent]))
			break;
		heap_set(h, i, h->v[parent]);
		i = parent;
	}
	heap_set(h, i, j);
}

static void sift_down(struct heap *h, size_t i)
{
	struct mjob *j = h->v[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->less(h->v[c + 1], h->v[c]))
			c++;
		if (!h->less(h->v[c], j))
			break;
		heap_set(h, i, h->v[c]);
		i = c;
	}
	heap_set(h, i, j);
}

/* Adds `j`; heap_reserve made room. */
static void heap_push(struct heap *h, struct mjob *j)
{
	j->heap = h;
	h->v[h->n] = j;
	sift_up(h, h->n++);
}

static void heap_remove(struct heap *h, struct mjob *j)
{
	size_t i = j->hidx;
	struct mjob *last = h->v[--h->n];
	j->heap = NULL;
	if (i == h->n)
		return;
	heap_set(h, i, last);
	sift_down(h, i);
	sift_up(h, last->hidx);
}

/* Restores the order after `j`'s key changed. */
static void heap_fix(struct heap *h, struct mjob *j)
{
	sift_down(h, j->hidx);
	sift_up(h, j->hidx);
}

/* ---- Queues and nodes ---- */

/* The queue named `name`; with `create`, made when missing (NULL: out of
 * memory). Queues live as long as the store. */
static struct queue *queue_get(struct bus_store *s, const char *name,
			       int create)
{
	uint64_t hash = str_hash(name);
	struct queue *q = table_find(&s->queues, hash, queue_eq, name);
	if (q != NULL || !create)
		return q;
	size_t len = strlen(name);
	if (table_reserve(&s->queues, s->queues.n + 1) != 0 ||
	    (q = calloc(1, sizeof *q + len + 1)) == NULL)
		return NULL;
	q->hash = hash;
	q->due.less = due_less;
	q->waiting.less = waiting_less;
	q->len = len;
	memcpy(q->name, name, len + 1);
	table_put(&s->queues, hash, q);
	return q;
}

/* The store's copy of node name `name` (NULL: out of memory). */
static const char *node_get(struct bus_store *s, const char *name)
{
	uint64_t hash = str_hash(name);
	struct node *nd = table_find(&s->nodes, hash, node_eq, name);
	if (nd != NULL)
		return nd->name;
	size_t len = strlen(name);
	if (table_reserve(&s->nodes, s->nodes.n + 1) != 0 ||
	    (nd = malloc(sizeof *nd + len + 1)) == NULL)
		return NULL;
	nd->hash = hash;
	nd->len = len;
	memcpy(nd->name, name, len + 1);
	table_put(&s->nodes, hash, nd);
	return nd->name;
}

/* ---- Jobs and their states ---- */

static void job_free(struct mjob *j)
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

/* Puts `j` in the heap its state and times call for. */
static void place(struct bus_store *s, struct mjob *j, int64_t now)
{
	struct heap *h;
	if (j->state == BUS_JOB_EXECUTING)
		h = &s->leases;
	else if (IS_FINISHED(j->state))
		h = &s->finished;
	else if (j->state == BUS_JOB_AVAILABLE || j->scheduled_at <= now)
		h = &j->q->due;
	else
		h = &j->q->waiting;
	heap_push(h, j);
}

static void unplace(struct mjob *j)
{
	if (j->heap != NULL)
		heap_remove(j->heap, j);
}

/* The key is never set again: a job that left its states stays out. */
static void unique_drop(struct bus_store *s, struct mjob *j)
{
	if (j->unique_key == NULL)
		return;
	table_del(&s->uniques, str_hash(j->unique_key), j);
	j->unique_key = NULL;
}

/* Moves `j` to `st` with the invariants of backend.h: finished_at, lease,
 * unique key, and the heap and counts that go with the state. */
static void set_state(struct bus_store *s, struct mjob *j, bus_job_state st,
		      int64_t now)
{
	unplace(j);
	j->q->count[j->state]--;
	j->q->count[st]++;
	j->state = st;
	j->finished_at = IS_FINISHED(st) ? now : 0;
	if (st != BUS_JOB_EXECUTING)
		j->lease_until = 0;
	if (!(j->unique_states & BUS_STATE_BIT(st)))
		unique_drop(s, j);
	place(s, j, now);
}

/* Takes `j` out of every index (not freeing it). */
static void job_unlink(struct bus_store *s, struct mjob *j)
{
	unplace(j);
	unique_drop(s, j);
	table_del(&s->ids, id_hash(j->id), j);
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

/* Copies `j` into `r` (all strings malloc'd), with `node` instead of its
 * attempted_by when not NULL. Nothing to free on failure. */
static int row_fill(bus_job *r, const struct mjob *j, const char *node)
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
		job_free(j);
	}
	for (size_t i = 0; i < s->queues.cap; i++) {
		struct queue *q = s->queues.slots[i].item;
		if (q != NULL) {
			free(q->due.v);
			free(q->waiting.v);
			free(q);
		}
	}
	for (size_t i = 0; i < s->nodes.cap; i++)
		free(s->nodes.slots[i].item);
	free(s->ids.slots);
	free(s->uniques.slots);
	free(s->queues.slots);
	free(s->nodes.slots);
	free(s->leases.v);
	free(s->finished.v);
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

/* ---- insert ---- */

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
		job_free(j);
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
			q = queue_get(s, jobs[i].queue, 1);
		if (q == NULL) {
			rc = BUS_ENOMEM;
			break;
		}
		nj[i]->q = q;
		q->batch++;
		keyed += nj[i]->unique_key != NULL;
	}
	if (rc == 0)
		rc = table_reserve(&s->ids, s->n_jobs + n);
	if (rc == 0)
		rc = table_reserve(&s->uniques, s->uniques.n + keyed);
	if (rc == 0)
		rc = heap_reserve(&s->leases, s->n_jobs + n);
	if (rc == 0)
		rc = heap_reserve(&s->finished, s->n_jobs + n);
	for (size_t i = 0; i < n; i++) {
		q = nj[i]->q;
		if (q == NULL || q->batch == 0)
			continue;
		/* A replace may move a job here: n_jobs + batch bounds both. */
		if (rc == 0)
			rc = heap_reserve(&q->due, q->n_jobs + q->batch);
		if (rc == 0)
			rc = heap_reserve(&q->waiting, q->n_jobs + q->batch);
		q->batch = 0;
	}
	return rc;
}

static void job_add(struct bus_store *s, struct mjob *j)
{
	j->id = s->next_id++;
	table_put(&s->ids, id_hash(j->id), j);
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
		table_put(&s->uniques, str_hash(j->unique_key), j);
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
			set_state(s, e, st, now);
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
		e = table_find(&s->uniques, str_hash(n->unique_key), unique_eq,
			       n->unique_key);
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

static int mem_insert(bus_store *s, int64_t now, const bus_store_new_job *jobs,
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
		job_free(nj[i]);
	free(nj);
	if (rc != 0)
		return s->error(rc, "memory store: out of memory inserting "
				    "%zu jobs; none was inserted",
				n);
	return 0;
}

/* ---- claim ---- */

/* Claims up to `limit` due jobs of `q` into `rows`; returns how many. Sets
 * *oom when a row could not be copied (that job stays as it was). */
static size_t claim_queue(struct bus_store *s, struct queue *q, size_t limit,
			  int64_t now, const char *node, int64_t lease_us,
			  bus_job *rows, int *oom)
{
	while (q->waiting.n > 0 && q->waiting.v[0]->scheduled_at <= now) {
		struct mjob *j = q->waiting.v[0];
		heap_remove(&q->waiting, j);
		heap_push(&q->due, j);
	}
	size_t k = 0;
	while (k < limit && q->due.n > 0) {
		struct mjob *j = q->due.v[0];
		/* Moved to due by an earlier claim with a later `now`. */
		if (j->state != BUS_JOB_AVAILABLE && j->scheduled_at > now) {
			heap_remove(&q->due, j);
			heap_push(&q->waiting, j);
			continue;
		}
		bus_job *r = &rows[k];
		if (row_fill(r, j, node) != 0) {
			*oom = 1;
			break;
		}
		j->attempt++;
		j->attempted_at = now;
		j->attempted_by = node;
		j->lease_until = now + lease_us;
		set_state(s, j, BUS_JOB_EXECUTING, now);
		r->state = j->state;
		r->attempt = j->attempt;
		r->attempted_at = j->attempted_at;
		r->lease_until = j->lease_until;
		r->finished_at = j->finished_at;
		if (j->unique_key == NULL) {
			free(r->unique_key);
			r->unique_key = NULL;
		}
		k++;
	}
	return k;
}

static int mem_claim(bus_store *s, int64_t now, const char *node,
		     int64_t lease_us, const bus_store_claim *queues,
		     size_t n_queues, bus_job **out, size_t *n_out)
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
		const struct queue *q = queue_get(s, queues[i].queue, 0);
		if (q == NULL || q->paused)
			continue;
		size_t pending = q->due.n + q->waiting.n;
		cap += queues[i].limit < pending ? queues[i].limit : pending;
	}
	bus_job *rows = cap ? malloc(cap * sizeof *rows) : NULL;
	size_t k = 0;
	int oom = nd == NULL || (cap > 0 && rows == NULL);
	for (size_t i = 0; cap > 0 && !oom && i < n_queues; i++) {
		struct queue *q = queue_get(s, queues[i].queue, 0);
		if (q != NULL && !q->paused)
			k += claim_queue(s, q, queues[i].limit, now, nd,
					 lease_us, rows + k, &oom);
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

static void finish_apply(struct bus_store *s, struct mjob *j,
			 const bus_store_finish *it, int64_t now)
{
	if (it->refund_attempt && j->attempt > 0)
		j->attempt--;
	if ((it->state == BUS_JOB_RETRYABLE || it->state == BUS_JOB_SCHEDULED ||
	     it->state == BUS_JOB_AVAILABLE) &&
	    it->delay_us >= 0)
		j->scheduled_at = now + it->delay_us;
	set_state(s, j, it->state, now);
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
		    (it->only_if_expired && !(j->lease_until < now)))
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
			heap_fix(&s->leases, j);
		}
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
	while (rc == 0 && k < cap && s->leases.n > 0 &&
	       s->leases.v[0]->lease_until < now) {
		taken[k] = s->leases.v[0];
		heap_remove(&s->leases, taken[k++]);
	}
	while (rc == 0 && copied < k)
		if ((rc = row_fill(&rows[copied], taken[copied], NULL)) == 0)
			copied++;
	for (size_t i = 0; i < k; i++)
		heap_push(&s->leases, taken[i]);
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

/* ---- Administration ---- */

static int not_found(bus_store *s, int64_t id)
{
	return s->error(BUS_ENOTFOUND,
			"memory store: job %" PRId64 " not found", id);
}

static int mem_get(bus_store *s, int64_t id, bus_job **out)
{
	*out = NULL;
	bus_job *r = malloc(sizeof *r);
	if (r == NULL)
		return s->error(BUS_ENOMEM, "memory store: out of memory");
	pthread_mutex_lock(&s->lock);
	const struct mjob *j = job_find(s, id);
	int rc = j ? row_fill(r, j, NULL) : BUS_ENOTFOUND;
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

static int mem_list(bus_store *s, const bus_job_filter *filter, bus_job **out,
		    size_t *n_out)
{
	static const bus_job_filter all = BUS_JOB_FILTER_INIT;
	const bus_job_filter *f = filter ? filter : &all;
	size_t limit = f->limit ? f->limit : LIST_LIMIT_DEFAULT;
	*out = NULL;
	*n_out = 0;
	pthread_mutex_lock(&s->lock);
	const struct queue *q = f->queue ? queue_get(s, f->queue, 0) : NULL;
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
		if ((rc = row_fill(&rows[k], j, NULL)) != 0)
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

static int mem_cancel(bus_store *s, int64_t now, int64_t id)
{
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	struct mjob *j = job_find(s, id);
	bus_job_state st = j ? j->state : BUS_JOB_AVAILABLE;
	if (j != NULL && !IS_FINISHED(st))
		set_state(s, j, BUS_JOB_CANCELLED, now);
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

static int mem_retry(bus_store *s, int64_t now, int64_t id)
{
	now = clock_now(now);
	pthread_mutex_lock(&s->lock);
	struct mjob *j = job_find(s, id);
	int executing = j != NULL && j->state == BUS_JOB_EXECUTING;
	if (j != NULL && !executing) {
		j->scheduled_at = now;
		if (j->attempt >= j->max_attempts)
			j->max_attempts = j->attempt + 1;
		set_state(s, j, BUS_JOB_AVAILABLE, now);
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

static int mem_remove(bus_store *s, int64_t id)
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
	job_free(j);
	return 0;
}

static int mem_set_paused(bus_store *s, const char *queue, int paused)
{
	if (queue == NULL)
		return s->error(BUS_EINVAL,
				"memory store: set_paused: queue is NULL");
	pthread_mutex_lock(&s->lock);
	/* Pausing a queue with no job yet makes it, so the pause holds for
	 * the jobs that come later. */
	struct queue *q = queue_get(s, queue, 1);
	if (q != NULL)
		q->paused = paused != 0;
	pthread_mutex_unlock(&s->lock);
	if (q == NULL)
		return s->error(BUS_ENOMEM, "memory store: out of memory "
					    "pausing queue '%.200s'",
				queue);
	return 0;
}

static int count_cmp(const void *a, const void *b)
{
	const bus_job_count *x = a, *y = b;
	int c = strcmp(x->queue, y->queue);
	return c ? c : (int)x->state - (int)y->state;
}

static int mem_counts(bus_store *s, bus_job_count **out, size_t *n_out)
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

static int mem_prune(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		     int64_t *deleted)
{
	now = clock_now(now);
	int64_t before = now - age_us;
	struct mjob *doomed = NULL;
	int64_t d = 0;
	pthread_mutex_lock(&s->lock);
	while ((size_t)d < limit && s->finished.n > 0 &&
	       s->finished.v[0]->finished_at < before) {
		struct mjob *j = s->finished.v[0];
		job_unlink(s, j);
		j->next = doomed;
		doomed = j;
		d++;
	}
	pthread_mutex_unlock(&s->lock);
	while (doomed != NULL) {
		struct mjob *next = doomed->next;
		job_free(doomed);
		doomed = next;
	}
	if (deleted != NULL)
		*deleted = d;
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
	.insert = mem_insert,
	.claim = mem_claim,
	.finish = mem_finish,
	.extend = mem_extend,
	.expired = mem_expired,
	.get = mem_get,
	.list = mem_list,
	.cancel = mem_cancel,
	.retry = mem_retry,
	.remove = mem_remove,
	.set_paused = mem_set_paused,
	.counts = mem_counts,
	.prune = mem_prune,
};
