/*
 * Enqueueing: resolves a job's options (the call's, then its handler's, then
 * the defaults), checks them, computes the unique key, and hands the batch
 * to the store in one atomic insert. Policy stays here; the store only
 * stores.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "enqueue.h"
#include "error.h"
#include "jobmeta.h"
#include "json_check.h"
#include "names.h"
#include "strmap.h"
#include "unique.h"

#define DEFAULT_QUEUE "default"
#define DEFAULT_MAX_ATTEMPTS 3

/* One job on its way to the store, with the memory its fields point to. */
struct prepared {
	bus_store_new_job job;
	char key[BUS_UNIQUE_KEY_LEN + 1];
	char *meta; /* owned */
};

static int check_tags(const char *what, const char *tags)
{
	size_t len;
	struct bus_json_error jerr;
	if (bus__json_check(tags, BUS_PAYLOAD_MAX, &len, &jerr) != 0) {
		char w[700];
		snprintf(w, sizeof w, "tags of %s", what);
		return bus__json_error_set(w, &jerr);
	}
	cJSON *arr = cJSON_ParseWithLength(tags, len);
	if (arr == NULL)
		return bus__error_oom();
	int ok = cJSON_IsArray(arr);
	for (const cJSON *t = ok ? arr->child : NULL; t && ok; t = t->next)
		ok = cJSON_IsString(t);
	if (!ok) {
		cJSON_Delete(arr);
		return bus__error_set(BUS_EINVAL,
				      "tags of %s must be a JSON array of strings",
				      what);
	}
	/* Each tag is a name: UTF-8, no control characters, bounded. */
	int rc = 0, i = 0;
	for (const cJSON *t = arr->child; t && rc == 0; t = t->next, i++) {
		char w[720];
		size_t tlen;
		uint64_t hash;
		snprintf(w, sizeof w, "tag %d of %s", i, what);
		rc = bus__name_check(w, t->valuestring, &tlen, &hash);
	}
	cJSON_Delete(arr);
	return rc;
}

/*
 * The time of one enqueue call. A unique period's bucket must come from
 * the time the store stamps the job with (inserted_at, or scheduled_at
 * from it), which is the store's clock unless the bus has a clock of its
 * own: so the store is asked, once per call and only when a job needs it,
 * and the jobs are then inserted with that time.
 */
struct enqueue_clock {
	bus *b;
	int64_t now;	/* the bus's clock, or the store's once read */
	int from_store; /* now was read from the store */
};

static void clock_init(struct enqueue_clock *c, bus *b)
{
	c->b = b;
	c->now = bus__now(b);
	c->from_store = 0;
}

/* The time inserted_at will have. */
static int clock_for_period(struct enqueue_clock *c, int64_t *out)
{
	if (c->now == 0) {
		bus_store *s = NULL;
		int64_t t = 0;
		int rc = bus__store_acquire(&c->b->store, &s);
		if (rc != 0)
			return rc;
		rc = c->b->store.ops->now(s, &t);
		bus__store_release(&c->b->store, s);
		if (rc != 0)
			return rc;
		c->now = t;
		c->from_store = 1;
	}
	*out = c->now;
	return 0;
}

/*
 * Fills `p` for a job of `handler` (kind `m->name`) from `opts` (may be
 * NULL), then the handler `h` registered or declared on this bus (its
 * function may be NULL: a producer need only declare the job's options),
 * then the defaults.
 */
