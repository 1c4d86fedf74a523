/*
 * The PostgreSQL store's URL parser: the parts, percent-decoding, the
 * options and their defaults, and errors that say what is wrong without
 * showing the password. Needs no server.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_store.h"

static int last_code;
static char last_msg[1024];

static int capture(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof last_msg, fmt, ap);
	va_end(ap);
	last_code = code;
	return code;
}

static struct pg_url parse_ok(const char *url)
{
	struct pg_url u;
	last_msg[0] = '\0';
	int rc = bus__pg_url_parse(&u, url, capture);
	ck_assert_msg(rc == 0, "%s: %d %s", url, rc, last_msg);
	return u;
}

/* Expects BUS_EINVAL with `part` in the message, and no "SECRET". */
static void parse_bad(const char *url, const char *part)
{
	struct pg_url u;
	last_msg[0] = '\0';
	int rc = bus__pg_url_parse(&u, url, capture);
	ck_assert_msg(rc == BUS_EINVAL, "%s: rc %d", url, rc);
	ck_assert_int_eq(last_code, BUS_EINVAL);
	ck_assert_msg(strstr(last_msg, part) != NULL,
		      "%s: message \"%s\" lacks \"%s\"", url, last_msg, part);
	ck_assert_msg(strstr(last_msg, "SECRET") == NULL &&
			  strstr(last_msg, "ECRE") == NULL,
		      "%s: message \"%s\" shows the password", url, last_msg);
	ck_assert_ptr_null(u.user);
	ck_assert_ptr_null(u.password);
}

START_TEST(parts_and_defaults)
{
	struct pg_url u = parse_ok("postgres://bus:pw@db.example:5433/jobs");
	ck_assert_str_eq(u.user, "bus");
	ck_assert_str_eq(u.password, "pw");
	ck_assert_str_eq(u.host, "db.example");
	ck_assert_uint_eq(u.port, 5433);
	ck_assert_str_eq(u.database, "jobs");
	ck_assert_str_eq(u.prefix, "bus_");
	ck_assert_str_eq(u.schema, "");
	ck_assert_uint_eq(u.connect_timeout, 10);
	ck_assert_uint_eq(u.read_timeout, 60);
	ck_assert_uint_eq(u.write_timeout, 60);
	ck_assert_uint_eq(u.keepalive, 30);
	ck_assert_ptr_null(u.sslmode);
	ck_assert_int_eq(u.prepare, 1);
	bus__pg_url_free(&u);

	u = parse_ok("postgresql://h/d");
	ck_assert_ptr_null(u.user);
	ck_assert_ptr_null(u.password);
	ck_assert_str_eq(u.host, "h");
	ck_assert_uint_eq(u.port, 5432);
	bus__pg_url_free(&u);

	u = parse_ok("postgres://u@[::1]:5440/d");
	ck_assert_str_eq(u.host, "::1");
	ck_assert_uint_eq(u.port, 5440);
	bus__pg_url_free(&u);

	u = parse_ok("postgres://u:@h/d");
	ck_assert_str_eq(u.password, "");
	bus__pg_url_free(&u);
}
END_TEST

START_TEST(percent_decoding)
{
	struct pg_url u = parse_ok("postgres://b%75s:p%40ss%3Aword@127.0.0.1:"
				   "5433/bus%5Ftest");
	ck_assert_str_eq(u.user, "bus");
	ck_assert_str_eq(u.password, "p@ss:word");
	ck_assert_str_eq(u.database, "bus_test");
	bus__pg_url_free(&u);
	/* An unencoded '@' or ':' in the password still works. */
	u = parse_ok("postgres://bus:p@ss:w%2Ford@h/d");
	ck_assert_str_eq(u.password, "p@ss:w/ord");
	ck_assert_str_eq(u.host, "h");
	bus__pg_url_free(&u);
	u = parse_ok("postgres://u:p@/d?host=/run/post%20gres");
	ck_assert_str_eq(u.host, "/run/post gres");
	bus__pg_url_free(&u);
	parse_bad("postgres://u:SECRET%4@h/d", "password has a '%'");
	parse_bad("postgres://u:SECRET%zz@h/d", "password");
	parse_bad("postgres://u:SECRET%00@h/d", "NUL");
	parse_bad("postgres://u%G1:SECRET@h/d", "user name");
}
END_TEST

/* The network timeouts (defaults in parts_and_defaults): seconds, 0 for
 * none. */
START_TEST(timeouts)
{
	struct pg_url u = parse_ok("postgres://u@h/d?read-timeout=0&"
				   "write_timeout=7&keepalive=86400");
	ck_assert_uint_eq(u.read_timeout, 0);
	ck_assert_uint_eq(u.write_timeout, 7);
	ck_assert_uint_eq(u.keepalive, 86400);
	bus__pg_url_free(&u);
	parse_bad("postgres://u:SECRET@h/d?read-timeout=86401",
		  "read-timeout '86401'");
	parse_bad("postgres://u:SECRET@h/d?keepalive=-1", "keepalive '-1'");
}
END_TEST

