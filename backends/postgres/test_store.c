/*
 * The PostgreSQL store, driven through its ops directly against the
 * server in $BUS_TEST_POSTGRES_URL: the shared cases of tests/store_cases.c,
 * and what only this store does: its URLs, opens that are connections to
 * one store, the claim's plan, JSON kept byte for byte, schemas, and
 * unnamed statements. The tables are its own (table prefix "opstest_"),
 * emptied before each case. Ids are not always consecutive here: an
 * INSERT that meets a unique key spends one, as a sequence does.
 *
 * Without a URL the suite is skipped (exit 77), unless $CI is "true".
 */
#include <pthread.h>
#include <stdatomic.h>

#include "pg_store.h"
#include "store_cases.h"

static const struct bus_store_ops *ops;
static char url[1024];

static bus_store *open_url(const char *u)
{
	bus_store *s = NULL;
	int rc = ops->open(&s, u, &store_env);
	ck_assert_msg(rc == 0, "open: %s", bus_error_last()->message);
	return s;
}

static bus_store *open_store(void)
{
	return open_url(url);
}

static void sql_ok(bus_store *s, const char *sql)
{
	PGresult *r = PQexec(s->conn.db, sql);
	ExecStatusType t = PQresultStatus(r);
	ck_assert_msg(t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK, "%s: %s",
		      sql, PQerrorMessage(s->conn.db));
	PQclear(r);
}

/* The suite's tables, emptied and numbered from 1 again. */
static void reset(void)
{
	st = open_store();
	int rc = ops->migrate(st);
	ck_assert_msg(rc == 0, "migrate: %s", bus_error_last()->message);
	sql_ok(st, "TRUNCATE opstest_jobs, opstest_queues RESTART IDENTITY");
}

/* ---- open ---- */

START_TEST(ops_describe_a_store_of_its_own)
{
	ck_assert_uint_eq(ops->abi_version, BUS_STORE_ABI_VERSION);
	ck_assert_str_eq(ops->name, "postgres");
	ck_assert_uint_eq(ops->flags & BUS_STORE_SHARED, 0);
	ck_assert_int_eq(ops->schema_check(st), 0);
	ck_assert_int_eq(ops->migrate(st), 0);
	ck_assert_ptr_null(bus_backend_entry(0));
}
END_TEST

START_TEST(open_rejects_bad_urls_without_showing_the_password)
{
	const char *bad[] = {
		"postgres://u:secretpw@h:0/db",
		"postgres://u:secretpw@h",
		"postgres://u:secretpw@h/db?x=1",
		"postgres://u:secretpw@h/db?table-prefix=A",
		"postgres://u:secret/pw@h/db",
		"postgresql://u:secretpw@h/db?sslmode=sometimes",
		"memory:",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		bus_store *s2 = (bus_store *)1;
		ck_assert_int_eq(ops->open(&s2, bad[i], &store_env),
				 BUS_EINVAL);
		ck_assert_ptr_null(s2);
		ck_assert_last_error(BUS_EINVAL, "postgres store: bad URL");
		ck_assert_ptr_null(strstr(bus_error_last()->message, "secret"));
	}
}
END_TEST

