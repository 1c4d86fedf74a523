/* Durable fan-out: bus_publish runs the in-process handlers of an event and
 * stores one job per durable handler, carrying the publisher's ids; a
 * durable command sent with bus_send becomes a job. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "contract.h"

#define REQUEST_ID "0190a6e4-8c5f-7d2e-9a31-5b8c2f1e0d47"
#define CORRELATION_ID "0190a6e4-8c5f-7d2e-9a31-5b8c2f1e0d48"
#define PUBLISH_META                                                           \
	"{\"request_id\":\"" REQUEST_ID "\",\"correlation_id\":\""             \
	CORRELATION_ID "\",\"tenant\":\"acme\"}"

static int count_run(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

/* What one durable handler saw when its job ran. */
struct job_view {
	pthread_mutex_t lock;
	int runs;
	char kind[64], handler[64], request_id[64], correlation_id[64],
		tenant[64];
	int user;
};

static int record_view(bus_ctx *ctx, void *udata)
{
	struct job_view *v = udata;
	const cJSON *user =
		cJSON_GetObjectItemCaseSensitive(bus_ctx_json(ctx), "user");
	const cJSON *tenant = cJSON_GetObjectItemCaseSensitive(
		bus_ctx_meta_json(ctx), "tenant");
	const char *rid = bus_ctx_request_id(ctx);
	const char *cid = bus_ctx_correlation_id(ctx);
	pthread_mutex_lock(&v->lock);
	v->runs++;
	snprintf(v->kind, sizeof v->kind, "%s", bus_ctx_name(ctx));
	snprintf(v->handler, sizeof v->handler, "%s", bus_ctx_handler(ctx));
	snprintf(v->request_id, sizeof v->request_id, "%s", rid ? rid : "");
	snprintf(v->correlation_id, sizeof v->correlation_id, "%s",
		 cid ? cid : "");
	snprintf(v->tenant, sizeof v->tenant, "%s",
		 cJSON_IsString(tenant) ? tenant->valuestring : "");
	v->user = cJSON_IsNumber(user) ? user->valueint : -1;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static void on_durable(bus *b, const char *event, const char *name,
		       struct job_view *v)
{
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.name = name;
	ho.durable = 1;
	ho.queue = "fanout.q";
	ck_assert_int_eq(bus_on(b, event, record_view, v, &ho), 0);
}

static void assert_view(struct job_view *v, const char *handler)
{
	pthread_mutex_lock(&v->lock);
	ck_assert_int_eq(v->runs, 1);
	ck_assert_str_eq(v->kind, "user.signed_up");
	ck_assert_str_eq(v->handler, handler);
	ck_assert_str_eq(v->request_id, REQUEST_ID);
	ck_assert_str_eq(v->correlation_id, CORRELATION_ID);
	ck_assert_str_eq(v->tenant, "acme");
	ck_assert_int_eq(v->user, 7);
	pthread_mutex_unlock(&v->lock);
}

START_TEST(publish_fans_out_to_durable_handlers_as_jobs)
{
	bus *b;
	atomic_int inproc = 0;
	struct job_view mail = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct job_view audit = { .lock = PTHREAD_MUTEX_INITIALIZER };
	contract_open(&b);
	ck_assert_int_eq(bus_on(b, "user.signed_up", count_run, &inproc, NULL),
			 0);
	on_durable(b, "user.signed_up", "mail", &mail);
	on_durable(b, "user.signed_up", "audit", &audit);

	bus_dispatch_opts d = BUS_DISPATCH_OPTS_INIT;
	d.meta = PUBLISH_META;
	bus_publish_result res = { 9, 9, 9 };
	ck_assert_int_eq(bus_publish(&res, b, "user.signed_up", "{\"user\":7}",
				     &d),
			 0);
	ck_assert_int_eq(res.handlers, 1);
	ck_assert_int_eq(res.failed, 0);
	ck_assert_int_eq(res.jobs, 2);
	ck_assert_int_eq(atomic_load(&inproc), 1);

	bus_job *jobs = NULL;
	size_t n = 0;
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = "user.signed_up";
	ck_assert_int_eq(bus_job_list(&jobs, &n, b, &f), 0);
	ck_assert_int_eq(n, 2);
	int has_mail = 0, has_audit = 0;
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(jobs[i].kind, "user.signed_up");
		ck_assert_str_eq(jobs[i].queue, "fanout.q");
		ck_assert_int_eq((int)json_number(jobs[i].payload, "user"), 7);
		char rid[64];
		json_string(rid, sizeof rid, jobs[i].meta, "request_id");
		ck_assert_str_eq(rid, REQUEST_ID);
		has_mail += strcmp(jobs[i].handler, "mail") == 0;
		has_audit += strcmp(jobs[i].handler, "audit") == 0;
	}
	ck_assert_int_eq(has_mail, 1);
	ck_assert_int_eq(has_audit, 1);
	int64_t ids[2] = { jobs[0].id, jobs[1].id };
	bus_job_list_free(jobs, n);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "fanout.q" });
	bus_job_free(wait_job(b, ids[0], BUS_JOB_COMPLETED, 1));
	bus_job_free(wait_job(b, ids[1], BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	assert_view(&mail, "mail");
	assert_view(&audit, "audit");
	/* The in-process handler ran once, at publish, not again. */
	ck_assert_int_eq(atomic_load(&inproc), 1);
	bus_close(b);
}
END_TEST

static int fail_inproc(bus_ctx *ctx, void *udata)
{
	(void)udata;
	return bus_ctx_fail(ctx, "refused");
}

START_TEST(publish_stores_no_jobs_when_an_inprocess_handler_fails)
{
	bus *b;
	struct job_view mail = { .lock = PTHREAD_MUTEX_INITIALIZER };
	contract_open(&b);
	ck_assert_int_eq(bus_on(b, "user.signed_up", fail_inproc, NULL, NULL),
			 0);
	on_durable(b, "user.signed_up", "mail", &mail);
	bus_publish_result res = { 9, 9, 9 };
	ck_assert_int_eq(bus_publish(&res, b, "user.signed_up", "{\"user\":7}",
				     NULL),
			 BUS_EHANDLER);
	ck_assert_int_eq(res.failed, 1);
	ck_assert_int_eq(res.jobs, 0);
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);
	bus_close(b);
}
END_TEST

