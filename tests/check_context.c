/*
 * The context handed to handlers: message ids and correlation, metadata,
 * user pointer, deadline, payload access, kind and name.
 */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "testutil.h"

#define ID_LEN 36
#define REQUEST_ID "0190a6e4-8c5f-7d2e-9a31-5b8c2f1e0d47"
#define CORRELATION_ID "0190a6e4-0000-7000-8000-00000000c0de"

/* What one handler call saw of its context. */
struct view {
	int calls;
	char id[ID_LEN + 1];
	char request_id[ID_LEN + 1];
	char correlation_id[ID_LEN + 1];
	char causation_id[ID_LEN + 1]; /* "" when NULL */
	int has_causation;
	char meta[512];
	char tenant[64]; /* meta key "tenant", "" when absent */
	void *user;
	bus_kind kind;
	char name[256];
	char handler[256];
	bus *bus;
};

static void copy_id(char dst[ID_LEN + 1], const char *src)
{
	snprintf(dst, ID_LEN + 1, "%s", src ? src : "");
}

static void take_view(struct view *v, bus_ctx *ctx)
{
	v->calls++;
	copy_id(v->id, bus_ctx_id(ctx));
	copy_id(v->request_id, bus_ctx_request_id(ctx));
	copy_id(v->correlation_id, bus_ctx_correlation_id(ctx));
	const char *cause = bus_ctx_causation_id(ctx);
	v->has_causation = cause != NULL;
	copy_id(v->causation_id, cause);
	snprintf(v->meta, sizeof v->meta, "%s", bus_ctx_meta(ctx));
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(bus_ctx_meta_json(ctx),
							  "tenant");
	snprintf(v->tenant, sizeof v->tenant, "%s",
		 cJSON_IsString(t) ? t->valuestring : "");
	v->user = bus_ctx_user(ctx);
	v->kind = bus_ctx_kind(ctx);
	snprintf(v->name, sizeof v->name, "%s", bus_ctx_name(ctx));
	snprintf(v->handler, sizeof v->handler, "%s", bus_ctx_handler(ctx));
	v->bus = bus_ctx_bus(ctx);
}

static int view_handler(bus_ctx *ctx, void *udata)
{
	take_view(udata, ctx);
	return 0;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* A lower-case RFC 9562 UUID of version 7 and variant 10xx. */
static void assert_uuid7(const char *id)
{
	ck_assert_msg(strlen(id) == ID_LEN, "\"%s\" is not 36 characters", id);
	for (int i = 0; i < ID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			ck_assert_msg(id[i] == '-', "\"%s\": no dash at %d", id, i);
		else
			ck_assert_msg(is_hex(id[i]), "\"%s\": not hex at %d", id,
				      i);
	}
	ck_assert_msg(id[14] == '7', "\"%s\" is not version 7", id);
	ck_assert_msg(strchr("89ab", id[19]) != NULL,
		      "\"%s\" does not have the RFC 9562 variant", id);
}

/* ---- ids ----------------------------------------------------------------- */

START_TEST(message_id_is_a_uuidv7)
{
	bus *b = open_bus();
	struct view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", view_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	assert_uuid7(v.id);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), 0);
	assert_uuid7(v.id);
	bus_close(b);
}
END_TEST

/* Keeps the id of every call. */
struct id_log {
	int n;
	char ids[2000][ID_LEN + 1];
};

static int log_id(bus_ctx *ctx, void *udata)
{
	struct id_log *l = udata;
	copy_id(l->ids[l->n++], bus_ctx_id(ctx));
	return 0;
}

START_TEST(message_ids_differ_and_increase_within_a_thread)
{
	bus *b = open_bus();
	struct id_log *l = calloc(1, sizeof *l);
	ck_assert_ptr_nonnull(l);
	ck_assert_int_eq(bus_on(b, "e", log_id, l, NULL), 0);
	ck_assert_int_eq(bus_handle_query(b, "q", log_id, l, NULL), 0);
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
		ck_assert_int_eq(bus_ask(NULL, b, "q", NULL, NULL), 0);
	}
	ck_assert_int_eq(l->n, 2000);
	for (int i = 1; i < l->n; i++)
		ck_assert_msg(strcmp(l->ids[i - 1], l->ids[i]) < 0,
			      "id %d \"%s\" is not after id %d \"%s\"", i,
			      l->ids[i], i - 1, l->ids[i - 1]);
	free(l);
	bus_close(b);
}
END_TEST

