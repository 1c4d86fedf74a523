/*
 * A store plug-in whose clock is a day behind this machine's, for the
 * test that a unique period's bucket comes from the store's time. Its
 * insert stamps the job with the `now` it is given, or its own clock for
 * 0, as a real store would, and keeps the last job; get returns it (any
 * id) with that inserted_at and the unique key the core made.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "test_store.h"

#define SKEW_US (INT64_C(86400) * 1000000)

static char last_key[65];
static int64_t last_inserted_at;

static int64_t skewed_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - SKEW_US;
}

static int skewed_now(bus_store *s, int64_t *out)
{
	(void)s;
	*out = skewed_clock();
	return 0;
}

static int skewed_insert(bus_store *s, int64_t now,
			 const bus_store_new_job *jobs, size_t n,
			 bus_enqueue_result *results)
{
	(void)s;
	for (size_t i = 0; i < n; i++) {
		last_inserted_at = now != 0 ? now : skewed_clock();
		snprintf(last_key, sizeof last_key, "%s",
			 jobs[i].unique_key ? jobs[i].unique_key : "");
		results[i].id = 1;
		results[i].status = BUS_INSERTED;
	}
	return 0;
}

static int skewed_get(bus_store *s, int64_t id, bus_job **out)
{
	(void)id;
	bus_job *j = calloc(1, sizeof *j);
	if (j == NULL || (j->unique_key = strdup(last_key)) == NULL) {
		free(j);
		return s->env->error(BUS_ENOMEM, "skewed: out of memory");
	}
	j->id = 1;
	j->inserted_at = last_inserted_at;
	*out = j;
	return 0;
}

static const struct bus_store_ops ops = {
	.abi_version = BUS_STORE_ABI_VERSION,
	.name = "skewed",
	.open = test_open,
	.close = test_close,
	.schema_check = test_schema_check,
	.migrate = test_migrate,
	.insert = skewed_insert,
	.claim = test_claim,
	.finish = test_finish,
	.extend = test_extend,
	.expired = test_expired,
	.get = skewed_get,
	.list = test_list,
	.cancel = test_cancel,
	.retry = test_retry,
	.remove = test_remove,
	.set_paused = test_set_paused,
	.counts = test_counts,
	.prune = test_prune,
	.insert_tx = test_insert_tx,
	.cancel_pending = test_cancel_pending,
	.now = skewed_now,
};

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	(void)core_abi;
	return &ops;
}
