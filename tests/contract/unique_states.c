/* Unique states: the states in which an existing job blocks a new one. A job
 * leaves the unique index when it moves outside them. */
#include <string.h>

#include "contract.h"

#define DEFAULT_UNIQUE_STATES                                                  \
	(BUS_STATES_UNFINISHED | BUS_STATE_BIT(BUS_JOB_COMPLETED))

struct outcome {
	atomic_int runs;
	atomic_int fail; /* 1: the handler fails */
};

static int run_or_fail(bus_ctx *ctx, void *udata)
{
	struct outcome *o = udata;
	atomic_fetch_add(&o->runs, 1);
	if (atomic_load(&o->fail))
		return bus_ctx_fail(ctx, "failing on purpose");
	return 0;
}

/* A unique job (by payload, with `states`) that a worker has finished:
 * completed, or discarded when `fail`. Returns its id. */
static int64_t finished_unique_job(bus *b, const char *kind, unsigned states,
				   int fail, struct outcome *o)
{
	bus_handler_opts ho = BUS_HANDLER_OPTS_INIT;
	ho.max_attempts = 1;
	atomic_store(&o->fail, fail);
	contract_handle(b, kind, run_or_fail, o, &ho, kind);

	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	u.states = states;
	bus_job_opts jo = BUS_JOB_OPTS_INIT;
	jo.unique = &u;
	int64_t id = enqueue_ok(b, kind, "{\"n\":1}", &jo, BUS_INSERTED);
	/* While unfinished it blocks, whatever the finished states. */
	ck_assert_int_eq(enqueue_ok(b, kind, "{\"n\":1}", &jo, BUS_DUPLICATE),
			 id);
	bus_job *j = get_job(b, id);
	ck_assert_ptr_nonnull(j->unique_key);
	ck_assert_int_eq(strlen(j->unique_key), 64);
	ck_assert_uint_eq(j->unique_states,
			  states ? states : DEFAULT_UNIQUE_STATES);
	bus_job_free(j);

	bus_worker *w = contract_start_worker(
		b, &(struct contract_worker_opts){ .queue = kind });
	bus_job_free(wait_job(b, id,
			      fail ? BUS_JOB_DISCARDED : BUS_JOB_COMPLETED, 1));
	bus_worker_free(w);
	return id;
}

static int64_t enqueue_again(bus *b, const char *kind, unsigned states,
			     bus_insert_status want)
{
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	u.states = states;
	bus_job_opts jo = BUS_JOB_OPTS_INIT;
	jo.unique = &u;
	return enqueue_ok(b, kind, "{\"n\":1}", &jo, want);
}

START_TEST(unique_default_states_count_a_completed_job)
{
	bus *b;
	struct outcome o = { 0, 0 };
	contract_open(&b);
	int64_t id = finished_unique_job(b, "ustates.done", 0, 0, &o);
	ck_assert_int_eq(enqueue_again(b, "ustates.done", 0, BUS_DUPLICATE),
			 id);
	bus_job *j = get_job(b, id);
	ck_assert_ptr_nonnull(j->unique_key);
	bus_job_free(j);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "ustates.done"), 1);
	bus_close(b);
}
END_TEST

START_TEST(unique_job_in_a_non_counting_state_does_not_block)
{
	bus *b;
	struct outcome o = { 0, 0 };
	contract_open(&b);
	int64_t id = finished_unique_job(b, "ustates.unfinished",
					 BUS_STATES_UNFINISHED, 0, &o);
	bus_job *j = get_job(b, id);
	ck_assert_ptr_null(j->unique_key);
	bus_job_free(j);
	int64_t again = enqueue_again(b, "ustates.unfinished",
				      BUS_STATES_UNFINISHED, BUS_INSERTED);
	ck_assert_int_ne(again, id);
	ck_assert_int_eq(count_jobs(b, 0, NULL, "ustates.unfinished"), 2);
	bus_close(b);
}
END_TEST

START_TEST(unique_discarded_job_does_not_block_by_default)
{
	bus *b;
	struct outcome o = { 0, 0 };
	contract_open(&b);
	int64_t id = finished_unique_job(b, "ustates.failed", 0, 1, &o);
	bus_job *j = get_job(b, id);
	ck_assert_ptr_null(j->unique_key);
	bus_job_free(j);
	int64_t again = enqueue_again(b, "ustates.failed", 0, BUS_INSERTED);
	ck_assert_int_ne(again, id);
	ck_assert_int_eq(atomic_load(&o.runs), 1);
	bus_close(b);
}
END_TEST

START_TEST(unique_states_lacking_unfinished_state_are_einval)
{
	bus *b;
	contract_open(&b);
	const unsigned bad[] = {
		BUS_STATE_BIT(BUS_JOB_COMPLETED),
		BUS_STATES_UNFINISHED & ~BUS_STATE_BIT(BUS_JOB_RETRYABLE),
		BUS_STATES_ALL & ~BUS_STATE_BIT(BUS_JOB_EXECUTING),
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
		u.states = bad[i];
		bus_job_opts jo = BUS_JOB_OPTS_INIT;
		jo.unique = &u;
		bus_enqueue_result r;
		ck_assert_int_eq(bus_enqueue(&r, b, "ustates.bad", "{}", &jo),
				 BUS_EINVAL);
		ck_assert_int_eq(bus_error_last()->code, BUS_EINVAL);
	}
	ck_assert_int_eq(count_jobs(b, 0, NULL, NULL), 0);
	bus_close(b);
}
END_TEST

TCase *contract_unique_states(void)
{
	TCase *tc = contract_tcase("unique_states");
	tcase_add_test(tc, unique_default_states_count_a_completed_job);
	tcase_add_test(tc, unique_job_in_a_non_counting_state_does_not_block);
	tcase_add_test(tc, unique_discarded_job_does_not_block_by_default);
	tcase_add_test(tc, unique_states_lacking_unfinished_state_are_einval);
	return tc;
}
