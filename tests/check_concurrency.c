/*
 * One bus used from several threads at once: dispatch counts stay exact,
 * with and without the metrics middleware, and registration is safe while
 * other threads dispatch.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#define THREADS 4
#define PER_THREAD 100000

static int atomic_counting_handler(bus_ctx *ctx, void *udata)
{
	atomic_fetch_add_explicit((atomic_long *)udata, 1, memory_order_relaxed);
	return 0;
}

struct publisher {
	pthread_t thread;
	bus *bus;
	const char *event;
	long n;
	long failures; /* publishes that did not return 0 */
	long ran;      /* sum of bus_publish_result.handlers */
};

static void *publish_loop(void *arg)
{
	struct publisher *p = arg;
	for (long i = 0; i < p->n; i++) {
		bus_publish_result out;
		if (bus_publish(&out, p->bus, p->event, "{\"n\":1}", NULL) != 0)
			p->failures++;
		p->ran += (long)out.handlers;
	}
	return NULL;
}

/* Runs THREADS publishers of PER_THREAD events each and waits for them. */
static void publish_from_threads(bus *b, struct publisher *p)
{
	for (int i = 0; i < THREADS; i++) {
		p[i] = (struct publisher){ .bus = b, .event = "tick",
					   .n = PER_THREAD };
		ck_assert_int_eq(pthread_create(&p[i].thread, NULL,
						publish_loop, &p[i]),
				 0);
	}
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_join(p[i].thread, NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(p[i].failures, 0);
		ck_assert_int_eq(p[i].ran, PER_THREAD);
	}
}

START_TEST(concurrent_publishes_are_all_counted_exactly)
{
	bus *b = open_bus();
	atomic_long count = 0;
	ck_assert_int_eq(bus_on(b, "tick", atomic_counting_handler, &count,
				NULL),
			 0);
	struct publisher p[THREADS];
	publish_from_threads(b, p);
	ck_assert_int_eq(atomic_load(&count), (long)THREADS * PER_THREAD);
	bus_close(b);
}
END_TEST

START_TEST(metrics_count_concurrent_calls_exactly)
{
	bus *b = open_bus();
	bus_metrics *m = NULL;
	ck_assert_int_eq(bus_metrics_new(&m), 0);
	ck_assert_int_eq(bus_use(b, bus_middleware_metrics, m), 0);
	atomic_long count = 0;
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
	opts.name = "counter";
	ck_assert_int_eq(bus_on(b, "tick", atomic_counting_handler, &count,
				&opts),
			 0);
	struct publisher p[THREADS];
	publish_from_threads(b, p);

	ck_assert_int_eq(atomic_load(&count), (long)THREADS * PER_THREAD);
	bus_metrics_stats st;
	bus_metrics_total(&st, m);
	ck_assert_uint_eq(st.calls, (uint64_t)THREADS * PER_THREAD);
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_int_eq(bus_metrics_get(&st, m, "counter"), 0);
	ck_assert_uint_eq(st.calls, (uint64_t)THREADS * PER_THREAD);
	bus_close(b);
	bus_metrics_free(m);
}
END_TEST

/* ---- registration while dispatching -------------------------------------- */

#define NEW_EVENTS 1000 /* enough to grow the topic table several times */
#define HOT_HANDLERS 50 /* handlers added to the event being dispatched */

struct registry_race {
	bus *bus;
	atomic_long calls;
	atomic_int done;
	int register_failures;
};

struct dispatcher {
	pthread_t thread;
	struct registry_race *race;
	long rounds;
	long failures;
	long ran;          /* handlers that ran, by bus_publish_result */
	long shrank;       /* times "hot" had fewer handlers than before */
	long cold_invalid; /* new events that ran more than one handler */
};

static void *registrar(void *arg)
{
	struct registry_race *r = arg;
	char name[32];
	for (int i = 0; i < NEW_EVENTS; i++) {
		snprintf(name, sizeof name, "cold.%d", i);
		if (bus_on(r->bus, name, atomic_counting_handler, &r->calls,
			   NULL) != 0)
			r->register_failures++;
		snprintf(name, sizeof name, "cmd.%d", i);
		if (bus_handle_command(r->bus, name, atomic_counting_handler,
				       &r->calls, NULL) != 0)
			r->register_failures++;
		if (i % (NEW_EVENTS / HOT_HANDLERS) == 0 &&
		    bus_on(r->bus, "hot", atomic_counting_handler, &r->calls,
			   NULL) != 0)
			r->register_failures++;
	}
	atomic_store(&r->done, 1);
	return NULL;
}

static void *dispatch_loop(void *arg)
{
	struct dispatcher *d = arg;
	struct registry_race *r = d->race;
	size_t last_hot = 0;
	char name[32];
	/* At least some rounds, then until the registrar is done. */
	for (long i = 0; i < 200 || !atomic_load(&r->done); i++) {
		bus_publish_result out;
		if (bus_publish(&out, r->bus, "hot", NULL, NULL) != 0)
			d->failures++;
		d->ran += (long)out.handlers;
		if (out.handlers < last_hot)
			d->shrank++;
		last_hot = out.handlers;

		snprintf(name, sizeof name, "cold.%ld", i % NEW_EVENTS);
		if (bus_publish(&out, r->bus, name, NULL, NULL) != 0)
			d->failures++;
		if (out.handlers > 1)
			d->cold_invalid++;
		d->ran += (long)out.handlers;

		snprintf(name, sizeof name, "cmd.%ld", i % NEW_EVENTS);
		int rc = bus_send(NULL, r->bus, name, NULL, NULL);
		if (rc == 0)
			d->ran++;
		else if (rc != BUS_ENOTFOUND) /* not registered yet: fine */
			d->failures++;
		d->rounds++;
	}
	return NULL;
}

