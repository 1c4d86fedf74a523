/*
 * Binary parameters and results: integers in network byte order, times
 * as microseconds since 2000-01-01 (timestamptz's binary form, exact to
 * the microsecond and free of any time zone), text and JSON as their
 * bytes, and one-dimensional arrays of those for the batch statements.
 */
#include <stdlib.h>
#include <string.h>

#include "pg_store.h"

/* 2000-01-01 in Unix microseconds: timestamptz's epoch. */
#define PG_EPOCH_US INT64_C(946684800000000)
/* Times this store takes: from about 2600 BC to about 146,000 AD, inside
 * timestamptz's range with room for any lease or delay added to them. */
#define TIME_MIN (-(INT64_C(1) << 56))
#define TIME_MAX (INT64_C(1) << 62)

/* ---- Times ---- */

int bus__pg_time_ok(int64_t us)
{
	return us >= TIME_MIN && us <= TIME_MAX;
}

int bus__pg_now_check(const bus_store *s, const char *op, int64_t now)
{
	if (now == 0 || bus__pg_time_ok(now))
		return 0;
	return s->env.error(BUS_EINVAL,
			    "postgres store: %s: the time %lld us is out of "
			    "the range this store takes",
			    op, (long long)now);
}

/* ---- Byte order ---- */

