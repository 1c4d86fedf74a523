/*
 * The out-of-line half of memindex.h: growing, deleting and sifting.
 */
#include <stdint.h>
#include <stdlib.h>

#include "bus/bus.h"
#include "memindex.h"

/* ---- Hash table ---- */

int bus__table_reserve(struct bus__table *t, size_t want)
{
	if (want <= t->cap / 2)
		return 0;
	size_t cap = t->cap ? t->cap : 16;
	while (cap / 2 < want) {
		if (cap > SIZE_MAX / 4 / sizeof(struct bus__table_slot))
			return BUS_ENOMEM;
		cap *= 2;
	}
	struct bus__table nt = { calloc(cap, sizeof(struct bus__table_slot)),
				 cap, 0 };
	if (nt.slots == NULL)
		return BUS_ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].item != NULL)
			bus__table_put(&nt, t->slots[i].hash, t->slots[i].item);
	free(t->slots);
	*t = nt;
	return 0;
}

void bus__table_del(struct bus__table *t, uint64_t hash, const void *item)
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

void bus__table_fini(struct bus__table *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = t->n = 0;
}

/* ---- Indexed binary heap ---- */

int bus__heap_grow(struct bus__heap *h, size_t want)
{
	size_t cap = h->cap ? h->cap : 16;
	while (cap < want) {
		if (cap > SIZE_MAX / 2 / sizeof(struct bus__heap_node *))
			return BUS_ENOMEM;
		cap *= 2;
	}
	struct bus__heap_node **v = realloc(h->v, cap * sizeof *v);
	if (v == NULL)
		return BUS_ENOMEM;
	h->v = v;
	h->cap = cap;
	return 0;
}

static void heap_set(struct bus__heap *h, size_t i, struct bus__heap_node *node)
{
	h->v[i] = node;
	node->idx = i;
}

void bus__heap_sift_up(struct bus__heap *h, size_t i)
{
	struct bus__heap_node *node = h->v[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!h->less(node, h->v[parent]))
			break;
		heap_set(h, i, h->v[parent]);
		i = parent;
	}
	heap_set(h, i, node);
}

void bus__heap_sift_down(struct bus__heap *h, size_t i)
{
	struct bus__heap_node *node = h->v[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->less(h->v[c + 1], h->v[c]))
			c++;
		if (!h->less(h->v[c], node))
			break;
		heap_set(h, i, h->v[c]);
		i = c;
	}
	heap_set(h, i, node);
}

void bus__heap_remove(struct bus__heap *h, struct bus__heap_node *node)
{
	size_t i = node->idx;
	struct bus__heap_node *last = h->v[--h->n];
	node->heap = NULL;
	if (i == h->n)
		return;
	heap_set(h, i, last);
	bus__heap_sift_down(h, i);
	bus__heap_sift_up(h, last->idx);
}

void bus__heap_fini(struct bus__heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
