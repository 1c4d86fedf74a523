/*
 * Middleware: order, short-circuit, what it sees after the handler, timing,
 * and the metrics and logging middleware the library ships.
 */
#include "testutil.h"

/* ---- recording middleware ------------------------------------------------ */

struct trail {
	char text[256];
};

static void trail_add(struct trail *t, const char *step)
{
	size_t n = strlen(t->text);
	snprintf(t->text + n, sizeof t->text - n, "%s%s", n ? " " : "", step);
}

struct recorder {
	struct trail *trail;
	const char *name;
};

static int recording_mw(bus_ctx *ctx, bus_next *next, void *udata)
{
	struct recorder *r = udata;
	char step[64];
	snprintf(step, sizeof step, "%s>", r->name);
	trail_add(r->trail, step);
	int rc = bus_next_call(next);
	snprintf(step, sizeof step, "<%s", r->name);
	trail_add(r->trail, step);
	return rc;
}

static int trail_handler(bus_ctx *ctx, void *udata)
{
	trail_add(udata, "H");
	return 0;
}

static int counting_handler(bus_ctx *ctx, void *udata)
{
	(*(int *)udata)++;
	return 0;
}

/* Sets udata (JSON text) as the result, or fails when it is NULL. */
static int result_or_fail_handler(bus_ctx *ctx, void *udata)
{
	if (udata == NULL)
		return bus_ctx_fail(ctx, "nope, not today");
	return bus_ctx_set_result(ctx, udata);
}

