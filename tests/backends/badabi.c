/* A plug-in built for an older store ABI than the core's (the one before
 * it: 3, before the push wake-up operations). */
#include "test_store.h"

static const struct bus_store_ops ops =
	TEST_STORE_OPS(BUS_STORE_ABI_VERSION - 1, "badabi", test_claim);

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	return &ops;
}
