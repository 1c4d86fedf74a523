/* Unique jobs: which fields make two jobs the same, canonical payloads,
 * payload keys, period buckets; uniqueness is opt-in and race-free. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "contract.h"

#define ALL_UNIQUE_FIELDS                                                      \
	(BUS_UNIQUE_PAYLOAD | BUS_UNIQUE_QUEUE | BUS_UNIQUE_PRIORITY |         \
	 BUS_UNIQUE_MAX_ATTEMPTS | BUS_UNIQUE_TIMEOUT | BUS_UNIQUE_TAGS |      \
	 BUS_UNIQUE_META)

/* One field, and two jobs that differ only in it. */
struct field_case {
	const char *name;
	unsigned field;
	const char *payload[2];
	const char *queue[2];
	int priority[2];
	int max_attempts[2];
	int64_t timeout_ms[2];
	const char *tags[2];
	const char *meta[2];
};

#define SAME2(v) { v, v }

static const struct field_case field_cases[] = {
	{ "payload", BUS_UNIQUE_PAYLOAD, { "{\"v\":1}", "{\"v\":2}" },
	  SAME2("uq"), SAME2(0), SAME2(3), SAME2(0), SAME2(NULL),
	  SAME2(NULL) },
	{ "queue", BUS_UNIQUE_QUEUE, SAME2("{}"), { "uq.a", "uq.b" },
	  SAME2(0), SAME2(3), SAME2(0), SAME2(NULL), SAME2(NULL) },
	{ "priority", BUS_UNIQUE_PRIORITY, SAME2("{}"), SAME2("uq"),
	  { 1, 2 }, SAME2(3), SAME2(0), SAME2(NULL), SAME2(NULL) },
	{ "max_attempts", BUS_UNIQUE_MAX_ATTEMPTS, SAME2("{}"), SAME2("uq"),
	  SAME2(0), { 3, 5 }, SAME2(0), SAME2(NULL), SAME2(NULL) },
	{ "timeout", BUS_UNIQUE_TIMEOUT, SAME2("{}"), SAME2("uq"), SAME2(0),
	  SAME2(3), { 1000, 2000 }, SAME2(NULL), SAME2(NULL) },
	{ "tags", BUS_UNIQUE_TAGS, SAME2("{}"), SAME2("uq"), SAME2(0),
	  SAME2(3), SAME2(0), { "[\"x\"]", "[\"y\"]" }, SAME2(NULL) },
	{ "meta", BUS_UNIQUE_META, SAME2("{}"), SAME2("uq"), SAME2(0),
	  SAME2(3), SAME2(0), SAME2(NULL), { "{\"k\":1}", "{\"k\":2}" } },
};

static int64_t enqueue_variant(bus *b, const char *kind,
			       const struct field_case *fc, int v,
			       unsigned fields, bus_insert_status want)
{
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = fields;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = fc->queue[v];
	o.priority = fc->priority[v];
	o.max_attempts = fc->max_attempts[v];
	o.timeout_ms = fc->timeout_ms[v];
	o.tags = fc->tags[v];
	o.meta = fc->meta[v];
	o.unique = &u;
	return enqueue_ok(b, kind, fc->payload[v], &o, want);
}

START_TEST(unique_by_each_field_tells_jobs_apart_by_that_field)
{
	bus *b;
	contract_open(&b);
	for (size_t i = 0; i < sizeof field_cases / sizeof *field_cases; i++) {
		const struct field_case *fc = &field_cases[i];
		char kind[64];

		/* Named in `fields`: different values, different jobs; equal
		 * values, the same job. */
		snprintf(kind, sizeof kind, "unique.%s", fc->name);
		int64_t a = enqueue_variant(b, kind, fc, 0, fc->field,
					    BUS_INSERTED);
		int64_t c = enqueue_variant(b, kind, fc, 1, fc->field,
					    BUS_INSERTED);
		ck_assert_msg(a != c, "%s: two jobs expected", fc->name);
		ck_assert_int_eq(enqueue_variant(b, kind, fc, 0, fc->field,
						 BUS_DUPLICATE),
				 a);
		ck_assert_int_eq(enqueue_variant(b, kind, fc, 1, fc->field,
						 BUS_DUPLICATE),
				 c);
		ck_assert_int_eq(count_jobs(b, 0, NULL, kind), 2);

		/* Every other field named: this one does not count. */
		snprintf(kind, sizeof kind, "unique.not_%s", fc->name);
		unsigned others = ALL_UNIQUE_FIELDS & ~fc->field;
		a = enqueue_variant(b, kind, fc, 0, others, BUS_INSERTED);
		ck_assert_int_eq(enqueue_variant(b, kind, fc, 1, others,
						 BUS_DUPLICATE),
				 a);
		ck_assert_int_eq(count_jobs(b, 0, NULL, kind), 1);
	}
	bus_close(b);
}
END_TEST

static int noop(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	return 0;
}

