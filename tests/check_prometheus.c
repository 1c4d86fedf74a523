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

/* Every sample line's series (the text before its value) appears once. */
static void ck_no_series_twice(const char *text)
{
	size_t n = 0, cap = 64;
	char **seen = malloc(cap * sizeof *seen);
	for (const char *p = text; *p != '\0';) {
		const char *nl = strchr(p, '\n');
		ck_assert_ptr_nonnull(nl);
		if (*p != '#') {
			const char *sp = nl;
			while (sp > p && sp[-1] != ' ')
				sp--;
			ck_assert_ptr_ne(sp, p);
			char *series = strndup(p, (size_t)(sp - p - 1));
			for (size_t i = 0; i < n; i++)
				ck_assert_msg(strcmp(seen[i], series) != 0,
					      "series twice: %s", series);
			if (n == cap)
				seen = realloc(seen, (cap *= 2) * sizeof *seen);
			seen[n++] = series;
		}
		p = nl + 1;
	}
	for (size_t i = 0; i < n; i++)
		free(seen[i]);
	free(seen);
}

/* The value of the series `prefix` (its text up to the value). */
static double series_value(const char *text, const char *prefix)
{
	const char *at = strstr(text, prefix);
	ck_assert_msg(at != NULL, "no series %s", prefix);
	return strtod(at + strlen(prefix), NULL);
}

static bus_worker *start_worker(bus *b, const char *node, const char *queue)
{
	bus_worker_queue q = {queue, 1};
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.node = node;
	wo.queues = &q;
	wo.n_queues = 1;
	wo.poll_interval_ms = 5;
	wo.completer_flush_ms = 1;
	bus_worker *w;
	ck_assert_int_eq(bus_worker_new(&w, b, &wo), 0);
	ck_assert_int_eq(bus_worker_start(w), 0);
	return w;
}

static void wait_completed(bus_worker *w, uint64_t n)
{
	bus_worker_stats st;
	for (int i = 0; i < 2000; i++) {
		bus_worker_get_stats(&st, w);
		if (st.completed == n)
			break;
		sleep_ms(10);
	}
	ck_assert_uint_eq(st.completed, n);
}

/* Two workers of one process with the same node (say, one per queue) are
 * one series per family, their counts summed; another node keeps its own.
 */
START_TEST(workers_of_one_node_are_summed)
{
	bus *b = open_bus();
	atomic_int runs = 0;
	bus_handler_opts h = BUS_HANDLER_OPTS_INIT;
	h.durable = 1;
	ck_assert_int_eq(bus_handle_command(b, "sum.it", ok_handler, &runs, &h),
			 0);
	static const struct {
		const char *queue;
		int jobs;
	} plan[] = {{"qa", 3}, {"qb", 2}, {"qc", 4}};
	for (size_t k = 0; k < 3; k++)
		for (int i = 0; i < plan[k].jobs; i++) {
			bus_job_opts o = BUS_JOB_OPTS_INIT;
			o.queue = plan[k].queue;
			ck_assert_int_eq(bus_enqueue(NULL, b, "sum.it", "{}", &o),
					 0);
		}
	bus_worker *a = start_worker(b, "same", "qa");
	bus_worker *c = start_worker(b, "same", "qb");
	bus_worker *d = start_worker(b, "other", "qc");
	wait_completed(a, 3);
	wait_completed(c, 2);
	wait_completed(d, 4);

	const bus_worker *ws[] = {a, d, c};
	bus_metrics_render_opts ro = BUS_METRICS_RENDER_OPTS_INIT;
	ro.workers = ws;
	ro.n_workers = 3;
	size_t len;
	char *text = render(&ro, &len);
	ck_no_series_twice(text);
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_worker_claimed_total{node=\"same\"} 5\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_worker_claimed_total{node=\"other\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(text, "bus_worker_outcomes_total{node="
					   "\"same\",outcome=\"completed\"} "
					   "5\n"));
	ck_assert_ptr_nonnull(strstr(text, "bus_worker_outcomes_total{node="
					   "\"other\",outcome=\"completed\"} "
					   "4\n"));
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_worker_running{node=\"same\"} 0\n"));
	free(text);

	/* Stopped, the counters hold still: each summary's count and sum for
	 * the node are those of both workers together. */
	ck_assert_int_eq(bus_worker_stop(a, 1000), 0);
	ck_assert_int_eq(bus_worker_stop(c, 1000), 0);
	const bus_worker *just_a[] = {a}, *just_c[] = {c};
	static const char *const series[] = {
	    "bus_worker_claim_duration_seconds_count{node=\"same\"} ",
	    "bus_worker_finish_duration_seconds_count{node=\"same\"} ",
	    "bus_worker_claim_duration_seconds_sum{node=\"same\"} ",
	    "bus_worker_finish_duration_seconds_sum{node=\"same\"} "};
	double alone[2][4];
	for (int k = 0; k < 2; k++) {
		ro.workers = k ? just_c : just_a;
		ro.n_workers = 1;
		text = render(&ro, &len);
		for (int i = 0; i < 4; i++)
			alone[k][i] = series_value(text, series[i]);
		free(text);
	}
	ro.workers = ws;
	ro.n_workers = 3;
	text = render(&ro, &len);
	for (int i = 0; i < 4; i++) {
		double diff = series_value(text, series[i]) -
			   (alone[0][i] + alone[1][i]);
		ck_assert_msg(diff < 2e-9 && diff > -2e-9,
			      "%s is not the sum of the node's workers",
			      series[i]);
	}
	ck_assert_double_gt(alone[0][1] + alone[1][1], 0);
	free(text);

	/* A worker listed twice counts once. */
	const bus_worker *twice[] = {d, d};
	ro.workers = twice;
	ro.n_workers = 2;
	text = render(&ro, &len);
	ck_no_series_twice(text);
	ck_assert_ptr_nonnull(
	    strstr(text, "bus_worker_claimed_total{node=\"other\"} 4\n"));
	free(text);
	bus_worker_free(a);
	bus_worker_free(c);
	bus_worker_free(d);
	bus_close(b);
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
	tcase_add_test(tc, workers_of_one_node_are_summed);
	tcase_add_test(tc, bad_arguments);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
