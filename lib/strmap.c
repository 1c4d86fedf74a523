#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "strmap.h"

struct bus_strmap_table {
	size_t mask;  /* slots - 1 */
	size_t count; /* written by the writer only */
	_Atomic(struct bus_strmap_key *) slots[];
};

struct bus_strmap_old {
	struct bus_strmap_old *next;
	struct bus_strmap_table *table;
};

#define INITIAL_SLOTS 64

static struct bus_strmap_table *table_new(size_t slots)
{
	struct bus_strmap_table *t =
		malloc(sizeof *t + slots * sizeof t->slots[0]);
	if (t == NULL)
		return NULL;
	t->mask = slots - 1;
	t->count = 0;
	for (size_t i = 0; i < slots; i++)
		atomic_init(&t->slots[i], NULL);
	return t;
}

int bus__strmap_init(struct bus_strmap *m)
{
	struct bus_strmap_table *t = table_new(INITIAL_SLOTS);
	if (t == NULL)
		return bus__error_oom();
	atomic_init(&m->table, t);
	m->old = NULL;
	return 0;
}

void bus__strmap_destroy(struct bus_strmap *m)
{
	free(atomic_load_explicit(&m->table, memory_order_relaxed));
	while (m->old != NULL) {
		struct bus_strmap_old *next = m->old->next;
		free(m->old->table);
		free(m->old);
		m->old = next;
	}
}

static size_t first_slot(uint64_t hash, unsigned tag, size_t mask)
{
	return (size_t)(hash ^ ((uint64_t)tag * 0x9e3779b97f4a7c15ULL)) & mask;
}

struct bus_strmap_key *bus__strmap_find(const struct bus_strmap *m,
					unsigned tag, const char *name,
					size_t len, uint64_t hash)
{
	struct bus_strmap_table *t =
		atomic_load_explicit(&m->table, memory_order_acquire);
	/* Tables are at most half full, so the probe meets an empty slot. */
	for (size_t i = first_slot(hash, tag, t->mask);;
	     i = (i + 1) & t->mask) {
		struct bus_strmap_key *k =
			atomic_load_explicit(&t->slots[i], memory_order_acquire);
		if (k == NULL)
			return NULL;
		if (k->hash == hash && k->tag == tag && k->len == len &&
		    memcmp(k->name, name, len) == 0)
			return k;
	}
}

static void table_put(struct bus_strmap_table *t, struct bus_strmap_key *k)
{
	size_t i = first_slot(k->hash, k->tag, t->mask);
	while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != NULL)
		i = (i + 1) & t->mask;
	atomic_store_explicit(&t->slots[i], k, memory_order_release);
	t->count++;
}

int bus__strmap_add(struct bus_strmap *m, struct bus_strmap_key *key)
{
	struct bus_strmap_table *t =
		atomic_load_explicit(&m->table, memory_order_relaxed);
	if ((t->count + 1) * 2 > t->mask + 1) {
		struct bus_strmap_table *bigger = table_new((t->mask + 1) * 2);
		struct bus_strmap_old *old = malloc(sizeof *old);
		if (bigger == NULL || old == NULL) {
			free(bigger);
			free(old);
			return bus__error_oom();
		}
		for (size_t i = 0; i <= t->mask; i++) {
			struct bus_strmap_key *k = atomic_load_explicit(
				&t->slots[i], memory_order_relaxed);
			if (k != NULL)
				table_put(bigger, k);
		}
		old->table = t;
		old->next = m->old;
		m->old = old;
		atomic_store_explicit(&m->table, bigger, memory_order_release);
		t = bigger;
	}
	table_put(t, key);
	return 0;
}

int bus__strmap_foreach(const struct bus_strmap *m,
			int (*fn)(struct bus_strmap_key *key, void *udata),
			void *udata)
{
	struct bus_strmap_table *t =
		atomic_load_explicit(&m->table, memory_order_acquire);
	for (size_t i = 0; i <= t->mask; i++) {
		struct bus_strmap_key *k =
			atomic_load_explicit(&t->slots[i], memory_order_acquire);
		if (k != NULL) {
			int rc = fn(k, udata);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}