START_TEST(handlers_of_one_event_share_its_message_id)
{
	bus *b = open_bus();
	struct view v1 = { 0 }, v2 = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v1, NULL), 0);
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v2, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_str_eq(v1.id, v2.id);
	ck_assert_str_eq(v1.handler, "e#1");
	ck_assert_str_eq(v2.handler, "e#2");
	bus_close(b);
}
END_TEST

START_TEST(top_level_message_names_its_own_request_and_correlation)
{
	bus *b = open_bus();
	struct view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(v.calls, 1);
	ck_assert_str_eq(v.request_id, v.id);
	ck_assert_str_eq(v.correlation_id, v.id);
	ck_assert_int_eq(v.has_causation, 0);
	bus_close(b);
}
END_TEST

/* A three-level conversation: command "parent" publishes event "child",
 * whose handler asks query "grandchild" and sends command "sibling". */
struct chain {
	struct view parent, child, grandchild, sibling;
	int child_rc, grandchild_rc, sibling_rc;
	char *grandchild_result;
};

static int parent_handler(bus_ctx *ctx, void *udata)
{
	struct chain *c = udata;
	take_view(&c->parent, ctx);
	c->child_rc = bus_ctx_publish(NULL, ctx, "child", "{}", NULL);
	return 0;
}

static int child_handler(bus_ctx *ctx, void *udata)
{
	struct chain *c = udata;
	take_view(&c->child, ctx);
	c->grandchild_rc = bus_ctx_ask(&c->grandchild_result, ctx,
				       "grandchild", NULL, NULL);
	c->sibling_rc = bus_ctx_send(NULL, ctx, "sibling", NULL, NULL);
	return 0;
}

static int grandchild_handler(bus_ctx *ctx, void *udata)
{
	struct chain *c = udata;
	take_view(&c->grandchild, ctx);
	return bus_ctx_set_result(ctx, "\"deep\"");
}

static int sibling_handler(bus_ctx *ctx, void *udata)
{
	struct chain *c = udata;
	take_view(&c->sibling, ctx);
	return 0;
}

static bus *open_chain_bus(struct chain *c)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_handle_command(b, "parent", parent_handler, c,
					    NULL),
			 0);
	ck_assert_int_eq(bus_on(b, "child", child_handler, c, NULL), 0);
	ck_assert_int_eq(bus_handle_query(b, "grandchild", grandchild_handler,
					  c, NULL),
			 0);
	ck_assert_int_eq(bus_handle_command(b, "sibling", sibling_handler, c,
					    NULL),
			 0);
	return b;
}

static void assert_chain_ran(const struct chain *c)
{
	ck_assert_int_eq(c->child_rc, 0);
	ck_assert_int_eq(c->grandchild_rc, 0);
	ck_assert_int_eq(c->sibling_rc, 0);
	ck_assert_int_eq(c->parent.calls, 1);
	ck_assert_int_eq(c->child.calls, 1);
	ck_assert_int_eq(c->grandchild.calls, 1);
	ck_assert_int_eq(c->sibling.calls, 1);
}

