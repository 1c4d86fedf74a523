/* Enqueue validation: bad options are BUS_EINVAL with a message saying what
 * is wrong, and nothing is stored; a batch with one bad item stores none. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

/* Enqueues expecting BUS_EINVAL with `part` in the message. */
#define assert_einval(b, kind, payload, opts, part)                            \
	do {                                                                   \
		bus_enqueue_result r_ = { -1, BUS_DUPLICATE };                 \
		int rc_ = bus_enqueue(&r_, b, kind, payload, opts);            \
		ck_assert_msg(rc_ == BUS_EINVAL,                               \
			      "bus_enqueue(%s) = %s, expected BUS_EINVAL",     \
			      payload ? payload : "NULL",                      \
			      bus_error_name(rc_));                            \
		const bus_error *e_ = bus_error_last();                        \
		ck_assert_int_eq(e_->code, BUS_EINVAL);                        \
		ck_assert_msg(strstr(e_->message, part),                       \
			      "message \"%s\" lacks \"%s\"", e_->message,      \
			      part);                                           \
	} while (0)

START_TEST(enqueue_rejects_invalid_payload_with_byte_offset)
{
	bus *b;
	contract_open(&b);
	/* The '?' at byte 11 is where it goes wrong. */
	assert_einval(b, "valid.json", "{\"a\":1,\"b\":?}", NULL,
		      "byte 11");
	assert_einval(b, "valid.json", "{\"a\":1", NULL, "payload");
	assert_einval(b, "valid.json", "", NULL, "payload");
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);
	bus_close(b);
}
END_TEST

/* `depth` arrays around 1, malloc'd. */
static char *nested(int depth)
{
	char *s = malloc((size_t)depth * 2 + 2);
	ck_assert_ptr_nonnull(s);
	memset(s, '[', (size_t)depth);
	s[depth] = '1';
	memset(s + depth + 1, ']', (size_t)depth);
	s[2 * depth + 1] = '\0';
	return s;
}

/* Every store gives the same answer: the core refuses what the strictest
 * store (MariaDB's JSON_VALID) would, and what it lets through is stored
 * and read back as it was, in payload and metadata alike. */
START_TEST(enqueue_nesting_limit_is_the_same_on_every_store)
{
	bus *b;
	contract_open(&b);
	char *ok = nested(31), *deep = nested(32);
	int64_t id = enqueue_ok(b, "valid.deep", ok, NULL, BUS_INSERTED);
	bus_job *j = get_job(b, id);
	ck_assert_str_eq(j->payload, ok);
	bus_job_free(j);
	assert_einval(b, "valid.deep", deep, NULL, "deeper than 31");

	char meta_ok[128], meta_deep[128];
	char *m30 = nested(30), *m31 = nested(31);
	snprintf(meta_ok, sizeof meta_ok, "{\"k\":%s}", m30);
	snprintf(meta_deep, sizeof meta_deep, "{\"k\":%s}", m31);
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.meta = meta_ok;
	enqueue_ok(b, "valid.deep", "{}", &o, BUS_INSERTED);
	o.meta = meta_deep;
	assert_einval(b, "valid.deep", "{}", &o, "deeper than 31");
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 2);
	free(ok);
	free(deep);
	free(m30);
	free(m31);
	bus_close(b);
}
END_TEST

START_TEST(enqueue_rejects_tags_that_are_not_an_array_of_strings)
{
	bus *b;
	contract_open(&b);
	static const char *const bad[] = { "[1]", "{\"a\":\"b\"}", "\"x\"",
					   "[\"ok\",null]", "[\"x\"" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		bus_job_opts o = BUS_JOB_OPTS_INIT;
		o.tags = bad[i];
		assert_einval(b, "valid.labels", "{}", &o, "tags");
	}
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.meta = "[1]";
	assert_einval(b, "valid.extra", "{}", &o, "meta");
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);
	bus_close(b);
}
END_TEST

