/* Finds the store operations for a URL scheme: the built-in memory store, or
 * a plug-in "<scheme>.so" loaded from $BUS_BACKEND_DIR or $(pkglibdir). */
#ifndef BUS_LIB_LOADER_H
#define BUS_LIB_LOADER_H

#include "bus/backend.h"

/*
 * `scheme` is [a-z0-9]+ (checked by the caller). Plug-ins are loaded with
 * dlopen(RTLD_NOW | RTLD_LOCAL) once per process and never closed. Errors
 * name the file and the cause: BUS_ENOTFOUND when there is no such file,
 * BUS_EBACKEND when dlopen fails (dlerror's text), the entry symbol is
 * missing, the ABI version is older than the core's, or an operation is
 * NULL (named). Thread-safe.
 */
int bus__loader_find(const struct bus_store_ops **out, const char *scheme);

#endif