START_TEST(nested_dispatch_inherits_request_and_correlation_ids)
{
	struct chain c = { 0 };
	bus *b = open_chain_bus(&c);
	ck_assert_int_eq(bus_send(NULL, b, "parent", NULL, NULL), 0);
	assert_chain_ran(&c);
	const struct view *all[] = { &c.child, &c.grandchild, &c.sibling };
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(all[i]->request_id, c.parent.id);
		ck_assert_str_eq(all[i]->correlation_id, c.parent.id);
		assert_uuid7(all[i]->id);
	}
	ck_assert_str_ne(c.child.id, c.parent.id);
	ck_assert_str_ne(c.grandchild.id, c.child.id);
	ck_assert_str_ne(c.sibling.id, c.grandchild.id);
	ck_assert_pstr_eq(c.grandchild_result, "\"deep\"");
	bus_free(c.grandchild_result);
	bus_close(b);
}
END_TEST

START_TEST(nested_dispatch_is_caused_by_the_dispatching_message)
{
	struct chain c = { 0 };
	bus *b = open_chain_bus(&c);
	ck_assert_int_eq(bus_send(NULL, b, "parent", NULL, NULL), 0);
	assert_chain_ran(&c);
	ck_assert_int_eq(c.parent.has_causation, 0);
	ck_assert_int_eq(c.child.has_causation, 1);
	ck_assert_str_eq(c.child.causation_id, c.parent.id);
	ck_assert_int_eq(c.grandchild.has_causation, 1);
	ck_assert_str_eq(c.grandchild.causation_id, c.child.id);
	ck_assert_int_eq(c.sibling.has_causation, 1);
	ck_assert_str_eq(c.sibling.causation_id, c.child.id);
	bus_free(c.grandchild_result);
	bus_close(b);
}
END_TEST

/* ---- metadata ------------------------------------------------------------ */

START_TEST(meta_ids_are_honoured_and_kept_out_of_the_free_keys)
{
	bus *b = open_bus();
	struct view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.meta = "{\"request_id\":\"" REQUEST_ID "\","
		    "\"tenant\":\"acme\",\"correlation_id\":\"" CORRELATION_ID
		    "\",\"n\":3}";
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, &opts), 0);
	ck_assert_int_eq(v.calls, 1);
	ck_assert_str_eq(v.request_id, REQUEST_ID);
	ck_assert_str_eq(v.correlation_id, CORRELATION_ID);
	ck_assert_str_ne(v.id, REQUEST_ID);
	ck_assert_int_eq(v.has_causation, 0);

	cJSON *meta = cJSON_Parse(v.meta);
	ck_assert_msg(cJSON_IsObject(meta), "bus_ctx_meta is \"%s\"", v.meta);
	ck_assert_ptr_null(cJSON_GetObjectItem(meta, "request_id"));
	ck_assert_ptr_null(cJSON_GetObjectItem(meta, "correlation_id"));
	const cJSON *tenant = cJSON_GetObjectItem(meta, "tenant");
	ck_assert(cJSON_IsString(tenant));
	ck_assert_str_eq(tenant->valuestring, "acme");
	ck_assert_int_eq(cJSON_GetObjectItem(meta, "n")->valueint, 3);
	ck_assert_int_eq(cJSON_GetArraySize(meta), 2);
	cJSON_Delete(meta);
	ck_assert_str_eq(v.tenant, "acme");
	bus_close(b);
}
END_TEST

START_TEST(meta_request_id_alone_leaves_correlation_to_the_message)
{
	bus *b = open_bus();
	struct view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.meta = "{\"request_id\":\"" REQUEST_ID "\"}";
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, &opts), 0);
	ck_assert_str_eq(v.request_id, REQUEST_ID);
	ck_assert_str_eq(v.correlation_id, v.id);
	ck_assert_str_eq(v.meta, "{}");
	bus_close(b);
}
END_TEST

