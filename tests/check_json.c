/*
 * Payload validation through the public API: invalid JSON is refused with
 * BUS_EINVAL and the byte offset of the first error, before any handler
 * runs; valid edge cases go through untouched.
 */
#include <cjson/cJSON.h>

#include "testutil.h"

#define MIB ((size_t)1 << 20)

/* Counts the calls of the handlers of event "e", command "c" and query "q",
 * and keeps the last payload they saw. */
struct seen {
	int calls;
	char payload[4096];
	size_t payload_len;
	int json_type; /* cJSON type bits of the parsed payload */
};

static int record(bus_ctx *ctx, void *udata)
{
	struct seen *s = udata;
	s->calls++;
	snprintf(s->payload, sizeof s->payload, "%s", bus_ctx_payload(ctx));
	s->payload_len = bus_ctx_payload_len(ctx);
	const cJSON *j = bus_ctx_json(ctx);
	s->json_type = j ? j->type & 0xff : -1;
	return 0;
}

static bus *open_recording_bus(struct seen *s)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_on(b, "e", record, s, NULL), 0);
	ck_assert_int_eq(bus_handle_command(b, "c", record, s, NULL), 0);
	ck_assert_int_eq(bus_handle_query(b, "q", record, s, NULL), 0);
	return b;
}

/* True when `msg` says "byte N" for exactly this N (not "byte N0"). */
static int says_byte(const char *msg, size_t offset)
{
	char want[32];
	int n = snprintf(want, sizeof want, "byte %zu", offset);
	for (const char *p = strstr(msg, want); p; p = strstr(p + 1, want))
		if (p[n] < '0' || p[n] > '9')
			return 1;
	return 0;
}

/* `payload` is refused by publish, send and ask with BUS_EINVAL naming the
 * byte offset `offset`, and no handler runs. */
static void expect_invalid(const char *payload, size_t offset)
{
	struct seen s = { 0 };
	bus *b = open_recording_bus(&s);
	bus_publish_result out = { .handlers = 99, .failed = 99 };
	char *result = (char *)"untouched";

	ck_assert_int_eq(bus_publish(&out, b, "e", payload, NULL), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "not valid JSON");
	ck_assert_msg(says_byte(bus_error_last()->message, offset),
		      "message \"%s\" does not say byte %zu",
		      bus_error_last()->message, offset);
	ck_assert_uint_eq(out.handlers, 0);
	ck_assert_uint_eq(out.failed, 0);

	ck_assert_int_eq(bus_send(&result, b, "c", payload, NULL), BUS_EINVAL);
	ck_assert_msg(says_byte(bus_error_last()->message, offset),
		      "message \"%s\" does not say byte %zu",
		      bus_error_last()->message, offset);
	ck_assert_ptr_null(result);

	ck_assert_int_eq(bus_ask(&result, b, "q", payload, NULL), BUS_EINVAL);
	ck_assert_msg(says_byte(bus_error_last()->message, offset),
		      "message \"%s\" does not say byte %zu",
		      bus_error_last()->message, offset);
	ck_assert_ptr_null(result);

	ck_assert_msg(s.calls == 0, "a handler ran %d times on invalid JSON",
		      s.calls);
	bus_close(b);
}

/* `payload` is accepted by publish, send and ask; the handler runs once per
 * dispatch and sees the payload unchanged. */
static void expect_valid(const char *payload)
{
	struct seen s = { 0 };
	bus *b = open_recording_bus(&s);
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	char *result = NULL;

	ck_assert_msg(bus_publish(&out, b, "e", payload, NULL) == 0,
		      "publish refused valid payload: %s",
		      bus_error_last()->message);
	ck_assert_uint_eq(out.handlers, 1);
	ck_assert_msg(bus_send(&result, b, "c", payload, NULL) == 0,
		      "send refused valid payload: %s",
		      bus_error_last()->message);
	ck_assert_msg(bus_ask(&result, b, "q", payload, NULL) == 0,
		      "ask refused valid payload: %s",
		      bus_error_last()->message);
	ck_assert_int_eq(s.calls, 3);
	if (strlen(payload) < sizeof s.payload)
		ck_assert_str_eq(s.payload, payload);
	ck_assert_uint_eq(s.payload_len, strlen(payload));
	ck_assert_msg(s.json_type != -1, "bus_ctx_json returned NULL");
	bus_close(b);
}

/* `depth` copies of `open`, then `mid`, then `depth` copies of `close`.
 * The caller frees it. */