START_TEST(a_wrong_password_fails_open_without_showing_it)
{
	/* The test URL with its password swapped for another. */
	const char *at = strrchr(url, '@');
	const char *colon = strchr(url + strlen("postgres://"), ':');
	ck_assert_ptr_nonnull(at);
	ck_assert_ptr_nonnull(colon);
	char bad[1100];
	snprintf(bad, sizeof bad, "%.*s:wrongSECRET%s", (int)(colon - url),
		 url, at);
	bus_store *s2 = (bus_store *)1;
	ck_assert_int_eq(ops->open(&s2, bad, &store_env), BUS_EBACKEND);
	ck_assert_ptr_null(s2);
	ck_assert_last_error(BUS_EBACKEND, "cannot connect");
	ck_assert_ptr_null(strstr(bus_error_last()->message, "SECRET"));
	ck_assert_ptr_null(strstr(bus_error_last()->message, "p@ss"));
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

/* ---- What only this store does ---- */

/* json keeps the document's text: spacing, key order, duplicate keys and
 * escapes come back as they were written (jsonb would rewrite them). */
START_TEST(json_comes_back_byte_for_byte)
{
	const char *payload = "{ \"b\" : 1,\n\t\"a\":[1.50, 2e3],\"a\":\"\\u00e9\\n\" }";
	bus_store_new_job j = job_in("default", 0, 0);
	j.payload = payload;
	j.meta = "{\"z\":1,  \"y\":2}";
	j.tags = "[ \"t\" ]";
	int64_t id = insert1(&j);
	bus_job *row = NULL;
	ck_assert_int_eq(ops->get(st, id, &row), 0);
	ck_assert_str_eq(row->payload, payload);
	ck_assert_str_eq(row->meta, "{\"z\":1,  \"y\":2}");
	ck_assert_str_eq(row->tags, "[ \"t\" ]");
	bus_job_free(row);
	/* Invalid JSON is refused by the column's type. */
	j.payload = "{nope";
	bus_enqueue_result r;
	ck_assert_int_eq(ops->insert(st, T0, &j, 1, &r), BUS_EBACKEND);
	ck_assert_last_error(BUS_EBACKEND, "json");
}
END_TEST

/* The claim reads the partial index jobs_due in claim order: an index
 * scan, and no sort, however many jobs wait. */
START_TEST(the_claim_is_an_index_scan_without_a_sort)
{
	sql_ok(st, "INSERT INTO opstest_jobs (kind, handler, queue, priority, "
		   "payload, state, max_attempts, inserted_at, scheduled_at) "
		   "SELECT 'k', 'h', 'q' || (g % 8), g % 3, '{}', g % 7, 3, "
		   "now(), now() - g * interval '1 s' "
		   "FROM generate_series(1, 20000) g");
	sql_ok(st, "ANALYZE opstest_jobs");
	char *claim = bus__pg_sql(&st->tables, bus__pg_claim_sql());
	ck_assert_ptr_nonnull(claim);
	char *sql = malloc(strlen(claim) + 64);
	sprintf(sql, "EXPLAIN %s", claim);
	const char *vals[7] = { NULL,	"{q1,q2}", "{10,10}", "node",
				"1000000", "{q1}",    "token" };
	PGresult *r = PQexecParams(st->conn.db, sql, 7, NULL, vals, NULL,
				   NULL, 0);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s",
		      PQerrorMessage(st->conn.db));
	char plan[8192] = "";
	for (int i = 0; i < PQntuples(r); i++) {
		strncat(plan, PQgetvalue(r, i, 0),
			sizeof plan - strlen(plan) - 2);
		strcat(plan, "\n");
	}
	PQclear(r);
	free(sql);
	free(claim);
	ck_assert_msg(strstr(plan, "Index Scan using opstest_jobs_due") != NULL,
		      "no index scan of jobs_due:\n%s", plan);
	ck_assert_msg(strstr(plan, "Sort") == NULL, "a sort:\n%s", plan);
	ck_assert_msg(strstr(plan, "LockRows") != NULL, "no lock:\n%s", plan);
}
END_TEST

/* A schema from before step 4 (no started_at) is refused, naming the
 * step; bus_migrate brings it up to date. */
