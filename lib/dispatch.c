/* Dispatch: find the handlers of a message and run each through the
 * middleware chain. This is the hot path: no locks, no allocation unless a
 * handler asks for parsed JSON, sets a result or fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "core.h"
#include "ctx.h"
#include "error.h"
#include "enqueue.h"
#include "json_check.h"
#include "names.h"

/* The innermost step: the handler itself. A failure always leaves a message
 * in ctx->error, so that middleware around it can report it. */
int bus__invoke_handler(bus_ctx *ctx)
{
	const struct bus_handler *h = ctx->handler;
	bus__error_reset();
	int rc = ctx->invoke ? ctx->invoke(ctx, ctx->invoke_arg)
			     : h->fn(ctx, h->udata);
	if (rc == 0)
		return 0;
	if (rc > 0) {
		bus__error_set(BUS_EHANDLER,
			       "returned %d (handlers return 0 or a negative "
			       "BUS_E* code)",
			       rc);
		rc = BUS_EHANDLER;
	}
	if (ctx->error == NULL) {
		/* The handler did not say why: keep what the failing call
		 * inside it said, or name the code. */
		const bus_error *e = bus_error_last();
		ctx->error = strdup(e->code == rc ? e->message
						  : bus_error_name(rc));
	}
	return rc;
}

static int run_from(bus_ctx *ctx, const struct bus_middleware_list *mw,
		    size_t index)
{
	if (mw == NULL || index >= mw->n)
		return bus__invoke_handler(ctx);
	bus_next next = { ctx, mw, index + 1, 0 };
	int rc = mw->items[index].fn(ctx, &next, mw->items[index].udata);
	return rc > 0 ? BUS_EHANDLER : rc;
}

int bus__run_chain(bus_ctx *ctx, const struct bus_middleware_list *mw)
{
	return run_from(ctx, mw, 0);
}

int bus_next_call(bus_next *next)
{
	if (next == NULL)
		return bus__error_set(BUS_EINVAL, "bus_next_call: next is NULL");
	int64_t t0 = bus__mono_ns();
	int rc = run_from(next->ctx, next->mw, next->index);
	next->elapsed_ns = bus__mono_ns() - t0;
	return rc;
}

int64_t bus_next_elapsed_ns(const bus_next *next)
{
	return next ? next->elapsed_ns : 0;
}

static const char *name_what(bus_kind kind)
{
	return kind == BUS_KIND_EVENT ? "event name"
	       : kind == BUS_KIND_COMMAND ? "command name"
					  : "query name";
}

static int check_opts(const bus_dispatch_opts *opts, bus_kind kind)
{
	if (opts == NULL)
		return 0;
	if (opts->version != BUS_DISPATCH_OPTS_VERSION)
		return bus__error_set(BUS_EINVAL,
				      "bus_dispatch_opts.version is %u, expected "
				      "%u: initialise it with "
				      "BUS_DISPATCH_OPTS_INIT",
				      opts->version, BUS_DISPATCH_OPTS_VERSION);
	if (opts->flags & ~BUS_PUBLISH_RUN_ALL)
		return bus__error_set(BUS_EINVAL,
				      "bus_dispatch_opts.flags has unknown bits "
				      "0x%x",
				      opts->flags & ~BUS_PUBLISH_RUN_ALL);
	if ((opts->flags & BUS_PUBLISH_RUN_ALL) && kind != BUS_KIND_EVENT)
		return bus__error_set(BUS_EINVAL,
				      "BUS_PUBLISH_RUN_ALL applies to events "
				      "only, not to a %s",
				      bus__kind_name(kind));
	if (opts->timeout_ms < 0)
		return bus__error_set(BUS_EINVAL,
				      "bus_dispatch_opts.timeout_ms is %lld; it "
				      "must be 0 (none) or positive",
				      (long long)opts->timeout_ms);
	return 0;
}