START_TEST(meta_free_keys_and_ids_are_inherited_by_nested_dispatch)
{
	struct chain c = { 0 };
	bus *b = open_chain_bus(&c);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.meta = "{\"tenant\":\"acme\",\"request_id\":\"" REQUEST_ID "\"}";
	ck_assert_int_eq(bus_send(NULL, b, "parent", NULL, &opts), 0);
	assert_chain_ran(&c);
	const struct view *all[] = { &c.parent, &c.child, &c.grandchild,
				     &c.sibling };
	for (int i = 0; i < 4; i++) {
		ck_assert_str_eq(all[i]->tenant, "acme");
		ck_assert_str_eq(all[i]->request_id, REQUEST_ID);
		ck_assert_str_eq(all[i]->correlation_id, c.parent.id);
		ck_assert_ptr_null(strstr(all[i]->meta, "request_id"));
	}
	bus_free(c.grandchild_result);
	bus_close(b);
}
END_TEST

/* bus.h: meta is request_id, correlation_id, "and any other keys the
 * handlers should see". A caller's key named "message_id" is one of those:
 * it neither sets the message's id nor is refused. */
START_TEST(meta_key_message_id_is_a_free_key_not_the_message_id)
{
	bus *b = open_bus();
	struct view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.meta = "{\"message_id\":\"msg-17\"}";
	ck_assert_msg(bus_publish(NULL, b, "e", NULL, &opts) == 0,
		      "free key \"message_id\" refused: %s",
		      bus_error_last()->message);
	ck_assert_int_eq(v.calls, 1);
	ck_assert_ptr_nonnull(strstr(v.meta, "msg-17"));

	/* A UUIDv4 there must not become the id of the message. */
	opts.meta = "{\"message_id\":\"6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b\"}";
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, &opts), 0);
	ck_assert_int_eq(v.calls, 2);
	ck_assert_str_ne(v.id, "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b");
	assert_uuid7(v.id);
	ck_assert_ptr_nonnull(strstr(v.meta, "6f1c2a9e"));
	bus_close(b);
}
END_TEST

START_TEST(no_meta_is_an_empty_object)
{
	bus *b = open_bus();
	struct view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_str_eq(v.meta, "{}");
	ck_assert_str_eq(v.tenant, "");
	bus_close(b);
}
END_TEST

static void expect_meta_refused(const char *meta, const char *why)
{
	bus *b = open_bus();
	struct view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", view_handler, &v, NULL), 0);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.meta = meta;
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, &opts), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, why);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, &opts), BUS_EINVAL);
	/* Refused even when nothing would run. */
	ck_assert_int_eq(bus_publish(NULL, b, "nobody", NULL, &opts),
			 BUS_EINVAL);
	ck_assert_int_eq(v.calls, 0);
	bus_close(b);
}

START_TEST(meta_with_a_non_uuid_request_id_is_einval)
{
	expect_meta_refused("{\"request_id\":\"req-42\"}", "request_id");
	expect_meta_refused("{\"request_id\":42}", "request_id");
	expect_meta_refused("{\"correlation_id\":\"" REQUEST_ID "x\"}",
			    "correlation_id");
	expect_meta_refused("{\"request_id\":\"0190a6e4-8c5f-7d2e-9a31-"
			    "5b8c2f1e0d4\"}",
			    "request_id");
}
END_TEST

START_TEST(meta_that_is_not_an_object_is_einval)
{
	expect_meta_refused("[]", "object");
	expect_meta_refused("\"tenant\"", "object");
	expect_meta_refused("null", "object");
	expect_meta_refused("7", "object");
}
END_TEST

/* ---- user pointer -------------------------------------------------------- */

START_TEST(user_pointer_is_passed_and_inherited)
{
	struct chain c = { 0 };
	bus *b = open_chain_bus(&c);
	int app_state = 0;
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.user = &app_state;
	ck_assert_int_eq(bus_send(NULL, b, "parent", NULL, &opts), 0);
	assert_chain_ran(&c);
	ck_assert_ptr_eq(c.parent.user, &app_state);
	ck_assert_ptr_eq(c.child.user, &app_state);
	ck_assert_ptr_eq(c.grandchild.user, &app_state);
	bus_free(c.grandchild_result);
	bus_close(b);
}
END_TEST

struct user_override {
	int other;
	void *seen;
};

