/* Result rows (PG_JOB_COLS, in binary) -> bus_job. */
#include <stdlib.h>
#include <string.h>

#include "pg_store.h"

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
};

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

void bus__pg_rows_free(bus_job *rows, size_t n)
{
	for (size_t i = 0; rows != NULL && i < n; i++)
		job_strings_free(&rows[i]);
	free(rows);
}

/* Column `col` as a malloc'd string (NULL for NULL); *oom on failure. */
static char *dup_col(const PGresult *r, int row, int col, int *oom)
{
	if (PQgetisnull(r, row, col))
		return NULL;
	size_t len = (size_t)PQgetlength(r, row, col);
	char *s = malloc(len + 1);
	if (s == NULL) {
		*oom = 1;
		return NULL;
	}
	memcpy(s, PQgetvalue(r, row, col), len);
	s[len] = '\0';
	return s;
}

static int row_to_job(const PGresult *r, int row, int f, bus_job *j)
{
	int oom = 0;
	memset(j, 0, sizeof *j);
	j->kind = dup_col(r, row, f + C_KIND, &oom);
	j->handler = dup_col(r, row, f + C_HANDLER, &oom);
	j->queue = dup_col(r, row, f + C_QUEUE, &oom);
	j->payload = dup_col(r, row, f + C_PAYLOAD, &oom);
	j->meta = dup_col(r, row, f + C_META, &oom);
	j->tags = dup_col(r, row, f + C_TAGS, &oom);
	j->attempted_by = dup_col(r, row, f + C_ATTEMPTED_BY, &oom);
	j->errors = dup_col(r, row, f + C_ERRORS, &oom);
	j->unique_key = dup_col(r, row, f + C_UNIQUE_KEY, &oom);
	if (oom) {
		job_strings_free(j);
		memset(j, 0, sizeof *j);
		return PG_ERR_NOMEM;
	}
	j->id = bus__pg_get_int(r, row, f + C_ID);
	j->priority = (int)bus__pg_get_int(r, row, f + C_PRIORITY);
	j->state = (bus_job_state)bus__pg_get_int(r, row, f + C_STATE);
	j->attempt = (int)bus__pg_get_int(r, row, f + C_ATTEMPT);
	j->max_attempts = (int)bus__pg_get_int(r, row, f + C_MAX_ATTEMPTS);
	j->timeout_ms = bus__pg_get_int(r, row, f + C_TIMEOUT);
	j->scheduled_at = bus__pg_get_time(r, row, f + C_SCHEDULED);
	j->inserted_at = bus__pg_get_time(r, row, f + C_INSERTED);
	j->attempted_at = bus__pg_get_time(r, row, f + C_ATTEMPTED);
	j->lease_until = bus__pg_get_time(r, row, f + C_LEASE);
	j->finished_at = bus__pg_get_time(r, row, f + C_FINISHED);
	j->unique_states =
		(unsigned)bus__pg_get_int(r, row, f + C_UNIQUE_STATES);
	j->cancel_requested_at = bus__pg_get_time(r, row, f + C_CANCEL_REQUESTED);
	j->started_at = bus__pg_get_time(r, row, f + C_STARTED);
	return 0;
}

int bus__pg_rows_read(struct pg_conn *c, const PGresult *r, int first,
		      bus_job **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (PQnfields(r) < first + PG_JOB_NCOLS || PQbinaryTuples(r) != 1)
		return bus__pg_fail(c,
				    "internal error: a job query returns %d "
				    "columns, not %d in binary",
				    PQnfields(r), first + PG_JOB_NCOLS);
	int n = PQntuples(r);
	if (n == 0)
		return 0;
	bus_job *rows = calloc((size_t)n, sizeof *rows);
	if (rows == NULL)
		return PG_ERR_NOMEM;
	for (int i = 0; i < n; i++)
		if (row_to_job(r, i, first, &rows[i]) != 0) {
			bus__pg_rows_free(rows, (size_t)i);
			return PG_ERR_NOMEM;
		}
	*out = rows;
	*n_out = (size_t)n;
	return 0;
}
