/*
 * Between C values and statements: parameters, job rows, and times.
 *
 * Times are stored as DATETIME(6) in UTC and converted here, without the
 * C library's time zone, so neither the process's nor the session's time
 * zone can shift them.
 */
#include <stdlib.h>
#include <string.h>

#include "mysql_store.h"

#define DAY_US INT64_C(86400000000)

/* ---- Times ---- */

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

int bus__my_time_ok(int64_t us)
{
	/* DATETIME holds the years 1000 to 9999. */
	return us >= days_from_civil(1000, 1, 1) * DAY_US &&
	       us < days_from_civil(10000, 1, 1) * DAY_US;
}

int bus__my_now_check(const bus_store *s, const char *op, int64_t now)
{
	if (now == 0 || bus__my_time_ok(now))
		return 0;
	return s->env.error(BUS_EINVAL,
			    "mysql store: %s: the time %lld us is outside the "
			    "years 1000 to 9999 that DATETIME holds",
			    op, (long long)now);
}

void bus__my_time_set(MYSQL_TIME *t, int64_t us)
{
	int64_t days = us / DAY_US, rem = us % DAY_US;
	if (rem < 0) {
		rem += DAY_US;
		days--;
	}
	int64_t y;
	int m, d;
	civil_from_days(days, &y, &m, &d);
	memset(t, 0, sizeof *t);
	t->year = (unsigned)y;
	t->month = (unsigned)m;
	t->day = (unsigned)d;
	int64_t secs = rem / 1000000;
	t->hour = (unsigned)(secs / 3600);
	t->minute = (unsigned)(secs / 60 % 60);
	t->second = (unsigned)(secs % 60);
	t->second_part = (unsigned long)(rem % 1000000);
	t->time_type = MYSQL_TIMESTAMP_DATETIME;
}

int64_t bus__my_time_get(const MYSQL_TIME *t)
{
	int64_t days = days_from_civil(t->year, (int)t->month, (int)t->day);
	int64_t secs = (int64_t)t->hour * 3600 + t->minute * 60 + t->second;
	return days * DAY_US + secs * 1000000 + (int64_t)t->second_part;
}

/* ---- Parameters ---- */

int bus__my_params_init(struct my_params *p, size_t cap)
{
	p->n = 0;
	p->cap = cap;
	p->b = calloc(cap ? cap : 1, sizeof *p->b);
	p->v = calloc(cap ? cap : 1, sizeof *p->v);
	if (p->b == NULL || p->v == NULL) {
		bus__my_params_free(p);
		return MY_ERR_NOMEM;
	}
	return 0;
}

void bus__my_params_free(struct my_params *p)
{
	free(p->b);
	free(p->v);
	p->b = NULL;
	p->v = NULL;
	p->n = p->cap = 0;
}

void bus__my_params_reset(struct my_params *p)
{
	memset(p->b, 0, p->cap * sizeof *p->b);
	p->n = 0;
}

/* The next bind; the statements' parameter counts are fixed, so running
 * past cap is a bug in this store (caught by bus__my_exec's count). */
static MYSQL_BIND *next(struct my_params *p, struct my_param **v)
{
	if (p->n >= p->cap) {
		p->n = p->cap + 1;
		return NULL;
	}
	MYSQL_BIND *b = &p->b[p->n];
	*v = &p->v[p->n++];
	memset(b, 0, sizeof *b);
	(*v)->is_null = 0;
	b->is_null = &(*v)->is_null;
	return b;
}

void bus__my_p_ll(struct my_params *p, long long x)
{
	struct my_param *v;
	MYSQL_BIND *b = next(p, &v);
	if (b == NULL)
		return;
	v->v.ll = x;
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = &v->v.ll;
}

void bus__my_p_str(struct my_params *p, const char *s)
{
	struct my_param *v;
	MYSQL_BIND *b = next(p, &v);
	if (b == NULL)
		return;
	b->buffer_type = MYSQL_TYPE_STRING;
	if (s == NULL) {
		v->is_null = 1;
		return;
	}
	/* The binds only read the string, during the call that made them. */
	b->buffer = (void *)s;
	b->buffer_length = strlen(s);
}

void bus__my_p_time(struct my_params *p, int64_t us)
{
	struct my_param *v;
	MYSQL_BIND *b = next(p, &v);
	if (b == NULL)
		return;
	b->buffer_type = MYSQL_TYPE_DATETIME;
	b->buffer = &v->v.t;
	if (us == 0)
		v->is_null = 1;
	else
		bus__my_time_set(&v->v.t, us);
}

void bus__my_p_null(struct my_params *p)
{
	struct my_param *v;
	MYSQL_BIND *b = next(p, &v);
	if (b == NULL)
		return;
	b->buffer_type = MYSQL_TYPE_NULL;
	v->is_null = 1;
}

