/* The message context: ids, metadata, deadline, lazy parsing, and what a
 * handler hands back (result or failure). */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "core.h"
#include "ctx.h"
#include "error.h"
#include "jobmeta.h"
#include "json_check.h"

static const char empty_object[] = "{}";

/* Takes "request_id", "correlation_id" and "causation_id" out of the caller's
 * metadata object into `m`; what stays is the free keys. */
static int take_id(struct bus_message *m, cJSON *obj, const char *key,
		   bus_uuid *dst, int *has)
{
	cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (item == NULL)
		return 0;
	if (!cJSON_IsString(item) ||
	    bus__uuid_parse(dst, item->valuestring) != 0)
		return bus__error_set(BUS_EINVAL,
				      "metadata of %s '%s': \"%s\" must be a "
				      "UUID string like "
				      "\"0190a6e4-8c5f-7d2e-9a31-5b8c2f1e0d47\"",
				      bus__kind_name(m->kind), m->name, key);
	if (has != NULL)
		*has = 1;
	cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
	return 0;
}

static int parse_meta(struct bus_message *m, const char *meta,
		      int from_job)
{
	size_t len;
	struct bus_json_error jerr;
	if (bus__json_check(meta, BUS_PAYLOAD_MAX, &len, &jerr) != 0) {
		char what[300];
		snprintf(what, sizeof what, "metadata of %s '%s'",
			 bus__kind_name(m->kind), m->name);
		return bus__json_error_set(what, &jerr);
	}
	cJSON *obj = cJSON_ParseWithLength(meta, len);
	if (obj == NULL)
		return bus__error_oom();
	if (!cJSON_IsObject(obj)) {
		cJSON_Delete(obj);
		return bus__error_set(BUS_EINVAL,
				      "metadata of %s '%s' must be a JSON object",
				      bus__kind_name(m->kind), m->name);
	}
	int rc = take_id(m, obj, "request_id", &m->request_id, NULL);
	if (rc == 0)
		rc = take_id(m, obj, "correlation_id", &m->correlation_id, NULL);
	if (rc == 0)
		rc = take_id(m, obj, "causation_id", &m->causation_id,
			     &m->has_causation);
	/* A job's meta also carries the id of the message that made it; for
	 * a caller's metadata, "message_id" is just another free key. */
	if (rc == 0 && from_job)
		rc = take_id(m, obj, "message_id", &m->id, NULL);
	if (rc == 0 && (m->meta_owned = cJSON_PrintUnformatted(obj)) == NULL)
		rc = bus__error_oom();
	if (rc != 0) {
		cJSON_Delete(obj);
		return rc;
	}
	m->meta = m->meta_owned;
	m->meta_json = obj;
	return 0;
}

int bus__message_init(struct bus_message *m, bus *b,
		      const struct bus_message *parent, bus_kind kind,
		      const char *name, const char *payload,
		      size_t payload_len, const bus_dispatch_opts *opts)
{
	m->bus = b;
	m->kind = kind;
	m->name = name;
	m->payload = payload;
	m->payload_len = payload_len;
	m->json = NULL;
	m->formatted = 0;
	m->meta_owned = NULL;
	m->meta_json = NULL;
	bus__uuid7(&m->id);

	if (parent != NULL) {
		m->request_id = parent->request_id;
		m->correlation_id = parent->correlation_id;
		m->causation_id = parent->id;
		m->has_causation = 1;
		m->meta = parent->meta;
		m->user = parent->user;
		m->deadline_ns = parent->deadline_ns;
		m->tx = parent->tx;
	} else {
		/* The first message of a conversation names it. */
		m->request_id = m->id;
		m->correlation_id = m->id;
		m->has_causation = 0;
		m->meta = empty_object;
		m->user = NULL;
		m->deadline_ns = 0;
		m->tx = NULL;
	}
	if (opts == NULL)
		return 0;

	if (opts->user != NULL)
		m->user = opts->user;
	if (opts->tx != NULL)
		m->tx = opts->tx;
	if (opts->timeout_ms > 0) {
		int64_t now = bus__mono_ns();
		int64_t deadline = opts->timeout_ms > (INT64_MAX - now) / 1000000
					   ? INT64_MAX
					   : now + opts->timeout_ms * 1000000;
		if (m->deadline_ns == 0 || deadline < m->deadline_ns)
			m->deadline_ns = deadline;
	}
	if (opts->meta != NULL)
		return parse_meta(m, opts->meta, 0);
	return 0;
}

