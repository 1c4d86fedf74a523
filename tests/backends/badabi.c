/* A plug-in built for an older store ABI (0) than the core's. */
#include "test_store.h"

static const struct bus_store_ops ops =
	TEST_STORE_OPS(0, "badabi", test_claim);

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	return &ops;
}