START_TEST(first_added_middleware_is_outermost)
{
	bus *b = open_bus();
	struct trail t = { "" };
	struct recorder r1 = { &t, "A" }, r2 = { &t, "B" }, r3 = { &t, "C" };
	ck_assert_int_eq(bus_use(b, recording_mw, &r1), 0);
	ck_assert_int_eq(bus_use(b, recording_mw, &r2), 0);
	ck_assert_int_eq(bus_use(b, recording_mw, &r3), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", trail_handler, &t, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), 0);
	ck_assert_str_eq(t.text, "A> B> C> H <C <B <A");
	bus_close(b);
}
END_TEST

START_TEST(middleware_wraps_every_handler_of_an_event)
{
	bus *b = open_bus();
	struct trail t = { "" };
	struct recorder r = { &t, "M" };
	ck_assert_int_eq(bus_use(b, recording_mw, &r), 0);
	ck_assert_int_eq(bus_on(b, "e", trail_handler, &t, NULL), 0);
	ck_assert_int_eq(bus_on(b, "e", trail_handler, &t, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_str_eq(t.text, "M> H <M M> H <M");
	bus_close(b);
}
END_TEST

/* ---- short-circuit ------------------------------------------------------- */

static int cache_mw(bus_ctx *ctx, bus_next *next, void *udata)
{
	return bus_ctx_set_result(ctx, "{\"cached\":true}");
}

static int deny_mw(bus_ctx *ctx, bus_next *next, void *udata)
{
	return bus_ctx_fail(ctx, "denied by policy for %s", bus_ctx_name(ctx));
}

START_TEST(short_circuit_skips_the_handler_and_its_result_is_returned)
{
	bus *b = open_bus();
	int calls = 0;
	ck_assert_int_eq(bus_use(b, cache_mw, NULL), 0);
	ck_assert_int_eq(bus_handle_query(b, "q", counting_handler, &calls,
					  NULL),
			 0);
	char *result = NULL;
	ck_assert_int_eq(bus_ask(&result, b, "q", NULL, NULL), 0);
	ck_assert_int_eq(calls, 0);
	ck_assert_pstr_eq(result, "{\"cached\":true}");
	bus_free(result);
	bus_close(b);
}
END_TEST

START_TEST(short_circuit_failure_is_the_dispatch_failure)
{
	bus *b = open_bus();
	int calls = 0;
	ck_assert_int_eq(bus_use(b, deny_mw, NULL), 0);
	ck_assert_int_eq(bus_handle_command(b, "delete.all", counting_handler,
					    &calls, NULL),
			 0);
	char *result = (char *)"untouched";
	ck_assert_int_eq(bus_send(&result, b, "delete.all", NULL, NULL),
			 BUS_EHANDLER);
	ck_assert_last_error(BUS_EHANDLER, "denied by policy for delete.all");
	ck_assert_ptr_null(result);
	ck_assert_int_eq(calls, 0);
	bus_close(b);
}
END_TEST

START_TEST(inner_middleware_is_skipped_by_an_outer_short_circuit)
{
	bus *b = open_bus();
	struct trail t = { "" };
	struct recorder inner = { &t, "inner" };
	ck_assert_int_eq(bus_use(b, cache_mw, NULL), 0);
	ck_assert_int_eq(bus_use(b, recording_mw, &inner), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", trail_handler, &t, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), 0);
	ck_assert_str_eq(t.text, "");
	bus_close(b);
}
END_TEST

/* ---- what middleware sees ------------------------------------------------ */

struct seen {
	int calls;
	int rc;
	char result_before[64], result_after[64];
	char error_after[64];
	int had_error_before;
	char handler[64];
};

static int observing_mw(bus_ctx *ctx, bus_next *next, void *udata)
{
	struct seen *s = udata;
	s->calls++;
	snprintf(s->handler, sizeof s->handler, "%s", bus_ctx_handler(ctx));
	snprintf(s->result_before, sizeof s->result_before, "%s",
		 bus_ctx_result(ctx) ? bus_ctx_result(ctx) : "(none)");
	s->had_error_before = bus_ctx_error(ctx) != NULL;
	s->rc = bus_next_call(next);
	snprintf(s->result_after, sizeof s->result_after, "%s",
		 bus_ctx_result(ctx) ? bus_ctx_result(ctx) : "(none)");
	snprintf(s->error_after, sizeof s->error_after, "%s",
		 bus_ctx_error(ctx) ? bus_ctx_error(ctx) : "(none)");
	return s->rc;
}

START_TEST(middleware_sees_the_result_after_next)
{
	bus *b = open_bus();
	struct seen s = { 0 };
	ck_assert_int_eq(bus_use(b, observing_mw, &s), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", result_or_fail_handler,
					    (void *)"[42]", NULL),
			 0);
	char *result = NULL;
	ck_assert_int_eq(bus_send(&result, b, "c", NULL, NULL), 0);
	ck_assert_int_eq(s.calls, 1);
	ck_assert_int_eq(s.rc, 0);
	ck_assert_str_eq(s.handler, "c");
	ck_assert_str_eq(s.result_before, "(none)");
	ck_assert_str_eq(s.result_after, "[42]");
	ck_assert_str_eq(s.error_after, "(none)");
	ck_assert_pstr_eq(result, "[42]");
	bus_free(result);
	bus_close(b);
}
END_TEST

START_TEST(middleware_sees_the_error_after_next)
{
	bus *b = open_bus();
	struct seen s = { 0 };
	ck_assert_int_eq(bus_use(b, observing_mw, &s), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", result_or_fail_handler, NULL,
					    NULL),
			 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), BUS_EHANDLER);
	ck_assert_int_eq(s.calls, 1);
	ck_assert_int_eq(s.rc, BUS_EHANDLER);
	ck_assert_int_eq(s.had_error_before, 0);
	ck_assert_str_eq(s.error_after, "nope, not today");
	bus_close(b);
}
END_TEST

static int estate_handler(bus_ctx *ctx, void *udata)
{
	return BUS_ESTATE;
}

START_TEST(middleware_passes_the_handler_code_through)
{
	bus *b = open_bus();
	struct seen s = { 0 };
	ck_assert_int_eq(bus_use(b, observing_mw, &s), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", estate_handler, NULL, NULL),
			 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), BUS_ESTATE);
	ck_assert_int_eq(s.rc, BUS_ESTATE);
	/* The handler gave no message: one is made from its code. */
	ck_assert_str_eq(s.error_after, "BUS_ESTATE");
	bus_close(b);
}
END_TEST

/* Turns any failure into success with a fallback result. */
static int fallback_mw(bus_ctx *ctx, bus_next *next, void *udata)
{
	if (bus_next_call(next) != 0)
		return bus_ctx_set_result(ctx, "\"fallback\"");
	return 0;
}

