/*
 * A message in flight and the context each of its handler calls gets.
 *
 * One bus_message lives on the dispatcher's stack for the whole dispatch; an
 * event with several handlers shares it (one id, one parse of the payload).
 * Each handler call gets its own bus_ctx on top of it for what is the
 * handler's alone: its result and its failure.
 */
#ifndef BUS_LIB_CTX_H
#define BUS_LIB_CTX_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "registry.h"
#include "uuid.h"

struct cJSON;

enum {
	ID_TEXT_MESSAGE = 1u << 0,
	ID_TEXT_REQUEST = 1u << 1,
	ID_TEXT_CORRELATION = 1u << 2,
	ID_TEXT_CAUSATION = 1u << 3,
};

struct bus_message {
	bus *bus;
	bus_kind kind;
	const char *name;    /* the dispatcher's string */
	const char *payload; /* the dispatcher's string, or "null" */
	size_t payload_len;
	struct cJSON *json; /* parsed on first use; owned */

	bus_uuid id, request_id, correlation_id, causation_id;
	int has_causation;
	unsigned formatted; /* ID_TEXT_* already written below */
	char id_text[BUS_UUID_TEXT_LEN + 1];
	char request_text[BUS_UUID_TEXT_LEN + 1];
	char correlation_text[BUS_UUID_TEXT_LEN + 1];
	char causation_text[BUS_UUID_TEXT_LEN + 1];

	const char *meta;        /* free keys: "{}", the parent's, or meta_owned */
	char *meta_owned;        /* owned */
	struct cJSON *meta_json; /* parsed form of meta; owned */

	void *user;
	int64_t deadline_ns; /* CLOCK_MONOTONIC; 0: none */
	void *tx; /* the application's transaction for durable jobs, or NULL */
};

struct bus_ctx {
	struct bus_message *msg;
	const struct bus_handler *handler;
	char *result; /* owned */
	char *error;  /* owned */
	const bus_job *job; /* a durable call's job (not owned), else NULL */
	int64_t snooze_s;   /* set by bus_ctx_snooze */
	/* When set, the innermost step of the chain calls this instead of the
	 * handler: process isolation hands the job to a child there. */
	int (*invoke)(bus_ctx *ctx, void *arg);
	void *invoke_arg;
	/* A worker sets this non-zero when the job must stop (cancelled, lease
	 * lost, shutdown past its grace): bus_ctx_expired then says so. */
	const atomic_int *abort;
};

struct bus_next {
	bus_ctx *ctx;
	const struct bus_middleware_list *mw;
	size_t index; /* the middleware bus_next_call runs; n: the handler */
	int64_t elapsed_ns;
};

/* Fills `m` for a new message, taking ids, metadata, user pointer and
 * deadline from `parent` (may be NULL) and `opts` (may be NULL). `payload`
 * must have been checked; `payload_len` is its length. */
int bus__message_init(struct bus_message *m, bus *b,
		      const struct bus_message *parent, bus_kind kind,
		      const char *name, const char *payload,
		      size_t payload_len, const bus_dispatch_opts *opts);
void bus__message_fini(struct bus_message *m);

/* Fills `m` for running `job`: its kind, payload, and the ids and free keys
 * stored in its meta; `deadline_ns` (CLOCK_MONOTONIC, 0: none). */
int bus__message_from_job(struct bus_message *m, bus *b, const bus_job *job,
			  bus_kind kind, int64_t deadline_ns);

/* Runs the middleware chain `mw` (may be NULL) around the handler of ctx. */
int bus__run_chain(bus_ctx *ctx, const struct bus_middleware_list *mw);
/* The innermost step alone: the handler (or ctx->invoke), without
 * middleware. A failure always leaves a message in ctx->error. */
int bus__invoke_handler(bus_ctx *ctx);

#endif
