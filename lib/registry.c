#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"
#include "registry.h"

int bus__registry_init(struct bus_registry *r)
{
	memset(r, 0, sizeof *r);
	int rc = bus__strmap_init(&r->topics);
	if (rc != 0)
		return rc;
	rc = bus__strmap_init(&r->durable);
	if (rc != 0) {
		bus__strmap_destroy(&r->topics);
		return rc;
	}
	if (pthread_mutex_init(&r->lock, NULL) != 0) {
		bus__strmap_destroy(&r->topics);
		bus__strmap_destroy(&r->durable);
		return bus__error_set(BUS_ERROR, "cannot create a mutex");
	}
	atomic_init(&r->middleware, NULL);
	atomic_init(&r->any_job, NULL);
	return 0;
}

const struct bus_handler *bus__registry_find_durable(
	const struct bus_registry *r, const char *name)
{
	size_t len = strlen(name);
	struct bus_strmap_key *k = bus__strmap_find(
		&r->durable, 0, name, len, bus__name_hash(name, len));
	return k ? (const struct bus_handler *)k : NULL;
}

const struct bus_handler *bus__registry_find_runner(
	const struct bus_registry *r, const char *name)
{
	const struct bus_handler *h =
		name != NULL ? bus__registry_find_durable(r, name) : NULL;
	if (h == NULL)
		h = atomic_load_explicit(&r->any_job, memory_order_acquire);
	return h;
}

int bus__registry_set_any_job(struct bus_registry *r, struct bus_handler *h)
{
	pthread_mutex_lock(&r->lock);
	const struct bus_handler *old =
		atomic_load_explicit(&r->any_job, memory_order_relaxed);
	if (old == NULL)
		atomic_store_explicit(&r->any_job, h, memory_order_release);
	pthread_mutex_unlock(&r->lock);
	if (old != NULL)
		return bus__error_set(BUS_EEXISTS,
				      "an any-job handler ('%s') is already "
				      "registered",
				      old->name);
	return 0;
}

const struct bus_topic *bus__registry_find(const struct bus_registry *r,
					   bus_kind kind, const char *name,
					   size_t len, uint64_t hash)
{
	return (const struct bus_topic *)bus__strmap_find(&r->topics, kind,
							  name, len, hash);
}

/* Under the lock: the topic, created when missing. */
static struct bus_topic *topic_get_or_add(struct bus_registry *r,
					  bus_kind kind, const char *name,
					  size_t len, uint64_t hash)
{
	struct bus_topic *topic = (struct bus_topic *)bus__strmap_find(
		&r->topics, kind, name, len, hash);
	if (topic != NULL)
		return topic;
	topic = calloc(1, sizeof *topic);
	char *copy = strndup(name, len);
	if (topic == NULL || copy == NULL) {
		free(topic);
		free(copy);
		bus__error_oom();
		return NULL;
	}
	topic->key.hash = hash;
	topic->key.tag = kind;
	topic->key.len = len;
	topic->key.name = copy;
	atomic_init(&topic->handlers, NULL);
	if (bus__strmap_add(&r->topics, &topic->key) != 0) {
		free(copy);
		free(topic);
		return NULL;
	}
	return topic;
}

static int add_handler_locked(struct bus_registry *r, bus_kind kind,
			      const char *name, size_t len, uint64_t hash,
			      struct bus_handler *h, int single)
{
	struct bus_topic *topic = topic_get_or_add(r, kind, name, len, hash);
	if (topic == NULL)
		return bus__error_code();
	struct bus_handler_list *old = (struct bus_handler_list *)
		atomic_load_explicit(&topic->handlers, memory_order_relaxed);
	size_t n = old ? old->n : 0;

	if (single && n > 0)
		return bus__error_set(BUS_EEXISTS,
				      "%s '%s' already has a handler ('%s')",
				      bus__kind_name(kind), topic->key.name,
				      old->items[0]->name);

