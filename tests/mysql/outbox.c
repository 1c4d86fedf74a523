/*
 * The outbox: jobs enqueued through the application's own connection
 * (MYSQL *, PGconn *) inside its open transaction exist exactly when its
 * own writes do — after COMMIT,
 * not before and not after a ROLLBACK — for bus_enqueue_tx and for the
 * durable fan-out of bus_publish with bus_dispatch_opts.tx. memory: has no
 * transactions and refuses a tx.
 */
#include <stdio.h>
#include <string.h>

#include "fault.h"

static struct fault_env env;

static void app_sql(fault_db *app, const char *sql)
{
	fault_sql(app, "%s", sql);
}

static int job_exists(bus *b, int64_t id)
{
	bus_job *j = NULL;
	int rc = bus_job_get(&j, b, id);
	if (rc == BUS_ENOTFOUND)
		return 0;
	if (rc != 0)
		fault_fail("bus_job_get: %s", bus_error_last()->message);
	bus_job_free(j);
	return 1;
}

static size_t jobs_of_kind(bus *b, const char *kind)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = kind;
	bus_job *jobs;
	size_t n;
	if (bus_job_list(&jobs, &n, b, &f) != 0)
		fault_fail("bus_job_list: %s", bus_error_last()->message);
	bus_job_list_free(jobs, n);
	return n;
}

static void enqueue_tx_commits_with_the_application(bus *b, fault_db *app)
{
	bus_enqueue_result r;
	app_sql(app, "START TRANSACTION");
	fault_sql(app, "INSERT INTO %sorders VALUES (1)", env.prefix);
	if (bus_enqueue_tx(&r, b, fault_db_handle(app), "outbox.job", "{\"order\":1}", NULL))
		fault_fail("bus_enqueue_tx: %s", bus_error_last()->message);
	if (job_exists(b, r.id))
		fault_fail("job %lld is visible before the application's "
			   "COMMIT", (long long)r.id);
	app_sql(app, "COMMIT");
	if (!job_exists(b, r.id))
		fault_fail("job %lld is missing after the COMMIT",
			   (long long)r.id);

	app_sql(app, "START TRANSACTION");
	if (bus_enqueue_tx(&r, b, fault_db_handle(app), "outbox.job", "{\"order\":2}", NULL))
		fault_fail("bus_enqueue_tx: %s", bus_error_last()->message);
	app_sql(app, "ROLLBACK");
	if (job_exists(b, r.id))
		fault_fail("job %lld survived the application's ROLLBACK",
			   (long long)r.id);
	if (jobs_of_kind(b, "outbox.job") != 1)
		fault_fail("expected exactly the committed outbox job");
	fault_note("bus_enqueue_tx: visible after COMMIT only, gone on "
		   "ROLLBACK");
}

static int mail(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(void)udata;
	return 0;
}

static void publish_fans_out_inside_the_transaction(bus *b, fault_db *app)
{
	bus_handler_opts h = BUS_HANDLER_OPTS_INIT;
	h.durable = 1;
	h.name = "outbox.mail";
	if (bus_on(b, "outbox.placed", mail, NULL, &h) != 0)
		fault_fail("bus_on: %s", bus_error_last()->message);
	bus_dispatch_opts d = BUS_DISPATCH_OPTS_INIT;
	d.tx = fault_db_handle(app);
	bus_publish_result res;

	app_sql(app, "START TRANSACTION");
	if (bus_publish(&res, b, "outbox.placed", "{\"order\":3}", &d) != 0 ||
	    res.jobs != 1)
		fault_fail("bus_publish with tx: %s",
			   bus_error_last()->message);
	app_sql(app, "ROLLBACK");
	if (jobs_of_kind(b, "outbox.placed") != 0)
		fault_fail("a published job survived the ROLLBACK");

	app_sql(app, "START TRANSACTION");
	if (bus_publish(&res, b, "outbox.placed", "{\"order\":4}", &d) != 0)
		fault_fail("bus_publish with tx: %s",
			   bus_error_last()->message);
	if (jobs_of_kind(b, "outbox.placed") != 0)
		fault_fail("a published job is visible before the COMMIT");
	app_sql(app, "COMMIT");
	if (jobs_of_kind(b, "outbox.placed") != 1)
		fault_fail("the published job is missing after the COMMIT");
	fault_note("bus_publish with tx: the durable job commits with the "
		   "application");
}

static void memory_refuses_a_tx(void)
{
	bus *m;
	if (bus_open(&m, "memory:") != 0)
		fault_fail("bus_open(memory:): %s", bus_error_last()->message);
	int dummy;
	int rc = bus_enqueue_tx(NULL, m, &dummy, "outbox.job", "{}", NULL);
	if (rc != BUS_EINVAL ||
	    strstr(bus_error_last()->message, "no transactions") == NULL)
		fault_fail("memory: with a tx gave %s (%s), expected "
			   "BUS_EINVAL saying it has no transactions",
			   bus_error_name(rc), bus_error_last()->message);
	bus_close(m);
}

int main(void)
{
	fault_init(&env, "outbox", "fo", 120);
	bus *b = fault_open_bus(&env);
	if (bus_migrate(b) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	char why[512];
	fault_db *app = fault_connect(&env.dsn, why, sizeof why);
	if (app == NULL)
		fault_fail("the application's connection: %s", why);
	fault_sql(app, "CREATE TABLE %sorders (id INT PRIMARY KEY)",
		  env.prefix);

	enqueue_tx_commits_with_the_application(b, app);
	publish_fans_out_inside_the_transaction(b, app);
	memory_refuses_a_tx();

	fault_db_close(app);
	bus_close(b);
	fault_pass("outbox jobs exist exactly when the application commits");
}
