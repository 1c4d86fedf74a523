/*
 * bench/dispatch: the cost of bus_publish against the same work done
 * directly, without the bus.
 *
 *   bench/dispatch [--seconds S] [--runs R]
 *
 * Cases, each with 1 thread and with 2 threads publishing concurrently to one
 * bus (2 threads: aggregate events/s):
 *
 *   1 handler            bus_publish to an event with one handler
 *   4 handlers           ... with four handlers
 *   1 handler + 2 mw     ... with one handler and two pass-through middleware
 *                        (each just returns bus_next_call(next))
 *   1 handler + json     ... with one handler that calls bus_ctx_json, which
 *                        forces the parse the bus otherwise skips
 *
 * Every handler does the same trivial work: it increments a thread-local
 * counter. Beside each bus case, two direct loops do the same work without
 * the bus:
 *
 *   call        the handler(s) called through a volatile function pointer
 *               (pass-through middleware: one more indirect call each)
 *   call+parse  the same, plus cJSON_ParseWithLength + cJSON_Delete of the
 *               payload once per event (the "payload parse")
 *
 * One run measures every case and its baselines one after the other, each for
 * S seconds, and computes the ratios bus/call and bus/(call+parse) from the
 * figures of that run; the table shows the median over R runs of every
 * figure and of every ratio. Time is CLOCK_MONOTONIC. Nothing here asserts on
 * time: the only checks are that every publish succeeds and that every
 * handler ran as often as it should.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"

#define PAYLOAD                                                          \
	"{\"user_id\":42,\"email\":\"a@example.com\",\"plan\":\"pro\","  \
	"\"tags\":[\"x\",\"y\"]}"

/* Iterations between two looks at the clock. */
#define BATCH 2048

#define MAX_THREADS 2

static const char payload[] = PAYLOAD;
static size_t payload_len;

/* ------------------------------------------------------------------------ */
/* The work: handlers, middleware and their direct equivalents               */
/* ------------------------------------------------------------------------ */

/* Thread-local so that two threads never share a cache line. */
static _Thread_local uint64_t tl_count;

static int h_count(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	tl_count++;
	return 0;
}

static int h_count_json(bus_ctx *ctx, void *udata)
{
	(void)udata;
	if (bus_ctx_json(ctx) == NULL)
		return BUS_ENOMEM;
	tl_count++;
	return 0;
}

static int mw_pass(bus_ctx *ctx, bus_next *next, void *udata)
{
	(void)ctx;
	(void)udata;
	return bus_next_call(next);
}

/* Volatile: the compiler must load the pointer and call through it, as the
 * bus does, instead of inlining the handler. */
static int (*volatile direct_handler)(bus_ctx *, void *) = h_count;

static int direct_mw2(void)
{
	return direct_handler(NULL, NULL);
}

static int (*volatile direct_mw2_ptr)(void) = direct_mw2;

static int direct_mw1(void)
{
	return direct_mw2_ptr();
}

static int (*volatile direct_mw1_ptr)(void) = direct_mw1;

/* ------------------------------------------------------------------------ */
/* Workloads                                                                 */
/* ------------------------------------------------------------------------ */

enum mode {
	MODE_BUS,        /* bus_publish */
	MODE_CALL,       /* direct indirect call(s) */
	MODE_CALL_PARSE, /* direct call(s) + cJSON parse and delete */
};

enum shape {
	SHAPE_1H,   /* one handler */
	SHAPE_4H,   /* four handlers */
	SHAPE_MW2,  /* one handler behind two middleware */
	SHAPE_JSON, /* one handler that asks for the parsed payload */
};

struct workload {
	enum mode mode;
	enum shape shape;
	bus *b;            /* MODE_BUS */
	const char *event; /* MODE_BUS */
	unsigned calls;    /* handler calls per event, for the check */
};

static void die(const char *what)
{
	const bus_error *e = bus_error_last();
	fprintf(stderr, "dispatch: %s: %s (%s)\n", what, e->message,
		bus_error_name(e->code));
	exit(1);
}