START_TEST(a_schema_without_the_start_step_is_refused_naming_it)
{
	char u[1100];
	snprintf(u, sizeof u, "%s&table-prefix=oldtest_", url);
	bus_store *s = open_url(u);
	ck_assert_int_eq(ops->migrate(s), 0);
	sql_ok(s, "ALTER TABLE oldtest_jobs DROP COLUMN started_at");
	sql_ok(s, "DELETE FROM oldtest_schema_version WHERE version = 4");
	ck_assert_int_eq(ops->schema_check(s), BUS_ESCHEMA);
	ck_assert_last_error(BUS_ESCHEMA, "version 3");
	ck_assert_last_error(BUS_ESCHEMA, "004_started");
	ck_assert_last_error(BUS_ESCHEMA, "run bus_migrate()");
	ck_assert_int_eq(ops->migrate(s), 0);
	ck_assert_int_eq(ops->schema_check(s), 0);
	sql_ok(s, "DROP TABLE oldtest_jobs, oldtest_queues, "
		  "oldtest_schema_version");
	ops->close(s);
}
END_TEST

/* ?schema= puts the tables in a schema of their own, which migrate
 * creates; the search path's tables of the same prefix are others. */
START_TEST(a_schema_holds_tables_of_its_own)
{
	bus_store *s2 = open_store();
	sql_ok(s2, "DROP SCHEMA IF EXISTS opstest_schema CASCADE");
	ops->close(s2);
	char u[1100];
	snprintf(u, sizeof u, "%s&schema=opstest_schema", url);
	s2 = open_url(u);
	ck_assert_int_eq(ops->schema_check(s2), BUS_ESCHEMA);
	ck_assert_last_error(BUS_ESCHEMA, "run bus_migrate()");
	ck_assert_int_eq(ops->migrate(s2), 0);
	ck_assert_int_eq(ops->schema_check(s2), 0);
	bus_store_new_job j = job_in("in.schema", 0, 0);
	bus_enqueue_result r;
	ck_assert_int_eq(ops->insert(s2, T0, &j, 1, &r), 0);
	ck_assert_int_eq(r.id, 1);
	bus_job *row = NULL;
	ck_assert_int_eq(ops->get(s2, r.id, &row), 0);
	ck_assert_str_eq(row->queue, "in.schema");
	bus_job_free(row);
	ck_assert_int_eq(ops->get(st, r.id, &row), BUS_ENOTFOUND);
	sql_ok(s2, "DROP SCHEMA opstest_schema CASCADE");
	ops->close(s2);
}
END_TEST

/* A prefix that, unquoted, would read as a number (1e1jobs: the number
 * 1e1, then a word) works: every name put into a statement is a quoted
 * identifier. Migrate, schema check, insert, claim, finish and the
 * listener's channel all use it. */
START_TEST(a_prefix_that_reads_as_a_number_works)
{
	char u[1100];
	snprintf(u, sizeof u, "%s&table-prefix=1e1", url);
	bus_store *s2 = open_url(u);
	ck_assert_msg(ops->migrate(s2) == 0, "migrate: %s",
		      bus_error_last()->message);
	ck_assert_msg(ops->schema_check(s2) == 0, "schema_check: %s",
		      bus_error_last()->message);
	bus_store_new_job j = job_in("one.e.one", 0, 0);
	bus_enqueue_result r;
	ck_assert_msg(ops->insert(s2, T0, &j, 1, &r) == 0, "insert: %s",
		      bus_error_last()->message);
	bus_store_claim c = { "one.e.one", 10 };
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_msg(ops->claim(s2, T0, "n", LEASE, &c, 1, &rows, &n) == 0,
		      "claim: %s", bus_error_last()->message);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(rows[0].id, r.id);
	bus_job_list_free(rows, n);
	bus_job_count *counts = NULL;
	ck_assert_int_eq(ops->counts(s2, &counts, &n), 0);
	free(counts);
	/* Not in the suite's tables: the names are the prefix's own. */
	bus_job *row = NULL;
	ck_assert_int_eq(ops->get(st, r.id, &row), BUS_ENOTFOUND);
	sql_ok(s2, "DROP TABLE \"1e1jobs\", \"1e1queues\", "
		   "\"1e1schema_version\"");
	ops->close(s2);
}
END_TEST

/* Without named prepared statements (for a pooler in transaction mode)
 * the operations work alike. */
