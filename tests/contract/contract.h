/*
 * The contract suite: one set of tests of the durable-jobs behaviour, run
 * unchanged against every store. It uses only the public API, so what it
 * pins is what an application can rely on, whatever the store.
 *
 * The store under test is $BUS_CONTRACT_URL ("memory:" when unset). Every
 * test opens its own bus with contract_open, which leaves the store empty.
 * Tests use queue and job names of their own, so a store shared between
 * runs cannot mix their jobs up.
 *
 * Time: tests that look at times install a test clock (a frozen time they
 * advance by hand), so "not yet due" and "due now" are exact, not races.
 * Waits are liveness bounds only (CONTRACT_LIVENESS_MS of real time): no
 * test asserts that anything is fast.
 */
#ifndef BUS_TESTS_CONTRACT_H
#define BUS_TESTS_CONTRACT_H

#include <bus/bus.h>
#include <check.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define SEC_US INT64_C(1000000)
#define MIN_US (60 * SEC_US)
#define HOUR_US (60 * MIN_US)

/* The test clock starts here: 2027-01-15T08:00:00Z, a whole hour (so that
 * period buckets start exactly at CONTRACT_T0_US). */
#define CONTRACT_T0_US INT64_C(1800000000000000)

/* How long a wait may take before the test fails as hung. */
#define CONTRACT_LIVENESS_MS 20000
/* How long a test watches a worker to see that it does *not* do something
 * (some forty polls of the 5 ms poll interval the suite's workers use). */
#define CONTRACT_SETTLE_MS 200

/* Check's own per-test timeout, above every liveness bound a test has. */
#define CONTRACT_TCASE_TIMEOUT_S 120

/* The URL under test: $BUS_CONTRACT_URL, or "memory:". */
const char *contract_url(void);

/* Opens a bus on the URL under test, migrates it and empties it: every job
 * deleted, the queues tests pause resumed. The test fails when any of that
 * fails. The caller closes *b with bus_close (after freeing its workers). */
void contract_open(bus **b);

/* A clock the test drives. Install it before starting workers. */
struct test_clock {
	_Atomic int64_t now_us;
};

/* Sets `c` to CONTRACT_T0_US and makes it the bus's clock. `c` must
 * outlive the bus. */
void contract_clock_install(bus *b, struct test_clock *c);
void clock_advance(struct test_clock *c, int64_t us);
int64_t clock_now(struct test_clock *c);

/* Enough of a worker's options for the suite; zero means the default shown.
 * Intervals are small (poll 5 ms, completer flush 1 ms) so tests are quick,
 * and finished jobs are never pruned behind a test's back. */
struct contract_worker_opts {
	const char *queue;               /* "default"; ignored with queues */
	int concurrency;                 /* 1 */
	const bus_worker_queue *queues;  /* instead of queue/concurrency */
	size_t n_queues;
	int fetch_batch;                 /* the library's */
	int64_t lease_ms;                /* the library's (30000) */
	int64_t rescue_interval_ms;      /* 20 */
	const char *node;                /* the library's (host:pid) */
	int process;                     /* 1: process isolation; 0: thread */
	int64_t shutdown_grace_ms;       /* the library's */
	int prefetch;                    /* the library's (= concurrency) */
	int64_t rescue_delay_ms;         /* the library's (5000) */
	int completer_batch;             /* the library's (100) */
	int64_t cancel_check_ms;         /* the library's (500) */
};

/* Makes and starts a worker; the test fails when either fails. The caller
 * frees it with bus_worker_free, before bus_close. */
bus_worker *contract_start_worker(bus *b,
				  const struct contract_worker_opts *opts);

/* Registers command `name` as durable with `base` (NULL: defaults) and the
 * given queue (NULL: keep base's). */
void contract_handle(bus *b, const char *name, bus_handler_fn fn,
		     void *udata, const bus_handler_opts *base,
		     const char *queue);

/* Enqueues and asserts success and the status; returns the job id. */
#define enqueue_ok(b, kind, payload, opts, status)                             \
	contract_enqueue_ok(b, kind, payload, opts, status, __FILE__, __LINE__)
int64_t contract_enqueue_ok(bus *b, const char *kind, const char *payload,
			    const bus_job_opts *opts, bus_insert_status want,
			    const char *file, int line);

/* The job, which must exist; the caller frees it with bus_job_free. */
#define get_job(b, id) contract_get_job(b, id, __FILE__, __LINE__)
bus_job *contract_get_job(bus *b, int64_t id, const char *file, int line);

/* Waits until the job is in `state` with `attempt` attempts started
 * (attempt < 0: any), failing with what it saw last when that takes longer
 * than the liveness bound. Returns the job: the caller frees it. */
#define wait_job(b, id, state, attempt)                                        \
	contract_wait_job(b, id, state, attempt, __FILE__, __LINE__)
bus_job *contract_wait_job(bus *b, int64_t id, bus_job_state state,
			   int attempt, const char *file, int line);

/* Polls until cond(arg) is true: 1, or 0 after the liveness bound. */
typedef int (*contract_cond_fn)(void *arg);
int contract_poll(contract_cond_fn cond, void *arg);

/* Waits until cond(arg) is true; fails naming `what` after the bound. */
#define wait_for(cond, arg, what)                                              \
	contract_wait_for(cond, arg, what, __FILE__, __LINE__)
void contract_wait_for(contract_cond_fn cond, void *arg, const char *what,
		       const char *file, int line);

/* Waits until *v >= want. */
#define wait_atomic(v, want, what)                                             \
	contract_wait_atomic(v, want, what, __FILE__, __LINE__)
void contract_wait_atomic(atomic_int *v, int want, const char *what,
			  const char *file, int line);

/* Waits until the worker runs no job (stats.running == 0). */
#define wait_idle(w) contract_wait_idle(w, __FILE__, __LINE__)
void contract_wait_idle(bus_worker *w, const char *file, int line);

/* How many jobs match (paging through bus_job_list). states 0, queue NULL,
 * kind NULL: any. */
size_t count_jobs(bus *b, unsigned states, const char *queue,
		  const char *kind);

/* The job's errors, parsed; the test fails unless they are a JSON array.
 * The caller frees the result with cJSON_Delete. */
struct cJSON *job_errors(const bus_job *job);
/* The "error" text of entry i of an errors array, "" when missing. */
const char *job_error_text(const struct cJSON *errors, int i);
/* Asserts every entry i has "attempt" i+1 and an "error" containing
 * `part`, and that there are `n` entries. */
void assert_errors(const bus_job *job, int n, const char *part);

/* A number member of a JSON object text, for payload and meta checks; the
 * test fails when the text is not an object with that number. */
double json_number(const char *json, const char *key);
/* A string member, copied to buf; "" when missing. */
void json_string(char *buf, size_t size, const char *json, const char *key);

void sleep_ms(long ms);

/* The areas of the suite, one file each. */
TCase *contract_claim(void);
TCase *contract_schedule(void);
TCase *contract_retry(void);
TCase *contract_snooze_cancel(void);
TCase *contract_pause(void);
TCase *contract_unique(void);
TCase *contract_unique_states(void);
TCase *contract_replace(void);
TCase *contract_rescue(void);
TCase *contract_rescue_poison(void);
TCase *contract_shutdown(void);
TCase *contract_isolation(void);
TCase *contract_children(void);
TCase *contract_fanout(void);
TCase *contract_admin(void);
TCase *contract_prune(void);
TCase *contract_validation(void);
TCase *contract_defects(void);
TCase *contract_defaults(void);

/* A TCase named `name` with the suite's timeout. */
TCase *contract_tcase(const char *name);

#endif