/* Sets the dispatch's error from the first failed handler call. */
static int report_failure(const struct bus_message *m, const char *handler,
			  int rc, const char *why, size_t failed, size_t ran,
			  int run_all)
{
	const char *kind = bus__kind_name(m->kind);
	if (why == NULL)
		why = bus_error_name(rc);
	if (run_all)
		return bus__error_set(BUS_EHANDLER,
				      "%zu of %zu handlers of %s '%s' failed; "
				      "first, '%s': %s",
				      failed, ran, kind, m->name, handler, why);
	return bus__error_set(rc, "%s '%s' handler '%s' failed: %s", kind,
			      m->name, handler, why);
}

/* The result of a durable command: the job it became. */
static int job_result(char **result, const bus_enqueue_result *res)
{
	static const char *const status[] = { "inserted", "replaced",
					      "duplicate" };
	if (asprintf(result, "{\"job_id\":%lld,\"status\":\"%s\"}",
		     (long long)res->id, status[res->status]) < 0) {
		*result = NULL;
		return bus__error_oom();
	}
	return 0;
}

static int dispatch(bus_publish_result *out, char **result, bus *b,
		    const struct bus_message *parent, bus_kind kind,
		    const char *name, const char *payload,
		    const bus_dispatch_opts *opts)
{
	if (result != NULL)
		*result = NULL;
	if (out != NULL)
		out->handlers = out->failed = out->jobs = 0;
	if (b == NULL)
		return bus__error_set(BUS_EINVAL, "bus is NULL");

	size_t name_len;
	uint64_t hash;
	int rc = bus__name_check(name_what(kind), name, &name_len, &hash);
	if (rc == 0)
		rc = check_opts(opts, kind);
	if (rc != 0)
		return rc;

	if (payload == NULL)
		payload = "null";
	size_t payload_len;
	struct bus_json_error jerr;
	if (bus__json_check(payload, BUS_PAYLOAD_MAX, &payload_len, &jerr) !=
	    0) {
		char what[320];
		snprintf(what, sizeof what, "payload of %s '%s'",
			 bus__kind_name(kind), name);
		return bus__json_error_set(what, &jerr);
	}

	/* Built before the lookup so that bad metadata is refused even when
	 * nothing would run. */
	struct bus_message msg;
	rc = bus__message_init(&msg, b, parent, kind, name, payload,
			       payload_len, opts);
	if (rc != 0) {
		bus__message_fini(&msg);
		return rc;
	}

	const struct bus_topic *topic =
		bus__registry_find(&b->registry, kind, name, name_len, hash);
	const struct bus_handler_list *handlers =
		topic ? bus__topic_handlers(topic) : NULL;
	if (handlers == NULL) {
		bus__message_fini(&msg);
		if (kind != BUS_KIND_EVENT)
			return bus__error_set(BUS_ENOTFOUND,
					      "no handler for %s '%s'",
					      bus__kind_name(kind), name);
		bus__log(&b->log, BUS_LOG_DEBUG, "event '%s' has no handlers",
			 name);
		return 0;
	}

	const struct bus_middleware_list *mw =
		bus__registry_middleware(&b->registry);
	int run_all = opts != NULL && (opts->flags & BUS_PUBLISH_RUN_ALL);
	int first_rc = 0;
	char *first_why = NULL;
	const char *first_handler = NULL;
	size_t ran = 0, failed = 0, n_durable = 0;
	const struct bus_handler *stack_durable[8];
	const struct bus_handler **durable = stack_durable;

	for (size_t i = 0; i < handlers->n; i++) {
		const struct bus_handler *h = handlers->items[i];
		if (h->durable) {
			/* Stored after the in-process handlers succeed. */
			if (n_durable == 8 && durable == stack_durable) {
				durable = malloc(handlers->n * sizeof *durable);
				if (durable == NULL) {
					rc = bus__error_oom();
					break;
				}
				memcpy(durable, stack_durable,
				       sizeof stack_durable);
			}
			durable[n_durable++] = h;
			continue;
		}
		if (msg.deadline_ns != 0 && bus__mono_ns() >= msg.deadline_ns) {
			rc = bus__error_set(BUS_ETIMEOUT,
					    "deadline passed before handler "
					    "'%s' of %s '%s' ran",
					    h->name, bus__kind_name(kind), name);
			break;
		}
		bus_ctx ctx = { &msg, h, NULL, NULL, NULL, 0, NULL, NULL, NULL };
		rc = run_from(&ctx, mw, 0);
		ran++;
		if (rc == 0) {
			if (result != NULL && kind != BUS_KIND_EVENT)
				*result = ctx.result;
			else
				free(ctx.result);
			free(ctx.error);
			continue;
		}
		failed++;
		free(ctx.result);
		if (first_rc == 0) {
			first_rc = rc;
			first_why = ctx.error;
			first_handler = h->name;
		} else {
			free(ctx.error);
		}
		rc = 0;
		if (!run_all)
			break;
	}

	/* rc is set here only when the loop itself stopped (deadline, memory):
	 * that error is already recorded. */
	if (rc == 0 && first_rc != 0)
		rc = report_failure(&msg, first_handler, first_rc, first_why,
				    failed, ran, run_all);
	if ((rc == 0 || (run_all && first_rc != 0)) && n_durable > 0) {
		bus_enqueue_result res;
		int jrc = bus__enqueue_for_message(b, &msg, durable, n_durable,
						   n_durable == 1 ? &res : NULL);
		if (jrc == 0 && out != NULL)
			out->jobs = n_durable;
		if (jrc == 0 && kind != BUS_KIND_EVENT && result != NULL)
			jrc = job_result(result, &res);
		if (rc == 0)
			rc = jrc;
	}
	if (out != NULL) {
		out->handlers = ran;
		out->failed = failed;
	}
	if (durable != stack_durable)
		free(durable);
	free(first_why);
	bus__message_fini(&msg);
	return rc;
}

