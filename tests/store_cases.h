/* The cases every store passes through its ops (store_cases.c), written
 * once and run by each store's own program: tests/check_store_memory.c for
 * the memory store, backends/mysql/test_store.c for MySQL. */
#ifndef BUS_TESTS_STORE_CASES_H
#define BUS_TESTS_STORE_CASES_H

#include <bus/backend.h>

#include "testutil.h"

#define T0 1700000000000000LL /* a fixed "now" the tests drive forward */
#define SEC 1000000LL
#define LEASE (30 * SEC)

/* The store under test, as its program describes it. */
struct store_fixture {
	const struct bus_store_ops *ops;
	/* Opens `st` on an empty store, ids numbered from 1 again; fails the
	 * case when it cannot. */
	void (*reset)(void);
	/* Another handle on `st`'s store, for a thread, closed with
	 * ops->close; NULL: the threads share `st` itself. */
	bus_store *(*connect)(void);
	int dense_ids; /* ids have no gaps: assert them exactly */
	int unique_per_thread; /* inserts per thread of one key */
};

/* The case's store: opened by the fixture's reset before each case, closed
 * after it. */
extern bus_store *st;

/* An environment that drops the store's log lines. */
extern const bus_store_env store_env;

/* A job of `queue` with the suite's defaults (kind, handler, payload, three
 * attempts). */
bus_store_new_job job_in(const char *queue, int priority,
			 int64_t scheduled_at);

/* Inserts `j` at T0 and returns its id; the case fails if it cannot. */
int64_t insert1(const bus_store_new_job *j);

/* Adds every shared case to `tc`, with the checked fixture that opens `st`
 * (f->reset) before each test of `tc`, the program's own ones too, and
 * closes it after. `f` must outlive the run. */
void store_cases_add(TCase *tc, const struct store_fixture *f);

#endif