START_TEST(unique_without_fields_is_by_kind_and_handler_only)
{
	bus *b;
	contract_open(&b);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	int64_t a = enqueue_ok(b, "unique.kind", "{\"a\":1}", &o, BUS_INSERTED);
	ck_assert_int_eq(enqueue_ok(b, "unique.kind", "{\"a\":2}", &o,
				    BUS_DUPLICATE),
			 a);
	enqueue_ok(b, "unique.kind2", "{\"a\":1}", &o, BUS_INSERTED);

	/* Two durable handlers of one event are different jobs. */
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.durable = 1;
	ho.name = "first";
	ck_assert_int_eq(bus_on(b, "unique.evt", noop, NULL, &ho), 0);
	ho.name = "second";
	ck_assert_int_eq(bus_on(b, "unique.evt", noop, NULL, &ho), 0);
	bus_enqueue_result r1, r2, r3;
	ck_assert_int_eq(bus_enqueue_to(&r1, b, "unique.evt", "first", "{}",
					&o),
			 0);
	ck_assert_int_eq(bus_enqueue_to(&r2, b, "unique.evt", "second", "{}",
					&o),
			 0);
	ck_assert_int_eq(bus_enqueue_to(&r3, b, "unique.evt", "first",
					"{\"x\":1}", &o),
			 0);
	ck_assert_int_eq(r1.status, BUS_INSERTED);
	ck_assert_int_eq(r2.status, BUS_INSERTED);
	ck_assert_int_ne(r1.id, r2.id);
	ck_assert_int_eq(r3.status, BUS_DUPLICATE);
	ck_assert_int_eq(r3.id, r1.id);
	bus_close(b);
}
END_TEST

START_TEST(unique_payload_is_compared_in_canonical_form)
{
	bus *b;
	contract_open(&b);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	int64_t a = enqueue_ok(b, "unique.canon", "{\"a\":1,\"b\":2}", &o,
			       BUS_INSERTED);
	ck_assert_int_eq(enqueue_ok(b, "unique.canon", "{ \"b\":2, \"a\":1.0 }",
				    &o, BUS_DUPLICATE),
			 a);
	enqueue_ok(b, "unique.canon", "{\"a\":1,\"b\":3}", &o, BUS_INSERTED);

	int64_t n = enqueue_ok(b, "unique.canon",
			       "{\"o\":{\"y\":[1,2],\"x\":\"s\"}}", &o,
			       BUS_INSERTED);
	ck_assert_int_eq(enqueue_ok(b, "unique.canon",
				    "{\"o\":{\"x\":\"s\",\n\t\"y\":[1, 2.0]}}",
				    &o, BUS_DUPLICATE),
			 n);
	/* Array order is data, not form. */
	enqueue_ok(b, "unique.canon", "{\"o\":{\"x\":\"s\",\"y\":[2,1]}}", &o,
		   BUS_INSERTED);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "unique.canon"), 4);
	bus_close(b);
}
END_TEST

START_TEST(unique_by_payload_keys_counts_only_those_keys)
{
	bus *b;
	contract_open(&b);
	static const char *const keys[] = { "user_id" };
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.payload_keys = keys;
	u.n_payload_keys = 1;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	int64_t a = enqueue_ok(b, "unique.keys", "{\"user_id\":1,\"x\":1}", &o,
			       BUS_INSERTED);
	ck_assert_int_eq(enqueue_ok(b, "unique.keys",
				    "{\"x\":2,\"user_id\":1}", &o,
				    BUS_DUPLICATE),
			 a);
	int64_t c = enqueue_ok(b, "unique.keys", "{\"user_id\":2,\"x\":1}", &o,
			       BUS_INSERTED);
	ck_assert_int_ne(a, c);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "unique.keys"), 2);
	bus_close(b);
}
END_TEST

START_TEST(unique_period_by_inserted_at_is_per_bucket)
{
	bus *b;
	struct test_clock clock;
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.period_s = 3600;
	u.period_base = BUS_UNIQUE_BY_INSERTED_AT;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;

	/* CONTRACT_T0_US starts an hour bucket. */
	int64_t a = enqueue_ok(b, "unique.hourly", "{}", &o, BUS_INSERTED);
	clock_advance(&clock, 59 * MIN_US);
	ck_assert_int_eq(enqueue_ok(b, "unique.hourly", "{}", &o,
				    BUS_DUPLICATE),
			 a);
	clock_advance(&clock, 2 * MIN_US);
	int64_t c = enqueue_ok(b, "unique.hourly", "{}", &o, BUS_INSERTED);
	ck_assert_int_ne(a, c);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "unique.hourly"), 2);
	bus_close(b);
}
END_TEST

START_TEST(unique_period_by_scheduled_at_is_per_bucket_of_run_at)
{
	bus *b;
	struct test_clock clock;
	contract_open(&b);
	contract_clock_install(b, &clock);
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.period_s = 3600;
	u.period_base = BUS_UNIQUE_BY_SCHEDULED_AT;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;

	o.run_at = CONTRACT_T0_US + 10 * MIN_US;
	int64_t a = enqueue_ok(b, "unique.sched", "{}", &o, BUS_INSERTED);
	o.run_at = CONTRACT_T0_US + 50 * MIN_US;
	ck_assert_int_eq(enqueue_ok(b, "unique.sched", "{}", &o,
				    BUS_DUPLICATE),
			 a);
	o.run_at = CONTRACT_T0_US + 70 * MIN_US;
	int64_t c = enqueue_ok(b, "unique.sched", "{}", &o, BUS_INSERTED);
	ck_assert_int_ne(a, c);
	bus_job *j = get_job(b, c);
	ck_assert_int_eq(j->scheduled_at, CONTRACT_T0_US + 70 * MIN_US);
	bus_job_free(j);
	bus_close(b);
}
END_TEST

