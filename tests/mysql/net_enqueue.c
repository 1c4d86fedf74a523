/*
 * One enqueue is one job, whatever the network does: through the fault
 * proxy, the connection is dropped right after the server's reply to the
 * statement that commits an enqueue (the reply is swallowed, so the store
 * cannot know the job was stored), or cut in the middle of the INSERT.
 * Each call must still succeed once, report the job it stored, and leave
 * exactly one row per job: a single job (one autocommit INSERT), a batch
 * (a transaction: the COMMIT's reply is lost; on PostgreSQL one INSERT of
 * all its rows, whose reply is lost), and a batch with a unique job (a
 * transaction on both stores), new and then a duplicate.
 *
 * On MySQL by default, on PostgreSQL with $BUS_FAULT_STORE=postgres
 * (tests/postgres/net_enqueue.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_proxy.h"

static struct fault_env env;
static struct fault_proxy proxy;

/* The statement that commits a batch of plain jobs: its own transaction
 * on MySQL (multi-row INSERTs), one autocommit INSERT on PostgreSQL. */
static const char *plain_batch_commit(void)
{
	return env.dsn.postgres ? "INSERT INTO" : "COMMIT";
}

static size_t jobs_of_kind(bus *b, const char *kind)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = kind;
	f.limit = 1000;
	bus_job *jobs;
	size_t n;
	if (bus_job_list(&jobs, &n, b, &f) != 0)
		fault_fail("bus_job_list: %s", bus_error_last()->message);
	bus_job_list_free(jobs, n);
	return n;
}

static void expect_fired(long before, const char *what)
{
	if (fault_proxy_stat(&proxy, "fired") != before + 1)
		fault_fail("%s: the proxy's rule did not fire", what);
}

static void single_job(bus *direct, bus *b)
{
	bus_enqueue_result r;
	/* Prepares the statements, so that the rule sees their ids. */
	if (bus_enqueue(&r, b, "net.warm", "{}", NULL) != 0)
		fault_fail("bus_enqueue: %s", bus_error_last()->message);
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "drop-reply INSERT INTO");
	if (bus_enqueue(&r, b, "net.one", "{\"n\":1}", NULL) != 0)
		fault_fail("bus_enqueue with its reply lost: %s",
			   bus_error_last()->message);
	expect_fired(fired, "single job");
	size_t n = jobs_of_kind(direct, "net.one");
	if (n != 1)
		fault_fail("one bus_enqueue whose reply was lost stored %zu "
			   "jobs",
			   n);
	bus_job *j = NULL;
	if (bus_job_get(&j, direct, r.id) != 0 || strcmp(j->kind, "net.one"))
		fault_fail("the enqueue reported job %lld, which is not the "
			   "one it stored",
			   (long long)r.id);
	bus_job_free(j);
	if (r.status != BUS_INSERTED)
		fault_fail("the recovered enqueue reported status %d", r.status);

	fault_proxy_cmd(&proxy, "reset-mid INSERT INTO");
	if (bus_enqueue(&r, b, "net.cut", "{\"n\":2}", NULL) != 0)
		fault_fail("bus_enqueue cut mid-statement: %s",
			   bus_error_last()->message);
	expect_fired(fired + 1, "cut insert");
	if ((n = jobs_of_kind(direct, "net.cut")) != 1)
		fault_fail("an enqueue cut mid-statement stored %zu jobs", n);
	fault_note("single job: reply lost -> 1 job; cut mid-statement -> 1 "
		   "job");
}

#define BATCH 5

static void batch(bus *direct, bus *b)
{
	bus_enqueue_item items[BATCH];
	bus_enqueue_result res[BATCH];
	for (int i = 0; i < BATCH; i++)
		items[i] = (bus_enqueue_item){ "net.many", NULL, "{}", NULL };
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "drop-reply %s", plain_batch_commit());
	if (bus_enqueue_many(res, b, items, BATCH) != 0)
		fault_fail("bus_enqueue_many with the COMMIT's reply lost: %s",
			   bus_error_last()->message);
	expect_fired(fired, "batch");
	size_t n = jobs_of_kind(direct, "net.many");
	if (n != BATCH)
		fault_fail("a batch of %d whose COMMIT reply was lost stored "
			   "%zu jobs",
			   BATCH, n);
	for (int i = 0; i < BATCH; i++) {
		if (res[i].status != BUS_INSERTED || res[i].id <= 0 ||
		    (i > 0 && res[i].id <= res[i - 1].id))
			fault_fail("batch result %d: id %lld status %d", i,
				   (long long)res[i].id, res[i].status);
	}
	fault_note("batch of %d: %s reply lost -> %d jobs, ids in order",
		   BATCH, plain_batch_commit(), BATCH);
}

