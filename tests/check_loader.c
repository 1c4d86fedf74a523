/*
 * The store plug-in loader: which file a scheme maps to, the error for each
 * way a plug-in can be wrong (each naming the file and the cause), caching,
 * and the env lent to backends (lib/store.c). The plug-ins are the test
 * ones built from tests/backends/ into $BUS_TEST_BACKEND_DIR.
 */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "error.h"
#include "loader.h"
#include "log.h"
#include "store.h"
#include "store_memory.h"

static const char *backend_dir(void)
{
	const char *dir = getenv("BUS_TEST_BACKEND_DIR");
	ck_assert_msg(dir != NULL && *dir != '\0',
		      "BUS_TEST_BACKEND_DIR (where tests/backends/*.so are "
		      "built) is not set");
	return dir;
}

/* Every test looks for plug-ins among the test ones, unless it says. */
static void setup(void)
{
	ck_assert_int_eq(setenv("BUS_BACKEND_DIR", backend_dir(), 1), 0);
}

/* "<dir>/<file>" into `buf`. */
static const char *path_in(char *buf, size_t size, const char *dir,
			   const char *file)
{
	int n = snprintf(buf, size, "%s/%s", dir, file);
	ck_assert(n > 0 && (size_t)n < size);
	return buf;
}

/* Asserts that finding `scheme` fails with `code`, a NULL result, and a
 * message naming `file` in the test plug-in directory and holding `cause`
 * (NULL: anything). */
static void assert_find_fails(const char *scheme, int code, const char *file,
			      const char *cause)
{
	const struct bus_store_ops *ops = &bus__memory_store_ops;
	ck_assert_int_eq(bus__loader_find(&ops, scheme), code);
	ck_assert_ptr_null(ops);
	char path[4096];
	ck_assert_last_error(code,
			     path_in(path, sizeof path, backend_dir(), file));
	ck_assert_last_error(code, cause);
}

/* ---- Finding the file ---- */

START_TEST(memory_is_the_built_in_store)
{
	const struct bus_store_ops *ops = NULL;
	ck_assert_int_eq(bus__loader_find(&ops, "memory"), 0);
	ck_assert_ptr_eq(ops, &bus__memory_store_ops);
}
END_TEST

START_TEST(a_scheme_outside_a_z_0_9_is_einval)
{
	static const char *const bad[] = { "",	  "MySQL", "my-sql", "../x",
					   "a/b", "a.so",  "a b" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const struct bus_store_ops *ops = &bus__memory_store_ops;
		ck_assert_int_eq(bus__loader_find(&ops, bad[i]), BUS_EINVAL);
		ck_assert_ptr_null(ops);
		ck_assert_last_error(BUS_EINVAL, "scheme");
	}
	const struct bus_store_ops *ops = NULL;
	ck_assert_int_eq(bus__loader_find(&ops, NULL), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "scheme");
}
END_TEST

START_TEST(an_unknown_scheme_is_enotfound_naming_the_file)
{
	assert_find_fails("nosuch", BUS_ENOTFOUND, "nosuch.so",
			  "does not exist");
	ck_assert_last_error(BUS_ENOTFOUND, "URL scheme 'nosuch'");
	ck_assert_last_error(BUS_ENOTFOUND, "BUS_BACKEND_DIR");
}
END_TEST

/* Without BUS_BACKEND_DIR (unset or empty) the installed directory is used,
 * and the message says which package to install. */
START_TEST(without_bus_backend_dir_the_installed_directory_is_used)
{
	static const char *const values[] = { NULL, "" };
	for (size_t i = 0; i < 2; i++) {
		if (values[i] == NULL)
			ck_assert_int_eq(unsetenv("BUS_BACKEND_DIR"), 0);
		else
			ck_assert_int_eq(setenv("BUS_BACKEND_DIR", values[i],
						1),
					 0);
		const struct bus_store_ops *ops = NULL;
		ck_assert_int_eq(bus__loader_find(&ops, "nosuch"),
				 BUS_ENOTFOUND);
		ck_assert_last_error(BUS_ENOTFOUND,
				     "/nosuch.so does not exist");
		ck_assert_last_error(BUS_ENOTFOUND,
				     "install the libbus nosuch package");
		ck_assert_ptr_null(strstr(bus_error_last()->message,
					  backend_dir()));
	}
}
END_TEST

