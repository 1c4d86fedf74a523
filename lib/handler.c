/* Handlers as registered: the function, its name, and for a durable one the
 * defaults of its jobs, copied out of the caller's options. */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"
#include "names.h"
#include "registry.h"
#include "unique.h"

static bus_unique_opts *unique_copy(const bus_unique_opts *u)
{
	bus_unique_opts *c = malloc(sizeof *c);
	if (c == NULL)
		return NULL;
	*c = *u;
	c->payload_keys = NULL;
	if (u->n_payload_keys == 0)
		return c;
	char **keys = calloc(u->n_payload_keys, sizeof *keys);
	if (keys == NULL) {
		free(c);
		return NULL;
	}
	c->payload_keys = (const char *const *)keys;
	for (size_t i = 0; i < u->n_payload_keys; i++) {
		if ((keys[i] = strdup(u->payload_keys[i])) == NULL) {
			c->n_payload_keys = i;
			bus__unique_free(c);
			return NULL;
		}
	}
	return c;
}

void bus__unique_free(bus_unique_opts *u)
{
	if (u == NULL)
		return;
	for (size_t i = 0; i < u->n_payload_keys; i++)
		free((char *)u->payload_keys[i]);
	free((void *)u->payload_keys);
	free(u);
}

int bus__job_defaults_check(const char *what, const char *queue,
			    int priority, int max_attempts, int64_t timeout_ms,
			    const bus_unique_opts *unique,
			    const bus_replace_opts *replace)
{
	size_t len;
	uint64_t hash;
	int rc;
	if (queue != NULL &&
	    (rc = bus__name_check("queue name", queue, &len, &hash)) != 0)
		return rc;
	if (priority != BUS_UNSET &&
	    (priority < BUS_PRIORITY_MIN || priority > BUS_PRIORITY_MAX))
		return bus__error_set(BUS_EINVAL,
				      "%s: priority %d is outside %d..%d", what,
				      priority, BUS_PRIORITY_MIN,
				      BUS_PRIORITY_MAX);
	if (max_attempts != BUS_UNSET &&
	    (max_attempts < 1 || max_attempts > BUS_MAX_ATTEMPTS_MAX))
		return bus__error_set(BUS_EINVAL,
				      "%s: max_attempts %d is outside 1..%d",
				      what, max_attempts, BUS_MAX_ATTEMPTS_MAX);
	if (timeout_ms < 0 || timeout_ms > BUS_DELAY_MAX_S * 1000)
		return bus__error_set(BUS_EINVAL,
				      "%s: timeout_ms %lld is outside 0..%lld "
				      "(BUS_DELAY_MAX_S)",
				      what, (long long)timeout_ms,
				      (long long)(BUS_DELAY_MAX_S * 1000));
	if (unique != NULL && (rc = bus__unique_opts_check(unique)) != 0)
		return rc;
	if (replace != NULL && replace->version != BUS_REPLACE_OPTS_VERSION)
		return bus__error_set(BUS_EINVAL,
				      "%s: bus_replace_opts.version is %u, "
				      "expected %u: initialise it with "
				      "BUS_REPLACE_OPTS_INIT",
				      what, replace->version,
				      BUS_REPLACE_OPTS_VERSION);
	if (replace != NULL && unique == NULL)
		return bus__error_set(BUS_EINVAL,
				      "%s: replace options need unique options "
				      "(a replace happens on a unique conflict)",
				      what);
	for (int s = 0; replace != NULL && s < BUS_JOB_STATE_COUNT; s++)
		if (replace->fields[s] & ~BUS_REPLACE_ALL)
			return bus__error_set(BUS_EINVAL,
					      "%s: replace fields for state %s "
					      "have unknown bits 0x%x",
					      what,
					      bus_job_state_name((bus_job_state)s),
					      replace->fields[s] &
						      ~BUS_REPLACE_ALL);
	return 0;
}

int bus__handler_new(struct bus_handler **out, bus_kind kind,
		     const char *name, bus_handler_fn fn, void *udata,
		     const bus_handler_opts *opts)
{
	*out = NULL;
	struct bus_handler *h = calloc(1, sizeof *h);
	if (h == NULL)
		return bus__error_oom();
	h->fn = fn;
	h->udata = udata;
	h->kind = kind;
	h->job.priority = BUS_UNSET;
	h->job.max_attempts = BUS_UNSET;
	if (opts == NULL) {
		*out = h;
		return 0;
	}
	h->durable = opts->durable != 0;
	h->job.priority = opts->priority;
	h->job.max_attempts = opts->max_attempts;
	h->job.timeout_ms = opts->timeout_ms;
	h->job.backoff = opts->backoff;
	h->job.backoff_udata = opts->backoff_udata;
	int ok = 1;
	if (opts->name != NULL)
		ok &= (h->name = strdup(opts->name)) != NULL;
	if (opts->queue != NULL)
		ok &= (h->job.queue = strdup(opts->queue)) != NULL;
	if (opts->unique != NULL)
		ok &= (h->job.unique = unique_copy(opts->unique)) != NULL;
	if (opts->replace != NULL &&
	    (h->job.replace = malloc(sizeof *h->job.replace)) != NULL)
		*h->job.replace = *opts->replace;
	else if (opts->replace != NULL)
		ok = 0;
	if (!ok) {
		bus__handler_free(h);
		return bus__error_oom();
	}
	*out = h;
	return 0;
}

void bus__handler_free(struct bus_handler *h)
{
	if (h == NULL)
		return;
	free(h->name);
	free(h->job.queue);
	bus__unique_free(h->job.unique);
	free(h->job.replace);
	free(h);
}