/* Runs `n` events of the workload; 0 on success. */
static int run_batch(const struct workload *w, unsigned n)
{
	int rc = 0;
	switch (w->mode) {
	case MODE_BUS:
		for (unsigned i = 0; i < n; i++)
			rc |= bus_publish(NULL, w->b, w->event, payload, NULL);
		return rc;
	case MODE_CALL:
	case MODE_CALL_PARSE:
		for (unsigned i = 0; i < n; i++) {
			if (w->mode == MODE_CALL_PARSE) {
				cJSON *j = cJSON_ParseWithLength(payload,
								 payload_len);
				if (j == NULL)
					return -1;
				cJSON_Delete(j);
			}
			switch (w->shape) {
			case SHAPE_1H:
			case SHAPE_JSON:
				rc |= direct_handler(NULL, NULL);
				break;
			case SHAPE_4H:
				for (int k = 0; k < 4; k++)
					rc |= direct_handler(NULL, NULL);
				break;
			case SHAPE_MW2:
				rc |= direct_mw1_ptr();
				break;
			}
		}
		return rc;
	}
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Timing                                                                    */
/* ------------------------------------------------------------------------ */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct worker {
	pthread_t thread;
	const struct workload *w;
	pthread_barrier_t *start;
	int64_t duration_ns;
	uint64_t events;
	int64_t elapsed_ns;
	int failed;
};

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	if (wk->start != NULL)
		pthread_barrier_wait(wk->start);
	uint64_t count0 = tl_count;
	uint64_t events = 0;
	int64_t t0 = now_ns(), t;
	do {
		if (run_batch(wk->w, BATCH) != 0) {
			wk->failed = 1;
			return NULL;
		}
		events += BATCH;
		t = now_ns();
	} while (t - t0 < wk->duration_ns);
	wk->events = events;
	wk->elapsed_ns = t - t0;
	/* Every handler ran once per event, no more, no less. */
	if (tl_count - count0 != events * wk->w->calls)
		wk->failed = 2;
	return NULL;
}

/* Aggregate events per second of `threads` threads running `w` at once. */
static double measure(const struct workload *w, int threads,
		      int64_t duration_ns)
{
	struct worker wk[MAX_THREADS];
	pthread_barrier_t start;
	memset(wk, 0, sizeof wk);
	if (threads > 1 && pthread_barrier_init(&start, NULL, threads) != 0) {
		fprintf(stderr, "dispatch: pthread_barrier_init failed\n");
		exit(1);
	}
	for (int i = 0; i < threads; i++) {
		wk[i].w = w;
		wk[i].start = threads > 1 ? &start : NULL;
		wk[i].duration_ns = duration_ns;
	}
	if (threads == 1) {
		worker_main(&wk[0]);
	} else {
		for (int i = 0; i < threads; i++) {
			int e = pthread_create(&wk[i].thread, NULL, worker_main,
					       &wk[i]);
			if (e != 0) {
				fprintf(stderr, "dispatch: pthread_create: %s\n",
					strerror(e));
				exit(1);
			}
		}
		for (int i = 0; i < threads; i++)
			pthread_join(wk[i].thread, NULL);
		pthread_barrier_destroy(&start);
	}
	uint64_t events = 0;
	int64_t longest = 0;
	for (int i = 0; i < threads; i++) {
		if (wk[i].failed == 1)
			die(w->mode == MODE_BUS ? "bus_publish failed"
						: "direct loop failed");
		if (wk[i].failed == 2) {
			fprintf(stderr,
				"dispatch: handlers ran a wrong number of "
				"times\n");
			exit(1);
		}
		events += wk[i].events;
		if (wk[i].elapsed_ns > longest)
			longest = wk[i].elapsed_ns;
	}
	/* Events of all threads over the longest thread's time: aggregate
	 * throughput, never flattered by a thread that stopped early. */
	return (double)events * 1e9 / (double)longest;
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                     */
/* ------------------------------------------------------------------------ */

struct bench_case {
	const char *label;
	enum shape shape;
	bus *b;
	const char *event;
	unsigned calls;
};

#define EVENT "user.signed_up"

static bus *open_bus(enum shape shape)
{
	bus *b;
	if (bus_open(&b, "memory:") != 0)
		die("bus_open");
	int handlers = shape == SHAPE_4H ? 4 : 1;
	for (int i = 0; i < handlers; i++)
		if (bus_on(b, EVENT, shape == SHAPE_JSON ? h_count_json : h_count,
			   NULL, NULL) != 0)
			die("bus_on");
	if (shape == SHAPE_MW2)
		for (int i = 0; i < 2; i++)
			if (bus_use(b, mw_pass, NULL) != 0)
				die("bus_use");
	return b;
}

enum { NCASES = 4, NTHREADS = 2 };
static const int thread_counts[NTHREADS] = { 1, 2 };

/* Per case and thread count, per run: events/s of each mode and ratios. */
struct figures {
	double bus[MODE_CALL_PARSE + 1]; /* indexed by enum mode */
	double r_call, r_parse;          /* bus ns / direct ns */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof v[0], cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: dispatch [--seconds S] [--runs R]\n"
		   "  --seconds S  time per measurement (default 1)\n"
		   "  --runs R     runs; figures are medians (default 5)\n");
}