START_TEST(middleware_may_recover_from_a_handler_failure)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_use(b, fallback_mw, NULL), 0);
	ck_assert_int_eq(bus_handle_query(b, "q", result_or_fail_handler, NULL,
					  NULL),
			 0);
	char *result = NULL;
	ck_assert_int_eq(bus_ask(&result, b, "q", NULL, NULL), 0);
	ck_assert_pstr_eq(result, "\"fallback\"");
	bus_free(result);
	bus_close(b);
}
END_TEST

/* ---- timing -------------------------------------------------------------- */

static int sleepy_handler(bus_ctx *ctx, void *udata)
{
	sleep_ms(2);
	return 0;
}

static int timing_mw(bus_ctx *ctx, bus_next *next, void *udata)
{
	int rc = bus_next_call(next);
	*(int64_t *)udata = bus_next_elapsed_ns(next);
	return rc;
}

START_TEST(elapsed_time_covers_the_handler)
{
	bus *b = open_bus();
	int64_t elapsed = -1;
	ck_assert_int_eq(bus_use(b, timing_mw, &elapsed), 0);
	ck_assert_int_eq(bus_on(b, "e", sleepy_handler, NULL, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_msg(elapsed >= 2000000, "elapsed %lld ns, handler slept 2 ms",
		      (long long)elapsed);
	bus_close(b);
}
END_TEST

/* ---- metrics ------------------------------------------------------------- */

/* Fails every second call. */
static int flaky_handler(bus_ctx *ctx, void *udata)
{
	int *calls = udata;
	if (++*calls % 2 == 0)
		return bus_ctx_fail(ctx, "even call %d", *calls);
	return 0;
}

struct visited {
	int n;
	uint64_t calls_of_steady, calls_of_flaky, failures_of_flaky;
	uint64_t calls_sum;
};

static int visit(const char *handler, const bus_metrics_stats *st, void *udata)
{
	struct visited *v = udata;
	v->n++;
	v->calls_sum += st->calls;
	if (strcmp(handler, "steady") == 0)
		v->calls_of_steady = st->calls;
	if (strcmp(handler, "flaky") == 0) {
		v->calls_of_flaky = st->calls;
		v->failures_of_flaky = st->failures;
	}
	return 0;
}

static int stop_at_first(const char *handler, const bus_metrics_stats *st,
			 void *udata)
{
	(*(int *)udata)++;
	return 99;
}

static bus *open_metrics_bus(bus_metrics *m, int *steady, int *flaky)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_use(b, bus_middleware_metrics, m), 0);
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
	opts.name = "steady";
	ck_assert_int_eq(bus_on(b, "e", counting_handler, steady, &opts), 0);
	opts.name = "flaky";
	ck_assert_int_eq(bus_on(b, "e", flaky_handler, flaky, &opts), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", sleepy_handler, NULL, NULL),
			 0);
	return b;
}

START_TEST(metrics_count_calls_and_failures_per_handler)
{
	bus_metrics *m = NULL;
	ck_assert_int_eq(bus_metrics_new(&m), 0);
	int steady = 0, flaky = 0;
	bus *b = open_metrics_bus(m, &steady, &flaky);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.flags = BUS_PUBLISH_RUN_ALL;
	for (int i = 0; i < 5; i++)
		bus_publish(NULL, b, "e", NULL, &opts);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), 0);

	bus_metrics_stats st;
	ck_assert_int_eq(bus_metrics_get(&st, m, "steady"), 0);
	ck_assert_uint_eq(st.calls, 5);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_int_eq(bus_metrics_get(&st, m, "flaky"), 0);
	ck_assert_uint_eq(st.calls, 5);
	ck_assert_uint_eq(st.failures, 2);
	ck_assert_int_eq(bus_metrics_get(&st, m, "c"), 0);
	ck_assert_uint_eq(st.calls, 1);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_msg(st.total_ns >= 2000000 && st.max_ns >= 2000000,
		      "handler slept 2 ms: total %llu ns, max %llu ns",
		      (unsigned long long)st.total_ns,
		      (unsigned long long)st.max_ns);
	ck_assert(st.max_ns <= st.total_ns);

	bus_metrics_total(&st, m);
	ck_assert_uint_eq(st.calls, 11);
	ck_assert_uint_eq(st.failures, 2);
	ck_assert(st.max_ns >= 2000000 && st.max_ns <= st.total_ns);
	bus_close(b);
	bus_metrics_free(m);
}
END_TEST