START_TEST(options)
{
	struct pg_url u = parse_ok(
		"postgres://u:p@h/d?sslmode=verify-full&sslrootcert=/ca.pem&"
		"sslcert=/c&sslkey=/k&connect_timeout=5&schema=jobs_1&"
		"table-prefix=app_bus_&application_name=my%20app&prepare=off");
	ck_assert_str_eq(u.sslmode, "verify-full");
	ck_assert_str_eq(u.sslrootcert, "/ca.pem");
	ck_assert_str_eq(u.sslcert, "/c");
	ck_assert_str_eq(u.sslkey, "/k");
	ck_assert_uint_eq(u.connect_timeout, 5);
	ck_assert_str_eq(u.schema, "jobs_1");
	ck_assert_str_eq(u.prefix, "app_bus_");
	ck_assert_str_eq(u.application_name, "my app");
	ck_assert_int_eq(u.prepare, 0);
	bus__pg_url_free(&u);

	u = parse_ok("postgres://u@h/d?table_prefix=1e1&sslmode=disable&"
		     "connect-timeout=1&prepare=on");
	ck_assert_str_eq(u.prefix, "1e1");
	ck_assert_str_eq(u.sslmode, "disable");
	ck_assert_uint_eq(u.connect_timeout, 1);
	ck_assert_int_eq(u.prepare, 1);
	bus__pg_url_free(&u);

	parse_bad("postgres://u:SECRET@h/d?colour=blue",
		  "unknown option 'colour'");
	parse_bad("postgres://u:SECRET@h/d?sslmode=maybe", "sslmode 'maybe'");
	parse_bad("postgres://u:SECRET@h/d?sslmode=verify-ca",
		  "needs sslrootcert");
	parse_bad("postgres://u:SECRET@h/d?connect_timeout=0",
		  "connect-timeout");
	parse_bad("postgres://u:SECRET@h/d?connect_timeout=x",
		  "connect-timeout 'x'");
	parse_bad("postgres://u:SECRET@h/d?sslcert=", "sslcert has an empty");
	parse_bad("postgres://u:SECRET@h/d?schema", "has no '=value'");
	parse_bad("postgres://u:SECRET@h/d?schema=", "schema ''");
	parse_bad("postgres://u:SECRET@h/d?schema=My", "schema 'My'");
	parse_bad("postgres://u:SECRET@h/d?schema=1a", "schema '1a'");
	parse_bad("postgres://u:SECRET@h/d?schema=a%22b", "schema");
	parse_bad("postgres://u:SECRET@h/d?table-prefix=", "table-prefix is empty");
	parse_bad("postgres://u:SECRET@h/d?table-prefix=Bus",
		  "table-prefix 'Bus'");
	parse_bad("postgres://u:SECRET@h/d?table-prefix="
		  "abcdefghijabcdefghijabcdefghijabc",
		  "at most 32");
	parse_bad("postgres://u:SECRET@h/d?prepare=maybe", "prepare 'maybe'");
	parse_bad("postgres://u:SECRET@h/d?host=/s", "both before the path");
}
END_TEST

START_TEST(bad_urls_say_what_is_wrong)
{
	parse_bad("mysql://u:SECRET@h/d", "postgres:// or postgresql://");
	parse_bad("postgres:/h/d", "postgres:// or postgresql://");
	parse_bad("postgres://u:SECRET@h", "no database");
	parse_bad("postgres://u:SECRET@h/", "no database");
	parse_bad("postgres://u:SECRET@h:0/d", "port");
	parse_bad("postgres://u:SECRET@h:65536/d", "port");
	parse_bad("postgres://u:SECRET@h:54o2/d", "port");
	parse_bad("postgres://u:SECRET@h:/d", "port");
	parse_bad("postgres://:SECRET@h/d", "user name is empty");
	parse_bad("postgres://u:SECRET@[::1/d", "']'");
	parse_bad("postgres://u:SECRET@h x/d", "host name has a space");
	parse_bad("postgres://u:SECRET@h/d%2Fe", "has a '/'");
	/* A password with an unencoded '/' or '?': whatever part of it
	 * lands where the port, database or options go is not shown. */
	parse_bad("postgres://u:SEC/RET@h/d", "percent-encode");
	parse_bad("postgres://u:SEC?RET@h/d", "percent-encode");
	parse_bad("postgres://u:SECRET/d", "port");
	struct pg_url u;
	ck_assert_int_eq(bus__pg_url_parse(&u, NULL, capture), BUS_EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("postgres_url");
	TCase *tc = tcase_create("url");
	tcase_add_test(tc, parts_and_defaults);
	tcase_add_test(tc, percent_decoding);
	tcase_add_test(tc, timeouts);
	tcase_add_test(tc, options);
	tcase_add_test(tc, bad_urls_say_what_is_wrong);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