static void fmt_rate(char *buf, size_t size, double r)
{
	if (r >= 1e6)
		snprintf(buf, size, "%.2fM", r / 1e6);
	else
		snprintf(buf, size, "%.0fk", r / 1e3);
}

int main(int argc, char **argv)
{
	double seconds = 1.0;
	int runs = 5;
	for (int i = 1; i < argc; i++) {
		char *end;
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			errno = 0;
			seconds = strtod(argv[++i], &end);
			if (errno != 0 || *end != '\0' || !(seconds > 0) ||
			    seconds > 3600) {
				fprintf(stderr, "dispatch: bad --seconds\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			errno = 0;
			long r = strtol(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || r < 1 || r > 1000) {
				fprintf(stderr, "dispatch: bad --runs\n");
				return 2;
			}
			runs = (int)r;
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	payload_len = strlen(payload);
	int64_t duration_ns = (int64_t)(seconds * 1e9);

	struct bench_case cases[NCASES] = {
		{ "1 handler", SHAPE_1H, NULL, EVENT, 1 },
		{ "4 handlers", SHAPE_4H, NULL, EVENT, 4 },
		{ "1 handler + 2 mw", SHAPE_MW2, NULL, EVENT, 1 },
		{ "1 handler + json", SHAPE_JSON, NULL, EVENT, 1 },
	};
	for (int c = 0; c < NCASES; c++)
		cases[c].b = open_bus(cases[c].shape);

	struct figures *fig = calloc((size_t)runs * NCASES * NTHREADS,
				     sizeof *fig);
	if (fig == NULL) {
		fprintf(stderr, "dispatch: out of memory\n");
		return 1;
	}
#define FIG(r, c, t) fig[((r) * NCASES + (c)) * NTHREADS + (t)]

	printf("bench/dispatch: libbus %s, %ld online CPUs, payload %zu bytes, "
	       "%.2f s per measurement, %d run%s\n",
	       bus_version(), sysconf(_SC_NPROCESSORS_ONLN), payload_len,
	       seconds, runs, runs == 1 ? "" : "s");
	fflush(stdout);

	/* Warm-up: caches, branch predictors, the lazy TLS and RNG set-up. */
	for (int c = 0; c < NCASES; c++) {
		struct workload w = { MODE_BUS, cases[c].shape, cases[c].b,
				      cases[c].event, cases[c].calls };
		measure(&w, 1, duration_ns / 10 + 1);
	}

	for (int r = 0; r < runs; r++) {
		for (int t = 0; t < NTHREADS; t++) {
			for (int c = 0; c < NCASES; c++) {
				struct figures *f = &FIG(r, c, t);
				for (int m = MODE_BUS; m <= MODE_CALL_PARSE;
				     m++) {
					struct workload w = {
						(enum mode)m, cases[c].shape,
						cases[c].b, cases[c].event,
						cases[c].calls
					};
					f->bus[m] = measure(&w,
							    thread_counts[t],
							    duration_ns);
				}
				/* ns ratios = inverse rate ratios */
				f->r_call = f->bus[MODE_CALL] /
					    f->bus[MODE_BUS];
				f->r_parse = f->bus[MODE_CALL_PARSE] /
					     f->bus[MODE_BUS];
			}
		}
		fprintf(stderr, "dispatch: run %d of %d done\n", r + 1, runs);
	}

	/* Medians of everything, over the runs. */
	double *v = malloc((size_t)runs * sizeof *v);
	if (v == NULL) {
		fprintf(stderr, "dispatch: out of memory\n");
		return 1;
	}
	double med[NCASES][NTHREADS][5]; /* 3 modes, then the two ratios */
	double lo[NCASES][NTHREADS], hi[NCASES][NTHREADS];
	for (int c = 0; c < NCASES; c++) {
		for (int t = 0; t < NTHREADS; t++) {
			for (int k = 0; k < 5; k++) {
				for (int r = 0; r < runs; r++) {
					const struct figures *f = &FIG(r, c, t);
					v[r] = k < 3   ? f->bus[k]
					       : k == 3 ? f->r_call
							: f->r_parse;
				}
				med[c][t][k] = median(v, runs);
				if (k == MODE_BUS) {
					lo[c][t] = v[0];
					hi[c][t] = v[runs - 1];
				}
			}
		}
	}

	printf("\nmedians of %d runs. ev/s: aggregate of all threads; ns/ev: "
	       "per event and thread\n(threads / aggregate rate); spread: "
	       "(max - min) / median of bus ev/s;\ncall: direct indirect "
	       "call(s); c+parse: call(s) + cJSON parse and delete;\nratios: "
	       "bus ns / direct ns within each run, then the median.\n\n",
	       runs);
	printf("%-18s %3s %9s %7s %6s | %7s %8s | %10s %10s\n", "case", "thr",
	       "bus ev/s", "ns/ev", "spread", "call ns", "bus/call",
	       "c+parse ns", "bus/c+p");
	for (int t = 0; t < NTHREADS; t++) {
		for (int c = 0; c < NCASES; c++) {
			int th = thread_counts[t];
			char rate[32];
			fmt_rate(rate, sizeof rate, med[c][t][MODE_BUS]);
			double m = med[c][t][MODE_BUS];
			/* Spread of the bus figure: (max - min) / median. */
			double spread = 100.0 * (hi[c][t] - lo[c][t]) / m;
			printf("%-18s %3d %9s %7.1f %5.0f%% | %7.1f %7.1fx | "
			       "%10.1f %9.2fx\n",
			       cases[c].label, th, rate, th * 1e9 / m, spread,
			       th * 1e9 / med[c][t][MODE_CALL], med[c][t][3],
			       th * 1e9 / med[c][t][MODE_CALL_PARSE],
			       med[c][t][4]);
		}
	}

	/* The lazy parse: publish with bus_ctx_json against without, per run. */
	printf("\n");
	for (int t = 0; t < NTHREADS; t++) {
		for (int r = 0; r < runs; r++)
			v[r] = FIG(r, 0, t).bus[MODE_BUS] /
			       FIG(r, 3, t).bus[MODE_BUS];
		printf("lazy parse, %d thread%s: publish calling bus_ctx_json "
		       "costs %.2fx publish not calling it\n",
		       thread_counts[t], thread_counts[t] == 1 ? "" : "s",
		       median(v, runs));
	}
	double target = med[0][0][4];
	printf("target, 1 thread: publish(1 handler) / (call + parse) = "
	       "%.2fx, limit 5x: %s\n",
	       target, target <= 5.0 ? "met" : "NOT met");

	free(v);
	free(fig);
	for (int c = 0; c < NCASES; c++)
		bus_close(cases[c].b);
	return 0;
}
