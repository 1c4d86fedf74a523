/* Opening and closing a bus, and registration. */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"
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

/* Splits off the scheme of `url` ("memory" of "memory:"). Only the scheme
 * ever reaches an error message: the rest may hold a password. */
static int url_scheme(const char *url, char *scheme, size_t size,
		      const char **rest)
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
	*rest = url + n + 1;
	return 0;
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
	const char *rest = NULL;
	int rc = url_scheme(url, scheme, sizeof scheme, &rest);
	if (rc != 0)
		return rc;
	if (strcmp(scheme, "memory") != 0)
		return bus__error_set(BUS_ENOTFOUND,
				      "no store for bus URL scheme '%s': this "
				      "build has only the in-memory store "
				      "('memory:')",
				      scheme);
	if (strcmp(rest, "") != 0 && strcmp(rest, "//") != 0)
		return bus__error_set(BUS_EINVAL,
				      "the in-memory bus URL takes nothing after "
				      "'memory:'");

	bus *b = calloc(1, sizeof *b);
	if (b == NULL)
		return bus__error_oom();
	rc = bus__registry_init(&b->registry);
	if (rc != 0) {
		free(b);
		return rc;
	}
	bus__logger_init(&b->log);
	*out = b;
	return 0;
}

void bus_close(bus *b)
{
	if (b == NULL)
		return;
	bus__registry_destroy(&b->registry);
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
	if (fn == NULL)
		return bus__error_set(BUS_EINVAL,
				      "handler function for %s '%s' is NULL",
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

	struct bus_handler *h = calloc(1, sizeof *h);
	if (h == NULL)
		return bus__error_oom();
	if (hname != NULL && (h->name = strdup(hname)) == NULL) {
		free(h);
		return bus__error_oom();
	}
	h->fn = fn;
	h->udata = udata;
	rc = bus__registry_add_handler(&b->registry, kind, name, len, hash, h,
				       kind != BUS_KIND_EVENT);
	if (rc != 0) {
		free(h->name);
		free(h);
	}
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

int bus_use(bus *b, bus_middleware_fn fn, void *udata)
{
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	if (fn == NULL)
		return bus__error_set(BUS_EINVAL, "middleware function is NULL");
	return bus__registry_add_middleware(&b->registry, fn, udata);
}
