/* Names of messages, handlers, queues, nodes and tags: one pass that checks
 * them (UTF-8, no control characters, a bounded length) and hashes them. */
#include "error.h"
#include "names.h"
#include "strmap.h"

/* The length of the UTF-8 sequence at `p` (1..4), or 0 when it is not
 * well-formed: a stray continuation byte, a truncated sequence, an overlong
 * form, a UTF-16 surrogate or a code point past U+10FFFF. These are what
 * MySQL's utf8mb4 refuses (error 1366), so every store refuses the same. */
static size_t utf8_len(const unsigned char *p, uint32_t *cp)
{
	unsigned char c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t n;
	uint32_t v, min;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) /* also stops at the '\0' */
			return 0;
		v = (v << 6) | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

int bus__name_check(const char *what, const char *name, size_t *len,
		    uint64_t *hash)
{
	if (name == NULL)
		return bus__error_set(BUS_EINVAL, "%s is NULL", what);
	const unsigned char *start = (const unsigned char *)name;
	const unsigned char *p = start;
	while (*p) {
		size_t at = (size_t)(p - start);
		/* Show the name only up to the bad byte: what follows may not
		 * print. */
		int shown = (int)(at > 64 ? 64 : at);
		uint32_t cp;
		size_t n = utf8_len(p, &cp);
		if (n == 0)
			return bus__error_set(BUS_EINVAL,
					      "%s '%.*s' is not valid UTF-8 at "
					      "byte %zu",
					      what, shown, name, at);
		/* C0, DEL and C1 controls. */
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			return bus__error_set(
				BUS_EINVAL,
				"%s '%.*s' has a control character at byte %zu",
				what, shown, name, at);
		p += n;
		if ((size_t)(p - start) > BUS_NAME_MAX)
			break;
	}
	size_t n = (size_t)(p - start);
	if (n == 0)
		return bus__error_set(BUS_EINVAL, "%s is empty", what);
	if (n > BUS_NAME_MAX) {
		while (*p)
			p++;
		return bus__error_set(BUS_EINVAL,
				      "%s '%.64s...' is %zu bytes, over the "
				      "limit of %d",
				      what, name, (size_t)(p - start),
				      BUS_NAME_MAX);
	}
	*len = n;
	*hash = bus__name_hash(name, n);
	return 0;
}
