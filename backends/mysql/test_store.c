/*
 * The MySQL store, driven through its ops directly against the server in
 * $BUS_TEST_MYSQL_URL: the shared cases of tests/store_cases.c, and what
 * only this store does: its URLs, and opens that are connections to one
 * store. The tables are its own (table prefix "opstest_"), emptied before
 * each case. Ids are not always consecutive here: an INSERT that meets a
 * unique key spends one, as InnoDB does.
 *
 * Without a URL the suite is skipped (exit 77), unless $CI is "true".
 */
#include "mysql_store.h"
#include "store_cases.h"

static const struct bus_store_ops *ops;
static char url[1024];

static bus_store *open_store(void)
{
	bus_store *s = NULL;
	int rc = ops->open(&s, url, &store_env);
	ck_assert_msg(rc == 0, "open: %s", bus_error_last()->message);
	return s;
}

/* The suite's tables, emptied and numbered from 1 again. */
static void reset(void)
{
	st = open_store();
	int rc = ops->migrate(st);
	ck_assert_msg(rc == 0, "migrate: %s", bus_error_last()->message);
	const char *sql[] = { "TRUNCATE opstest_jobs",
			      "TRUNCATE opstest_queues" };
	for (size_t i = 0; i < sizeof sql / sizeof *sql; i++)
		ck_assert_msg(mysql_query(st->conn.db, sql[i]) == 0, "%s: %s",
			      sql[i], mysql_error(st->conn.db));
}

/* ---- open ---- */

START_TEST(ops_describe_a_store_of_its_own)
{
	ck_assert_uint_eq(ops->abi_version, BUS_STORE_ABI_VERSION);
	ck_assert_str_eq(ops->name, "mysql");
	ck_assert_uint_eq(ops->flags & BUS_STORE_SHARED, 0);
	ck_assert_int_eq(ops->schema_check(st), 0);
	ck_assert_int_eq(ops->migrate(st), 0);
	ck_assert_ptr_null(bus_backend_entry(0));
}
END_TEST

START_TEST(open_rejects_bad_urls_without_showing_the_password)
{
	const char *bad[] = {
		"mysql://u:secretpw@/db",
		"mysql://u:secretpw@h:0/db",
		"mysql://u:secretpw@h",
		"mysql://u:secretpw@h/db?x=1",
		"mysql://u:secretpw@h/db?table-prefix=A",
		"mysql://u:secret/pw@h/db",
		"memory:",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		bus_store *s2 = (bus_store *)1;
		ck_assert_int_eq(ops->open(&s2, bad[i], &store_env),
				 BUS_EINVAL);
		ck_assert_ptr_null(s2);
		ck_assert_last_error(BUS_EINVAL, "mysql store: bad URL");
		ck_assert_ptr_null(strstr(bus_error_last()->message, "secret"));
	}
}
END_TEST

START_TEST(each_open_is_a_connection_to_the_same_store)
{
	bus_store_new_job j = job_in("default", 0, 0);
	int64_t id = insert1(&j);
	bus_store *s2 = open_store();
	bus_job *row = NULL;
	ck_assert_int_eq(ops->get(s2, id, &row), 0);
	ck_assert_int_eq(row->id, id);
	bus_job_free(row);
	ops->close(s2);
}
END_TEST

/* A prefix that, unquoted, would read as a number (1e1jobs: the number
 * 1e1, then jobs) works: every table name is a quoted identifier. */