int bus__my_exec(struct my_conn *c, MYSQL_STMT *st, struct my_params *p)
{
	size_t want = mysql_stmt_param_count(st), have = p ? p->n : 0;
	if (want != have)
		return bus__my_fail(c,
				    "internal error: a statement takes %zu "
				    "parameters, %zu were given",
				    want, have);
	if (have > 0 && mysql_stmt_bind_param(st, p->b) != 0)
		return bus__my_stmt_fail(c, st);
	if (mysql_stmt_execute(st) != 0)
		return bus__my_stmt_fail(c, st);
	return 0;
}

/* ---- Job rows ---- */

enum {
	C_ID,
	C_KIND,
	C_HANDLER,
	C_QUEUE,
	C_PRIORITY,
	C_PAYLOAD,
	C_META,
	C_TAGS,
	C_STATE,
	C_ATTEMPT,
	C_MAX_ATTEMPTS,
	C_TIMEOUT,
	C_SCHEDULED,
	C_INSERTED,
	C_ATTEMPTED,
	C_LEASE,
	C_FINISHED,
	C_ATTEMPTED_BY,
	C_ERRORS,
	C_UNIQUE_KEY,
	C_UNIQUE_STATES,
	C_CANCEL_REQUESTED,
	C_STARTED,
	C_NOW,
	C_COUNT
};

struct rowbuf {
	MYSQL_BIND b[C_COUNT];
	long long ll[C_COUNT];
	MYSQL_TIME t[C_COUNT];
	unsigned long len[C_COUNT];
	my_bool null[C_COUNT], err[C_COUNT];
};

static int col_is_string(int col)
{
	switch (col) {
	case C_KIND:
	case C_HANDLER:
	case C_QUEUE:
	case C_PAYLOAD:
	case C_META:
	case C_TAGS:
	case C_ATTEMPTED_BY:
	case C_ERRORS:
	case C_UNIQUE_KEY: return 1;
	default: return 0;
	}
}

static int col_is_time(int col)
{
	return (col >= C_SCHEDULED && col <= C_FINISHED) ||
	       col == C_CANCEL_REQUESTED || col == C_STARTED || col == C_NOW;
}

static void rowbuf_bind(struct rowbuf *r, int ncols)
{
	memset(r, 0, sizeof *r);
	for (int i = 0; i < ncols; i++) {
		MYSQL_BIND *b = &r->b[i];
		b->is_null = &r->null[i];
		b->length = &r->len[i];
		b->error = &r->err[i];
		if (col_is_string(i)) {
			/* No buffer: the fetch gives the length, and the
			 * column is then read into an exact allocation. */
			b->buffer_type = MYSQL_TYPE_STRING;
		} else if (col_is_time(i)) {
			b->buffer_type = MYSQL_TYPE_DATETIME;
			b->buffer = &r->t[i];
			b->buffer_length = sizeof r->t[i];
		} else {
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->buffer = &r->ll[i];
			b->buffer_length = sizeof r->ll[i];
		}
	}
}

/* Column `col` of the current row, malloc'd (NULL for SQL NULL). */
static int fetch_string(MYSQL_STMT *st, struct rowbuf *r, int col, char **out)
{
	*out = NULL;
	if (r->null[col])
		return 0;
	unsigned long len = r->len[col];
	char *s = malloc(len + 1);
	if (s == NULL)
		return MY_ERR_NOMEM;
	if (len > 0) {
		MYSQL_BIND b;
		memset(&b, 0, sizeof b);
		unsigned long got = 0;
		b.buffer_type = MYSQL_TYPE_STRING;
		b.buffer = s;
		b.buffer_length = len + 1;
		b.length = &got;
		if (mysql_stmt_fetch_column(st, &b, (unsigned)col, 0) != 0) {
			free(s);
			return MY_ERR_DB;
		}
	}
	s[len] = '\0';
	*out = s;
	return 0;
}

static int64_t time_of(const struct rowbuf *r, int col)
{
	return r->null[col] ? 0 : bus__my_time_get(&r->t[col]);
}

static void job_strings_free(bus_job *j)
{
	free(j->kind);
	free(j->handler);
	free(j->queue);
	free(j->payload);
	free(j->meta);
	free(j->tags);
	free(j->attempted_by);
	free(j->errors);
	free(j->unique_key);
}