START_TEST(enqueue_rejects_out_of_range_priority_and_attempts)
{
	bus *b;
	contract_open(&b);
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.priority = BUS_PRIORITY_MAX + 1;
	assert_einval(b, "valid.range", "{}", &o, "priority");
	o.priority = BUS_PRIORITY_MIN - 1;
	assert_einval(b, "valid.range", "{}", &o, "priority");
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.max_attempts = 0;
	assert_einval(b, "valid.range", "{}", &o, "max_attempts");
	o.max_attempts = BUS_MAX_ATTEMPTS_MAX + 1;
	assert_einval(b, "valid.range", "{}", &o, "max_attempts");
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.timeout_ms = -1;
	assert_einval(b, "valid.range", "{}", &o, "timeout");
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);

	/* The limits themselves are fine. */
	o = (bus_job_opts)BUS_JOB_OPTS_INIT;
	o.priority = BUS_PRIORITY_MIN;
	o.max_attempts = BUS_MAX_ATTEMPTS_MAX;
	enqueue_ok(b, "valid.range", "{}", &o, BUS_INSERTED);
	o.priority = BUS_PRIORITY_MAX;
	o.max_attempts = 1;
	enqueue_ok(b, "valid.range", "{}", &o, BUS_INSERTED);
	bus_close(b);
}
END_TEST

START_TEST(enqueue_rejects_run_at_together_with_run_in_ms)
{
	bus *b;
	contract_open(&b);
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.run_at = CONTRACT_T0_US;
	o.run_in_ms = 1000;
	assert_einval(b, "valid.when", "{}", &o, "run_at");
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);
	bus_close(b);
}
END_TEST

START_TEST(enqueue_rejects_replace_without_unique)
{
	bus *b;
	contract_open(&b);
	bus_replace_opts rep = BUS_REPLACE_OPTS_INIT;
	rep.fields[BUS_JOB_AVAILABLE] = BUS_REPLACE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.replace = &rep;
	assert_einval(b, "valid.replace", "{}", &o, "unique");
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);
	bus_close(b);
}
END_TEST

START_TEST(enqueue_many_is_all_or_nothing)
{
	bus *b;
	contract_open(&b);
	bus_job_opts bad = BUS_JOB_OPTS_INIT;
	bad.priority = BUS_PRIORITY_MAX + 1;
	bus_enqueue_item items[4] = {
		{ "valid.many", NULL, "{\"i\":1}", NULL },
		{ "valid.many", NULL, "{\"i\":2}", NULL },
		{ "valid.many", NULL, "{\"i\":3}", NULL },
		{ "valid.many", NULL, "{\"i\":4}", NULL },
	};
	bus_enqueue_result res[4];
	ck_assert_int_eq(bus_enqueue_many(res, b, items, 4), 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(res[i].status, BUS_INSERTED);
		bus_job *j = get_job(b, res[i].id);
		ck_assert_int_eq((int)json_number(j->payload, "i"), i + 1);
		bus_job_free(j);
	}
	ck_assert_int_eq(count_jobs(b, 0, NULL, "valid.many"), 4);

	/* Item 3 has a bad option, then bad JSON: none of the batch. */
	items[0].kind = items[1].kind = items[2].kind = items[3].kind =
		"valid.many2";
	items[2].opts = &bad;
	ck_assert_int_eq(bus_enqueue_many(res, b, items, 4), BUS_EINVAL);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "valid.many2"), 0);
	items[2].opts = NULL;
	items[2].payload = "{\"i\":";
	ck_assert_int_eq(bus_enqueue_many(res, b, items, 4), BUS_EINVAL);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "valid.many2"), 0);
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 4);
	bus_close(b);
}
END_TEST

TCase *contract_validation(void)
{
	TCase *tc = contract_tcase("validation");
	tcase_add_test(tc, enqueue_rejects_invalid_payload_with_byte_offset);
	tcase_add_test(tc, enqueue_nesting_limit_is_the_same_on_every_store);
	tcase_add_test(tc,
		       enqueue_rejects_tags_that_are_not_an_array_of_strings);
	tcase_add_test(tc, enqueue_rejects_out_of_range_priority_and_attempts);
	tcase_add_test(tc, enqueue_rejects_run_at_together_with_run_in_ms);
	tcase_add_test(tc, enqueue_rejects_replace_without_unique);
	tcase_add_test(tc, enqueue_many_is_all_or_nothing);
	return tc;
}