START_TEST(unnamed_statements_work_alike)
{
	char u[1100];
	snprintf(u, sizeof u, "%s&prepare=off", url);
	bus_store *s2 = open_url(u);
	ck_assert_int_eq(s2->conn.prepare, 0);
	bus_store_new_job j[2] = { job_in("default", 0, 0),
				   job_in("default", 0, 0) };
	bus_enqueue_result r[2];
	ck_assert_int_eq(ops->insert(s2, T0, j, 2, r), 0);
	bus_store_claim c = { "default", 5 };
	bus_job *rows = NULL;
	size_t n = 0;
	ck_assert_int_eq(ops->claim(s2, T0, "n", LEASE, &c, 1, &rows, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(rows[0].id, r[0].id);
	bus_job_list_free(rows, n);
	PGresult *res = PQexec(s2->conn.db, "SELECT count(*) FROM "
					    "pg_prepared_statements");
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "0");
	PQclear(res);
	ops->close(s2);
}
END_TEST

/* Rewrites due jobs over and over (new row versions, as the rescuer or an
 * admin retry makes), until *stop. */
struct churn {
	bus_store *s;
	atomic_int stop;
	int rounds;
};

static void *churn_rows(void *arg)
{
	struct churn *c = arg;
	for (int k = 0; !atomic_load(&c->stop); k++) {
		char sql[160];
		snprintf(sql, sizeof sql,
			 "UPDATE opstest_jobs SET timeout_ms = timeout_ms "
			 "WHERE state = 0 AND id %% 5 = %d",
			 k % 5);
		PQclear(PQexec(c->s->conn.db, sql));
		c->rounds++;
	}
	return NULL;
}

/* A claim takes at most its limit, and never a job twice, even while
 * other transactions change the rows it picks (a row locked by one of them
 * is skipped, as SKIP LOCKED says, so the order may jump). */
START_TEST(a_claim_keeps_its_limit_while_rows_change)
{
	enum { JOBS = 3000, LIMIT = 3 };
	static bus_store_new_job j[JOBS];
	static bus_enqueue_result r[JOBS];
	for (int i = 0; i < JOBS; i++)
		j[i] = job_in("churn", 0, 0);
	ck_assert_int_eq(ops->insert(st, T0, j, JOBS, r), 0);
	struct churn c = { open_store(), 0, 0 };
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, churn_rows, &c), 0);
	bus_store_claim q = { "churn", LIMIT };
	size_t total = 0;
	static unsigned char seen[JOBS + 1];
	memset(seen, 0, sizeof seen);
	/* A claim may come back empty when every job left is locked by the
	 * churn (near the end, a handful of rows of one id % 5 group), but
	 * not for long: the churn moves on to the next group each round. */
	int empty_in_a_row = 0;
	while (total < JOBS) {
		bus_job *rows = NULL;
		size_t n = 0;
		ck_assert_int_eq(
			ops->claim(st, T0, "n", LEASE, &q, 1, &rows, &n), 0);
		ck_assert_msg(n <= LIMIT, "a claim of %d took %zu jobs", LIMIT,
			      n);
		empty_in_a_row = n == 0 ? empty_in_a_row + 1 : 0;
		ck_assert_msg(empty_in_a_row < 1000,
			      "1000 claims in a row took nothing, with %zu of "
			      "%d jobs claimed",
			      total, JOBS);
		for (size_t i = 0; i < n; i++) {
			ck_assert(rows[i].id >= 1 && rows[i].id <= JOBS);
			ck_assert_msg(!seen[rows[i].id], "job %lld claimed twice",
				      (long long)rows[i].id);
			seen[rows[i].id] = 1;
		}
		total += n;
		bus_job_list_free(rows, n);
	}
	atomic_store(&c.stop, 1);
	pthread_join(th, NULL);
	ck_assert_uint_eq(total, JOBS);
	ck_assert_int_gt(c.rounds, 0);
	ops->close(c.s);
}
END_TEST