static int count_run(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

#define NO_UNIQUE_JOBS 100

static int all_run(void *arg)
{
	return atomic_load((atomic_int *)arg) >= NO_UNIQUE_JOBS;
}

START_TEST(jobs_without_unique_options_are_never_blocked)
{
	bus *b;
	atomic_int runs = 0;
	contract_open(&b);
	contract_handle(b, "unique.none", count_run, &runs, NULL, "uq.none");
	int64_t ids[NO_UNIQUE_JOBS];
	for (int i = 0; i < NO_UNIQUE_JOBS; i++) {
		ids[i] = enqueue_ok(b, "unique.none", "{\"same\":true}", NULL,
				    BUS_INSERTED);
		ck_assert(i == 0 || ids[i] > ids[i - 1]);
	}
	bus_job *j = get_job(b, ids[1]);
	ck_assert_ptr_null(j->unique_key);
	ck_assert_uint_eq(j->unique_states, 0);
	bus_job_free(j);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = "uq.none",
						   .concurrency = 4 });
	wait_for(all_run, &runs, "the worker to run all 100 jobs");
	for (int i = 0; i < NO_UNIQUE_JOBS; i++)
		bus_job_free(wait_job(b, ids[i], BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	ck_assert_int_eq(atomic_load(&runs), NO_UNIQUE_JOBS);
	ck_assert_int_eq(count_jobs(b, BUS_STATE_BIT(BUS_JOB_COMPLETED), NULL,
				    "unique.none"),
			 NO_UNIQUE_JOBS);
	bus_close(b);
}
END_TEST

#define RACE_THREADS 8
#define RACE_INSERTS 1000

struct racer {
	pthread_t thread;
	bus *bus;
	int failures;
	int inserted, duplicates, other;
	int64_t first_id;
	int ids_differ;
};

static void *race_insert(void *arg)
{
	struct racer *r = arg;
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	for (int i = 0; i < RACE_INSERTS; i++) {
		bus_enqueue_result res;
		if (bus_enqueue(&res, r->bus, "unique.race", "{\"n\":1}", &o) !=
		    0) {
			r->failures++;
			continue;
		}
		if (res.status == BUS_INSERTED)
			r->inserted++;
		else if (res.status == BUS_DUPLICATE)
			r->duplicates++;
		else
			r->other++;
		if (r->first_id == 0)
			r->first_id = res.id;
		else if (res.id != r->first_id)
			r->ids_differ = 1;
	}
	return NULL;
}

START_TEST(concurrent_inserts_of_one_unique_job_store_exactly_one)
{
	bus *b;
	contract_open(&b);
	struct racer r[RACE_THREADS];
	for (int i = 0; i < RACE_THREADS; i++) {
		r[i] = (struct racer){ .bus = b };
		ck_assert_int_eq(pthread_create(&r[i].thread, NULL,
						race_insert, &r[i]),
				 0);
	}
	for (int i = 0; i < RACE_THREADS; i++)
		ck_assert_int_eq(pthread_join(r[i].thread, NULL), 0);

	int inserted = 0, duplicates = 0;
	for (int i = 0; i < RACE_THREADS; i++) {
		ck_assert_msg(r[i].failures == 0,
			      "thread %d: %d enqueues failed", i,
			      r[i].failures);
		ck_assert_int_eq(r[i].other, 0);
		ck_assert_msg(!r[i].ids_differ &&
				      r[i].first_id == r[0].first_id,
			      "thread %d saw another job id", i);
		inserted += r[i].inserted;
		duplicates += r[i].duplicates;
	}
	ck_assert_int_eq(inserted, 1);
	ck_assert_int_eq(duplicates, RACE_THREADS * RACE_INSERTS - 1);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "unique.race"), 1);
	bus_close(b);
}
END_TEST

TCase *contract_unique(void)
{
	TCase *tc = contract_tcase("unique");
	tcase_add_test(tc, unique_by_each_field_tells_jobs_apart_by_that_field);
	tcase_add_test(tc, unique_without_fields_is_by_kind_and_handler_only);
	tcase_add_test(tc, unique_payload_is_compared_in_canonical_form);
	tcase_add_test(tc, unique_by_payload_keys_counts_only_those_keys);
	tcase_add_test(tc, unique_period_by_inserted_at_is_per_bucket);
	tcase_add_test(tc,
		       unique_period_by_scheduled_at_is_per_bucket_of_run_at);
	tcase_add_test(tc, jobs_without_unique_options_are_never_blocked);
	tcase_add_test(tc,
		       concurrent_inserts_of_one_unique_job_store_exactly_one);
	return tc;
}
