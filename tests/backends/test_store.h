/* The body of the test plug-ins that check_loader loads: a store whose
 * operations are all present and whose open, close and schema_check
 * succeed, while every other operation fails with "test backend". Enough
 * to load and to open a bus; nothing is stored. Header-only: each plug-in
 * is one .c file, and the functions are inline so that a plug-in that
 * leaves one out does not warn. */
#ifndef BUS_TESTS_TEST_STORE_H
#define BUS_TESTS_TEST_STORE_H

#include <bus/backend.h>
#include <stdlib.h>

/* The one symbol a plug-in exports (declared for -Wmissing-prototypes). */
BUS_EXTERN const struct bus_store_ops *bus_backend_entry(uint32_t core_abi);

struct bus_store {
	const bus_store_env *env; /* the core's, outlives the store */
};

static inline int test_fail(bus_store *s, const char *op)
{
	return s->env->error(BUS_EBACKEND, "test backend: %s is not supported",
			     op);
}

static inline int test_open(bus_store **out, const char *url,
			    const bus_store_env *env)
{
	bus_store *s = malloc(sizeof *s);
	if (s == NULL)
		return env->error(BUS_ENOMEM, "test backend: out of memory");
	s->env = env;
	*out = s;
	return 0;
}

static inline void test_close(bus_store *s)
{
	free(s);
}

static inline int test_schema_check(bus_store *s)
{
	return 0;
}

static inline int test_migrate(bus_store *s)
{
	return test_fail(s, "migrate");
}

static inline int test_insert(bus_store *s, int64_t now,
			      const bus_store_new_job *jobs, size_t n,
			      bus_enqueue_result *results)
{
	return test_fail(s, "insert");
}

static inline int test_claim(bus_store *s, int64_t now, const char *node,
			     int64_t lease_us, const bus_store_claim *queues,
			     size_t n_queues, bus_job **out, size_t *n_out)
{
	return test_fail(s, "claim");
}

static inline int test_finish(bus_store *s, int64_t now,
			      const bus_store_finish *items, size_t n,
			      unsigned char *applied)
{
	return test_fail(s, "finish");
}

static inline int test_extend(bus_store *s, int64_t now, const char *node,
			      int64_t lease_us, const int64_t *ids,
			      const int *attempts, size_t n,
			      unsigned char *held)
{
	return test_fail(s, "extend");
}

static inline int test_expired(bus_store *s, int64_t now, size_t limit,
			       bus_job **out, size_t *n_out)
{
	return test_fail(s, "expired");
}

static inline int test_get(bus_store *s, int64_t id, bus_job **out)
{
	return test_fail(s, "get");
}

static inline int test_list(bus_store *s, const bus_job_filter *filter,
			    bus_job **out, size_t *n_out)
{
	return test_fail(s, "list");
}

static inline int test_cancel(bus_store *s, int64_t now, int64_t id)
{
	return test_fail(s, "cancel");
}

static inline int test_retry(bus_store *s, int64_t now, int64_t id)
{
	return test_fail(s, "retry");
}

static inline int test_remove(bus_store *s, int64_t id)
{
	return test_fail(s, "remove");
}

static inline int test_set_paused(bus_store *s, const char *queue,
				  int paused)
{
	return test_fail(s, "set_paused");
}

static inline int test_counts(bus_store *s, bus_job_count **out,
			      size_t *n_out)
{
	return test_fail(s, "counts");
}

static inline int test_prune(bus_store *s, int64_t now, int64_t age_us,
			     size_t limit, int64_t *deleted)
{
	return test_fail(s, "prune");
}

static inline int test_insert_tx(bus_store *s, void *tx, int64_t now,
				 const bus_store_new_job *jobs, size_t n,
				 bus_enqueue_result *results)
{
	return test_fail(s, "insert_tx");
}

static inline int test_cancel_pending(bus_store *s, const char *node,
				      const int64_t *ids, const int *attempts,
				      size_t n, unsigned char *pending)
{
	return test_fail(s, "cancel_pending");
}

/* An initializer for struct bus_store_ops with every operation but claim,
 * which is `claim_op` so that one plug-in can leave it out. */
#define TEST_STORE_OPS(abi, store_name, claim_op)                              \
	{                                                                      \
		.abi_version = (abi), .name = (store_name), .flags = 0,        \
		.open = test_open, .close = test_close,                        \
		.schema_check = test_schema_check, .migrate = test_migrate,    \
		.insert = test_insert, .claim = (claim_op),                    \
		.finish = test_finish, .extend = test_extend,                  \
		.expired = test_expired, .get = test_get, .list = test_list,   \
		.cancel = test_cancel, .retry = test_retry,                    \
		.remove = test_remove, .set_paused = test_set_paused,          \
		.counts = test_counts, .prune = test_prune,                    \
		.insert_tx = test_insert_tx,                                   \
		.cancel_pending = test_cancel_pending,                         \
		/* No push wake-up (ABI 4, optional). */                       \
		.listen = NULL, .wait_jobs = NULL,                             \
	}

#endif