/* The current row as a job; nothing to free on failure. */
static int row_to_job(MYSQL_STMT *st, struct rowbuf *r, bus_job *j)
{
	memset(j, 0, sizeof *j);
	int rc = 0;
	char **strs[C_COUNT] = { NULL };
	strs[C_KIND] = &j->kind;
	strs[C_HANDLER] = &j->handler;
	strs[C_QUEUE] = &j->queue;
	strs[C_PAYLOAD] = &j->payload;
	strs[C_META] = &j->meta;
	strs[C_TAGS] = &j->tags;
	strs[C_ATTEMPTED_BY] = &j->attempted_by;
	strs[C_ERRORS] = &j->errors;
	strs[C_UNIQUE_KEY] = &j->unique_key;
	for (int col = 0; rc == 0 && col < C_NOW; col++)
		if (strs[col] != NULL)
			rc = fetch_string(st, r, col, strs[col]);
	if (rc != 0) {
		job_strings_free(j);
		memset(j, 0, sizeof *j);
		return rc;
	}
	j->id = r->ll[C_ID];
	j->priority = (int)r->ll[C_PRIORITY];
	j->state = (bus_job_state)r->ll[C_STATE];
	j->attempt = (int)r->ll[C_ATTEMPT];
	j->max_attempts = (int)r->ll[C_MAX_ATTEMPTS];
	j->timeout_ms = r->ll[C_TIMEOUT];
	j->scheduled_at = time_of(r, C_SCHEDULED);
	j->inserted_at = time_of(r, C_INSERTED);
	j->attempted_at = time_of(r, C_ATTEMPTED);
	j->lease_until = time_of(r, C_LEASE);
	j->finished_at = time_of(r, C_FINISHED);
	j->unique_states = (unsigned)r->ll[C_UNIQUE_STATES];
	j->cancel_requested_at = time_of(r, C_CANCEL_REQUESTED);
	j->started_at = time_of(r, C_STARTED);
	return 0;
}

void bus__my_rows_free(bus_job *rows, size_t n)
{
	for (size_t i = 0; rows != NULL && i < n; i++)
		job_strings_free(&rows[i]);
	free(rows);
}

/* Fetches the next row: 1 a row, 0 the end, or MY_ERR_DB. */
static int fetch(struct my_conn *c, MYSQL_STMT *st)
{
	int f = mysql_stmt_fetch(st);
	if (f == 0 || f == MYSQL_DATA_TRUNCATED)
		return 1;
	if (f == MYSQL_NO_DATA)
		return 0;
	return bus__my_stmt_fail(c, st);
}

int bus__my_rows_fetch(struct my_conn *c, MYSQL_STMT *st, size_t limit,
		       bus_job **out, size_t *n_out, int64_t *now)
{
	*out = NULL;
	*n_out = 0;
	struct rowbuf r;
	int ncols = now ? C_COUNT : C_NOW;
	if (mysql_stmt_field_count(st) != (unsigned)ncols) {
		mysql_stmt_free_result(st);
		return bus__my_fail(c,
				    "internal error: a job query returns "
				    "%u columns, not %d",
				    mysql_stmt_field_count(st), ncols);
	}
	rowbuf_bind(&r, ncols);
	if (mysql_stmt_bind_result(st, r.b) != 0)
		return bus__my_stmt_fail(c, st);
	bus_job *rows = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = fetch(c, st)) == 1) {
		if (n == limit)
			continue; /* read to the end all the same */
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			if (ncap > limit)
				ncap = limit;
			bus_job *nr = realloc(rows, ncap * sizeof *nr);
			if (nr == NULL) {
				rc = MY_ERR_NOMEM;
				break;
			}
			rows = nr;
			cap = ncap;
		}
		if ((rc = row_to_job(st, &r, &rows[n])) != 0) {
			if (rc == MY_ERR_DB)
				rc = bus__my_stmt_fail(c, st);
			break;
		}
		n++;
		if (now != NULL)
			*now = time_of(&r, C_NOW);
	}
	mysql_stmt_free_result(st);
	if (rc < 0) {
		bus__my_rows_free(rows, n);
		return rc;
	}
	if (n == 0) {
		free(rows);
		rows = NULL;
	}
	*out = rows;
	*n_out = n;
	return 0;
}

int bus__my_ints_fetch(struct my_conn *c, MYSQL_STMT *st, long long *out,
		       size_t limit, size_t *n_out)
{
	*n_out = 0;
	MYSQL_BIND b;
	long long v = 0;
	my_bool is_null = 0;
	memset(&b, 0, sizeof b);
	b.buffer_type = MYSQL_TYPE_LONGLONG;
	b.buffer = &v;
	b.is_null = &is_null;
	if (mysql_stmt_bind_result(st, &b) != 0)
		return bus__my_stmt_fail(c, st);
	int rc;
	size_t n = 0;
	while ((rc = fetch(c, st)) == 1)
		if (n < limit)
			out[n++] = is_null ? 0 : v;
	mysql_stmt_free_result(st);
	if (rc < 0)
		return rc;
	*n_out = n;
	return 0;
}
