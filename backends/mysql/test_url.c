/*
 * The MySQL store's URL parser: the parts, percent-decoding, the options
 * and their defaults, and errors that say what is wrong without showing
 * the password. Needs no server.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_store.h"

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

static struct my_url parse_ok(const char *url)
{
	struct my_url u;
	last_msg[0] = '\0';
	int rc = bus__my_url_parse(&u, url, capture);
	ck_assert_msg(rc == 0, "%s: %d %s", url, rc, last_msg);
	return u;
}

/* Expects BUS_EINVAL with `part` in the message, and no "SECRET". */
static void parse_bad(const char *url, const char *part)
{
	struct my_url u;
	last_msg[0] = '\0';
	int rc = bus__my_url_parse(&u, url, capture);
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
	struct my_url u = parse_ok("mysql://bus:pw@db.example:3307/jobs");
	ck_assert_str_eq(u.user, "bus");
	ck_assert_str_eq(u.password, "pw");
	ck_assert_str_eq(u.host, "db.example");
	ck_assert_uint_eq(u.port, 3307);
	ck_assert_str_eq(u.database, "jobs");
	ck_assert_ptr_null(u.socket);
	ck_assert_str_eq(u.prefix, "bus_");
	ck_assert_int_eq(u.ssl_mode, MY_SSL_PREFERRED);
	ck_assert_uint_eq(u.connect_timeout, 10);
	/* A silent network cannot hang a call: timeouts and keepalive
	 * are on by default. */
	ck_assert_uint_eq(u.read_timeout, 60);
	ck_assert_uint_eq(u.write_timeout, 60);
	ck_assert_uint_eq(u.keepalive, 30);
	bus__my_url_free(&u);

	u = parse_ok("mariadb://h/d");
	ck_assert_ptr_null(u.user);
	ck_assert_ptr_null(u.password);
	ck_assert_str_eq(u.host, "h");
	ck_assert_uint_eq(u.port, 3306);
	ck_assert_str_eq(u.database, "d");
	bus__my_url_free(&u);

	u = parse_ok("mysql://u@[::1]:3310/d");
	ck_assert_str_eq(u.user, "u");
	ck_assert_ptr_null(u.password);
	ck_assert_str_eq(u.host, "::1");
	ck_assert_uint_eq(u.port, 3310);
	bus__my_url_free(&u);

	u = parse_ok("mysql://u:@h/d");
	ck_assert_str_eq(u.password, "");
	bus__my_url_free(&u);
}
END_TEST

START_TEST(percent_decoding)
{
	struct my_url u = parse_ok("mysql://b%75s:p%40ss%3Aword@127.0.0.1:3307/"
				   "bus%5Ftest");
	ck_assert_str_eq(u.user, "bus");
	ck_assert_str_eq(u.password, "p@ss:word");
	ck_assert_str_eq(u.database, "bus_test");
	bus__my_url_free(&u);
	/* An unencoded '@' or ':' in the password still works. */
	u = parse_ok("mysql://bus:p@ss:w%2Ford@h/d");
	ck_assert_str_eq(u.password, "p@ss:w/ord");
	ck_assert_str_eq(u.host, "h");
	bus__my_url_free(&u);
	u = parse_ok("mysql://u:p@/d?socket=/run/my%20sql.sock");
	ck_assert_str_eq(u.socket, "/run/my sql.sock");
	bus__my_url_free(&u);
	parse_bad("mysql://u:SECRET%4@h/d", "password has a '%'");
	parse_bad("mysql://u:SECRET%zz@h/d", "password");
	parse_bad("mysql://u:SECRET%00@h/d", "NUL");
	parse_bad("mysql://u%G1:SECRET@h/d", "user name");
}
END_TEST

