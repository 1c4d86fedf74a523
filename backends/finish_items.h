/*
 * What both SQL stores do alike with the items of a finish call before
 * their own statement runs: check each item, and quote each error text as
 * a JSON string to append. Compiled into each store plug-in; the names are
 * bus__ and hidden (-fvisibility=hidden), so each .so still exports only
 * bus_backend_entry.
 */
#ifndef BUS_BACKENDS_FINISH_ITEMS_H
#define BUS_BACKENDS_FINISH_ITEMS_H

#include <stddef.h>

#include "bus/backend.h"

/* 0 when items[i] is an outcome a store can apply, else BUS_EINVAL through
 * env->error, the message starting with `store` ("mysql store"). */
int bus__finish_item_check(const bus_store_env *env, const char *store,
			   const bus_store_finish *it, size_t i);

/* The items' errors as JSON strings: (*out)[i] is NULL for an item without
 * one, and *out is NULL when no item has one. The caller owns *out: free it
 * with bus__finish_errors_free(*out, n). */
int bus__finish_errors_quote(const bus_store_finish *items, size_t n,
			     char ***out);
void bus__finish_errors_free(char **errors, size_t n);

#endif
