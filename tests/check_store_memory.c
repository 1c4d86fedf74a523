/*
 * The in-memory store, driven through its ops directly: the shared cases of
 * store_cases.c, with ids asserted exactly (they have no gaps here), and
 * what only the memory store does: it is shared, its URL is the bare scheme,
 * and each open is a new, empty store.
 */
#include "store_cases.h"
#include "store_memory.h"

static const struct bus_store_ops *const ops = &bus__memory_store_ops;

static void reset(void)
{
	ck_assert_int_eq(ops->open(&st, "memory:", &store_env), 0);
}

static const struct store_fixture fixture = {
	.ops = &bus__memory_store_ops,
	.reset = reset,
	.connect = NULL, /* the store is shared: the threads use `st` */
	.dense_ids = 1,
	.unique_per_thread = 10000,
};

/* ---- open ---- */

START_TEST(ops_describe_a_shared_store)
{
	ck_assert_uint_eq(ops->abi_version, BUS_STORE_ABI_VERSION);
	ck_assert_str_eq(ops->name, "memory");
	ck_assert_uint_eq(ops->flags & BUS_STORE_SHARED, BUS_STORE_SHARED);
	ck_assert_int_eq(ops->schema_check(st), 0);
	ck_assert_int_eq(ops->migrate(st), 0);
}
END_TEST

START_TEST(open_accepts_only_the_bare_scheme)
{
	bus_store *s2 = NULL;
	ck_assert_int_eq(ops->open(&s2, "memory://", &store_env), 0);
	ops->close(s2);
	const char *bad[] = { "memory:x", "memory://u:secretpw@h", "mysql://h",
			      "memory", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		s2 = (bus_store *)1;
		ck_assert_int_eq(ops->open(&s2, bad[i], &store_env),
				 BUS_EINVAL);
		ck_assert_ptr_null(s2);
		ck_assert_last_error(BUS_EINVAL, "memory:");
		ck_assert_ptr_null(
			strstr(bus_error_last()->message, "secretpw"));
	}
}
END_TEST

START_TEST(each_open_makes_a_new_empty_store)
{
	bus_store_new_job j = job_in("default", 0, 0);
	insert1(&j);
	bus_store *s2 = NULL;
	ck_assert_int_eq(ops->open(&s2, "memory:", &store_env), 0);
	bus_job *row = NULL;
	ck_assert_int_eq(ops->get(s2, 1, &row), BUS_ENOTFOUND);
	ops->close(s2);
}
END_TEST

static Suite *store_memory_suite(void)
{
	Suite *s = suite_create("store_memory");
	TCase *tc = tcase_create("ops");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, ops_describe_a_shared_store);
	tcase_add_test(tc, open_accepts_only_the_bare_scheme);
	tcase_add_test(tc, each_open_makes_a_new_empty_store);
	store_cases_add(tc, &fixture);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(store_memory_suite());
}