int bus__message_from_job(struct bus_message *m, bus *b, const bus_job *job,
			  bus_kind kind, int64_t deadline_ns)
{
	const char *payload = job->payload ? job->payload : "null";
	memset(m, 0, sizeof *m);
	m->bus = b;
	m->kind = kind;
	m->name = job->kind;
	m->payload = payload;
	m->payload_len = strlen(payload);
	m->meta = empty_object;
	m->deadline_ns = deadline_ns;
	if (job->meta == NULL) {
		/* Not made by bus_enqueue: a message of its own. */
		bus__uuid7(&m->id);
		m->request_id = m->correlation_id = m->id;
		return 0;
	}
	int rc = bus__job_meta_read(m, job->meta);
	if (rc != 1)
		return rc;
	/* Another layout (a store reordered the keys): parse it. */
	bus__uuid7(&m->id);
	m->request_id = m->correlation_id = m->id;
	return parse_meta(m, job->meta, 1);
}

void bus__message_fini(struct bus_message *m)
{
	cJSON_Delete(m->json);
	cJSON_Delete(m->meta_json);
	free(m->meta_owned);
}

bus *bus_ctx_bus(const bus_ctx *ctx)
{
	return ctx->msg->bus;
}

bus_kind bus_ctx_kind(const bus_ctx *ctx)
{
	return ctx->msg->kind;
}

const char *bus_ctx_name(const bus_ctx *ctx)
{
	return ctx->msg->name;
}

const char *bus_ctx_handler(const bus_ctx *ctx)
{
	return ctx->handler->name;
}

static const char *id_text(struct bus_message *m, const bus_uuid *id,
			   char *buf, unsigned bit)
{
	if (!(m->formatted & bit)) {
		bus__uuid_format(buf, id);
		m->formatted |= bit;
	}
	return buf;
}

const char *bus_ctx_id(bus_ctx *ctx)
{
	struct bus_message *m = ctx->msg;
	return id_text(m, &m->id, m->id_text, ID_TEXT_MESSAGE);
}

const char *bus_ctx_request_id(bus_ctx *ctx)
{
	struct bus_message *m = ctx->msg;
	return id_text(m, &m->request_id, m->request_text, ID_TEXT_REQUEST);
}

const char *bus_ctx_correlation_id(bus_ctx *ctx)
{
	struct bus_message *m = ctx->msg;
	return id_text(m, &m->correlation_id, m->correlation_text,
		       ID_TEXT_CORRELATION);
}

const char *bus_ctx_causation_id(bus_ctx *ctx)
{
	struct bus_message *m = ctx->msg;
	if (!m->has_causation)
		return NULL;
	return id_text(m, &m->causation_id, m->causation_text,
		       ID_TEXT_CAUSATION);
}

const char *bus_ctx_payload(const bus_ctx *ctx)
{
	return ctx->msg->payload;
}

size_t bus_ctx_payload_len(const bus_ctx *ctx)
{
	return ctx->msg->payload_len;
}

const struct cJSON *bus_ctx_json(bus_ctx *ctx)
{
	struct bus_message *m = ctx->msg;
	if (m->json == NULL)
		m->json = cJSON_ParseWithLength(m->payload, m->payload_len);
	return m->json;
}

const char *bus_ctx_meta(const bus_ctx *ctx)
{
	return ctx->msg->meta;
}

const struct cJSON *bus_ctx_meta_json(bus_ctx *ctx)
{
	struct bus_message *m = ctx->msg;
	if (m->meta_json == NULL)
		m->meta_json = cJSON_Parse(m->meta);
	return m->meta_json;
}