static int override_parent(bus_ctx *ctx, void *udata)
{
	struct user_override *u = udata;
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.user = &u->other;
	return bus_ctx_publish(NULL, ctx, "child", NULL, &opts);
}

static int override_child(bus_ctx *ctx, void *udata)
{
	struct user_override *u = udata;
	u->seen = bus_ctx_user(ctx);
	return 0;
}

START_TEST(nested_dispatch_may_set_its_own_user_pointer)
{
	bus *b = open_bus();
	struct user_override u = { 0, NULL };
	int outer = 0;
	ck_assert_int_eq(bus_handle_command(b, "parent", override_parent, &u,
					    NULL),
			 0);
	ck_assert_int_eq(bus_on(b, "child", override_child, &u, NULL), 0);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.user = &outer;
	ck_assert_int_eq(bus_send(NULL, b, "parent", NULL, &opts), 0);
	ck_assert_ptr_eq(u.seen, &u.other);
	bus_close(b);
}
END_TEST

START_TEST(user_pointer_is_null_by_default)
{
	bus *b = open_bus();
	struct view v = { 0 };
	v.user = &v;
	ck_assert_int_eq(bus_on(b, "e", view_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_ptr_null(v.user);
	bus_close(b);
}
END_TEST

/* ---- deadline ------------------------------------------------------------ */

struct deadline_view {
	int calls;
	int64_t remaining_ms;
	int expired;
	int64_t nested_remaining_ms;
	int nested_calls;
	int nested_rc;
	int64_t nested_timeout_ms; /* the nested dispatch's own timeout */
	long sleep_ms;             /* before the nested dispatch */
	int remaining_after_sleep;
	int expired_after_sleep;
};

static int deadline_handler(bus_ctx *ctx, void *udata)
{
	struct deadline_view *d = udata;
	d->calls++;
	d->remaining_ms = bus_ctx_remaining_ms(ctx);
	d->expired = bus_ctx_expired(ctx);
	if (d->sleep_ms > 0) {
		sleep_ms(d->sleep_ms);
		d->remaining_after_sleep = (int)bus_ctx_remaining_ms(ctx);
		d->expired_after_sleep = bus_ctx_expired(ctx);
	}
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.timeout_ms = d->nested_timeout_ms;
	d->nested_rc = bus_ctx_send(NULL, ctx, "nested", NULL, &opts);
	return 0;
}

static int nested_deadline_handler(bus_ctx *ctx, void *udata)
{
	struct deadline_view *d = udata;
	d->nested_calls++;
	d->nested_remaining_ms = bus_ctx_remaining_ms(ctx);
	return 0;
}

static bus *open_deadline_bus(struct deadline_view *d)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_handle_command(b, "outer", deadline_handler, d,
					    NULL),
			 0);
	ck_assert_int_eq(bus_handle_command(b, "nested",
					    nested_deadline_handler, d, NULL),
			 0);
	return b;
}

START_TEST(without_timeout_there_is_no_deadline)
{
	struct deadline_view d = { 0 };
	bus *b = open_deadline_bus(&d);
	ck_assert_int_eq(bus_send(NULL, b, "outer", NULL, NULL), 0);
	ck_assert_int_eq(d.calls, 1);
	ck_assert(d.remaining_ms == INT64_MAX);
	ck_assert_int_eq(d.expired, 0);
	ck_assert(d.nested_remaining_ms == INT64_MAX);
	bus_close(b);
}
END_TEST

START_TEST(timeout_gives_remaining_time_within_it)
{
	struct deadline_view d = { 0 };
	bus *b = open_deadline_bus(&d);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.timeout_ms = 600000;
	ck_assert_int_eq(bus_send(NULL, b, "outer", NULL, &opts), 0);
	ck_assert_int_eq(d.calls, 1);
	ck_assert_msg(d.remaining_ms > 0 && d.remaining_ms <= 600000,
		      "remaining %lld ms", (long long)d.remaining_ms);
	ck_assert_int_eq(d.expired, 0);
	ck_assert_int_eq(d.nested_rc, 0);
	ck_assert_msg(d.nested_remaining_ms > 0 &&
			      d.nested_remaining_ms <= 600000,
		      "nested remaining %lld ms",
		      (long long)d.nested_remaining_ms);
	bus_close(b);
}
END_TEST