static char *build(size_t depth, const char *open, const char *mid,
		   const char *close)
{
	size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
	char *s = malloc(depth * (lo + lc) + lm + 1);
	ck_assert_ptr_nonnull(s);
	char *p = s;
	for (size_t i = 0; i < depth; i++, p += lo)
		memcpy(p, open, lo);
	memcpy(p, mid, lm);
	p += lm;
	for (size_t i = 0; i < depth; i++, p += lc)
		memcpy(p, close, lc);
	*p = '\0';
	return s;
}

/* A JSON string value of exactly `total` bytes, quotes included. */
static char *string_of_size(size_t total)
{
	char *s = malloc(total + 1);
	ck_assert_ptr_nonnull(s);
	s[0] = '"';
	memset(s + 1, 'a', total - 2);
	s[total - 1] = '"';
	s[total] = '\0';
	return s;
}

/* ---- invalid payloads ---------------------------------------------------- */

START_TEST(truncated_object_is_einval_at_its_end)
{
	expect_invalid("{\"a\":1", 6);
}
END_TEST

START_TEST(truncated_string_is_einval_at_its_end)
{
	expect_invalid("[\"abc", 5);
}
END_TEST

START_TEST(trailing_garbage_is_einval_where_it_starts)
{
	expect_invalid("{\"a\":1} x", 8);
}
END_TEST

START_TEST(two_values_are_einval_at_the_second)
{
	expect_invalid("1 2", 2);
}
END_TEST

START_TEST(bad_escape_is_einval_at_the_backslash)
{
	expect_invalid("[\"\\q\"]", 2);
}
END_TEST

START_TEST(short_unicode_escape_is_einval_at_the_backslash)
{
	expect_invalid("\"\\u12\"", 1);
}
END_TEST

START_TEST(lone_high_surrogate_is_einval_at_its_escape)
{
	expect_invalid("{\"k\":\"\\ud800\"}", 6);
}
END_TEST

START_TEST(lone_low_surrogate_is_einval_at_its_escape)
{
	expect_invalid("\"ab\\udc00\"", 3);
}
END_TEST

START_TEST(high_surrogate_without_low_one_is_einval)
{
	expect_invalid("\"\\ud800\\u0041\"", 1);
}
END_TEST

START_TEST(control_character_in_string_is_einval_at_it)
{
	expect_invalid("\"a\tb\"", 2);
	expect_invalid("[\"x\ny\"]", 3);
}
END_TEST

START_TEST(invalid_utf8_byte_is_einval_at_it)
{
	expect_invalid("\"ab\xff\"", 3);
}
END_TEST

START_TEST(overlong_utf8_is_einval)
{
	expect_invalid("\"\xc0\xaf\"", 1);
	expect_invalid("\"\xe0\x80\xaf\"", 1);
}
END_TEST

START_TEST(utf8_encoded_surrogate_is_einval)
{
	expect_invalid("[\"\xed\xa0\x80\"]", 2);
}
END_TEST

START_TEST(truncated_utf8_sequence_is_einval)
{
	expect_invalid("\"\xe2\x82\"", 1);
}
END_TEST

START_TEST(number_with_leading_zero_is_einval)
{
	expect_invalid("01", 1);
	expect_invalid("-01", 2);
}
END_TEST

START_TEST(number_ending_in_dot_is_einval_after_the_dot)
{
	expect_invalid("1.", 2);
}
END_TEST

START_TEST(exponent_without_digits_is_einval)
{
	expect_invalid("[1e]", 3);
}
END_TEST

START_TEST(empty_and_blank_payloads_are_einval)
{
	expect_invalid("", 0);
	expect_invalid("  \n", 3);
}
END_TEST

START_TEST(nesting_600_deep_is_einval_at_the_first_level_too_many)
{
	char *p = build(600, "[", "", "]");
	expect_invalid(p, 31);
	free(p);
}
END_TEST

/* The limit of the strictest store (MariaDB's JSON_VALID), on every store. */
START_TEST(nesting_32_deep_is_einval_31_is_accepted)
{
	char *too_deep = build(32, "[", "", "]");
	expect_invalid(too_deep, 31);
	free(too_deep);
	char *deepest = build(31, "[", "", "]");
	expect_valid(deepest);
	free(deepest);
	char *objects = build(32, "{\"a\":", "1", "}");
	expect_invalid(objects, 31 * 5);
	free(objects);
}
END_TEST

