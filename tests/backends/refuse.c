/* A plug-in whose entry refuses the core's ABI version. */
#include "test_store.h"

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	return NULL;
}
