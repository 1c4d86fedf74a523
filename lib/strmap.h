/*
 * An append-only hash map from (tag, name) to entries, read without locks.
 *
 * Readers may look up while one writer (holding the owner's mutex) adds:
 * slots are filled with release stores and never emptied, and a full table
 * is replaced by a bigger copy while the old one is kept until the map is
 * destroyed, since a reader may still be probing it. Used for topics on the
 * dispatch path and for per-handler metrics.
 */
#ifndef BUS_LIB_STRMAP_H
#define BUS_LIB_STRMAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Embed this as the first member of what the map holds. */
struct bus_strmap_key {
	uint64_t hash; /* of the name, from bus__name_hash */
	unsigned tag;  /* separates namespaces (the kind of a topic) */
	size_t len;
	const char *name; /* owned by the entry */
};

struct bus_strmap_table;
struct bus_strmap_old;

struct bus_strmap {
	_Atomic(struct bus_strmap_table *) table;
	struct bus_strmap_old *old; /* replaced tables */
};

int bus__strmap_init(struct bus_strmap *m);
/* Frees the tables (not the entries: walk them first with foreach). */
void bus__strmap_destroy(struct bus_strmap *m);

/* Lock-free. Returns the entry's key (cast it to the entry) or NULL. */
struct bus_strmap_key *bus__strmap_find(const struct bus_strmap *m,
					unsigned tag, const char *name,
					size_t len, uint64_t hash);

/* Writer only (the owner serialises writers). `key` must not be in the map. */
int bus__strmap_add(struct bus_strmap *m, struct bus_strmap_key *key);

/* Writer only, or with no readers left. Stops at a non-zero return. */
int bus__strmap_foreach(const struct bus_strmap *m,
			int (*fn)(struct bus_strmap_key *key, void *udata),
			void *udata);

/* FNV-1a of `len` bytes. */
static inline uint64_t bus__name_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 0x100000001b3ULL;
	return h;
}

#endif