	char *default_name = NULL;
	if (h->name == NULL) {
		int w = single ? asprintf(&default_name, "%s", topic->key.name)
			       : asprintf(&default_name, "%s#%zu",
					  topic->key.name, n + 1);
		if (w < 0)
			return bus__error_oom();
	}
	const char *hname = h->name ? h->name : default_name;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (strcmp(old->items[i]->name, hname) == 0)
			rc = bus__error_set(
				BUS_EEXISTS,
				"%s '%s' already has a handler named '%s'",
				bus__kind_name(kind), topic->key.name, hname);
	const struct bus_handler *other =
		h->durable ? bus__registry_find_durable(r, hname) : NULL;
	if (rc == 0 && other != NULL)
		rc = bus__error_set(BUS_EEXISTS,
				    "durable handler name '%s' is taken by a "
				    "handler of %s '%s' (jobs find their handler "
				    "by name)",
				    hname, bus__kind_name(other->kind),
				    other->message);
	struct bus_handler_list *list = NULL;
	if (rc == 0) {
		list = malloc(sizeof *list + (n + 1) * sizeof list->items[0]);
		if (list == NULL)
			rc = bus__error_oom();
	}
	if (rc == 0 && h->durable) {
		/* The last step that can fail: nothing is published before. */
		h->durable_key = (struct bus_strmap_key){
			bus__name_hash(hname, strlen(hname)), 0, strlen(hname),
			hname
		};
		rc = bus__strmap_add(&r->durable, &h->durable_key);
	}
	if (rc != 0) {
		free(list);
		free(default_name);
		return rc;
	}

	if (default_name != NULL)
		h->name = default_name;
	h->name_len = strlen(h->name);
	h->name_hash = bus__name_hash(h->name, h->name_len);
	h->kind = kind;
	h->message = topic->key.name;
	if (n > 0)
		memcpy(list->items, old->items, n * sizeof list->items[0]);
	list->items[n] = h;
	list->n = n + 1;
	list->retired_next = NULL;
	atomic_store_explicit(&topic->handlers, list, memory_order_release);
	if (old != NULL) {
		old->retired_next = r->retired_handlers;
		r->retired_handlers = old;
	}
	return 0;
}

int bus__registry_add_handler(struct bus_registry *r, bus_kind kind,
			      const char *name, size_t len, uint64_t hash,
			      struct bus_handler *h, int single)
{
	pthread_mutex_lock(&r->lock);
	int rc = add_handler_locked(r, kind, name, len, hash, h, single);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int bus__registry_add_middleware(struct bus_registry *r, bus_middleware_fn fn,
				 void *udata)
{
	pthread_mutex_lock(&r->lock);
	struct bus_middleware_list *old = (struct bus_middleware_list *)
		atomic_load_explicit(&r->middleware, memory_order_relaxed);
	size_t n = old ? old->n : 0;
	struct bus_middleware_list *list =
		malloc(sizeof *list + (n + 1) * sizeof list->items[0]);
	if (list == NULL) {
		pthread_mutex_unlock(&r->lock);
		return bus__error_oom();
	}
	if (n > 0)
		memcpy(list->items, old->items, n * sizeof list->items[0]);
	list->items[n].fn = fn;
	list->items[n].udata = udata;
	list->n = n + 1;
	list->retired_next = NULL;
	atomic_store_explicit(&r->middleware, list, memory_order_release);
	if (old != NULL) {
		old->retired_next = r->retired_middleware;
		r->retired_middleware = old;
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int free_topic(struct bus_strmap_key *key, void *udata)
{
	(void)udata;
	struct bus_topic *topic = (struct bus_topic *)key;
	const struct bus_handler_list *list =
		atomic_load_explicit(&topic->handlers, memory_order_relaxed);
	for (size_t j = 0; list != NULL && j < list->n; j++)
		bus__handler_free(list->items[j]);
	free((void *)list);
	free((char *)topic->key.name);
	free(topic);
	return 0;
}

void bus__registry_destroy(struct bus_registry *r)
{
	bus__strmap_foreach(&r->topics, free_topic, NULL);
	bus__strmap_destroy(&r->topics);
	bus__strmap_destroy(&r->durable);
	bus__handler_free((struct bus_handler *)atomic_load_explicit(
		&r->any_job, memory_order_relaxed));
	free((void *)atomic_load_explicit(&r->middleware, memory_order_relaxed));
	while (r->retired_handlers != NULL) {
		struct bus_handler_list *next = r->retired_handlers->retired_next;
		free(r->retired_handlers);
		r->retired_handlers = next;
	}
	while (r->retired_middleware != NULL) {
		struct bus_middleware_list *next =
			r->retired_middleware->retired_next;
		free(r->retired_middleware);
		r->retired_middleware = next;
	}
	pthread_mutex_destroy(&r->lock);
}