static void batch_with_unique(bus *direct, bus *b)
{
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	bus_enqueue_item items[3] = {
		{ "net.uniq", NULL, "{\"k\":1}", &o },
		{ "net.plain", NULL, "{}", NULL },
		{ "net.plain", NULL, "{}", NULL },
	};
	bus_enqueue_result first[3], again[3];
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "drop-reply COMMIT");
	if (bus_enqueue_many(first, b, items, 3) != 0)
		fault_fail("bus_enqueue_many (unique, new): %s",
			   bus_error_last()->message);
	expect_fired(fired, "unique batch");
	for (int i = 0; i < 3; i++)
		if (first[i].status != BUS_INSERTED)
			fault_fail("new unique batch: result %d status %d", i,
				   first[i].status);
	/* The same unique job again, with one plain job. */
	fault_proxy_cmd(&proxy, "drop-reply COMMIT");
	if (bus_enqueue_many(again, b, items, 2) != 0)
		fault_fail("bus_enqueue_many (unique, duplicate): %s",
			   bus_error_last()->message);
	expect_fired(fired + 1, "unique batch again");
	if (again[0].status != BUS_DUPLICATE || again[0].id != first[0].id)
		fault_fail("the duplicate gave status %d id %lld, expected "
			   "BUS_DUPLICATE of %lld",
			   again[0].status, (long long)again[0].id,
			   (long long)first[0].id);
	if (again[1].status != BUS_INSERTED)
		fault_fail("the plain job beside the duplicate: status %d",
			   again[1].status);
	size_t nu = jobs_of_kind(direct, "net.uniq");
	size_t np = jobs_of_kind(direct, "net.plain");
	if (nu != 1 || np != 3)
		fault_fail("unique batches with lost COMMIT replies left %zu "
			   "unique and %zu plain jobs, expected 1 and 3",
			   nu, np);
	fault_note("unique job in a batch: inserted once, then a duplicate "
		   "of the same id");
}

static void status_row(void *arg, const char *const *values, int n)
{
	if (n == 2 && values[1] != NULL)
		*(long long *)arg = atoll(values[1]);
}

/* A global status counter of the server (KILLs: Com_kill). */
static long long server_status(const char *name)
{
	char why[300], sql[120];
	fault_db *db = fault_connect(&env.dsn, why, sizeof why);
	if (db == NULL)
		fault_fail("connecting: %s", why);
	long long v = -1;
	snprintf(sql, sizeof sql, "SHOW GLOBAL STATUS LIKE '%s'", name);
	if (fault_db_query(db, sql, status_row, &v, why, sizeof why) != 0 ||
	    v < 0)
		fault_fail("reading %s: %s", name, why);
	fault_db_close(db);
	return v;
}

/* The lost session still lives on the server (the proxy keeps its side
 * open), holding its session lock: the store must find it, KILL it and
 * see it end before it reads back; without the KILL it would wait for
 * the lock in vain and fail. Last: the proxy orphans from now on. */
static void lost_session_alive(bus *direct, bus *b)
{
	bus_enqueue_item items[3];
	bus_enqueue_result res[3];
	for (int i = 0; i < 3; i++)
		items[i] = (bus_enqueue_item){ "net.orphan", NULL, "{}", NULL };
	long long kills = server_status("Com_kill");
	fault_proxy_cmd(&proxy, "orphan");
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "drop-reply COMMIT");
	if (bus_enqueue_many(res, b, items, 3) != 0)
		fault_fail("bus_enqueue_many with its session left alive on "
			   "the server: %s",
			   bus_error_last()->message);
	expect_fired(fired, "orphaned session");
	size_t n = jobs_of_kind(direct, "net.orphan");
	if (n != 3)
		fault_fail("a batch of 3 whose session lived on stored %zu "
			   "jobs",
			   n);
	if (server_status("Com_kill") <= kills)
		fault_fail("the lost session lived on, but the store did not "
			   "KILL it");
	fault_note("lost session alive on the server: killed, read back, 3 "
		   "jobs");
}

/* PostgreSQL: the lost session lives on in the middle of a batch's
 * transaction (the proxy cut its COMMIT half-way and keeps the server's
 * side open), holding the unique key it inserted. The store must end that
 * session (terminate it, as the same backend, and see it gone) before it
 * runs the batch again: otherwise the new upsert waits for the key's lock
 * until read-timeout, over and over, and the call fails. Last: the proxy
 * orphans from now on. */
static void lost_session_alive_pg(bus *direct, bus *b)
{
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	bus_enqueue_item items[3] = {
		{ "net.orphan", NULL, "{\"k\":2}", &o },
		{ "net.orphan", NULL, "{}", NULL },
		{ "net.orphan", NULL, "{}", NULL },
	};
	bus_enqueue_result res[3];
	fault_proxy_cmd(&proxy, "orphan");
	long fired = fault_proxy_stat(&proxy, "fired");
	fault_proxy_cmd(&proxy, "reset-mid COMMIT");
	double t0 = fault_elapsed_s();
	if (bus_enqueue_many(res, b, items, 3) != 0)
		fault_fail("bus_enqueue_many with its session left alive in "
			   "its transaction: %s",
			   bus_error_last()->message);
	double took = fault_elapsed_s() - t0;
	expect_fired(fired, "orphaned session");
	size_t n = jobs_of_kind(direct, "net.orphan");
	if (n != 3 || res[0].status != BUS_INSERTED)
		fault_fail("a batch of 3 whose session lived on stored %zu "
			   "jobs (the unique one: status %d)",
			   n, res[0].status);
	/* Well under read-timeout (10 s): no wait for the lost session. */
	if (took > 8.0)
		fault_fail("the batch took %.1f s: it waited for the lost "
			   "session's lock",
			   took);
	fault_note("lost session alive in its transaction: ended, batch run "
		   "again in %.1f s, 3 jobs",
		   took);
}

int main(void)
{
	fault_init(&env, "net_enqueue", "fne", 180);
	bus *direct = fault_open_bus(&env);
	if (bus_migrate(direct) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	fault_proxy_start(&proxy, &env);
	bus *b = fault_proxy_bus(&env, &proxy,
				 "connect-timeout=5&read-timeout=10");
	single_job(direct, b);
	batch(direct, b);
	batch_with_unique(direct, b);
	if (env.dsn.postgres)
		lost_session_alive_pg(direct, b);
	else
		lost_session_alive(direct, b);
	bus_close(b);
	bus_close(direct);
	fault_proxy_stop(&proxy);
	fault_pass("one enqueue is one job when the commit's reply is lost");
}