int bus_publish(bus_publish_result *out, bus *b, const char *event,
		const char *payload, const bus_dispatch_opts *opts)
{
	return dispatch(out, NULL, b, NULL, BUS_KIND_EVENT, event, payload,
			opts);
}

int bus_send(char **result, bus *b, const char *command, const char *payload,
	     const bus_dispatch_opts *opts)
{
	return dispatch(NULL, result, b, NULL, BUS_KIND_COMMAND, command,
			payload, opts);
}

int bus_ask(char **result, bus *b, const char *query, const char *payload,
	    const bus_dispatch_opts *opts)
{
	return dispatch(NULL, result, b, NULL, BUS_KIND_QUERY, query, payload,
			opts);
}

static int no_ctx(char **result, bus_publish_result *out)
{
	if (result != NULL)
		*result = NULL;
	if (out != NULL)
		out->handlers = out->failed = out->jobs = 0;
	return bus__error_set(BUS_EINVAL, "context is NULL");
}

int bus_ctx_publish(bus_publish_result *out, bus_ctx *ctx, const char *event,
		    const char *payload, const bus_dispatch_opts *opts)
{
	if (ctx == NULL)
		return no_ctx(NULL, out);
	return dispatch(out, NULL, ctx->msg->bus, ctx->msg, BUS_KIND_EVENT,
			event, payload, opts);
}

int bus_ctx_send(char **result, bus_ctx *ctx, const char *command,
		 const char *payload, const bus_dispatch_opts *opts)
{
	if (ctx == NULL)
		return no_ctx(result, NULL);
	return dispatch(NULL, result, ctx->msg->bus, ctx->msg,
			BUS_KIND_COMMAND, command, payload, opts);
}

int bus_ctx_ask(char **result, bus_ctx *ctx, const char *query,
		const char *payload, const bus_dispatch_opts *opts)
{
	if (ctx == NULL)
		return no_ctx(result, NULL);
	return dispatch(NULL, result, ctx->msg->bus, ctx->msg, BUS_KIND_QUERY,
			query, payload, opts);
}