static int prepare(struct prepared *p, bus *b, const struct bus_message *m,
		   const char *handler, const struct bus_handler *h,
		   const bus_job_opts *opts, struct enqueue_clock *clk)
{
	static const bus_job_opts no_opts = BUS_JOB_OPTS_INIT;
	if (opts == NULL)
		opts = &no_opts;
	const struct bus_job_defaults *d = h ? &h->job : NULL;
	const bus_unique_opts *unique =
		opts->unique ? opts->unique : d ? d->unique : NULL;
	const bus_replace_opts *replace =
		opts->replace ? opts->replace : d ? d->replace : NULL;
	int rc;
	/* A handler's own defaults were checked when it was registered: only
	 * options given with the call need checking (and naming, for the
	 * message). */
	if (opts != &no_opts) {
		char what[600];
		snprintf(what, sizeof what, "job of %s '%s' for handler '%s'",
			 bus__kind_name(m->kind), m->name, handler);
		if (opts->version != BUS_JOB_OPTS_VERSION)
			return bus__error_set(BUS_EINVAL,
					      "%s: bus_job_opts.version is %u, "
					      "expected %u: initialise it with "
					      "BUS_JOB_OPTS_INIT",
					      what, opts->version,
					      BUS_JOB_OPTS_VERSION);
		rc = bus__job_defaults_check(what, opts->queue, opts->priority,
					     opts->max_attempts,
					     opts->timeout_ms, unique, replace);
		if (rc != 0)
			return rc;
		if (opts->run_at < 0 || opts->run_in_ms < 0 ||
		    (opts->run_at != 0 && opts->run_in_ms != 0))
			return bus__error_set(BUS_EINVAL,
					      "%s: give run_at or run_in_ms (not "
					      "both, not negative)",
					      what);
		if (opts->run_in_ms > BUS_DELAY_MAX_S * 1000)
			return bus__error_set(BUS_EINVAL,
					      "%s: run_in_ms %lld is above %lld "
					      "(BUS_DELAY_MAX_S)",
					      what, (long long)opts->run_in_ms,
					      (long long)(BUS_DELAY_MAX_S *
							  1000));
		if (opts->run_at > BUS_TIME_MAX_US)
			return bus__error_set(BUS_EINVAL,
					      "%s: run_at %lld is after "
					      "BUS_TIME_MAX_US (year 9999)",
					      what, (long long)opts->run_at);
		if (opts->tags != NULL &&
		    (rc = check_tags(what, opts->tags)) != 0)
			return rc;
	}

	bus_store_new_job *j = &p->job;
	memset(j, 0, sizeof *j);
	j->kind = m->name;
	j->handler = handler;
	j->queue = opts->queue                ? opts->queue
		   : d != NULL && d->queue != NULL ? d->queue
						  : DEFAULT_QUEUE;
	j->priority = opts->priority != BUS_UNSET ? opts->priority
		      : d != NULL && d->priority != BUS_UNSET ? d->priority
							      : 0;
	j->max_attempts = opts->max_attempts != BUS_UNSET ? opts->max_attempts
			  : d != NULL && d->max_attempts != BUS_UNSET
				  ? d->max_attempts
				  : DEFAULT_MAX_ATTEMPTS;
	j->timeout_ms = opts->timeout_ms ? opts->timeout_ms
			: d != NULL     ? d->timeout_ms
					: 0;
	j->payload = m->payload;
	j->tags = opts->tags ? opts->tags : "[]";
	j->scheduled_at = opts->run_at;
	j->delay_us = opts->run_in_ms * 1000;
	if ((rc = bus__job_meta_write(&p->meta, m)) != 0)
		return rc;
	j->meta = p->meta;

	if (unique != NULL) {
		/* The bucket's time: the store's, as it will stamp the job. */
		int64_t now = 0;
		if (unique->period_s > 0 &&
		    (unique->period_base == BUS_UNIQUE_BY_INSERTED_AT ||
		     j->scheduled_at == 0) &&
		    (rc = clock_for_period(clk, &now)) != 0)
			return rc;
		struct bus_unique_input in = {
			j->kind, j->handler, j->queue, j->priority,
			j->max_attempts, j->timeout_ms, j->payload, j->tags,
			m->meta, now,
			j->scheduled_at ? j->scheduled_at : now + j->delay_us,
		};
		if ((rc = bus__unique_key(p->key, unique, &in)) != 0)
			return rc;
		j->unique_key = p->key;
		j->unique_states = bus__unique_states(unique);
		j->replace = replace ? replace->fields : NULL;
	}
	return 0;
}

