/* Opening and closing a bus, and registration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "error.h"
#include "loader.h"
#include "names.h"

const char *bus__kind_name(bus_kind kind)
{
	switch (kind) {
	case BUS_KIND_EVENT: return "event";
	case BUS_KIND_COMMAND: return "command";
	case BUS_KIND_QUERY: return "query";
	}
	return "message";
}

/* Copies the scheme of `url` ("memory" of "memory:"). Only the scheme ever
 * reaches an error message: the rest may hold a password. What follows the
 * scheme is the store's to parse. */
static int url_scheme(const char *url, char *scheme, size_t size)
{
	size_t n = 0;
	while (url[n] != '\0' && url[n] != ':')
		n++;
	if (url[n] != ':' || n == 0)
		return bus__error_set(BUS_EINVAL,
				      "bus URL has no scheme: expected "
				      "'scheme:...', such as 'memory:'");
	if (n >= size)
		return bus__error_set(BUS_EINVAL,
				      "bus URL scheme is longer than %zu "
				      "characters",
				      size - 1);
	for (size_t i = 0; i < n; i++) {
		char c = url[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return bus__error_set(BUS_EINVAL,
					      "bus URL scheme must be lower-case "
					      "letters and digits (character %zu "
					      "is not)",
					      i + 1);
	}
	memcpy(scheme, url, n);
	scheme[n] = '\0';
	return 0;
}

void bus_set_clock(bus *b, bus_clock_fn fn, void *udata)
{
	if (b == NULL)
		return;
	b->clock = fn;
	b->clock_udata = udata;
}

int bus_migrate(bus *b)
{
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	return bus__store_migrate(&b->store);
}

int bus_open(bus **out, const char *url)
{
	if (out == NULL)
		return bus__error_set(BUS_EINVAL, "bus_open: out is NULL");
	*out = NULL;
	if (url == NULL) {
		url = getenv("BUS_URL");
		if (url == NULL || *url == '\0')
			url = "memory:";
	}

	char scheme[32];
	int rc = url_scheme(url, scheme, sizeof scheme);
	if (rc != 0)
		return rc;
	const struct bus_store_ops *ops;
	rc = bus__loader_find(&ops, scheme);
	if (rc != 0)
		return rc;

	bus *b = calloc(1, sizeof *b);
	if (b == NULL)
		return bus__error_oom();
	bus__logger_init(&b->log);
	pthread_mutex_init(&b->workers_lock, NULL);
	atomic_init(&b->n_workers, 0);
	rc = bus__registry_init(&b->registry);
	if (rc != 0) {
		free(b);
		return rc;
	}
	rc = bus__store_pool_init(&b->store, ops, url, &b->log);
	if (rc != 0) {
		bus__registry_destroy(&b->registry);
		free(b);
		return rc;
	}
	*out = b;
	return 0;
}

void bus_close(bus *b)
{
	if (b == NULL)
		return;
	bus__store_pool_destroy(&b->store);
	bus__registry_destroy(&b->registry);
	pthread_mutex_destroy(&b->workers_lock);
	free(b);
}

void bus_set_logger(bus *b, bus_log_level min_level, bus_log_fn fn,
		    void *udata)
{
	if (b == NULL)
		return;
	struct bus_logger lg;
	bus__logger_init(&lg);
	b->log.level = min_level;
	b->log.fn = fn ? fn : lg.fn;
	b->log.udata = fn ? udata : NULL;
}

/* Durable options only make sense on a durable handler, and a durable event
 * handler needs a name of its own: its jobs find it by that name, so the
 * name must outlive the process and any change in the order handlers are
 * registered in (a positional default, "<event>#<n>", would strand the
 * stored jobs of a handler that moved). */
static int check_job_defaults(bus_kind kind, const char *name,
			      const bus_handler_opts *o)
{
	char what[300];
	snprintf(what, sizeof what, "handler of %s '%s'", bus__kind_name(kind),
		 name);
	if (!o->durable) {
		if (o->queue || o->priority != BUS_UNSET ||
		    o->max_attempts != BUS_UNSET || o->timeout_ms != 0 ||
		    o->backoff || o->unique || o->replace)
			return bus__error_set(BUS_EINVAL,
					      "%s: job options (queue, priority, "
					      "...) need durable = 1",
					      what);
		return 0;
	}
	if (kind == BUS_KIND_QUERY)
		return bus__error_set(BUS_EINVAL,
				      "%s: a query cannot be durable (its caller "
				      "waits for the answer)",
				      what);
	if (kind == BUS_KIND_EVENT && o->name == NULL)
		return bus__error_set(BUS_EINVAL,
				      "%s: a durable event handler needs a name "
				      "(bus_handler_opts.name); its jobs are "
				      "stored with it",
				      what);
	return bus__job_defaults_check(what, o->queue, o->priority,
				       o->max_attempts, o->timeout_ms,
				       o->unique, o->replace);
}

static int register_handler(bus *b, bus_kind kind, const char *name,
			    bus_handler_fn fn, void *udata,
			    const bus_handler_opts *opts)
{
	static const char *const what[] = { "event name", "command name",
					    "query name" };
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	size_t len, hlen;
	uint64_t hash, hhash;
	int rc = bus__name_check(what[kind], name, &len, &hash);
	if (rc != 0)
		return rc;
	/* A durable handler without a function is a declaration: it gives a
	 * producer its jobs' options (queue, attempts, ...); the workers that
	 * run them register the function. */
	if (fn == NULL && (opts == NULL || !opts->durable))
		return bus__error_set(BUS_EINVAL,
				      "handler function for %s '%s' is NULL "
				      "(only a durable handler may be declared "
				      "without one)",
				      bus__kind_name(kind), name);
	if (opts != NULL && opts->version != BUS_HANDLER_OPTS_VERSION)
		return bus__error_set(BUS_EINVAL,
				      "bus_handler_opts.version is %u, expected "
				      "%u: initialise it with "
				      "BUS_HANDLER_OPTS_INIT",
				      opts->version, BUS_HANDLER_OPTS_VERSION);
	const char *hname = opts ? opts->name : NULL;
	if (hname != NULL &&
	    (rc = bus__name_check("handler name", hname, &hlen, &hhash)) != 0)
		return rc;
	if (opts != NULL && (rc = check_job_defaults(kind, name, opts)) != 0)
		return rc;

	struct bus_handler *h;
	rc = bus__handler_new(&h, kind, hname, fn, udata, opts);
	if (rc != 0)
		return rc;
	rc = bus__registry_add_handler(&b->registry, kind, name, len, hash, h,
				       kind != BUS_KIND_EVENT);
	if (rc != 0)
		bus__handler_free(h);
	return rc;
}

int bus_on(bus *b, const char *event, bus_handler_fn fn, void *udata,
	   const bus_handler_opts *opts)
{
	return register_handler(b, BUS_KIND_EVENT, event, fn, udata, opts);
}

int bus_handle_command(bus *b, const char *command, bus_handler_fn fn,
		       void *udata, const bus_handler_opts *opts)
{
	return register_handler(b, BUS_KIND_COMMAND, command, fn, udata, opts);
}

int bus_handle_query(bus *b, const char *query, bus_handler_fn fn,
		     void *udata, const bus_handler_opts *opts)
{
	return register_handler(b, BUS_KIND_QUERY, query, fn, udata, opts);
}

int bus_handle_any_job(bus *b, bus_handler_fn fn, void *udata,
		       const bus_handler_opts *opts)
{
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	if (fn == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus_handle_any_job: handler function is "
				      "NULL");
	bus_handler_opts o = BUS_HANDLER_OPTS_INIT;
	if (opts != NULL) {
		if (opts->version != BUS_HANDLER_OPTS_VERSION)
			return bus__error_set(BUS_EINVAL,
					      "bus_handler_opts.version is %u, "
					      "expected %u: initialise it with "
					      "BUS_HANDLER_OPTS_INIT",
					      opts->version,
					      BUS_HANDLER_OPTS_VERSION);
		/* The rest are a producer's defaults: a job reaches this
		 * handler already stored with its own. */
		if (opts->queue || opts->priority != BUS_UNSET ||
		    opts->max_attempts != BUS_UNSET || opts->timeout_ms != 0 ||
		    opts->unique || opts->replace)
			return bus__error_set(BUS_EINVAL,
					      "bus_handle_any_job: only name "
					      "and backoff apply (queue, "
					      "priority, attempts, timeout and "
					      "uniqueness are set when a job is "
					      "enqueued)");
		o.name = opts->name;
		o.backoff = opts->backoff;
		o.backoff_udata = opts->backoff_udata;
	}
	if (o.name == NULL)
		o.name = "(any job)";
	size_t len;
	uint64_t hash;
	int rc = bus__name_check("handler name", o.name, &len, &hash);
	if (rc != 0)
		return rc;
	o.durable = 1;
	struct bus_handler *h;
	if ((rc = bus__handler_new(&h, BUS_KIND_COMMAND, o.name, fn, udata,
				   &o)) != 0)
		return rc;
	h->name_len = len;
	h->name_hash = hash;
	h->message = "(any job)";
	if ((rc = bus__registry_set_any_job(&b->registry, h)) != 0)
		bus__handler_free(h);
	return rc;
}

int bus_use(bus *b, bus_middleware_fn fn, void *udata)
{
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	if (fn == NULL)
		return bus__error_set(BUS_EINVAL, "middleware function is NULL");
	return bus__registry_add_middleware(&b->registry, fn, udata);
}
