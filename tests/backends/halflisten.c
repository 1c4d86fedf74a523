/* A plug-in with listen but not wait_jobs: the push wake-up operations
 * (ABI 2) are optional, but only as a pair. */
#include "test_store.h"

static int half_listen(bus_store *s, const char *const *queues, size_t n)
{
	return test_fail(s, "listen");
}

static const struct bus_store_ops *make_ops(void)
{
	static struct bus_store_ops ops =
		TEST_STORE_OPS(BUS_STORE_ABI_VERSION, "halflisten", test_claim);
	ops.listen = half_listen;
	return &ops;
}

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	return make_ops();
}