START_TEST(a_prefix_that_reads_as_a_number_works)
{
	char u[1100];
	snprintf(u, sizeof u, "%s&table-prefix=1e1", url);
	bus_store *s = NULL;
	ck_assert_msg(ops->open(&s, u, &store_env) == 0, "open: %s",
		      bus_error_last()->message);
	ck_assert_msg(ops->migrate(s) == 0, "migrate: %s",
		      bus_error_last()->message);
	ck_assert_msg(ops->schema_check(s) == 0, "schema_check: %s",
		      bus_error_last()->message);
	bus_store_new_job j = job_in("one.e.one", 0, 0);
	bus_enqueue_result r;
	ck_assert_msg(ops->insert(s, 0, &j, 1, &r) == 0, "insert: %s",
		      bus_error_last()->message);
	bus_store_claim q = { "one.e.one", 10 };
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_msg(ops->claim(s, 0, "node", 1000000, &q, 1, &rows, &n) ==
			      0,
		      "claim: %s", bus_error_last()->message);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(rows[0].id, r.id);
	bus__my_rows_free(rows, n);
	bus_job_count *counts = NULL;
	ck_assert_int_eq(ops->counts(s, &counts, &n), 0);
	free(counts);
	const char *drop = "DROP TABLE `1e1jobs`, `1e1queues`, "
			   "`1e1schema_version`";
	ck_assert_msg(mysql_query(s->conn.db, drop) == 0, "%s: %s", drop,
		      mysql_error(s->conn.db));
	ops->close(s);
}
END_TEST

static void my_sql_ok(bus_store *s, const char *sql)
{
	ck_assert_msg(mysql_query(s->conn.db, sql) == 0, "%s: %s", sql,
		      mysql_error(s->conn.db));
}

/* A schema from before step 4 (no started_at) is refused, naming the
 * step; bus_migrate brings it up to date. */
START_TEST(a_schema_without_the_start_step_is_refused_naming_it)
{
	char u[1100];
	snprintf(u, sizeof u, "%s&table-prefix=oldtest_", url);
	bus_store *s = NULL;
	ck_assert_msg(ops->open(&s, u, &store_env) == 0, "open: %s",
		      bus_error_last()->message);
	ck_assert_int_eq(ops->migrate(s), 0);
	my_sql_ok(s, "ALTER TABLE oldtest_jobs DROP COLUMN started_at");
	my_sql_ok(s, "DELETE FROM oldtest_schema_version WHERE version = 4");
	ck_assert_int_eq(ops->schema_check(s), BUS_ESCHEMA);
	ck_assert_last_error(BUS_ESCHEMA, "version 3");
	ck_assert_last_error(BUS_ESCHEMA, "004_started");
	ck_assert_last_error(BUS_ESCHEMA, "run bus_migrate()");
	ck_assert_int_eq(ops->migrate(s), 0);
	ck_assert_int_eq(ops->schema_check(s), 0);
	my_sql_ok(s, "DROP TABLE oldtest_jobs, oldtest_queues, "
		     "oldtest_schema_version");
	ops->close(s);
}
END_TEST

static Suite *store_mysql_suite(void)
{
	/* A connection per thread: one MYSQL handle is not for two. */
	static struct store_fixture fixture = {
		.reset = reset,
		.connect = open_store,
		.dense_ids = 0,
		.unique_per_thread = 300,
	};
	fixture.ops = ops;
	Suite *s = suite_create("store_mysql");
	TCase *tc = tcase_create("ops");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, ops_describe_a_store_of_its_own);
	tcase_add_test(tc, open_rejects_bad_urls_without_showing_the_password);
	tcase_add_test(tc, each_open_is_a_connection_to_the_same_store);
	tcase_add_test(tc, a_prefix_that_reads_as_a_number_works);
	tcase_add_test(tc, a_schema_without_the_start_step_is_refused_naming_it);
	store_cases_add(tc, &fixture);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *base = getenv("BUS_TEST_MYSQL_URL");
	if (base == NULL || base[0] == '\0') {
		const char *ci = getenv("CI");
		if (ci != NULL && strcmp(ci, "true") == 0) {
			puts("CI: BUS_TEST_MYSQL_URL is not set: the MySQL "
			     "store suite must run");
			return EXIT_FAILURE;
		}
		puts("BUS_TEST_MYSQL_URL is not set: skipping the MySQL store "
		     "suite");
		return 77;
	}
	/* The last table-prefix given wins. */
	int n = snprintf(url, sizeof url, "%s%stable-prefix=opstest_", base,
			 strchr(base, '?') ? "&" : "?");
	if (n < 0 || (size_t)n >= sizeof url) {
		puts("BUS_TEST_MYSQL_URL is too long");
		return EXIT_FAILURE;
	}
	ops = bus_backend_entry(BUS_STORE_ABI_VERSION);
	return run_suite(store_mysql_suite());
}
