/* A plug-in whose entry point has the wrong name: it exports
 * bus_store_entry (tests/Makefile.am), not bus_backend_entry. */
#include "test_store.h"

BUS_EXTERN const struct bus_store_ops *bus_store_entry(uint32_t core_abi);

static const struct bus_store_ops ops =
	TEST_STORE_OPS(BUS_STORE_ABI_VERSION, "noentry", test_claim);

const struct bus_store_ops *bus_store_entry(uint32_t core_abi)
{
	return &ops;
}
