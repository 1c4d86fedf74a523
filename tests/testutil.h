/* Small helpers shared by the Check suites. Header-only: every suite is one
 * program built from one .c file. */
#ifndef BUS_TESTS_TESTUTIL_H
#define BUS_TESTS_TESTUTIL_H

#include <bus/bus.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An in-memory bus; the test fails when it cannot be opened. */
static inline bus *open_bus(void)
{
	bus *b = NULL;
	int rc = bus_open(&b, "memory:");
	ck_assert_msg(rc == 0, "bus_open(\"memory:\") = %d: %s", rc,
		      bus_error_last()->message);
	ck_assert_ptr_nonnull(b);
	return b;
}

/* Asserts the calling thread's last error: its code, and that its message
 * contains `part` (NULL: anything). */
#define ck_assert_last_error(want_code, part)                                  \
	do {                                                                   \
		const bus_error *e_ = bus_error_last();                        \
		ck_assert_msg(e_->code == (want_code),                         \
			      "bus_error_last()->code is %s (%d), expected %s: " \
			      "\"%s\"",                                        \
			      bus_error_name(e_->code), e_->code,              \
			      bus_error_name(want_code), e_->message);         \
		const char *part_ = (part);                                    \
		ck_assert_msg(part_ == NULL || strstr(e_->message, part_),     \
			      "error message \"%s\" lacks \"%s\"",             \
			      e_->message, part_ ? part_ : "");                \
	} while (0)

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static inline int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A logger that keeps the lines it is given (single-threaded use). */
#define CAPTURE_LINES 32
struct log_capture {
	int n;
	bus_log_level level[CAPTURE_LINES];
	char line[CAPTURE_LINES][512];
};

static inline void capture_log(bus_log_level level, const char *message,
			       void *udata)
{
	struct log_capture *c = udata;
	if (c->n == CAPTURE_LINES)
		return;
	c->level[c->n] = level;
	snprintf(c->line[c->n], sizeof c->line[0], "%s", message);
	c->n++;
}

/* Index of the first captured line at `level` that contains both `a` and `b`
 * (`b` may be NULL), or -1. */
static inline int capture_find(const struct log_capture *c,
			       bus_log_level level, const char *a,
			       const char *b)
{
	for (int i = 0; i < c->n; i++)
		if (c->level[i] == level && strstr(c->line[i], a) &&
		    (b == NULL || strstr(c->line[i], b)))
			return i;
	return -1;
}

/* Runs the suite with Check's defaults (CK_FORK, CK_VERBOSITY from the
 * environment) and turns failures into the exit status. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