void *bus_ctx_user(const bus_ctx *ctx)
{
	return ctx->msg->user;
}

int64_t bus_ctx_remaining_ms(const bus_ctx *ctx)
{
	int64_t deadline = ctx->msg->deadline_ns;
	if (deadline == 0)
		return INT64_MAX;
	int64_t left = deadline - bus__mono_ns();
	/* Round a positive remainder up, so that "0 or less" means the
	 * deadline has really passed. */
	return left > 0 ? (left + 999999) / 1000000 : left / 1000000;
}

int bus_ctx_expired(const bus_ctx *ctx)
{
	if (ctx->abort != NULL &&
	    atomic_load_explicit(ctx->abort, memory_order_relaxed))
		return 1;
	int64_t deadline = ctx->msg->deadline_ns;
	return deadline != 0 && bus__mono_ns() >= deadline;
}

int bus_ctx_set_result(bus_ctx *ctx, const char *json)
{
	if (json == NULL)
		return bus__error_set(BUS_EINVAL,
				      "result of %s '%s' is NULL (use \"null\")",
				      bus__kind_name(ctx->msg->kind),
				      ctx->msg->name);
	size_t len;
	struct bus_json_error jerr;
	if (bus__json_check(json, BUS_PAYLOAD_MAX, &len, &jerr) != 0) {
		char what[300];
		snprintf(what, sizeof what, "result of %s '%s'",
			 bus__kind_name(ctx->msg->kind), ctx->msg->name);
		return bus__json_error_set(what, &jerr);
	}
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return bus__error_oom();
	memcpy(copy, json, len + 1);
	free(ctx->result);
	ctx->result = copy;
	return 0;
}

const char *bus_ctx_result(const bus_ctx *ctx)
{
	return ctx->result;
}

/* Records the handler's message in ctx->error and as this thread's error
 * with `code`, which it returns. */
static int record(bus_ctx *ctx, int code, const char *fmt, va_list ap)
{
	char *text = NULL;
	if (vasprintf(&text, fmt, ap) < 0)
		return bus__error_oom();
	free(ctx->error);
	ctx->error = text;
	return bus__error_set(code, "%s", text);
}

int bus_ctx_fail(bus_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = record(ctx, BUS_EHANDLER, fmt, ap);
	va_end(ap);
	return rc;
}

const char *bus_ctx_error(const bus_ctx *ctx)
{
	return ctx->error;
}

const bus_job *bus_ctx_job(const bus_ctx *ctx)
{
	return ctx->job;
}

static int not_durable(const bus_ctx *ctx, const char *what)
{
	return bus__error_set(BUS_ESTATE,
			      "%s: %s '%s' is not running as a durable job",
			      what, bus__kind_name(ctx->msg->kind),
			      ctx->msg->name);
}

int bus_ctx_snooze(bus_ctx *ctx, int64_t seconds)
{
	if (ctx->job == NULL)
		return not_durable(ctx, "bus_ctx_snooze");
	if (seconds < 0 || seconds > BUS_DELAY_MAX_S)
		return bus__error_set(BUS_EINVAL,
				      "bus_ctx_snooze: %lld seconds is outside "
				      "0..%lld (BUS_DELAY_MAX_S)",
				      (long long)seconds,
				      (long long)BUS_DELAY_MAX_S);
	ctx->snooze_s = seconds;
	free(ctx->error);
	ctx->error = NULL;
	if (asprintf(&ctx->error, "snoozed for %llds", (long long)seconds) < 0)
		ctx->error = NULL;
	return bus__error_set(BUS_ESNOOZE, "snoozed for %llds",
			      (long long)seconds);
}

int bus_ctx_cancel(bus_ctx *ctx, const char *fmt, ...)
{
	if (ctx->job == NULL)
		return not_durable(ctx, "bus_ctx_cancel");
	va_list ap;
	va_start(ap, fmt);
	int rc = record(ctx, BUS_ECANCEL, fmt, ap);
	va_end(ap);
	return rc;
}
