#include <stdint.h>

#include "error.h"
#include "json_check.h"

/* One pass, no recursion: containers are kept as a bit stack (1 = object). */
struct scan {
	const unsigned char *p;
	const unsigned char *start;
	const char *reason;
};

static inline const unsigned char *skip_ws(const unsigned char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
		p++;
	return p;
}

static inline int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int hex4(const unsigned char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* Validates one UTF-8 sequence starting at a byte >= 0x80 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). Returns its length
 * or 0. */
int bus__utf8_seq(const unsigned char *p)
{
	unsigned char c = p[0];
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
		unsigned char hi = c == 0xed ? 0x9f : 0xbf;
		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
		unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;
		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

/* 1 for bytes a string may hold as they are: printable ASCII other than
 * the quote and the backslash. One lookup skips them; everything else takes
 * the careful path below. */
static const unsigned char plain[256] = {
	[0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7e] = 1,
};

/* p points after the opening quote; returns the byte after the closing one. */
static const unsigned char *scan_string(struct scan *s, const unsigned char *p)
{
	for (;;) {
		while (plain[*p])
			p++;
		unsigned char c = *p;
		if (c == '"')
			return p + 1;
		if (c == '\\') {
			unsigned char e = p[1];
			if (e == 'u') {
				unsigned cp;
				if (hex4(p + 2, &cp) != 0) {
					s->reason = "invalid \\u escape";
					s->p = p;
					return NULL;
				}
				p += 6;
				/* A high surrogate must be followed by a low one. */
				if (cp >= 0xd800 && cp <= 0xdbff) {
					unsigned lo;
					if (p[0] != '\\' || p[1] != 'u' ||
					    hex4(p + 2, &lo) != 0 || lo < 0xdc00 ||
					    lo > 0xdfff) {
						s->reason = "unpaired surrogate in \\u escape";
						s->p = p - 6;
						return NULL;
					}
					p += 6;
				} else if (cp >= 0xdc00 && cp <= 0xdfff) {
					s->reason = "unpaired surrogate in \\u escape";
					s->p = p - 6;
					return NULL;
				}
				continue;
			}
			if (e == '"' || e == '\\' || e == '/' || e == 'b' ||
			    e == 'f' || e == 'n' || e == 'r' || e == 't') {
				p += 2;
				continue;
			}
			s->reason = "invalid escape in string";
			s->p = p;
			return NULL;
		}
		if (c == '\0') {
			s->reason = "unterminated string";
			s->p = p;
			return NULL;
		}
		if (c < 0x20) {
			s->reason = "control character in string";
			s->p = p;
			return NULL;
		}
		if (c < 0x80) {
			p++;
			continue;
		}
		int n = bus__utf8_seq(p);
		if (n == 0) {
			s->reason = "invalid UTF-8 in string";
			s->p = p;
			return NULL;
		}
		p += n;
	}
}

static const unsigned char *scan_number(struct scan *s, const unsigned char *p)
{
	const unsigned char *start = p;
	if (*p == '-')
		p++;
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		while (is_digit(*p))
			p++;
	} else {
		s->reason = "invalid number";
		s->p = start;
		return NULL;
	}
	if (*p == '.') {
		p++;
		if (!is_digit(*p)) {
			s->reason = "invalid number: digit expected after '.'";
			s->p = p;
			return NULL;
		}
		while (is_digit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!is_digit(*p)) {
			s->reason = "invalid number: digit expected in exponent";
			s->p = p;
			return NULL;
		}
		while (is_digit(*p))
			p++;
	}
	return p;
}

static const unsigned char *scan_literal(struct scan *s, const unsigned char *p,
					 const char *word)
{
	for (const char *w = word; *w; w++, p++) {
		if (*p != (unsigned char)*w) {
			s->reason = "unexpected character";
			s->p = p;
			return NULL;
		}
	}
	return p;
}

int bus__json_check(const char *text, size_t max_len, size_t *len,
		    struct bus_json_error *err)
{
	uint64_t stack[(BUS_JSON_MAX_DEPTH + 63) / 64] = { 0 };
	int depth = 0;
	struct scan s = { (const unsigned char *)text,
			  (const unsigned char *)text, NULL };
	const unsigned char *p = skip_ws(s.p);

	for (;;) {
		/* Expect a value at p. */
		unsigned char c = *p;
		if (c == '{' || c == '[') {
			if (depth == BUS_JSON_MAX_DEPTH) {
				s.reason = "nesting deeper than 31 levels (the limit "
					   "of MariaDB's JSON_VALID, which "
					   "every store applies)";
				s.p = p;
				goto fail;
			}
			uint64_t bit = 1ULL << (depth % 64);
			if (c == '{')
				stack[depth / 64] |= bit;
			else
				stack[depth / 64] &= ~bit;
			depth++;
			p = skip_ws(p + 1);
			if (c == '{') {
				if (*p == '}') {
					depth--;
					p++;
					goto after_value;
				}
				goto object_key;
			}
			if (*p == ']') {
				depth--;
				p++;
				goto after_value;
			}
			continue;
		}
		if (c == '"')
			p = scan_string(&s, p + 1);
		else if (c == '-' || is_digit(c))
			p = scan_number(&s, p);
		else if (c == 't')
			p = scan_literal(&s, p, "true");
		else if (c == 'f')
			p = scan_literal(&s, p, "false");
		else if (c == 'n')
			p = scan_literal(&s, p, "null");
		else {
			s.reason = c == '\0' ? "unexpected end of input"
					     : "unexpected character";
			s.p = p;
			goto fail;
		}
		if (p == NULL)
			goto fail;

	after_value:
		p = skip_ws(p);
		if (depth == 0)
			break;
		{
			int in_object = (stack[(depth - 1) / 64] >>
					 ((depth - 1) % 64)) & 1;
			if (*p == ',') {
				p = skip_ws(p + 1);
				if (in_object)
					goto object_key;
				continue;
			}
			if (*p == (in_object ? '}' : ']')) {
				depth--;
				p++;
				goto after_value;
			}
			s.reason = in_object ? "expected ',' or '}'"
					     : "expected ',' or ']'";
			s.p = p;
			goto fail;
		}

	object_key:
		if (*p != '"') {
			s.reason = "expected a string key";
			s.p = p;
			goto fail;
		}
		p = scan_string(&s, p + 1);
		if (p == NULL)
			goto fail;
		p = skip_ws(p);
		if (*p != ':') {
			s.reason = "expected ':' after key";
			s.p = p;
			goto fail;
		}
		p = skip_ws(p + 1);
	}

	if (*p != '\0') {
		s.reason = "unexpected text after the JSON value";
		s.p = p;
		goto fail;
	}
	size_t n = (size_t)(p - s.start);
	if (n > max_len) {
		err->offset = n;
		err->reason = "too large";
		err->too_large = 1;
		err->limit = max_len;
		return -1;
	}
	*len = n;
	return 0;

fail:
	err->offset = (size_t)(s.p - s.start);
	err->reason = s.reason;
	err->too_large = 0;
	err->limit = max_len;
	return -1;
}

int bus__json_error_set(const char *what, const struct bus_json_error *err)
{
	if (err->too_large)
		return bus__error_set(BUS_EINVAL,
				      "%s is %zu bytes, over the limit of %zu",
				      what, err->offset, err->limit);
	return bus__error_set(BUS_EINVAL, "%s is not valid JSON: %s at byte %zu",
			      what, err->reason, err->offset);
}