static void put_be(char *out, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--) {
		out[i] = (char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t get_be(const char *in, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v = v << 8 | (unsigned char)in[i];
	return v;
}

/* ---- Parameters ---- */

int bus__pg_params_init(struct pg_params *p, size_t cap)
{
	memset(p, 0, sizeof *p);
	size_t c = cap ? cap : 1;
	p->cap = cap;
	p->val = calloc(c, sizeof *p->val);
	p->len = calloc(c, sizeof *p->len);
	p->fmt = calloc(c, sizeof *p->fmt);
	p->inl = calloc(c, sizeof *p->inl);
	p->owned = calloc(c, sizeof *p->owned);
	if (!p->val || !p->len || !p->fmt || !p->inl || !p->owned) {
		bus__pg_params_free(p);
		return PG_ERR_NOMEM;
	}
	return 0;
}

void bus__pg_params_free(struct pg_params *p)
{
	for (size_t i = 0; p->owned != NULL && i < p->cap; i++)
		free(p->owned[i]);
	free(p->val);
	free(p->len);
	free(p->fmt);
	free(p->inl);
	free(p->owned);
	memset(p, 0, sizeof *p);
}

/* The next parameter's index; running past cap is a bug in this store,
 * caught by bus__pg_exec (n > cap). */
static int next(struct pg_params *p, size_t *i)
{
	if (p->n >= p->cap) {
		p->n = p->cap + 1;
		return 0;
	}
	*i = p->n++;
	p->fmt[*i] = 1;
	return 1;
}

static void scalar(struct pg_params *p, uint64_t v, int bytes)
{
	size_t i;
	if (!next(p, &i))
		return;
	put_be(p->inl[i], v, bytes);
	p->val[i] = p->inl[i];
	p->len[i] = bytes;
}

void bus__pg_p_int8(struct pg_params *p, int64_t v)
{
	scalar(p, (uint64_t)v, 8);
}

void bus__pg_p_int4(struct pg_params *p, int32_t v)
{
	scalar(p, (uint64_t)(uint32_t)v, 4);
}

void bus__pg_p_bool(struct pg_params *p, int v)
{
	scalar(p, v != 0, 1);
}

void bus__pg_p_text(struct pg_params *p, const char *s)
{
	size_t i;
	if (!next(p, &i))
		return;
	p->val[i] = s; /* NULL is SQL NULL */
	p->len[i] = s ? (int)strlen(s) : 0;
}

void bus__pg_p_time(struct pg_params *p, int64_t us)
{
	if (us == 0) {
		size_t i;
		if (next(p, &i))
			p->val[i] = NULL;
		return;
	}
	scalar(p, (uint64_t)(us - PG_EPOCH_US), 8);
}

/* ---- Arrays ---- */

/* The header: dimensions, has-null flag, element type, length, lower
 * bound; the length and flag are filled in when it is handed over. */
#define ARRAY_HEADER 20

static void a_put(struct pg_array *a, const void *s, size_t len)
{
	if (a->oom)
		return;
	if (a->len + len > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 256;
		while (cap < a->len + len)
			cap *= 2;
		char *b = realloc(a->buf, cap);
		if (b == NULL) {
			a->oom = 1;
			return;
		}
		a->buf = b;
		a->cap = cap;
	}
	memcpy(a->buf + a->len, s, len);
	a->len += len;
}

void bus__pg_array_init(struct pg_array *a, uint32_t oid)
{
	memset(a, 0, sizeof *a);
	a->oid = oid;
	char header[ARRAY_HEADER] = { 0 };
	a_put(a, header, sizeof header);
}

static void a_elem(struct pg_array *a, const void *data, int32_t len)
{
	char l[4];
	put_be(l, (uint64_t)(uint32_t)len, 4);
	a_put(a, l, 4);
	if (len > 0)
		a_put(a, data, (size_t)len);
	if (len < 0)
		a->has_null = 1;
	a->count++;
}

static void a_scalar(struct pg_array *a, uint64_t v, int bytes)
{
	char b[8];
	put_be(b, v, bytes);
	a_elem(a, b, bytes);
}

void bus__pg_a_int8(struct pg_array *a, int64_t v)
{
	a_scalar(a, (uint64_t)v, 8);
}

void bus__pg_a_int4(struct pg_array *a, int32_t v)
{
	a_scalar(a, (uint64_t)(uint32_t)v, 4);
}

void bus__pg_a_int2(struct pg_array *a, int16_t v)
{
	a_scalar(a, (uint64_t)(uint16_t)v, 2);
}

void bus__pg_a_bool(struct pg_array *a, int v)
{
	a_scalar(a, v != 0, 1);
}

void bus__pg_a_text(struct pg_array *a, const char *s)
{
	if (s == NULL)
		a_elem(a, NULL, -1);
	else
		a_elem(a, s, (int32_t)strlen(s));
}

void bus__pg_a_time(struct pg_array *a, int64_t us)
{
	if (us == 0)
		a_elem(a, NULL, -1);
	else
		a_scalar(a, (uint64_t)(us - PG_EPOCH_US), 8);
}

void bus__pg_p_array(struct pg_params *p, struct pg_array *a)
{
	size_t i;
	if (!next(p, &i) || a->oom || a->len > INT32_MAX) {
		p->oom |= a->oom || a->len > INT32_MAX;
		free(a->buf);
		memset(a, 0, sizeof *a);
		return;
	}
	/* An empty array has no dimensions. */
	put_be(a->buf, a->count ? 1 : 0, 4);
	put_be(a->buf + 4, (uint64_t)a->has_null, 4);
	put_be(a->buf + 8, a->oid, 4);
	put_be(a->buf + 12, a->count, 4);
	put_be(a->buf + 16, 1, 4);
	p->owned[i] = a->buf;
	p->val[i] = a->buf;
	p->len[i] = (int)(a->count ? a->len : 12);
	memset(a, 0, sizeof *a);
}

/* ---- Results ---- */

int64_t bus__pg_get_int(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return 0;
	const char *v = PQgetvalue(r, row, col);
	switch (PQgetlength(r, row, col)) {
	case 1: return (unsigned char)v[0];
	case 2: return (int16_t)get_be(v, 2);
	case 4: return (int32_t)get_be(v, 4);
	case 8: return (int64_t)get_be(v, 8);
	default: return 0;
	}
}

int64_t bus__pg_get_time(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return 0;
	return (int64_t)get_be(PQgetvalue(r, row, col), 8) + PG_EPOCH_US;
}

const char *bus__pg_get_text(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}
