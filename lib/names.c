#include "error.h"
#include "names.h"
#include "strmap.h"

int bus__name_check(const char *what, const char *name, size_t *len,
		    uint64_t *hash)
{
	if (name == NULL)
		return bus__error_set(BUS_EINVAL, "%s is NULL", what);
	const unsigned char *p = (const unsigned char *)name;
	for (; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			size_t at = (size_t)(p - (const unsigned char *)name);
			/* Show the name only up to the bad byte. */
			return bus__error_set(
				BUS_EINVAL,
				"%s '%.*s' has a control character at byte %zu",
				what, (int)(at > 64 ? 64 : at), name, at);
		}
	}
	size_t n = (size_t)(p - (const unsigned char *)name);
	if (n == 0)
		return bus__error_set(BUS_EINVAL, "%s is empty", what);
	if (n > BUS_NAME_MAX)
		return bus__error_set(BUS_EINVAL,
				      "%s '%.64s...' is %zu bytes, over the "
				      "limit of %d",
				      what, name, n, BUS_NAME_MAX);
	*len = n;
	*hash = bus__name_hash(name, n);
	return 0;
}
