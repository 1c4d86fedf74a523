/* A plug-in that needs a function nothing defines, so that
 * dlopen(RTLD_NOW) fails with "undefined symbol". */
#include "test_store.h"

/* Defined nowhere: the linker allows that in a shared object. */
const struct bus_store_ops *bus_test_no_such_function(uint32_t core_abi);

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	return bus_test_no_such_function(core_abi);
}
