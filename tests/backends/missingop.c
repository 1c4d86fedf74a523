/* A plug-in whose claim operation is NULL. */
#include "test_store.h"

static const struct bus_store_ops ops =
	TEST_STORE_OPS(BUS_STORE_ABI_VERSION, "missingop", NULL);

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	return &ops;
}
