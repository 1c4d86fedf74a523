/* Finds the store for a URL scheme: the built-in memory store, or a plug-in
 * "<scheme>.so" that is dlopened once, checked against the core's ABI, and
 * then kept (never dlclosed) for the life of the process. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "loader.h"
#include "store_memory.h"

#ifndef BUS_PKGLIBDIR
/* The plug-in directory, from lib/Makefile.am:
 * -DBUS_PKGLIBDIR='"$(pkglibdir)"' */
#error "BUS_PKGLIBDIR (the store plug-in directory) is not defined"
#endif

/* ---- Loaded plug-ins ---- */

/* One scheme whose plug-in has loaded. Nodes are never freed: the ops they
 * point to live in a shared object that is never closed either. */
struct loaded {
	struct loaded *next;
	const struct bus_store_ops *ops;
	char scheme[];
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct loaded *cache; /* owns its nodes; guarded by cache_lock */

/* The ops loaded for `scheme`, or NULL; cache_lock held. */
static const struct bus_store_ops *cache_find_locked(const char *scheme)
{
	for (const struct loaded *l = cache; l != NULL; l = l->next)
		if (strcmp(l->scheme, scheme) == 0)
			return l->ops;
	return NULL;
}

static const struct bus_store_ops *cache_get(const char *scheme)
{
	pthread_mutex_lock(&cache_lock);
	const struct bus_store_ops *ops = cache_find_locked(scheme);
	pthread_mutex_unlock(&cache_lock);
	return ops;
}

/* Remembers `ops` for `scheme` and returns the ops to use: those of a
 * thread that got there first, when two loaded the same scheme at once. */
static const struct bus_store_ops *cache_put(const char *scheme,
					     const struct bus_store_ops *ops)
{
	size_t len = strlen(scheme);
	pthread_mutex_lock(&cache_lock);
	const struct bus_store_ops *first = cache_find_locked(scheme);
	if (first != NULL) {
		ops = first;
	} else {
		struct loaded *l = malloc(sizeof *l + len + 1);
		/* Out of memory: the store is loaded and usable all the
		 * same; the next lookup only repeats the (cheap,
		 * reference-counted) dlopen. */
		if (l != NULL) {
			memcpy(l->scheme, scheme, len + 1);
			l->ops = ops;
			l->next = cache;
			cache = l;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return ops;
}

/* ---- Finding and checking a plug-in ---- */

struct plugin {
	const char *scheme;
	const char *file; /* base name without ".so" */
	int dir_from_env; /* the directory came from BUS_BACKEND_DIR */
	char path[PATH_MAX];
};

static int scheme_valid(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
			return 0;
	return 1;
}

/* The plug-in file of a scheme. Aliases: "mariadb" is served by mysql.so
 * and "postgresql" (the scheme libpq also accepts) by postgres.so. */
static const char *plugin_file(const char *scheme)
{
	static const struct {
		const char *scheme, *file;
	} aliases[] = {
		{ "mariadb", "mysql" },
		{ "postgresql", "postgres" },
	};
	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
		if (strcmp(scheme, aliases[i].scheme) == 0)
			return aliases[i].file;
	return scheme;
}

static int plugin_locate(struct plugin *p, const char *scheme)
{
	p->scheme = scheme;
	p->file = plugin_file(scheme);
	const char *dir = getenv("BUS_BACKEND_DIR");
	p->dir_from_env = dir != NULL && *dir != '\0';
	if (!p->dir_from_env)
		dir = BUS_PKGLIBDIR;
	int n = snprintf(p->path, sizeof p->path, "%s/%s.so", dir, p->file);
	/* A longer path could not be opened anyway (ENAMETOOLONG). */
	if (n < 0 || (size_t)n >= sizeof p->path)
		return bus__error_set(BUS_EINVAL,
				      "no store for URL scheme '%s': the path "
				      "of %s.so in %s%s is too long",
				      scheme, p->file, dir,
				      p->dir_from_env ? " (BUS_BACKEND_DIR)"
						      : "");
	return 0;
}

/* Told apart from dlopen's failures so that a missing package gets a
 * message that says which package to install. */
static int plugin_exists(const struct plugin *p)
{
	struct stat st;
	if (stat(p->path, &st) == 0)
		return 0;
	if (errno != ENOENT && errno != ENOTDIR)
		return bus__error_set(BUS_EBACKEND,
				      "store plug-in %s for URL scheme '%s' "
				      "cannot be read: %s",
				      p->path, p->scheme, strerror(errno));
	if (p->dir_from_env)
		return bus__error_set(BUS_ENOTFOUND,
				      "no store for URL scheme '%s': %s does "
				      "not exist (the directory comes from "
				      "BUS_BACKEND_DIR; unset it to look in "
				      "%s)",
				      p->scheme, p->path, BUS_PKGLIBDIR);
	return bus__error_set(BUS_ENOTFOUND,
			      "no store for URL scheme '%s': %s does not "
			      "exist (install the libbus %s package, or set "
			      "BUS_BACKEND_DIR)",
			      p->scheme, p->path, p->file);
}

/* Every operation of ABI 1 and 2 is required, and of ABI 5 now (the core
 * calls each of them); paused_queues (3) may be NULL, the push wake-up
 * (4) is optional, and so is start (6: without it no rescued job's attempt
 * is refunded). */
static int ops_complete(const struct plugin *p, const struct bus_store_ops *ops)
{
	const struct {
		const char *name;
		int present;
	} required[] = {
		{ "open", ops->open != NULL },
		{ "close", ops->close != NULL },
		{ "schema_check", ops->schema_check != NULL },
		{ "migrate", ops->migrate != NULL },
		{ "insert", ops->insert != NULL },
		{ "claim", ops->claim != NULL },
		{ "finish", ops->finish != NULL },
		{ "extend", ops->extend != NULL },
		{ "expired", ops->expired != NULL },
		{ "get", ops->get != NULL },
		{ "list", ops->list != NULL },
		{ "cancel", ops->cancel != NULL },
		{ "retry", ops->retry != NULL },
		{ "remove", ops->remove != NULL },
		{ "set_paused", ops->set_paused != NULL },
		{ "counts", ops->counts != NULL },
		{ "prune", ops->prune != NULL },
		{ "insert_tx", ops->insert_tx != NULL },
		{ "cancel_pending", ops->cancel_pending != NULL },
		{ "now", ops->now != NULL },
	};
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
		if (!required[i].present)
			return bus__error_set(BUS_EBACKEND,
					      "store plug-in %s: operation "
					      "'%s' is missing",
					      p->path, required[i].name);
	/* claim_start (6) is one more way to record starts. */
	if (ops->claim_start != NULL && ops->start == NULL)
		return bus__error_set(BUS_EBACKEND,
				      "store plug-in %s: operation 'start' is "
				      "missing ('claim_start' needs it)",
				      p->path);
	/* Push wake-up (ABI 4) is optional, but comes as a pair. */
	if ((ops->listen == NULL) != (ops->wait_jobs == NULL))
		return bus__error_set(BUS_EBACKEND,
				      "store plug-in %s: operation '%s' is "
				      "missing ('listen' and 'wait_jobs' go "
				      "together)",
				      p->path,
				      ops->listen ? "wait_jobs" : "listen");
	return 0;
}

static int ops_valid(const struct plugin *p, const struct bus_store_ops *ops)
{
	/* Operations are only ever appended, so a newer plug-in still has
	 * every member this core reads; an older one lacks some. */
	if (ops->abi_version < BUS_STORE_ABI_VERSION)
		return bus__error_set(BUS_EBACKEND,
				      "store plug-in %s was built for store "
				      "ABI %u, this libbus needs %u (install "
				      "the %s plug-in of this libbus)",
				      p->path, (unsigned)ops->abi_version,
				      (unsigned)BUS_STORE_ABI_VERSION, p->file);
	if (ops->name == NULL)
		return bus__error_set(BUS_EBACKEND,
				      "store plug-in %s: its operations have "
				      "no name",
				      p->path);
	return ops_complete(p, ops);
}

/* dlerror's text without the "<path>: " it starts with, which the messages
 * here already name. */
static const char *dl_cause(const char *path, const char *fallback)
{
	const char *why = dlerror();
	if (why == NULL)
		return fallback;
	size_t len = strlen(path);
	if (strncmp(why, path, len) == 0 && strncmp(why + len, ": ", 2) == 0)
		return why + len + 2;
	return why;
}

/* A handle is never dlclosed, even when the plug-in turns out to be
 * unusable: a library it pulled in may have started threads or registered
 * handlers that would run in unmapped code. A retry reopens the same
 * handle (dlopen counts references), so nothing accumulates but a count;
 * it also means that a broken plug-in replaced at the same path is only
 * seen by a new process. */
static int plugin_load(const struct bus_store_ops **out, const char *scheme)
{
	struct plugin p;
	int rc = plugin_locate(&p, scheme);
	if (rc == 0)
		rc = plugin_exists(&p);
	if (rc != 0)
		return rc;

	void *handle = dlopen(p.path, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL)
		return bus__error_set(BUS_EBACKEND,
				      "cannot load store plug-in %s: %s",
				      p.path,
				      dl_cause(p.path, "dlopen failed"));
	dlerror(); /* so that the text below is dlsym's own */
	void *sym = dlsym(handle, BUS_BACKEND_ENTRY);
	if (sym == NULL)
		return bus__error_set(BUS_EBACKEND,
				      "store plug-in %s does not export %s "
				      "(%s)",
				      p.path, BUS_BACKEND_ENTRY,
				      dl_cause(p.path, "the symbol is NULL"));
	/* POSIX guarantees that dlsym's result converts to a function
	 * pointer. */
	bus_backend_entry_fn entry = (bus_backend_entry_fn)sym;
	const struct bus_store_ops *ops = entry(BUS_STORE_ABI_VERSION);
	if (ops == NULL)
		return bus__error_set(BUS_EBACKEND,
				      "store plug-in %s refused ABI version "
				      "%u (install the %s plug-in of this "
				      "libbus)",
				      p.path, (unsigned)BUS_STORE_ABI_VERSION,
				      p.file);
	rc = ops_valid(&p, ops);
	if (rc != 0)
		return rc;
	*out = ops;
	return 0;
}

int bus__loader_find(const struct bus_store_ops **out, const char *scheme)
{
	*out = NULL;
	if (!scheme_valid(scheme))
		return bus__error_set(BUS_EINVAL,
				      "invalid store URL scheme '%s': use "
				      "only a-z and 0-9",
				      scheme ? scheme : "(null)");
	if (strcmp(scheme, "memory") == 0) {
		*out = &bus__memory_store_ops;
		return 0;
	}
	const struct bus_store_ops *ops = cache_get(scheme);
	if (ops == NULL) {
		/* Loaded outside the lock, so that a slow dlopen (or a
		 * plug-in constructor) never holds up other schemes. A
		 * failure is not remembered: the user may install the
		 * package and try again. */
		int rc = plugin_load(&ops, scheme);
		if (rc != 0)
			return rc;
		ops = cache_put(scheme, ops);
	}
	*out = ops;
	return 0;
}