START_TEST(invalid_metadata_json_is_einval_with_byte_offset)
{
	struct seen s = { 0 };
	bus *b = open_recording_bus(&s);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.meta = "{\"tenant\":}";
	ck_assert_int_eq(bus_publish(NULL, b, "e", "{}", &opts), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "metadata");
	ck_assert(says_byte(bus_error_last()->message, 10));
	ck_assert_int_eq(s.calls, 0);
	bus_close(b);
}
END_TEST

/* ---- valid edge cases ---------------------------------------------------- */

START_TEST(edge_case_numbers_are_accepted)
{
	expect_valid("-0");
	expect_valid("0");
	expect_valid("1e-5");
	expect_valid("2E+10");
	expect_valid("-12.5e300");
	expect_valid("[0.0, -0.5, 10, 3e0]");
}
END_TEST

START_TEST(unicode_escapes_and_surrogate_pairs_are_accepted)
{
	expect_valid("\"\\u00e9\\u20AC\\ud83d\\ude00\"");
	expect_valid("{\"emoji\":\"\\uD834\\uDD1E\"}");
}
END_TEST

START_TEST(raw_utf8_is_accepted)
{
	expect_valid("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}
END_TEST

START_TEST(all_simple_escapes_are_accepted)
{
	expect_valid("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"");
}
END_TEST

START_TEST(nesting_31_deep_is_accepted)
{
	char *arrays = build(31, "[", "1", "]");
	expect_valid(arrays);
	free(arrays);
	/* 15 objects and 15 arrays, then a 31st array. */
	char *mixed = build(15, "{\"a\":[", "[null]", "]}");
	expect_valid(mixed);
	free(mixed);
}
END_TEST

START_TEST(null_with_surrounding_whitespace_is_accepted_as_null)
{
	struct seen s = { 0 };
	bus *b = open_recording_bus(&s);
	ck_assert_int_eq(bus_publish(NULL, b, "e", " \t\r\n null \n", NULL), 0);
	ck_assert_int_eq(s.calls, 1);
	ck_assert_int_eq(s.json_type, cJSON_NULL);
	bus_close(b);
}
END_TEST

START_TEST(null_payload_means_json_null)
{
	struct seen s = { 0 };
	bus *b = open_recording_bus(&s);
	char *result = NULL;
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_str_eq(s.payload, "null");
	ck_assert_uint_eq(s.payload_len, 4);
	ck_assert_int_eq(s.json_type, cJSON_NULL);
	ck_assert_int_eq(bus_send(&result, b, "c", NULL, NULL), 0);
	ck_assert_str_eq(s.payload, "null");
	ck_assert_int_eq(s.calls, 2);
	bus_close(b);
}
END_TEST

/* ---- size limit ---------------------------------------------------------- */

START_TEST(payload_over_16_mib_is_einval_naming_the_limit)
{
	struct seen s = { 0 };
	bus *b = open_recording_bus(&s);
	char *big = string_of_size(16 * MIB + 1);
	char *result = NULL;
	ck_assert_int_eq(bus_publish(NULL, b, "e", big, NULL), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "16777216");
	ck_assert_int_eq(bus_send(&result, b, "c", big, NULL), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "limit");
	ck_assert_int_eq(s.calls, 0);
	free(big);
	bus_close(b);
}
END_TEST

START_TEST(payload_of_exactly_16_mib_is_accepted)
{
	struct seen s = { 0 };
	bus *b = open_recording_bus(&s);
	char *big = string_of_size(16 * MIB);
	ck_assert_msg(bus_publish(NULL, b, "e", big, NULL) == 0, "%s",
		      bus_error_last()->message);
	ck_assert_int_eq(s.calls, 1);
	ck_assert_uint_eq(s.payload_len, 16 * MIB);
	free(big);
	bus_close(b);
}
END_TEST

/* ---- results ------------------------------------------------------------- */

struct set_result_case {
	const char *json;
	int rc;
	char message[1024];
};

static int set_result_handler(bus_ctx *ctx, void *udata)
{
	struct set_result_case *c = udata;
	c->rc = bus_ctx_set_result(ctx, c->json);
	snprintf(c->message, sizeof c->message, "%s",
		 bus_error_last()->message);
	return 0;
}

START_TEST(set_result_with_invalid_json_is_einval_and_sets_nothing)
{
	bus *b = open_bus();
	struct set_result_case c = { "{bad", 0, "" };
	ck_assert_int_eq(bus_handle_command(b, "c", set_result_handler, &c,
					    NULL),
			 0);
	char *result = (char *)"untouched";
	ck_assert_int_eq(bus_send(&result, b, "c", "{}", NULL), 0);
	ck_assert_int_eq(c.rc, BUS_EINVAL);
	ck_assert_msg(strstr(c.message, "result") && says_byte(c.message, 1),
		      "message \"%s\"", c.message);
	ck_assert_ptr_null(result);
	bus_close(b);
}
END_TEST

START_TEST(set_result_with_null_is_einval)
{
	bus *b = open_bus();
	struct set_result_case c = { NULL, 0, "" };
	ck_assert_int_eq(bus_handle_query(b, "q", set_result_handler, &c,
					  NULL),
			 0);
	char *result = NULL;
	ck_assert_int_eq(bus_ask(&result, b, "q", NULL, NULL), 0);
	ck_assert_int_eq(c.rc, BUS_EINVAL);
	ck_assert_ptr_null(result);
	bus_close(b);
}
END_TEST

START_TEST(set_result_with_valid_json_is_returned_as_given)
{
	bus *b = open_bus();
	struct set_result_case c = { " {\"n\": [1, 2.5e3]} ", 1, "" };
	ck_assert_int_eq(bus_handle_command(b, "c", set_result_handler, &c,
					    NULL),
			 0);
	char *result = NULL;
	ck_assert_int_eq(bus_send(&result, b, "c", NULL, NULL), 0);
	ck_assert_int_eq(c.rc, 0);
	ck_assert_pstr_eq(result, " {\"n\": [1, 2.5e3]} ");
	bus_free(result);
	bus_close(b);
}
END_TEST

static Suite *json_suite(void)
{
	Suite *s = suite_create("json");

	TCase *tc = tcase_create("invalid");
	tcase_add_test(tc, truncated_object_is_einval_at_its_end);
	tcase_add_test(tc, truncated_string_is_einval_at_its_end);
	tcase_add_test(tc, trailing_garbage_is_einval_where_it_starts);
	tcase_add_test(tc, two_values_are_einval_at_the_second);
	tcase_add_test(tc, bad_escape_is_einval_at_the_backslash);
	tcase_add_test(tc, short_unicode_escape_is_einval_at_the_backslash);
	tcase_add_test(tc, lone_high_surrogate_is_einval_at_its_escape);
	tcase_add_test(tc, lone_low_surrogate_is_einval_at_its_escape);
	tcase_add_test(tc, high_surrogate_without_low_one_is_einval);
	tcase_add_test(tc, control_character_in_string_is_einval_at_it);
	tcase_add_test(tc, invalid_utf8_byte_is_einval_at_it);
	tcase_add_test(tc, overlong_utf8_is_einval);
	tcase_add_test(tc, utf8_encoded_surrogate_is_einval);
	tcase_add_test(tc, truncated_utf8_sequence_is_einval);
	tcase_add_test(tc, number_with_leading_zero_is_einval);
	tcase_add_test(tc, number_ending_in_dot_is_einval_after_the_dot);
	tcase_add_test(tc, exponent_without_digits_is_einval);
	tcase_add_test(tc, empty_and_blank_payloads_are_einval);
	tcase_add_test(tc, nesting_600_deep_is_einval_at_the_first_level_too_many);
	tcase_add_test(tc, nesting_32_deep_is_einval_31_is_accepted);
	tcase_add_test(tc, invalid_metadata_json_is_einval_with_byte_offset);
	suite_add_tcase(s, tc);

	tc = tcase_create("valid");
	tcase_add_test(tc, edge_case_numbers_are_accepted);
	tcase_add_test(tc, unicode_escapes_and_surrogate_pairs_are_accepted);
	tcase_add_test(tc, raw_utf8_is_accepted);
	tcase_add_test(tc, all_simple_escapes_are_accepted);
	tcase_add_test(tc, nesting_31_deep_is_accepted);
	tcase_add_test(tc, null_with_surrounding_whitespace_is_accepted_as_null);
	tcase_add_test(tc, null_payload_means_json_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, payload_over_16_mib_is_einval_naming_the_limit);
	tcase_add_test(tc, payload_of_exactly_16_mib_is_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("result");
	tcase_add_test(tc, set_result_with_invalid_json_is_einval_and_sets_nothing);
	tcase_add_test(tc, set_result_with_null_is_einval);
	tcase_add_test(tc, set_result_with_valid_json_is_returned_as_given);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(json_suite());
}
