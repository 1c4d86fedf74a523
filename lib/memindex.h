/*
 * Two index structures for data held in this process, with no locking of
 * their own (the owner serialises every call):
 *
 *  - bus__table: a hash table of pointers, by a hash the caller computes.
 *    Open addressing, linear probing, load <= 1/2, backward-shift deletion.
 *  - bus__heap: a binary min-heap of items that embed a bus__heap_node, so
 *    that an item knows its heap and its index and can leave from anywhere.
 *
 * Neither allocates except in its reserve function: once room is reserved,
 * put, del, push, remove and fix cannot fail. Both start zeroed (a heap also
 * needs its `less`); the storage is theirs, the items stay the caller's.
 *
 * The operations on the lookup and queue paths are static inline, so the
 * caller's compiler can inline them and see through the eq callback.
 */
#ifndef BUS_LIB_MEMINDEX_H
#define BUS_LIB_MEMINDEX_H

#include <stddef.h>
#include <stdint.h>

/* ---- Hash table ---- */

struct bus__table_slot {
	uint64_t hash;
	void *item; /* NULL: free */
};

/* To walk the items, read slots[i].item for i < cap (NULL: a free slot);
 * the order is arbitrary. */
struct bus__table {
	struct bus__table_slot *slots; /* malloc'd, owned by the table */
	size_t cap;                    /* a power of two, or 0 */
	size_t n;
};

/* Whether `item` has the key `key` (the hashes already matched). */
typedef int (*bus__table_eq_fn)(const void *item, const void *key);

/* Makes room for `want` items in all: 0, or BUS_ENOMEM (`t` unchanged). */
int bus__table_reserve(struct bus__table *t, size_t want);

/* Removes `item`, which is in `t` under `hash`. */
void bus__table_del(struct bus__table *t, uint64_t hash, const void *item);

/* Frees the slots (not the items) and leaves `t` empty. */
void bus__table_fini(struct bus__table *t);

/* The item with `key` under `hash`, or NULL. */
static inline void *bus__table_find(const struct bus__table *t, uint64_t hash,
				    bus__table_eq_fn eq, const void *key)
{
	if (t->cap == 0)
		return NULL;
	size_t mask = t->cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		const struct bus__table_slot *sl = &t->slots[i];
		if (sl->item == NULL)
			return NULL;
		if (sl->hash == hash && eq(sl->item, key))
			return sl->item;
	}
}

/* Adds `item` (not NULL), which is not in `t`; bus__table_reserve made
 * room. */
static inline void bus__table_put(struct bus__table *t, uint64_t hash,
				  void *item)
{
	size_t mask = t->cap - 1, i = hash & mask;
	while (t->slots[i].item != NULL)
		i = (i + 1) & mask;
	t->slots[i].hash = hash;
	t->slots[i].item = item;
	t->n++;
}

/* ---- Indexed binary heap ---- */

struct bus__heap;

/* Embed one per heap an item may be in at a time; get the item back from
 * the node with offsetof. */
struct bus__heap_node {
	struct bus__heap *heap; /* NULL, or the heap holding it at idx */
	size_t idx;
};

/* Whether `a` comes before `b`: a strict weak order. */
typedef int (*bus__heap_less_fn)(const struct bus__heap_node *a,
				 const struct bus__heap_node *b);

struct bus__heap {
	struct bus__heap_node **v; /* malloc'd, owned by the heap */
	size_t n, cap;
	bus__heap_less_fn less;
};

/* The slow path of bus__heap_reserve. */
int bus__heap_grow(struct bus__heap *h, size_t want);

/* Restore the order around index `i`: for push, remove and fix. */
void bus__heap_sift_up(struct bus__heap *h, size_t i);
void bus__heap_sift_down(struct bus__heap *h, size_t i);

/* Takes out `node`, which is in `h`. */
void bus__heap_remove(struct bus__heap *h, struct bus__heap_node *node);

/* Frees the array (not the items) and leaves `h` empty, `less` kept. */
void bus__heap_fini(struct bus__heap *h);

/* Makes room for `want` items in all: 0, or BUS_ENOMEM (`h` unchanged). */
static inline int bus__heap_reserve(struct bus__heap *h, size_t want)
{
	return want <= h->cap ? 0 : bus__heap_grow(h, want);
}

/* The least item, or NULL when `h` is empty. */
static inline struct bus__heap_node *bus__heap_top(const struct bus__heap *h)
{
	return h->n > 0 ? h->v[0] : NULL;
}

/* Adds `node`, which is in no heap; bus__heap_reserve made room. */
static inline void bus__heap_push(struct bus__heap *h,
				  struct bus__heap_node *node)
{
	node->heap = h;
	h->v[h->n] = node;
	bus__heap_sift_up(h, h->n++);
}

/* Restores the order after the key of `node`, which is in `h`, changed. */
static inline void bus__heap_fix(struct bus__heap *h,
				 struct bus__heap_node *node)
{
	bus__heap_sift_down(h, node->idx);
	bus__heap_sift_up(h, node->idx);
}

#endif