/* Parses {"job_id":N,"status":"..."}; returns N. */
static int64_t send_result(const char *result, const char *want_status)
{
	ck_assert_ptr_nonnull(result);
	cJSON *r = cJSON_Parse(result);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "job_id");
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "status");
	ck_assert_msg(cJSON_IsNumber(id) && cJSON_IsString(st),
		      "bus_send result %s", result);
	ck_assert_str_eq(st->valuestring, want_status);
	int64_t n = (int64_t)id->valuedouble;
	cJSON_Delete(r);
	return n;
}

START_TEST(send_to_durable_command_returns_job_id_and_status)
{
	bus *b;
	atomic_int runs = 0;
	contract_open(&b);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.unique = &u;
	contract_handle(b, "fanout.send", count_run, &runs, &ho, "fanout.s");

	char *result = NULL;
	ck_assert_int_eq(bus_send(&result, b, "fanout.send", "{\"n\":1}",
				  NULL),
			 0);
	/* Stored, not run by the sender. */
	ck_assert_int_eq(atomic_load(&runs), 0);
	int64_t id = send_result(result, "inserted");
	bus_free(result);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(j->kind, "fanout.send");
	ck_assert_str_eq(j->handler, "fanout.send");
	ck_assert_str_eq(j->queue, "fanout.s");
	ck_assert_str_eq(bus_job_state_name(j->state), "available");
	bus_job_free(j);

	result = NULL;
	ck_assert_int_eq(bus_send(&result, b, "fanout.send", "{\"n\":1}",
				  NULL),
			 0);
	ck_assert_int_eq(send_result(result, "duplicate"), id);
	bus_free(result);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "fanout.s" });
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), 1);
	bus_close(b);
}
END_TEST

TCase *contract_fanout(void)
{
	TCase *tc = contract_tcase("fanout");
	tcase_add_test(tc, publish_fans_out_to_durable_handlers_as_jobs);
	tcase_add_test(tc,
		       publish_stores_no_jobs_when_an_inprocess_handler_fails);
	tcase_add_test(tc, send_to_durable_command_returns_job_id_and_status);
	return tc;
}
