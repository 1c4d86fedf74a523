/*
 * Errors the server (or the network) gives in the middle of things, through
 * the fault proxy:
 *  - the connection is cut in the middle of a result set, while its rows
 *    are fetched: the error is the connection's, not the statement's, and
 *    must still be seen as a lost connection and retried (the same path
 *    reports a lock wait or deadlock met during a fetch);
 *  - the server refuses a COMMIT (an error that is not a lost connection):
 *    the store must roll the transaction back, or the next START
 *    TRANSACTION on that connection would commit the half-done batch.
 *
 * On MySQL by default, on PostgreSQL with $BUS_FAULT_STORE=postgres
 * (tests/postgres/net_errors.sh), where the refused COMMIT fails with a
 * SQLSTATE, and a batch takes a transaction when it holds a unique job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_proxy.h"

static struct fault_env env;
static struct fault_proxy proxy;

static size_t jobs_of_kind(bus *b, const char *kind, int *rc_out)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = kind;
	f.limit = 1000;
	bus_job *jobs = NULL;
	size_t n = 0;
	int rc = bus_job_list(&jobs, &n, b, &f);
	if (rc_out != NULL)
		*rc_out = rc;
	else if (rc != 0)
		fault_fail("bus_job_list: %s", bus_error_last()->message);
	bus_job_list_free(jobs, n);
	return n;
}

#define BIG_JOBS 6
#define BIG_BYTES (100 * 1000)

static void cut_in_the_middle_of_rows(bus *direct, bus *b)
{
	char *payload = malloc(BIG_BYTES + 16);
	if (payload == NULL)
		fault_fail("out of memory");
	payload[0] = '"';
	memset(payload + 1, 'x', BIG_BYTES);
	strcpy(payload + 1 + BIG_BYTES, "\"");
	for (int i = 0; i < BIG_JOBS; i++)
		if (bus_enqueue(NULL, direct, "net.big", payload, NULL) != 0)
			fault_fail("bus_enqueue: %s",
				   bus_error_last()->message);
	free(payload);
	jobs_of_kind(b, "net.big", NULL); /* prepares the list statement */
	long fired = fault_proxy_stat(&proxy, "fired");
	/* Well past the column definitions, well before the last row. */
	fault_proxy_cmd(&proxy, "cut-reply ORDER BY id LIMIT %d",
			BIG_BYTES * BIG_JOBS / 3);
	int rc;
	size_t n = jobs_of_kind(b, "net.big", &rc);
	if (fault_proxy_stat(&proxy, "fired") != fired + 1)
		fault_fail("the cut did not happen");
	if (rc != 0)
		fault_fail("a read cut in the middle of its rows was not "
			   "retried: %s",
			   bus_error_last()->message);
	if (n != BIG_JOBS)
		fault_fail("the retried read found %zu of %d jobs", n,
			   BIG_JOBS);
	fault_note("connection cut while rows were fetched: retried");
}

static void refused_commit_is_rolled_back(bus *direct, bus *b)
{
	/* A transaction on both stores: on MySQL two INSERTs (of 2 and 1
	 * rows), on PostgreSQL an upsert and an INSERT. */
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	int pg = env.dsn.postgres;
	bus_enqueue_item three[3] = {
		{ "net.refused", NULL, "{\"k\":1}", pg ? &o : NULL },
		{ "net.refused", NULL, "{}", NULL },
		{ "net.refused", NULL, "{}", NULL },
	};
	long fired = fault_proxy_stat(&proxy, "fired");
	/* ER_ERROR_DURING_COMMIT (an internal error on PostgreSQL), with
	 * the connection still up. */
	const char *code = pg ? "XX000" : "1180";
	fault_proxy_cmd(&proxy, "fail-reply COMMIT %s", code);
	int rc = bus_enqueue_many(NULL, b, three, 3);
	if (fault_proxy_stat(&proxy, "fired") != fired + 1)
		fault_fail("the COMMIT was not refused");
	if (rc != BUS_EBACKEND ||
	    strstr(bus_error_last()->message, code) == NULL)
		fault_fail("a refused COMMIT gave %s (%s), expected "
			   "BUS_EBACKEND with error %s",
			   bus_error_name(rc), bus_error_last()->message, code);
	/* The next batch on the same connection begins a transaction. */
	bus_enqueue_item next[3] = {
		{ "net.next", NULL, "{\"k\":2}", pg ? &o : NULL },
		{ "net.next", NULL, "{}", NULL },
		{ "net.next", NULL, "{}", NULL },
	};
	if (bus_enqueue_many(NULL, b, next, 3) != 0)
		fault_fail("the batch after the refused COMMIT: %s",
			   bus_error_last()->message);
	size_t refused = jobs_of_kind(direct, "net.refused", NULL);
	size_t after = jobs_of_kind(direct, "net.next", NULL);
	if (refused != 0 || after != 3)
		fault_fail("after a refused COMMIT: %zu of its jobs stored "
			   "(expected none), %zu of the next batch (expected "
			   "3)",
			   refused, after);
	fault_note("refused COMMIT rolled back: the next batch stored only "
		   "itself");
}

int main(void)
{
	fault_init(&env, "net_errors", "fner", 180);
	bus *direct = fault_open_bus(&env);
	if (bus_migrate(direct) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	fault_proxy_start(&proxy, &env);
	bus *b = fault_proxy_bus(&env, &proxy,
				 "connect-timeout=5&read-timeout=10");
	cut_in_the_middle_of_rows(direct, b);
	refused_commit_is_rolled_back(direct, b);
	bus_close(b);
	bus_close(direct);
	fault_proxy_stop(&proxy);
	fault_pass("errors during a fetch are retried; a refused COMMIT is "
		   "rolled back");
}
