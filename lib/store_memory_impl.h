/*
 * The in-memory store's insides, shared by its files: store_memory.c (the
 * store, its job states, claim, finish, extend, expired), store_memory_insert.c
 * and store_memory_admin.c. Every operation runs under the store's mutex.
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
#ifndef BUS_LIB_STORE_MEMORY_IMPL_H
#define BUS_LIB_STORE_MEMORY_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "bus/backend.h"
#include "memindex.h"
#include "strmap.h"

#define IS_FINISHED(st) ((BUS_STATE_BIT(st) & BUS_STATES_FINISHED) != 0)
#define IS_PENDING(st)                                                         \
	((st) == BUS_JOB_AVAILABLE || (st) == BUS_JOB_SCHEDULED ||             \
	 (st) == BUS_JOB_RETRYABLE)

/* The strings of a job that have their own allocation (see job_new). */
enum { OWN_PAYLOAD = 1u << 0, OWN_META = 1u << 1, OWN_TAGS = 1u << 2 };

struct queue {
	uint64_t hash;
	struct bus__heap due, waiting;
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
	struct bus__heap_node hn; /* in no heap, or in the one its state says */
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
	int64_t cancel_requested_at; /* only while executing */
	int64_t started_at;          /* this attempt's start; 0: none */
	char blob[];
};

struct bus_store {
	pthread_mutex_t lock;
	int (*error)(int code, const char *fmt, ...) BUS_PRINTF(2, 3);
	int64_t next_id;
	size_t n_jobs;
	struct bus__table ids;     /* struct mjob by id */
	struct bus__table uniques; /* struct mjob by unique_key */
	struct bus__table queues;  /* struct queue by name (owned) */
	struct bus__table nodes;   /* struct node by name (owned) */
	struct bus__heap leases, finished;
	struct mjob *head, *tail; /* owns the jobs */
};

/* The job whose heap node is `n` (like container_of, it drops const). */
static inline struct mjob *mjob_of(const struct bus__heap_node *n)
{
	return (struct mjob *)((const char *)n - offsetof(struct mjob, hn));
}

static inline int64_t clock_now(int64_t now)
{
	if (now != 0)
		return now;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline uint64_t id_hash(int64_t id)
{
	/* splitmix64's finaliser: sequential ids spread over the slots. */
	uint64_t x = (uint64_t)id;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t str_hash(const char *s)
{
	return bus__name_hash(s, strlen(s));
}

static inline int id_eq(const void *item, const void *key)
{
	return ((const struct mjob *)item)->id == *(const int64_t *)key;
}

static inline struct mjob *job_find(const struct bus_store *s, int64_t id)
{
	return bus__table_find(&s->ids, id_hash(id), id_eq, &id);
}

/* Puts `j` in the heap its state and times call for. */
static inline void place(struct bus_store *s, struct mjob *j, int64_t now)
{
	struct bus__heap *h;
	if (j->state == BUS_JOB_EXECUTING)
		h = &s->leases;
	else if (IS_FINISHED(j->state))
		h = &s->finished;
	else if (j->state == BUS_JOB_AVAILABLE || j->scheduled_at <= now)
		h = &j->q->due;
	else
		h = &j->q->waiting;
	bus__heap_push(h, &j->hn);
}

static inline void unplace(struct mjob *j)
{
	if (j->hn.heap != NULL)
		bus__heap_remove(j->hn.heap, &j->hn);
}

/* The key is never set again: a job that left its states stays out. */
static inline void unique_drop(struct bus_store *s, struct mjob *j)
{
	if (j->unique_key == NULL)
		return;
	bus__table_del(&s->uniques, str_hash(j->unique_key), j);
	j->unique_key = NULL;
}

/* ---- Shared by the store's files (in store_memory.c) ---- */

/* The queue named `name`; with `create`, made when missing (NULL: out of
 * memory). Queues live as long as the store. */
struct queue *bus__memory_queue_get(struct bus_store *s, const char *name,
				    int create);

/* Frees `j` (NULL: nothing), which is in no index. */
void bus__memory_job_free(struct mjob *j);

/* Moves `j` to `st` with the invariants of backend.h: finished_at, lease,
 * unique key, and the heap and counts that go with the state. */
void bus__memory_set_state(struct bus_store *s, struct mjob *j,
			   bus_job_state st, int64_t now);

/* Copies `j` into `r` (all strings malloc'd), with `node` instead of its
 * attempted_by when not NULL. Nothing to free on failure. */
int bus__memory_row_fill(bus_job *r, const struct mjob *j, const char *node);

/* ---- The operations of bus_store_ops kept in the other files ---- */

/* store_memory_insert.c */
int bus__memory_insert(bus_store *s, int64_t now, const bus_store_new_job *jobs,
		       size_t n, bus_enqueue_result *results);

/* store_memory_admin.c */
int bus__memory_get(bus_store *s, int64_t id, bus_job **out);
int bus__memory_list(bus_store *s, const bus_job_filter *filter,
		     bus_job **out, size_t *n_out);
int bus__memory_cancel(bus_store *s, int64_t now, int64_t id);
int bus__memory_cancel_pending(bus_store *s, const char *node,
			       const int64_t *ids, const int *attempts,
			       size_t n, unsigned char *pending);
int bus__memory_retry(bus_store *s, int64_t now, int64_t id);
int bus__memory_remove(bus_store *s, int64_t id);
int bus__memory_set_paused(bus_store *s, const char *queue, int paused);
int bus__memory_paused_queues(bus_store *s, bus_queue_info **out,
			      size_t *n_out);
int bus__memory_counts(bus_store *s, bus_job_count **out, size_t *n_out);
int bus__memory_prune(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		      int64_t *deleted);

#endif