START_TEST(context_expires_once_its_timeout_has_passed)
{
	struct deadline_view d = { 0 };
	d.sleep_ms = 60;
	bus *b = open_deadline_bus(&d);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.timeout_ms = 20;
	ck_assert_int_eq(bus_send(NULL, b, "outer", NULL, &opts), 0);
	ck_assert_int_eq(d.calls, 1);
	ck_assert_int_eq(d.expired_after_sleep, 1);
	ck_assert_int_le(d.remaining_after_sleep, 0);
	bus_close(b);
}
END_TEST

START_TEST(nested_dispatch_past_deadline_is_etimeout_runs_nothing)
{
	struct deadline_view d = { 0 };
	d.sleep_ms = 60;
	bus *b = open_deadline_bus(&d);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.timeout_ms = 20;
	ck_assert_int_eq(bus_send(NULL, b, "outer", NULL, &opts), 0);
	ck_assert_int_eq(d.calls, 1);
	ck_assert_int_eq(d.nested_rc, BUS_ETIMEOUT);
	ck_assert_int_eq(d.nested_calls, 0);
	bus_close(b);
}
END_TEST

START_TEST(nested_timeout_never_extends_the_parent_deadline)
{
	struct deadline_view d = { 0 };
	d.nested_timeout_ms = 6000000; /* longer than the parent's */
	bus *b = open_deadline_bus(&d);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.timeout_ms = 600000;
	ck_assert_int_eq(bus_send(NULL, b, "outer", NULL, &opts), 0);
	ck_assert_int_eq(d.nested_calls, 1);
	ck_assert_msg(d.nested_remaining_ms > 0 &&
			      d.nested_remaining_ms <= 600000,
		      "nested remaining %lld ms",
		      (long long)d.nested_remaining_ms);
	bus_close(b);
}
END_TEST

START_TEST(nested_timeout_may_shorten_the_deadline)
{
	struct deadline_view d = { 0 };
	d.nested_timeout_ms = 300000;
	bus *b = open_deadline_bus(&d);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.timeout_ms = 600000;
	ck_assert_int_eq(bus_send(NULL, b, "outer", NULL, &opts), 0);
	ck_assert_int_eq(d.nested_calls, 1);
	ck_assert_msg(d.nested_remaining_ms > 0 &&
			      d.nested_remaining_ms <= 300000,
		      "nested remaining %lld ms",
		      (long long)d.nested_remaining_ms);
	/* A nested timeout on a message without a deadline sets one. */
	struct deadline_view d2 = { 0 };
	d2.nested_timeout_ms = 300000;
	bus *b2 = open_deadline_bus(&d2);
	ck_assert_int_eq(bus_send(NULL, b2, "outer", NULL, NULL), 0);
	ck_assert(d2.remaining_ms == INT64_MAX);
	ck_assert_msg(d2.nested_remaining_ms > 0 &&
			      d2.nested_remaining_ms <= 300000,
		      "nested remaining %lld ms",
		      (long long)d2.nested_remaining_ms);
	bus_close(b2);
	bus_close(b);
}
END_TEST

/* ---- payload ------------------------------------------------------------- */

struct json_view {
	int calls;
	const void *first, *second;
	double a;
	char b[32];
	int c_size, c0_true, c1_null;
	char payload[128];
	size_t payload_len;
};

