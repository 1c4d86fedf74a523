/* A plug-in built for a newer store ABI than the core's: accepted, since
 * operations are only appended. */
#include "test_store.h"

static const struct bus_store_ops ops =
	TEST_STORE_OPS(BUS_STORE_ABI_VERSION + 1, "newabi", test_claim);

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	return &ops;
}