/* wait_jobs until it returns something else than 0, for up to ~5 s. */
static int wait_some(bus_store *s)
{
	int rc = 0;
	for (int i = 0; i < 50 && rc == 0; i++)
		rc = ops->wait_jobs(s, 100);
	return rc;
}

static void insert_into(bus_store *s, const char *queue, int64_t delay_us)
{
	bus_store_new_job j = job_in(queue, 0, 0);
	j.delay_us = delay_us;
	bus_enqueue_result r;
	ck_assert_int_eq(ops->insert(s, 0, &j, 1, &r), 0);
}

START_TEST(listeners_hear_inserts_into_their_queues)
{
	bus_store *l = open_store();
	const char *queues[] = { "a", "c" };
	ck_assert_int_eq(ops->listen(l, queues, 2), 0);
	ck_assert_int_eq(ops->wait_jobs(l, 0), 0);
	/* Another queue, and a job not yet due, wake nobody. */
	insert_into(st, "b", 0);
	insert_into(st, "a", 3600 * SEC);
	ck_assert_int_eq(ops->wait_jobs(l, 300), 0);
	insert_into(st, "a", 0);
	ck_assert_int_eq(wait_some(l), 1);
	/* A batch of many is one wake-up. */
	bus_store_new_job j[50];
	bus_enqueue_result r[50];
	for (int i = 0; i < 50; i++)
		j[i] = job_in(i % 2 ? "a" : "c", 0, 0);
	ck_assert_int_eq(ops->insert(st, 0, j, 50, r), 0);
	ck_assert_int_eq(wait_some(l), 1);
	ck_assert_int_eq(ops->wait_jobs(l, 200), 0);
	/* A unique insert notifies too. */
	bus_store_new_job u = job_in("c", 0, 0);
	u.unique_key = "k1";
	u.unique_states = BUS_STATES_UNFINISHED;
	ck_assert_int_eq(ops->insert(st, 0, &u, 1, r), 0);
	ck_assert_int_eq(wait_some(l), 1);

	/* The outbox notifies when the application commits. */
	bus_store *app = open_store();
	sql_ok(app, "BEGIN");
	bus_store_new_job t = job_in("a", 0, 0);
	ck_assert_int_eq(ops->insert_tx(st, app->conn.db, 0, &t, 1, r), 0);
	ck_assert_int_eq(ops->wait_jobs(l, 300), 0);
	sql_ok(app, "COMMIT");
	ck_assert_int_eq(wait_some(l), 1);
	ops->close(app);

	/* A cut connection is reported, and listen reconnects. */
	char sql[64];
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)",
		 PQbackendPID(l->conn.db));
	sql_ok(st, sql);
	int rc = wait_some(l);
	ck_assert_int_eq(rc, BUS_EBACKEND);
	ck_assert_last_error(BUS_EBACKEND, "listener lost its connection");
	ck_assert_int_eq(ops->listen(l, queues, 2), 0);
	insert_into(st, "c", 0);
	ck_assert_int_eq(wait_some(l), 1);
	ops->close(l);
}
END_TEST

START_TEST(notify_off_inserts_without_waking)
{
	bus_store *l = open_store();
	const char *queues[] = { "a" };
	ck_assert_int_eq(ops->listen(l, queues, 1), 0);
	char u[1100];
	snprintf(u, sizeof u, "%s&notify=off", url);
	bus_store *quiet = open_url(u);
	insert_into(quiet, "a", 0);
	ck_assert_int_eq(ops->wait_jobs(l, 300), 0);
	insert_into(st, "a", 0);
	ck_assert_int_eq(wait_some(l), 1);
	ops->close(quiet);
	ops->close(l);
}
END_TEST

/* After a reconnect the lost session is terminated, but only while its
 * pid still belongs to the backend it was (its start time the same): a
 * pid the server has given to another session is left alone. */