START_TEST(metrics_foreach_visits_every_counted_handler)
{
	bus_metrics *m = NULL;
	ck_assert_int_eq(bus_metrics_new(&m), 0);
	int steady = 0, flaky = 0;
	bus *b = open_metrics_bus(m, &steady, &flaky);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.flags = BUS_PUBLISH_RUN_ALL;
	for (int i = 0; i < 4; i++)
		bus_publish(NULL, b, "e", NULL, &opts);

	struct visited v = { 0 };
	ck_assert_int_eq(bus_metrics_foreach(m, visit, &v), 0);
	ck_assert_int_eq(v.n, 2); /* "c" was never called */
	ck_assert_uint_eq(v.calls_of_steady, 4);
	ck_assert_uint_eq(v.calls_of_flaky, 4);
	ck_assert_uint_eq(v.failures_of_flaky, 2);
	ck_assert_uint_eq(v.calls_sum, 8);

	int visits = 0;
	ck_assert_int_eq(bus_metrics_foreach(m, stop_at_first, &visits), 99);
	ck_assert_int_eq(visits, 1);
	bus_close(b);
	bus_metrics_free(m);
}
END_TEST

START_TEST(metrics_of_an_uncounted_handler_are_enotfound)
{
	bus_metrics *m = NULL;
	ck_assert_int_eq(bus_metrics_new(&m), 0);
	int steady = 0, flaky = 0;
	bus *b = open_metrics_bus(m, &steady, &flaky);
	bus_metrics_stats st;
	ck_assert_int_eq(bus_metrics_get(&st, m, "steady"), BUS_ENOTFOUND);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(bus_metrics_get(&st, m, "steady"), 0);
	ck_assert_int_eq(bus_metrics_get(&st, m, "no-such-handler"),
			 BUS_ENOTFOUND);
	ck_assert_last_error(BUS_ENOTFOUND, "no-such-handler");
	bus_metrics_total(&st, m);
	ck_assert_uint_eq(st.calls, 2);
	bus_close(b);
	bus_metrics_free(m);
}
END_TEST

START_TEST(new_metrics_are_all_zero)
{
	bus_metrics *m = NULL;
	ck_assert_int_eq(bus_metrics_new(&m), 0);
	bus_metrics_stats st = { .calls = 1, .failures = 1, .total_ns = 1,
				  .max_ns = 1 };
	bus_metrics_total(&st, m);
	ck_assert_uint_eq(st.calls, 0);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_uint_eq(st.total_ns, 0);
	ck_assert_uint_eq(st.max_ns, 0);
	int visits = 0;
	ck_assert_int_eq(bus_metrics_foreach(m, stop_at_first, &visits), 0);
	ck_assert_int_eq(visits, 0);
	bus_metrics_free(m);
}
END_TEST

/* ---- logging ------------------------------------------------------------- */

START_TEST(logging_middleware_reports_a_failure_naming_the_handler)
{
	bus *b = open_bus();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_DEBUG, capture_log, &cap);
	ck_assert_int_eq(bus_use(b, bus_middleware_log, NULL), 0);
	int flaky = 1; /* the next call is the second: it fails */
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
	opts.name = "charge-card";
	ck_assert_int_eq(bus_on(b, "order.placed", flaky_handler, &flaky,
				&opts),
			 0);
	ck_assert_int_eq(bus_publish(NULL, b, "order.placed", NULL, NULL),
			 BUS_EHANDLER);
	int i = capture_find(&cap, BUS_LOG_WARN, "charge-card", "failed");
	ck_assert_msg(i >= 0, "no warning names the handler and says failed "
			      "(%d lines)", cap.n);
	ck_assert_ptr_nonnull(strstr(cap.line[i], "even call 2"));
	bus_close(b);
}
END_TEST