START_TEST(mariadb_and_postgresql_are_aliases)
{
	assert_find_fails("mariadb", BUS_ENOTFOUND, "mysql.so", NULL);
	ck_assert_last_error(BUS_ENOTFOUND, "URL scheme 'mariadb'");
	assert_find_fails("mysql", BUS_ENOTFOUND, "mysql.so", NULL);
	assert_find_fails("postgresql", BUS_ENOTFOUND, "postgres.so", NULL);
	ck_assert_last_error(BUS_ENOTFOUND, "URL scheme 'postgresql'");
	assert_find_fails("postgres", BUS_ENOTFOUND, "postgres.so", NULL);
}
END_TEST

/* ---- Loading ---- */

START_TEST(a_valid_plugin_loads_and_its_store_opens)
{
	const struct bus_store_ops *ops = NULL;
	ck_assert_int_eq(bus__loader_find(&ops, "good"), 0);
	ck_assert_ptr_nonnull(ops);
	ck_assert_str_eq(ops->name, "good");
	ck_assert_uint_eq(ops->abi_version, BUS_STORE_ABI_VERSION);

	bus_store *s = NULL;
	ck_assert_int_eq(ops->open(&s, "good://h/db", &bus__store_env), 0);
	ck_assert_int_eq(ops->schema_check(s), 0);
	/* Its other operations report through the env. */
	ck_assert_int_eq(ops->migrate(s), BUS_EBACKEND);
	ck_assert_last_error(BUS_EBACKEND, "test backend: migrate");
	ops->close(s);
}
END_TEST

START_TEST(a_newer_abi_is_accepted)
{
	const struct bus_store_ops *ops = NULL;
	ck_assert_int_eq(bus__loader_find(&ops, "newabi"), 0);
	ck_assert_str_eq(ops->name, "newabi");
	ck_assert_uint_eq(ops->abi_version, BUS_STORE_ABI_VERSION + 1);
}
END_TEST

START_TEST(an_older_abi_is_rejected)
{
	char want[64];
	snprintf(want, sizeof want, "built for store ABI %d, this libbus "
				    "needs %d",
		 BUS_STORE_ABI_VERSION - 1, BUS_STORE_ABI_VERSION);
	assert_find_fails("badabi", BUS_EBACKEND, "badabi.so", want);
}
END_TEST

START_TEST(an_entry_that_refuses_the_abi_is_rejected)
{
	char want[64];
	snprintf(want, sizeof want, "refused ABI version %d",
		 BUS_STORE_ABI_VERSION);
	assert_find_fails("refuse", BUS_EBACKEND, "refuse.so", want);
}
END_TEST

START_TEST(a_missing_operation_is_named)
{
	assert_find_fails("missingop", BUS_EBACKEND, "missingop.so",
			  "operation 'claim' is missing");
}
END_TEST

START_TEST(push_wake_up_comes_as_a_pair)
{
	assert_find_fails("halflisten", BUS_EBACKEND, "halflisten.so",
			  "operation 'wait_jobs' is missing");
	/* Without both, a store is loaded, and polled only. */
	const struct bus_store_ops *ops = NULL;
	ck_assert_int_eq(bus__loader_find(&ops, "good"), 0);
	ck_assert_ptr_null(ops->listen);
	ck_assert_ptr_null(ops->wait_jobs);
}
END_TEST

START_TEST(a_store_without_a_name_is_rejected)
{
	assert_find_fails("noname", BUS_EBACKEND, "noname.so", "no name");
}
END_TEST

START_TEST(a_missing_entry_symbol_is_named)
{
	assert_find_fails("noentry", BUS_EBACKEND, "noentry.so",
			  "does not export bus_backend_entry");
}
END_TEST

/* dlopen(RTLD_NOW) fails, and its own text (the symbol) is passed on. */
START_TEST(an_undefined_symbol_fails_with_dlerror_text)
{
	assert_find_fails("undefined", BUS_EBACKEND, "undefined.so",
			  "cannot load store plug-in");
	ck_assert_last_error(BUS_EBACKEND, "undefined symbol");
	ck_assert_last_error(BUS_EBACKEND, "bus_test_no_such_function");
}
END_TEST

/* ---- Caching, in a directory of the test's own ---- */

struct scratch {
	char dir[256];
	char link[512];
};

/* A fresh directory as BUS_BACKEND_DIR, to hold "<name>.so". */
static void scratch_init(struct scratch *t, const char *name)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(t->dir, sizeof t->dir, "%s/check_loader.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(t->dir));
	snprintf(t->link, sizeof t->link, "%s/%s.so", t->dir, name);
	ck_assert_int_eq(setenv("BUS_BACKEND_DIR", t->dir, 1), 0);
}

