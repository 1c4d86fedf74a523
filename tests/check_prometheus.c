/* bus_metrics_render: the Prometheus text of a bus's store, its workers and
 * its handler metrics, written into the caller's buffer, with the full
 * length told also when it does not fit. (tests/tools/cli_*.sh check the
 * same text with a strict format checker, served over HTTP by the tool.) */
#include <stdatomic.h>

#include "testutil.h"

static char *render(const bus_metrics_render_opts *o, size_t *len)
{
	ck_assert_int_eq(bus_metrics_render(NULL, 0, len, o), 0);
	char *buf = malloc(*len + 1);
	size_t len2;
	ck_assert_int_eq(bus_metrics_render(buf, *len + 1, &len2, o), 0);
	ck_assert_uint_eq(len2, *len);
	ck_assert_uint_eq(strlen(buf), *len);
	return buf;
}

START_TEST(store_counts_and_paused_flags)
{
	bus *b = open_bus();
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.queue = "q\"1\\";
	ck_assert_int_eq(bus_enqueue(NULL, b, "k", "{}", &o), 0);
	ck_assert_int_eq(bus_enqueue(NULL, b, "k", "{}", &o), 0);
	o.queue = "other";
	o.run_in_ms = 3600000;
	ck_assert_int_eq(bus_enqueue(NULL, b, "k", "{}", &o), 0);
	ck_assert_int_eq(bus_queue_pause(b, "other"), 0);

	bus_metrics_render_opts ro = BUS_METRICS_RENDER_OPTS_INIT;
	ro.bus = b;
	size_t len;
	char *text = render(&ro, &len);
	ck_assert_ptr_nonnull(strstr(text, "# TYPE bus_jobs gauge\n"));
	ck_assert_ptr_nonnull(strstr(
	    text, "bus_jobs{queue=\"q\\\"1\\\\\",state=\"available\"} 2\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_jobs{queue=\"other\",state=\"scheduled\"} 1\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_jobs{queue=\"other\",state=\"discarded\"} 0\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_queue_paused{queue=\"other\"} 1\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_queue_paused{queue=\"q\\\"1\\\\\"} 0\n"));
	ck_assert_int_eq(text[len - 1], '\n');

	/* Too small a buffer: cut, NUL-terminated, the full length told. */
	char small[32];
	memset(small, 'x', sizeof small);
	size_t cut;
	ck_assert_int_eq(bus_metrics_render(small, sizeof small, &cut, &ro), 0);
	ck_assert_uint_eq(cut, len);
	ck_assert_uint_eq(strlen(small), sizeof small - 1);
	ck_assert_int_eq(strncmp(small, text, sizeof small - 1), 0);
	/* Exactly the length: one byte short of the NUL. */
	char *exact = malloc(len);
	ck_assert_int_eq(bus_metrics_render(exact, len, &cut, &ro), 0);
	ck_assert_uint_eq(cut, len);
	ck_assert_uint_eq(strlen(exact), len - 1);
	free(exact);
	free(text);
	bus_close(b);
}
END_TEST

static int ok_handler(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	atomic_fetch_add((atomic_int *)udata, 1);
	return 0;
}

START_TEST(worker_and_handler_counters)
{
	bus *b = open_bus();
	bus_metrics *m;
	ck_assert_int_eq(bus_metrics_new(&m), 0);
	ck_assert_int_eq(bus_use(b, bus_middleware_metrics, m), 0);
	atomic_int runs = 0;
	bus_handler_opts h = BUS_HANDLER_OPTS_INIT;
	h.durable = 1;
	ck_assert_int_eq(
	    bus_handle_command(b, "work.it", ok_handler, &runs, &h), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(bus_enqueue(NULL, b, "work.it", "{}", NULL),
				 0);
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.node = "node\"a";
	wo.poll_interval_ms = 5;
	wo.completer_flush_ms = 1;
	bus_worker *w;
	ck_assert_int_eq(bus_worker_new(&w, b, &wo), 0);
	ck_assert_int_eq(bus_worker_start(w), 0);
	bus_worker_stats st;
	for (int i = 0; i < 2000; i++) {
		bus_worker_get_stats(&st, w);
		if (st.completed == 5)
			break;
		sleep_ms(10);
	}
	ck_assert_uint_eq(st.completed, 5);

	const bus_worker *ws[] = {w};
	bus_metrics_render_opts ro = BUS_METRICS_RENDER_OPTS_INIT;
	ro.workers = ws;
	ro.n_workers = 1;
	ro.metrics = m;
	size_t len;
	char *text = render(&ro, &len);
	ck_assert_ptr_null(strstr(text, "bus_jobs")); /* no bus given */
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_worker_claimed_total{node=\"node\\\"a\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(text,
				     "bus_worker_outcomes_total{node="
				     "\"node\\\"a\",outcome=\"completed\"}"
				     " 5\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "# TYPE bus_worker_claim_duration_seconds summary\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_worker_claim_duration_seconds_sum{node="));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_worker_finish_duration_seconds_count{node="));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_handler_calls_total{handler=\"work.it\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(
	    text, "bus_handler_failures_total{handler=\"work.it\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(
	    text,
	    "bus_handler_duration_seconds_count{handler=\"work.it\"} 5\n"));
	free(text);
	bus_worker_free(w);
	bus_close(b);
	bus_metrics_free(m);
}
END_TEST

START_TEST(bad_arguments)
{
	bus_metrics_render_opts ro = BUS_METRICS_RENDER_OPTS_INIT;
	char buf[16];
	size_t len = 99;
	ck_assert_int_eq(bus_metrics_render(buf, sizeof buf, NULL, &ro),
			 BUS_EINVAL);
	ck_assert_int_eq(bus_metrics_render(buf, sizeof buf, &len, NULL),
			 BUS_EINVAL);
	ck_assert_int_eq(bus_metrics_render(NULL, 5, &len, &ro), BUS_EINVAL);
	ro.n_workers = 1;
	ck_assert_int_eq(bus_metrics_render(buf, sizeof buf, &len, &ro),
			 BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "workers is NULL");
	ro = (bus_metrics_render_opts)BUS_METRICS_RENDER_OPTS_INIT;
	ro.version = 99;
	ck_assert_int_eq(bus_metrics_render(buf, sizeof buf, &len, &ro),
			 BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "BUS_METRICS_RENDER_OPTS_INIT");
	/* Nothing named: nothing rendered. */
	ro.version = BUS_METRICS_RENDER_OPTS_VERSION;
	ck_assert_int_eq(bus_metrics_render(buf, sizeof buf, &len, &ro), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_str_eq(buf, "");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("prometheus");
	TCase *tc = tcase_create("render");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, store_counts_and_paused_flags);
	tcase_add_test(tc, worker_and_handler_counters);
	tcase_add_test(tc, bad_arguments);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