START_TEST(logging_middleware_reports_success_at_debug_level)
{
	bus *b = open_bus();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_DEBUG, capture_log, &cap);
	ck_assert_int_eq(bus_use(b, bus_middleware_log, NULL), 0);
	int calls = 0;
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
	opts.name = "send-receipt";
	ck_assert_int_eq(bus_on(b, "order.placed", counting_handler, &calls,
				&opts),
			 0);
	ck_assert_int_eq(bus_publish(NULL, b, "order.placed", NULL, NULL), 0);
	ck_assert_int_eq(calls, 1);
	int i = capture_find(&cap, BUS_LOG_DEBUG, "send-receipt", NULL);
	ck_assert_msg(i >= 0, "no debug line names the handler (%d lines)",
		      cap.n);
	ck_assert_ptr_null(strstr(cap.line[i], "failed"));
	ck_assert_int_eq(capture_find(&cap, BUS_LOG_WARN, "send-receipt", NULL),
			 -1);
	bus_close(b);
}
END_TEST

START_TEST(logging_middleware_respects_the_logger_level)
{
	bus *b = open_bus();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_WARN, capture_log, &cap);
	ck_assert_int_eq(bus_use(b, bus_middleware_log, NULL), 0);
	int calls = 0;
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(calls, 1);
	ck_assert_int_eq(cap.n, 0);
	bus_close(b);
}
END_TEST

/* ---- registration -------------------------------------------------------- */

struct mw_count {
	int calls;
};

static int counting_mw(bus_ctx *ctx, bus_next *next, void *udata)
{
	((struct mw_count *)udata)->calls++;
	return bus_next_call(next);
}

START_TEST(middleware_added_after_dispatch_started_is_used_later)
{
	bus *b = open_bus();
	int calls = 0;
	struct mw_count mw = { 0 };
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(bus_use(b, counting_mw, &mw), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(calls, 3);
	ck_assert_int_eq(mw.calls, 2);
	bus_close(b);
}
END_TEST

START_TEST(null_middleware_is_einval)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_use(b, NULL, NULL), BUS_EINVAL);
	ck_assert_int_eq(bus_use(NULL, counting_mw, NULL), BUS_EINVAL);
	int calls = 0;
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(calls, 1);
	bus_close(b);
}
END_TEST

static Suite *middleware_suite(void)
{
	Suite *s = suite_create("middleware");

	TCase *tc = tcase_create("chain");
	tcase_add_test(tc, first_added_middleware_is_outermost);
	tcase_add_test(tc, middleware_wraps_every_handler_of_an_event);
	tcase_add_test(tc, short_circuit_skips_the_handler_and_its_result_is_returned);
	tcase_add_test(tc, short_circuit_failure_is_the_dispatch_failure);
	tcase_add_test(tc, inner_middleware_is_skipped_by_an_outer_short_circuit);
	tcase_add_test(tc, middleware_sees_the_result_after_next);
	tcase_add_test(tc, middleware_sees_the_error_after_next);
	tcase_add_test(tc, middleware_passes_the_handler_code_through);
	tcase_add_test(tc, middleware_may_recover_from_a_handler_failure);
	tcase_add_test(tc, elapsed_time_covers_the_handler);
	tcase_add_test(tc, middleware_added_after_dispatch_started_is_used_later);
	tcase_add_test(tc, null_middleware_is_einval);
	suite_add_tcase(s, tc);

	tc = tcase_create("metrics");
	tcase_add_test(tc, metrics_count_calls_and_failures_per_handler);
	tcase_add_test(tc, metrics_foreach_visits_every_counted_handler);
	tcase_add_test(tc, metrics_of_an_uncounted_handler_are_enotfound);
	tcase_add_test(tc, new_metrics_are_all_zero);
	suite_add_tcase(s, tc);

	tc = tcase_create("logging");
	tcase_add_test(tc, logging_middleware_reports_a_failure_naming_the_handler);
	tcase_add_test(tc, logging_middleware_reports_success_at_debug_level);
	tcase_add_test(tc, logging_middleware_respects_the_logger_level);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(middleware_suite());
}