/* Inserts prepared jobs in one store call: through the bus's own
 * connection, or the application's transaction `tx`. */
static int insert(bus *b, void *tx, struct prepared *p, size_t n,
		  const struct enqueue_clock *clk, bus_enqueue_result *results)
{
	if (tx != NULL && b->store.ops->insert_tx == NULL)
		return bus__error_set(BUS_EINVAL,
				      "the %s store has no transactions: enqueue "
				      "without a tx (outbox) connection",
				      b->store.ops->name);
	bus_store_new_job stack_jobs[16];
	bus_enqueue_result stack_results[16];
	bus_store_new_job *jobs =
		n <= 16 ? stack_jobs : malloc(n * sizeof *jobs);
	bus_enqueue_result *res = results ? results
				  : n <= 16 ? stack_results
					    : malloc(n * sizeof *res);
	int rc = 0;
	if (jobs == NULL || res == NULL)
		rc = bus__error_oom();
	for (size_t i = 0; rc == 0 && i < n; i++)
		jobs[i] = p[i].job;
	bus_store *s = NULL;
	if (rc == 0)
		rc = bus__store_acquire(&b->store, &s);
	if (rc == 0) {
		/* The time the unique keys were made with, if any. */
		int64_t now = clk->from_store ? clk->now : bus__now(b);
		rc = tx ? b->store.ops->insert_tx(s, tx, now, jobs, n, res)
			: b->store.ops->insert(s, now, jobs, n, res);
		bus__store_release(&b->store, s);
	}
	/* A job in the application's transaction is not visible before its
	 * commit: waking workers for it would find nothing. */
	if (rc == 0 && tx == NULL)
		bus__wake_workers(b);
	if (jobs != stack_jobs)
		free(jobs);
	if (res != results && res != stack_results)
		free(res);
	return rc;
}

static void prepared_free(struct prepared *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(p[i].meta);
	free(p);
}

int bus__enqueue_for_message(bus *b, const struct bus_message *m,
			     const struct bus_handler *const *handlers,
			     size_t n, bus_enqueue_result *results)
{
	struct prepared *p = calloc(n, sizeof *p);
	if (p == NULL)
		return bus__error_oom();
	struct enqueue_clock clk;
	clock_init(&clk, b);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = prepare(&p[i], b, m, handlers[i]->name, handlers[i], NULL,
			     &clk);
	if (rc == 0)
		rc = insert(b, m->tx, p, n, &clk, results);
	prepared_free(p, n);
	return rc;
}

/* Builds the message a job is made from: its kind, payload and the ids it
 * inherits from `parent` or takes from the option's meta. */
static int item_message(struct bus_message *m, bus *b,
			const struct bus_message *parent,
			const bus_enqueue_item *item)
{
	size_t len;
	uint64_t hash;
	int rc = bus__name_check("job kind", item->kind, &len, &hash);
	if (rc == 0 && item->handler != NULL)
		rc = bus__name_check("handler name", item->handler, &len, &hash);
	if (rc != 0)
		return rc;
	const char *payload = item->payload ? item->payload : "null";
	struct bus_json_error jerr;
	if (bus__json_check(payload, BUS_PAYLOAD_MAX, &len, &jerr) != 0) {
		char what[320];
		snprintf(what, sizeof what, "payload of job '%s'", item->kind);
		return bus__json_error_set(what, &jerr);
	}
	bus_dispatch_opts dopts = BUS_DISPATCH_OPTS_INIT;
	dopts.meta = item->opts ? item->opts->meta : NULL;
	rc = bus__message_init(m, b, parent, BUS_KIND_COMMAND, item->kind,
			       payload, len, &dopts);
	if (rc != 0)
		bus__message_fini(m);
	return rc;
}

