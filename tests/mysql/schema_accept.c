/*
 * schema_accept BY_HAND_URL EMPTY_URL [SQL_FILE]: the store on BY_HAND_URL,
 * whose schema was applied from SQL_FILE (migration/mysql.sql unless
 * given) by hand, is used as it is; the store on EMPTY_URL answers
 * BUS_ESCHEMA naming bus_migrate and SQL_FILE until it is migrated. Run by
 * mysql/schema_by_hand.sh and postgres/schema_by_hand.sh. Exits 0 or 1.
 */
#include <bus/bus.h>
#include <stdio.h>
#include <string.h>

static const char *sql_file = "migration/mysql.sql";

static int fail(const char *what)
{
	printf("FAIL: %s: %s\n", what, bus_error_last()->message);
	return 1;
}

static int accepts_hand_applied_schema(const char *url)
{
	bus *b;
	if (bus_open(&b, url) != 0)
		return fail("bus_open on the hand-migrated database");
	bus_job_count *counts;
	size_t n;
	bus_enqueue_result res;
	bus_job *job = NULL;
	int rc = 0;
	if (bus_job_counts(&counts, &n, b) != 0)
		rc = fail("the hand-applied schema was not accepted");
	else
		bus_free(counts);
	if (rc == 0 && bus_enqueue(&res, b, "by_hand.check", "{\"a\":1}",
				   NULL) != 0)
		rc = fail("enqueue into the hand-applied schema");
	if (rc == 0 && bus_job_get(&job, b, res.id) != 0)
		rc = fail("reading the job back");
	if (rc == 0 && (strcmp(job->kind, "by_hand.check") != 0 ||
			job->state != BUS_JOB_AVAILABLE)) {
		printf("FAIL: the job read back is %s in state %s\n", job->kind,
		       bus_job_state_name(job->state));
		rc = 1;
	}
	bus_job_free(job);
	bus_close(b);
	if (rc == 0)
		printf("PASS: %s applied by hand is accepted\n", sql_file);
	return rc;
}

static int refuses_missing_schema(const char *url)
{
	bus *b;
	if (bus_open(&b, url) != 0)
		return fail("bus_open on the empty database");
	bus_job_count *counts;
	size_t n;
	int rc = bus_job_counts(&counts, &n, b);
	const char *msg = bus_error_last()->message;
	if (rc != BUS_ESCHEMA || strstr(msg, "bus_migrate") == NULL ||
	    strstr(msg, sql_file) == NULL) {
		printf("FAIL: an empty database gave %s (%s), expected "
		       "BUS_ESCHEMA naming bus_migrate and %s\n",
		       bus_error_name(rc), msg, sql_file);
		bus_close(b);
		return 1;
	}
	printf("PASS: an empty database is refused: %s\n", msg);
	rc = 0;
	if (bus_migrate(b) != 0)
		rc = fail("bus_migrate on the empty database");
	else if (bus_job_counts(&counts, &n, b) != 0)
		rc = fail("the migrated schema was not accepted");
	else
		bus_free(counts);
	bus_close(b);
	if (rc == 0)
		printf("PASS: after bus_migrate the database is accepted\n");
	return rc;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: schema_accept BY_HAND_URL EMPTY_URL "
				"[SQL_FILE]\n");
		return 2;
	}
	if (argc == 4)
		sql_file = argv[3];
	int rc = accepts_hand_applied_schema(argv[1]);
	return refuses_missing_schema(argv[2]) || rc;
}