/* Puts the test plug-in `file` at the scratch name. */
static void scratch_install(const struct scratch *t, const char *file)
{
	char target[4096];
	ck_assert_int_eq(symlink(path_in(target, sizeof target,
					 backend_dir(), file),
				 t->link),
			 0);
}

static void scratch_destroy(const struct scratch *t)
{
	unlink(t->link);
	ck_assert_int_eq(rmdir(t->dir), 0);
}

START_TEST(a_second_find_returns_the_same_ops)
{
	const struct bus_store_ops *a = NULL, *b = NULL;
	ck_assert_int_eq(bus__loader_find(&a, "good"), 0);
	ck_assert_int_eq(bus__loader_find(&b, "good"), 0);
	ck_assert_ptr_eq(a, b);
}
END_TEST

/* Once loaded, a scheme does not go back to the file system. */
START_TEST(a_loaded_scheme_is_not_loaded_again)
{
	struct scratch t;
	scratch_init(&t, "cached");
	scratch_install(&t, "good.so");
	const struct bus_store_ops *a = NULL, *b = NULL;
	ck_assert_int_eq(bus__loader_find(&a, "cached"), 0);
	ck_assert_int_eq(unlink(t.link), 0);
	ck_assert_int_eq(bus__loader_find(&b, "cached"), 0);
	ck_assert_ptr_eq(a, b);
	ck_assert_str_eq(b->name, "good");
	scratch_destroy(&t);
}
END_TEST

/* The user may install the package and try again in the same process. */
START_TEST(a_failed_load_is_not_cached)
{
	struct scratch t;
	scratch_init(&t, "late");
	const struct bus_store_ops *ops = NULL;
	ck_assert_int_eq(bus__loader_find(&ops, "late"), BUS_ENOTFOUND);
	ck_assert_last_error(BUS_ENOTFOUND, t.link);

	scratch_install(&t, "good.so");
	ck_assert_int_eq(bus__loader_find(&ops, "late"), 0);
	ck_assert_str_eq(ops->name, "good");
	scratch_destroy(&t);
}
END_TEST

START_TEST(a_non_elf_file_fails_with_dlerror_text)
{
	struct scratch t;
	scratch_init(&t, "junk");
	FILE *f = fopen(t.link, "w");
	ck_assert_ptr_nonnull(f);
	fputs("not an ELF file\n", f);
	ck_assert_int_eq(fclose(f), 0);

	const struct bus_store_ops *ops = NULL;
	ck_assert_int_eq(bus__loader_find(&ops, "junk"), BUS_EBACKEND);
	ck_assert_last_error(BUS_EBACKEND, t.link);
	/* glibc: "...: invalid ELF header" or "...: file too short". */
	const char *msg = bus_error_last()->message;
	ck_assert_msg(strstr(msg, "ELF") || strstr(msg, "too short"),
		      "no dlerror text in \"%s\"", msg);
	scratch_destroy(&t);
}
END_TEST

#define FINDERS 8
#define FINDS 200

struct finder {
	pthread_t thread;
	const char *scheme;
	const struct bus_store_ops *first;
	int failures; /* finds that failed or returned other ops */
};

static void *find_loop(void *arg)
{
	struct finder *f = arg;
	for (int i = 0; i < FINDS; i++) {
		const struct bus_store_ops *ops = NULL;
		if (bus__loader_find(&ops, f->scheme) != 0)
			f->failures++;
		else if (f->first == NULL)
			f->first = ops;
		else if (ops != f->first)
			f->failures++;
	}
	return NULL;
}

/* Threads racing to load the same schemes, on a cold cache, all agree. */
START_TEST(concurrent_finds_agree)
{
	static const char *const schemes[] = { "good", "newabi", "memory" };
	struct finder f[FINDERS];
	for (int i = 0; i < FINDERS; i++) {
		f[i] = (struct finder){ .scheme = schemes[i % 3] };
		ck_assert_int_eq(pthread_create(&f[i].thread, NULL, find_loop,
						&f[i]),
				 0);
	}
	for (int i = 0; i < FINDERS; i++)
		ck_assert_int_eq(pthread_join(f[i].thread, NULL), 0);
	for (int i = 0; i < FINDERS; i++) {
		ck_assert_int_eq(f[i].failures, 0);
		ck_assert_ptr_eq(f[i].first, f[i % 3].first);
	}
	ck_assert_ptr_eq(f[2].first, &bus__memory_store_ops);
	ck_assert_str_eq(f[0].first->name, "good");
	ck_assert_str_eq(f[1].first->name, "newabi");
}
END_TEST