START_TEST(options)
{
	struct my_url u = parse_ok(
		"mysql://u:p@h/d?ssl-mode=VERIFY-IDENTITY&ssl_ca=/etc/ca.pem&"
		"ssl-cert=/c&ssl-key=/k&connect-timeout=5&read-timeout=30&"
		"write_timeout=0&keepalive=7&table-prefix=app_bus_");
	ck_assert_int_eq(u.ssl_mode, MY_SSL_VERIFY_IDENTITY);
	ck_assert_str_eq(u.ssl_ca, "/etc/ca.pem");
	ck_assert_str_eq(u.ssl_cert, "/c");
	ck_assert_str_eq(u.ssl_key, "/k");
	ck_assert_uint_eq(u.connect_timeout, 5);
	ck_assert_uint_eq(u.read_timeout, 30);
	ck_assert_uint_eq(u.write_timeout, 0);
	ck_assert_uint_eq(u.keepalive, 7);
	ck_assert_str_eq(u.prefix, "app_bus_");
	bus__my_url_free(&u);

	u = parse_ok("mysql://u@/d?socket=/tmp/s&table-prefix=1e1&ssl-mode="
		     "disabled");
	ck_assert_ptr_null(u.host);
	ck_assert_str_eq(u.socket, "/tmp/s");
	ck_assert_str_eq(u.prefix, "1e1");
	ck_assert_int_eq(u.ssl_mode, MY_SSL_DISABLED);
	bus__my_url_free(&u);
	u = parse_ok("mysql://u@localhost/d?socket=/tmp/s");
	ck_assert_str_eq(u.host, "localhost");
	bus__my_url_free(&u);

	parse_bad("mysql://u:SECRET@h/d?colour=blue",
		  "unknown option 'colour'");
	parse_bad("mysql://u:SECRET@h/d?ssl-mode=maybe", "ssl-mode 'maybe'");
	parse_bad("mysql://u:SECRET@h/d?ssl-mode=verify_ca",
		  "need ssl-ca or ssl-capath");
	parse_bad("mysql://u:SECRET@h/d?connect-timeout=0", "connect-timeout");
	parse_bad("mysql://u:SECRET@h/d?read-timeout=x", "read-timeout 'x'");
	parse_bad("mysql://u:SECRET@h/d?socket=", "socket has an empty");
	parse_bad("mysql://u:SECRET@h/d?socket", "has no '=value'");
	parse_bad("mysql://u:SECRET@h/d?table-prefix=Bus",
		  "table-prefix 'Bus'");
	parse_bad("mysql://u:SECRET@h/d?table-prefix=a-b", "table-prefix");
	parse_bad("mysql://u:SECRET@h/d?table-prefix=", "table-prefix is empty");
	parse_bad("mysql://u:SECRET@h/d?keepalive=-1", "keepalive '-1'");
	parse_bad("mysql://u:SECRET@h/d?table-prefix="
		  "abcdefghijabcdefghijabcdefghijabc",
		  "at most 32");
	parse_bad("mysql://u:SECRET@h/d?socket=/s", "both host 'h'");
}
END_TEST

START_TEST(bad_urls_say_what_is_wrong)
{
	parse_bad("postgres://u:SECRET@h/d", "mysql:// or mariadb://");
	parse_bad("mysql:/h/d", "mysql:// or mariadb://");
	parse_bad("mysql://u:SECRET@/d", "no host");
	parse_bad("mysql://u:SECRET@:3306/d", "no host");
	parse_bad("mysql://u:SECRET@h", "no database");
	parse_bad("mysql://u:SECRET@h/", "no database");
	parse_bad("mysql://u:SECRET@h/?socket=/x", "no database");
	parse_bad("mysql://u:SECRET@h:0/d", "port");
	parse_bad("mysql://u:SECRET@h:65536/d", "port");
	parse_bad("mysql://u:SECRET@h:33o6/d", "port");
	parse_bad("mysql://u:SECRET@h:/d", "port");
	parse_bad("mysql://:SECRET@h/d", "user name is empty");
	parse_bad("mysql://u:SECRET@[::1/d", "']'");
	parse_bad("mysql://u:SECRET@h x/d", "host name has a space");
	parse_bad("mysql://u:SECRET@h/d%2Fe", "has a '/'");
	/* A password with an unencoded '/' or '?': whatever part of it
	 * lands where the port, database or options go is not shown. */
	parse_bad("mysql://u:SEC/RET@h/d", "percent-encode");
	parse_bad("mysql://u:SEC?RET@h/d", "percent-encode");
	parse_bad("mysql://u:SECRET/d", "port");
	struct my_url u;
	ck_assert_int_eq(bus__my_url_parse(&u, NULL, capture), BUS_EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mysql_url");
	TCase *tc = tcase_create("url");
	tcase_add_test(tc, parts_and_defaults);
	tcase_add_test(tc, percent_decoding);
	tcase_add_test(tc, options);
	tcase_add_test(tc, bad_urls_say_what_is_wrong);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