START_TEST(a_lost_session_is_ended_only_while_it_is_the_same_backend)
{
	bus_store *victim = open_store(), *s2 = open_store();
	ck_assert_int_eq(victim->conn.backend_pid,
			 PQbackendPID(victim->conn.db));
	ck_assert(victim->conn.backend_start > 0);
	/* The same pid, another start: some other session now. */
	s2->conn.lost_pid = victim->conn.backend_pid;
	s2->conn.lost_start = victim->conn.backend_start + 1;
	ck_assert_int_eq(bus__pg_lost_end(&s2->conn), 0);
	ck_assert_int_eq(s2->conn.lost_pid, 0);
	sql_ok(victim, "SELECT 1");
	/* The very session: terminated, and gone when the call returns. */
	s2->conn.lost_pid = victim->conn.backend_pid;
	s2->conn.lost_start = victim->conn.backend_start;
	ck_assert_int_eq(bus__pg_lost_end(&s2->conn), 0);
	ck_assert_int_eq(s2->conn.lost_pid, 0);
	PGresult *r = PQexec(victim->conn.db, "SELECT 1");
	ck_assert_int_ne(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	char sql[160];
	snprintf(sql, sizeof sql,
		 "SELECT count(*) FROM pg_stat_activity WHERE pid = %d",
		 victim->conn.backend_pid);
	r = PQexec(s2->conn.db, sql);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "0");
	PQclear(r);
	ops->close(victim);
	ops->close(s2);
}
END_TEST

static Suite *store_postgres_suite(void)
{
	/* A connection per thread: one PGconn is not for two. */
	static struct store_fixture fixture = {
		.reset = reset,
		.connect = open_store,
		.dense_ids = 0,
		.unique_per_thread = 300,
	};
	fixture.ops = ops;
	Suite *s = suite_create("store_postgres");
	TCase *tc = tcase_create("ops");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, ops_describe_a_store_of_its_own);
	tcase_add_test(tc, open_rejects_bad_urls_without_showing_the_password);
	tcase_add_test(tc, a_wrong_password_fails_open_without_showing_it);
	tcase_add_test(tc, each_open_is_a_connection_to_the_same_store);
	tcase_add_test(tc, json_comes_back_byte_for_byte);
	tcase_add_test(tc, the_claim_is_an_index_scan_without_a_sort);
	tcase_add_test(tc, a_schema_without_the_start_step_is_refused_naming_it);
	tcase_add_test(tc, a_schema_holds_tables_of_its_own);
	tcase_add_test(tc, a_prefix_that_reads_as_a_number_works);
	tcase_add_test(tc, unnamed_statements_work_alike);
	tcase_add_test(tc, a_claim_keeps_its_limit_while_rows_change);
	tcase_add_test(tc, listeners_hear_inserts_into_their_queues);
	tcase_add_test(tc, notify_off_inserts_without_waking);
	tcase_add_test(tc,
		       a_lost_session_is_ended_only_while_it_is_the_same_backend);
	store_cases_add(tc, &fixture);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *base = getenv("BUS_TEST_POSTGRES_URL");
	if (base == NULL || base[0] == '\0') {
		const char *ci = getenv("CI");
		if (ci != NULL && strcmp(ci, "true") == 0) {
			puts("CI: BUS_TEST_POSTGRES_URL is not set: the "
			     "PostgreSQL store suite must run");
			return EXIT_FAILURE;
		}
		puts("BUS_TEST_POSTGRES_URL is not set: skipping the "
		     "PostgreSQL store suite");
		return 77;
	}
	/* The last table-prefix given wins. */
	int n = snprintf(url, sizeof url, "%s%stable-prefix=opstest_", base,
			 strchr(base, '?') ? "&" : "?");
	if (n < 0 || (size_t)n >= sizeof url) {
		puts("BUS_TEST_POSTGRES_URL is too long");
		return EXIT_FAILURE;
	}
	ops = bus_backend_entry(BUS_STORE_ABI_VERSION);
	return run_suite(store_postgres_suite());
}