/*
 * A job's options (queue, attempts, timeout, backoff) are its handler's. A
 * producer that has neither registered nor declared the handler stores the
 * library's defaults (queue "default", 3 attempts, no timeout), which may
 * not be what the workers serve: say so, once per handler and bus.
 */
static void warn_unknown(bus *b, const char *kind, const char *handler)
{
	uint64_t hash = bus__name_hash(handler, strlen(handler));
	_Atomic uint64_t *slot = &b->unknown_warned[hash % 64];
	if (atomic_exchange(slot, hash) == hash)
		return;
	bus__log(&b->log, BUS_LOG_WARN,
		 "job kind '%s': no durable handler '%s' is registered or "
		 "declared on this bus, so its job gets the default options "
		 "(queue 'default', 3 attempts, no timeout) unless the call "
		 "sets them; declare the handler's options (a durable handler "
		 "with a NULL function) so producers store what its workers "
		 "expect",
		 kind, handler);
}

static int enqueue_items(bus_enqueue_result *results, bus *b, void *tx,
			 const struct bus_message *parent,
			 const bus_enqueue_item *items, size_t n)
{
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");
	if (n == 0)
		return 0;
	if (items == NULL)
		return bus__error_set(BUS_EINVAL, "bus_enqueue_many: items is "
						  "NULL");
	struct prepared *p = calloc(n, sizeof *p);
	if (p == NULL)
		return bus__error_oom();
	struct enqueue_clock clk;
	clock_init(&clk, b);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct bus_message m;
		rc = item_message(&m, b, parent, &items[i]);
		if (rc != 0)
			break;
		const char *handler =
			items[i].handler ? items[i].handler : items[i].kind;
		const struct bus_handler *h =
			bus__registry_find_durable(&b->registry, handler);
		rc = prepare(&p[i], b, &m, handler, h, items[i].opts, &clk);
		if (rc == 0 && h == NULL)
			warn_unknown(b, items[i].kind, handler);
		bus__message_fini(&m);
	}
	if (rc == 0)
		rc = insert(b, tx ? tx : parent ? parent->tx : NULL, p, n,
			    &clk, results);
	prepared_free(p, n);
	return rc;
}

int bus_enqueue_many(bus_enqueue_result *results, bus *b,
		     const bus_enqueue_item *items, size_t n)
{
	return enqueue_items(results, b, NULL, NULL, items, n);
}

int bus_enqueue_many_tx(bus_enqueue_result *results, bus *b, void *tx,
			const bus_enqueue_item *items, size_t n)
{
	if (tx == NULL)
		return bus__error_set(BUS_EINVAL, "bus_enqueue_many_tx: tx is "
						  "NULL");
	return enqueue_items(results, b, tx, NULL, items, n);
}

int bus_enqueue_tx(bus_enqueue_result *result, bus *b, void *tx,
		   const char *kind, const char *payload,
		   const bus_job_opts *opts)
{
	bus_enqueue_item item = { kind, NULL, payload, opts };
	return bus_enqueue_many_tx(result, b, tx, &item, 1);
}

int bus_enqueue_to(bus_enqueue_result *result, bus *b, const char *kind,
		   const char *handler, const char *payload,
		   const bus_job_opts *opts)
{
	bus_enqueue_item item = { kind, handler, payload, opts };
	return enqueue_items(result, b, NULL, NULL, &item, 1);
}

int bus_enqueue(bus_enqueue_result *result, bus *b, const char *kind,
		const char *payload, const bus_job_opts *opts)
{
	return bus_enqueue_to(result, b, kind, NULL, payload, opts);
}

int bus_ctx_enqueue(bus_enqueue_result *result, bus_ctx *ctx,
		    const char *kind, const char *payload,
		    const bus_job_opts *opts)
{
	if (ctx == NULL)
		return bus__error_set(BUS_EINVAL, "context is NULL");
	bus_enqueue_item item = { kind, NULL, payload, opts };
	return enqueue_items(result, ctx->msg->bus, NULL, ctx->msg, &item, 1);
}
