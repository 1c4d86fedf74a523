/* Replace: a new unique job may overwrite, per state of the existing job,
 * the fields the rules allow, and nothing else. */
#include <stdio.h>
#include <string.h>

#include "contract.h"

static int count_run(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

/* The first job of kind `kind`: unique by kind alone, available. */
static int64_t original(bus *b, const char *kind, const bus_unique_opts *u)
{
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = "replace.q";
	o.priority = 5;
	o.tags = "[\"old\"]";
	o.meta = "{\"m\":1}";
	o.unique = u;
	return enqueue_ok(b, kind, "{\"v\":1}", &o, BUS_INSERTED);
}

/* The same job again with every field different. */
static int64_t again(bus *b, const char *kind, const bus_unique_opts *u,
		     const bus_replace_opts *rep, bus_insert_status want)
{
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = "replace.other";
	o.priority = 7;
	o.max_attempts = 9;
	o.timeout_ms = 4000;
	o.tags = "[\"new\"]";
	o.meta = "{\"m\":2}";
	o.unique = u;
	o.replace = rep;
	return enqueue_ok(b, kind, "{\"v\":2}", &o, want);
}

static void assert_tags(const bus_job *j, const char *want)
{
	char buf[64];
	snprintf(buf, sizeof buf, "{\"t\":%s}", j->tags ? j->tags : "null");
	char *p = buf, *q = buf;
	for (; *p; p++) /* compare without whitespace */
		if (*p != ' ' && *p != '\n' && *p != '\t')
			*q++ = *p;
	*q = '\0';
	char w[64];
	snprintf(w, sizeof w, "{\"t\":%s}", want);
	ck_assert_str_eq(buf, w);
}

START_TEST(replace_overwrites_only_allowed_fields_when_available)
{
	bus *b;
	contract_open(&b);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	int64_t id = original(b, "replace.fields", &u);
	bus_replace_opts rep = BUS_REPLACE_OPTS_INIT;
	rep.fields[BUS_JOB_AVAILABLE] =
		BUS_REPLACE_PAYLOAD | BUS_REPLACE_PRIORITY;
	ck_assert_int_eq(again(b, "replace.fields", &u, &rep, BUS_REPLACED),
			 id);

	bus_job *j = get_job(b, id);
	ck_assert_int_eq((int)json_number(j->payload, "v"), 2);
	ck_assert_int_eq(j->priority, 7);
	ck_assert_str_eq(j->queue, "replace.q");
	assert_tags(j, "[\"old\"]");
	ck_assert_int_eq((int)json_number(j->meta, "m"), 1);
	ck_assert_int_eq(j->max_attempts, 3);
	ck_assert_int_eq(j->timeout_ms, 0);
	ck_assert_str_eq(bus_job_state_name(j->state), "available");
	bus_job_free(j);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "replace.fields"), 1);
	bus_close(b);
}
END_TEST

START_TEST(replace_not_allowed_in_the_jobs_state_is_duplicate)
{
	bus *b;
	contract_open(&b);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	int64_t id = original(b, "replace.executing_only", &u);
	bus_replace_opts rep = BUS_REPLACE_OPTS_INIT;
	rep.fields[BUS_JOB_EXECUTING] = BUS_REPLACE_ALL;
	ck_assert_int_eq(again(b, "replace.executing_only", &u, &rep,
			       BUS_DUPLICATE),
			 id);

	bus_job *j = get_job(b, id);
	ck_assert_int_eq((int)json_number(j->payload, "v"), 1);
	ck_assert_int_eq(j->priority, 5);
	ck_assert_str_eq(j->queue, "replace.q");
	assert_tags(j, "[\"old\"]");
	ck_assert_int_eq((int)json_number(j->meta, "m"), 1);
	bus_job_free(j);
	bus_close(b);
}
END_TEST

START_TEST(replace_scheduled_at_moves_a_scheduled_job)
{
	bus *b;
	struct test_clock clock;
	atomic_int runs = 0;
	contract_open(&b);
	contract_clock_install(b, &clock);
	contract_handle(b, "replace.sched", count_run, &runs, NULL,
			"replace.s");
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	bus_replace_opts rep = BUS_REPLACE_OPTS_INIT;
	rep.fields[BUS_JOB_SCHEDULED] = BUS_REPLACE_SCHEDULED_AT;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	o.replace = &rep;

	o.run_in_ms = 3600 * 1000;
	int64_t id = enqueue_ok(b, "replace.sched", "{}", &o, BUS_INSERTED);
	o.run_in_ms = 2 * 3600 * 1000;
	ck_assert_int_eq(enqueue_ok(b, "replace.sched", "{}", &o,
				    BUS_REPLACED),
			 id);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(bus_job_state_name(j->state), "scheduled");
	ck_assert_int_eq(j->scheduled_at, CONTRACT_T0_US + 2 * HOUR_US);
	bus_job_free(j);

	/* Moved into the past: due now. */
	o.run_in_ms = 0;
	o.run_at = CONTRACT_T0_US - SEC_US;
	ck_assert_int_eq(enqueue_ok(b, "replace.sched", "{}", &o,
				    BUS_REPLACED),
			 id);
	j = get_job(b, id);
	ck_assert_int_eq(j->scheduled_at, CONTRACT_T0_US - SEC_US);
	ck_assert_msg(j->state == BUS_JOB_AVAILABLE ||
			      j->state == BUS_JOB_SCHEDULED,
		      "state %s", bus_job_state_name(j->state));
	bus_job_free(j);
	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "replace.s" });
	bus_job_free(wait_job(b, id, BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), 1);
	bus_close(b);
}
END_TEST

START_TEST(unique_and_replace_rules_of_the_handler_apply)
{
	bus *b;
	contract_open(&b);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_QUEUE;
	bus_replace_opts rep = BUS_REPLACE_OPTS_INIT;
	rep.fields[BUS_JOB_AVAILABLE] = BUS_REPLACE_PAYLOAD;
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.unique = &u;
	ho.replace = &rep;
	contract_handle(b, "replace.handler", count_run, NULL, &ho,
			"replace.h");
	/* The handler copied its options. */
	u.fields = 0;
	rep.fields[BUS_JOB_AVAILABLE] = 0;

	int64_t id = enqueue_ok(b, "replace.handler", "{\"v\":1}", NULL,
				BUS_INSERTED);
	ck_assert_int_eq(enqueue_ok(b, "replace.handler", "{\"v\":2}", NULL,
				    BUS_REPLACED),
			 id);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(j->queue, "replace.h");
	ck_assert_int_eq((int)json_number(j->payload, "v"), 2);
	bus_job_free(j);

	/* Another queue is another job under BUS_UNIQUE_QUEUE. */
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = "replace.h2";
	int64_t other = enqueue_ok(b, "replace.handler", "{\"v\":3}", &o,
				   BUS_INSERTED);
	ck_assert_int_ne(other, id);
	bus_close(b);
}
END_TEST

TCase *contract_replace(void)
{
	TCase *tc = contract_tcase("replace");
	tcase_add_test(tc,
		       replace_overwrites_only_allowed_fields_when_available);
	tcase_add_test(tc, replace_not_allowed_in_the_jobs_state_is_duplicate);
	tcase_add_test(tc, replace_scheduled_at_moves_a_scheduled_job);
	tcase_add_test(tc, unique_and_replace_rules_of_the_handler_apply);
	return tc;
}