static int json_handler(bus_ctx *ctx, void *udata)
{
	struct json_view *v = udata;
	v->calls++;
	const cJSON *j = bus_ctx_json(ctx);
	v->first = j;
	v->second = bus_ctx_json(ctx);
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "a");
	const cJSON *bb = cJSON_GetObjectItemCaseSensitive(j, "b");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "c");
	v->a = cJSON_IsNumber(a) ? a->valuedouble : -1;
	snprintf(v->b, sizeof v->b, "%s", cJSON_IsString(bb) ? bb->valuestring
							     : "?");
	v->c_size = cJSON_GetArraySize(c);
	v->c0_true = cJSON_IsTrue(cJSON_GetArrayItem(c, 0));
	v->c1_null = cJSON_IsNull(cJSON_GetArrayItem(c, 1));
	snprintf(v->payload, sizeof v->payload, "%s", bus_ctx_payload(ctx));
	v->payload_len = bus_ctx_payload_len(ctx);
	return 0;
}

#define JSON_PAYLOAD "{\"a\": 1.5, \"b\": \"x\\u00e9\", \"c\": [true, null]}"

START_TEST(ctx_json_parses_once_and_gives_the_values)
{
	bus *b = open_bus();
	struct json_view v = { 0 };
	ck_assert_int_eq(bus_on(b, "e", json_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", JSON_PAYLOAD, NULL), 0);
	ck_assert_int_eq(v.calls, 1);
	ck_assert_ptr_nonnull(v.first);
	ck_assert_ptr_eq(v.first, v.second);
	ck_assert_double_eq(v.a, 1.5);
	ck_assert_str_eq(v.b, "x\xc3\xa9");
	ck_assert_int_eq(v.c_size, 2);
	ck_assert_int_eq(v.c0_true, 1);
	ck_assert_int_eq(v.c1_null, 1);
	bus_close(b);
}
END_TEST

START_TEST(ctx_payload_is_the_text_as_given)
{
	bus *b = open_bus();
	struct json_view v = { 0 };
	ck_assert_int_eq(bus_handle_command(b, "c", json_handler, &v, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", "  " JSON_PAYLOAD "\n", NULL),
			 0);
	ck_assert_str_eq(v.payload, "  " JSON_PAYLOAD "\n");
	ck_assert_uint_eq(v.payload_len, strlen("  " JSON_PAYLOAD "\n"));
	bus_close(b);
}
END_TEST

/* ---- kind, name, bus, result, error -------------------------------------- */

START_TEST(ctx_tells_kind_name_handler_and_bus)
{
	bus *b = open_bus();
	struct view ev = { 0 }, cmd = { 0 }, qry = { 0 };
	ck_assert_int_eq(bus_on(b, "order.placed", view_handler, &ev, NULL), 0);
	ck_assert_int_eq(bus_handle_command(b, "order.place", view_handler,
					    &cmd, NULL),
			 0);
	ck_assert_int_eq(bus_handle_query(b, "order.get", view_handler, &qry,
					  NULL),
			 0);
	ck_assert_int_eq(bus_publish(NULL, b, "order.placed", NULL, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, "order.place", NULL, NULL), 0);
	ck_assert_int_eq(bus_ask(NULL, b, "order.get", NULL, NULL), 0);
	ck_assert_int_eq(ev.kind, BUS_KIND_EVENT);
	ck_assert_str_eq(ev.name, "order.placed");
	ck_assert_str_eq(ev.handler, "order.placed#1");
	ck_assert_int_eq(cmd.kind, BUS_KIND_COMMAND);
	ck_assert_str_eq(cmd.name, "order.place");
	ck_assert_int_eq(qry.kind, BUS_KIND_QUERY);
	ck_assert_str_eq(qry.name, "order.get");
	ck_assert_ptr_eq(ev.bus, b);
	ck_assert_ptr_eq(cmd.bus, b);
	ck_assert_ptr_eq(qry.bus, b);
	bus_close(b);
}
END_TEST

struct outcome {
	char before[64], after[64], replaced[64];
	char error[128];
	int no_error_before;
};

static int outcome_handler(bus_ctx *ctx, void *udata)
{
	struct outcome *o = udata;
	snprintf(o->before, sizeof o->before, "%s",
		 bus_ctx_result(ctx) ? bus_ctx_result(ctx) : "(none)");
	o->no_error_before = bus_ctx_error(ctx) == NULL;
	bus_ctx_set_result(ctx, "1");
	snprintf(o->after, sizeof o->after, "%s", bus_ctx_result(ctx));
	bus_ctx_set_result(ctx, "{\"second\":2}");
	snprintf(o->replaced, sizeof o->replaced, "%s", bus_ctx_result(ctx));
	int rc = bus_ctx_fail(ctx, "failed with %d", 7);
	snprintf(o->error, sizeof o->error, "%s", bus_ctx_error(ctx));
	return rc;
}

START_TEST(ctx_keeps_result_and_error_for_the_call)
{
	bus *b = open_bus();
	struct outcome o = { "", "", "", "", 0 };
	ck_assert_int_eq(bus_handle_command(b, "c", outcome_handler, &o, NULL),
			 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), BUS_EHANDLER);
	ck_assert_str_eq(o.before, "(none)");
	ck_assert_int_eq(o.no_error_before, 1);
	ck_assert_str_eq(o.after, "1");
	ck_assert_str_eq(o.replaced, "{\"second\":2}");
	ck_assert_str_eq(o.error, "failed with 7");
	bus_close(b);
}
END_TEST

static Suite *context_suite(void)
{
	Suite *s = suite_create("context");

	TCase *tc = tcase_create("ids");
	tcase_add_test(tc, message_id_is_a_uuidv7);
	tcase_add_test(tc, message_ids_differ_and_increase_within_a_thread);
	tcase_add_test(tc, handlers_of_one_event_share_its_message_id);
	tcase_add_test(tc, top_level_message_names_its_own_request_and_correlation);
	tcase_add_test(tc, nested_dispatch_inherits_request_and_correlation_ids);
	tcase_add_test(tc, nested_dispatch_is_caused_by_the_dispatching_message);
	suite_add_tcase(s, tc);

	tc = tcase_create("meta");
	tcase_add_test(tc, meta_ids_are_honoured_and_kept_out_of_the_free_keys);
	tcase_add_test(tc, meta_request_id_alone_leaves_correlation_to_the_message);
	tcase_add_test(tc, meta_free_keys_and_ids_are_inherited_by_nested_dispatch);
	tcase_add_test(tc, meta_key_message_id_is_a_free_key_not_the_message_id);
	tcase_add_test(tc, no_meta_is_an_empty_object);
	tcase_add_test(tc, meta_with_a_non_uuid_request_id_is_einval);
	tcase_add_test(tc, meta_that_is_not_an_object_is_einval);
	suite_add_tcase(s, tc);

	tc = tcase_create("user");
	tcase_add_test(tc, user_pointer_is_passed_and_inherited);
	tcase_add_test(tc, nested_dispatch_may_set_its_own_user_pointer);
	tcase_add_test(tc, user_pointer_is_null_by_default);
	suite_add_tcase(s, tc);

	tc = tcase_create("deadline");
	tcase_add_test(tc, without_timeout_there_is_no_deadline);
	tcase_add_test(tc, timeout_gives_remaining_time_within_it);
	tcase_add_test(tc, context_expires_once_its_timeout_has_passed);
	tcase_add_test(tc, nested_dispatch_past_deadline_is_etimeout_runs_nothing);
	tcase_add_test(tc, nested_timeout_never_extends_the_parent_deadline);
	tcase_add_test(tc, nested_timeout_may_shorten_the_deadline);
	suite_add_tcase(s, tc);

	tc = tcase_create("access");
	tcase_add_test(tc, ctx_json_parses_once_and_gives_the_values);
	tcase_add_test(tc, ctx_payload_is_the_text_as_given);
	tcase_add_test(tc, ctx_tells_kind_name_handler_and_bus);
	tcase_add_test(tc, ctx_keeps_result_and_error_for_the_call);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(context_suite());
}