/* ---- The env lent to backends ---- */

START_TEST(env_error_sets_the_thread_error)
{
	ck_assert_uint_eq(bus__store_env.abi_version, BUS_STORE_ABI_VERSION);
	ck_assert_int_eq(bus__store_env.error(BUS_ESCHEMA,
					      "table %s is at version %d",
					      "bus_jobs", 3),
			 BUS_ESCHEMA);
	ck_assert_last_error(BUS_ESCHEMA, "table bus_jobs is at version 3");
}
END_TEST

/* A backend may wrap the last message in a new one. */
START_TEST(env_error_may_quote_the_last_message)
{
	bus__error_set(BUS_EBACKEND, "connection refused");
	ck_assert_int_eq(bus__store_env.error(BUS_EBACKEND, "open: %s",
					      bus_error_last()->message),
			 BUS_EBACKEND);
	ck_assert_str_eq(bus_error_last()->message, "open: connection refused");
}
END_TEST

START_TEST(env_log_goes_to_the_logger_above_its_level)
{
	struct log_capture c = { 0 };
	struct bus_logger lg = { BUS_LOG_INFO, capture_log, &c };
	bus_store_env env = bus__store_env;
	env.log_udata = &lg;

	env.log(env.log_udata, BUS_LOG_DEBUG, "dropped %d", 1);
	env.log(env.log_udata, BUS_LOG_INFO, "kept %d of %s", 2, "three");
	env.log(env.log_udata, BUS_LOG_ERROR, "failed");
	ck_assert_int_eq(c.n, 2);
	ck_assert_int_eq(c.level[0], BUS_LOG_INFO);
	ck_assert_str_eq(c.line[0], "kept 2 of three");
	ck_assert_int_eq(c.level[1], BUS_LOG_ERROR);
	ck_assert_str_eq(c.line[1], "failed");

	lg.level = BUS_LOG_OFF;
	env.log(env.log_udata, BUS_LOG_ERROR, "off");
	ck_assert_int_eq(c.n, 2);
}
END_TEST

/* The shared env has no logger: its log drops lines. */
START_TEST(env_log_without_a_logger_drops_the_line)
{
	bus__store_env.log(bus__store_env.log_udata, BUS_LOG_ERROR, "nowhere");
}
END_TEST

static Suite *loader_suite(void)
{
	Suite *s = suite_create("loader");

	TCase *tc = tcase_create("file");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, memory_is_the_built_in_store);
	tcase_add_test(tc, a_scheme_outside_a_z_0_9_is_einval);
	tcase_add_test(tc, an_unknown_scheme_is_enotfound_naming_the_file);
	tcase_add_test(tc,
		       without_bus_backend_dir_the_installed_directory_is_used);
	tcase_add_test(tc, mariadb_and_postgresql_are_aliases);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, a_valid_plugin_loads_and_its_store_opens);
	tcase_add_test(tc, a_newer_abi_is_accepted);
	tcase_add_test(tc, an_older_abi_is_rejected);
	tcase_add_test(tc, an_entry_that_refuses_the_abi_is_rejected);
	tcase_add_test(tc, a_missing_operation_is_named);
	tcase_add_test(tc, push_wake_up_comes_as_a_pair);
	tcase_add_test(tc, a_store_without_a_name_is_rejected);
	tcase_add_test(tc, a_missing_entry_symbol_is_named);
	tcase_add_test(tc, an_undefined_symbol_fails_with_dlerror_text);
	tcase_add_test(tc,
		       a_non_elf_file_fails_with_dlerror_text);
	suite_add_tcase(s, tc);

	tc = tcase_create("cache");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, a_second_find_returns_the_same_ops);
	tcase_add_test(tc, a_loaded_scheme_is_not_loaded_again);
	tcase_add_test(tc, a_failed_load_is_not_cached);
	tcase_add_test(tc, concurrent_finds_agree);
	suite_add_tcase(s, tc);

	tc = tcase_create("env");
	tcase_add_test(tc, env_error_sets_the_thread_error);
	tcase_add_test(tc, env_error_may_quote_the_last_message);
	tcase_add_test(tc, env_log_goes_to_the_logger_above_its_level);
	tcase_add_test(tc, env_log_without_a_logger_drops_the_line);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(loader_suite());
}