START_TEST(registration_while_dispatching_is_safe_and_consistent)
{
	struct registry_race r = { .bus = open_bus() };
	atomic_init(&r.calls, 0);
	atomic_init(&r.done, 0);
	ck_assert_int_eq(bus_on(r.bus, "hot", atomic_counting_handler, &r.calls,
				NULL),
			 0);

	struct dispatcher d[2] = { { .race = &r }, { .race = &r } };
	pthread_t reg;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&d[i].thread, NULL,
						dispatch_loop, &d[i]),
				 0);
	ck_assert_int_eq(pthread_create(&reg, NULL, registrar, &r), 0);
	ck_assert_int_eq(pthread_join(reg, NULL), 0);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(d[i].thread, NULL), 0);

	ck_assert_int_eq(r.register_failures, 0);
	long ran = 0;
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(d[i].failures, 0);
		ck_assert_int_eq(d[i].shrank, 0);
		ck_assert_int_eq(d[i].cold_invalid, 0);
		ck_assert(d[i].rounds >= 200);
		ran += d[i].ran;
	}
	/* Every handler call that a dispatch reported really happened. */
	ck_assert_int_eq(atomic_load(&r.calls), ran);

	/* Afterwards everything registered is there. */
	bus_publish_result out;
	ck_assert_int_eq(bus_publish(&out, r.bus, "hot", NULL, NULL), 0);
	ck_assert_uint_eq(out.handlers, 1 + HOT_HANDLERS);
	char name[32];
	for (int i = 0; i < NEW_EVENTS; i++) {
		snprintf(name, sizeof name, "cold.%d", i);
		ck_assert_int_eq(bus_publish(&out, r.bus, name, NULL, NULL), 0);
		ck_assert_uint_eq(out.handlers, 1);
		snprintf(name, sizeof name, "cmd.%d", i);
		ck_assert_int_eq(bus_send(NULL, r.bus, name, NULL, NULL), 0);
	}
	bus_close(r.bus);
}
END_TEST

/* ---- per-thread state ---------------------------------------------------- */

struct error_probe {
	int code;
	char message[64];
};

static void *probe_error(void *arg)
{
	struct error_probe *p = arg;
	p->code = bus_error_last()->code;
	snprintf(p->message, sizeof p->message, "%s", bus_error_last()->message);
	return NULL;
}

START_TEST(last_error_is_per_thread)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_send(NULL, b, "missing", NULL, NULL),
			 BUS_ENOTFOUND);
	struct error_probe p = { -1, "" };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, probe_error, &p), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(p.code, 0);
	ck_assert_str_eq(p.message, "no error");
	ck_assert_last_error(BUS_ENOTFOUND, "missing");
	bus_close(b);
}
END_TEST

#define IDS_PER_THREAD 2000

struct id_maker {
	pthread_t thread;
	bus *bus;
	char (*ids)[37];
	int n;
};

static int keep_id(bus_ctx *ctx, void *udata)
{
	(void)udata;
	struct id_maker *m = bus_ctx_user(ctx);
	snprintf(m->ids[m->n++], 37, "%s", bus_ctx_id(ctx));
	return 0;
}

static void *make_ids(void *arg)
{
	struct id_maker *m = arg;
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.user = m;
	for (int i = 0; i < IDS_PER_THREAD; i++)
		bus_publish(NULL, m->bus, "id", NULL, &opts);
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

START_TEST(message_ids_are_unique_across_threads)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_on(b, "id", keep_id, NULL, NULL), 0);
	char(*ids)[37] = calloc(THREADS * IDS_PER_THREAD, sizeof *ids);
	ck_assert_ptr_nonnull(ids);
	struct id_maker m[THREADS];
	for (int i = 0; i < THREADS; i++) {
		m[i] = (struct id_maker){ .bus = b,
					  .ids = ids + i * IDS_PER_THREAD };
		ck_assert_int_eq(pthread_create(&m[i].thread, NULL, make_ids,
						&m[i]),
				 0);
	}
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(m[i].thread, NULL), 0);
		ck_assert_int_eq(m[i].n, IDS_PER_THREAD);
	}
	qsort(ids, THREADS * IDS_PER_THREAD, sizeof *ids, cmp_id);
	for (int i = 1; i < THREADS * IDS_PER_THREAD; i++)
		ck_assert_msg(strcmp(ids[i - 1], ids[i]) != 0,
			      "id %s was given twice", ids[i]);
	free(ids);
	bus_close(b);
}
END_TEST

static Suite *concurrency_suite(void)
{
	Suite *s = suite_create("concurrency");
	TCase *tc = tcase_create("threads");
	/* Generous: valgrind and the sanitizers slow threads down a lot. */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, concurrent_publishes_are_all_counted_exactly);
	tcase_add_test(tc, metrics_count_concurrent_calls_exactly);
	tcase_add_test(tc, registration_while_dispatching_is_safe_and_consistent);
	tcase_add_test(tc, last_error_is_per_thread);
	tcase_add_test(tc, message_ids_are_unique_across_threads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(concurrency_suite());
}
