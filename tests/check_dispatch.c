/*
 * Dispatch: event fan-out and its failure modes, commands and queries,
 * registration rules, handler names, and opening a bus.
 */
#include <unistd.h>

#include "testutil.h"

/* ---- handlers ------------------------------------------------------------ */

/* Each handler appends its tag to a shared trace, so a test can see which
 * handlers ran and in what order. */
struct trace {
	char order[64];
	int calls;
};

struct tagged {
	struct trace *trace;
	char tag;
	int rc; /* what the handler returns (0, BUS_E*, or > 0) */
	const char *fail; /* when set, fail through bus_ctx_fail with it */
};

static int tagged_handler(bus_ctx *ctx, void *udata)
{
	struct tagged *t = udata;
	size_t n = strlen(t->trace->order);
	if (n + 1 < sizeof t->trace->order) {
		t->trace->order[n] = t->tag;
		t->trace->order[n + 1] = '\0';
	}
	t->trace->calls++;
	if (t->fail != NULL)
		return bus_ctx_fail(ctx, "%s", t->fail);
	return t->rc;
}

static int counting_handler(bus_ctx *ctx, void *udata)
{
	(void)ctx;
	(*(int *)udata)++;
	return 0;
}

/* Sets the result in udata (a JSON string) unless it is NULL. */
static int result_handler(bus_ctx *ctx, void *udata)
{
	if (udata == NULL)
		return 0;
	return bus_ctx_set_result(ctx, udata);
}

/* Copies the handler's name into udata (char[256]). */
static int name_handler(bus_ctx *ctx, void *udata)
{
	snprintf(udata, 256, "%s", bus_ctx_handler(ctx));
	return 0;
}

static int add_named(bus *b, const char *event, const char *name,
		     struct tagged *t)
{
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
	opts.name = name;
	return bus_on(b, event, tagged_handler, t, &opts);
}

/* ---- events -------------------------------------------------------------- */

START_TEST(event_handlers_all_run_in_registration_order)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h[4] = { { &tr, 'c', 0, NULL },
			       { &tr, 'a', 0, NULL },
			       { &tr, 'd', 0, NULL },
			       { &tr, 'b', 0, NULL } };
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(bus_on(b, "order.placed", tagged_handler, &h[i],
					NULL),
				 0);
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "order.placed", "{}", NULL), 0);
	ck_assert_str_eq(tr.order, "cadb");
	ck_assert_uint_eq(out.handlers, 4);
	ck_assert_uint_eq(out.failed, 0);
	bus_close(b);
}
END_TEST

START_TEST(publish_stops_at_first_failure_and_returns_its_code)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h1 = { &tr, '1', 0, NULL };
	struct tagged h2 = { &tr, '2', BUS_ESTATE, NULL };
	struct tagged h3 = { &tr, '3', 0, NULL };
	ck_assert_int_eq(add_named(b, "e", "first", &h1), 0);
	ck_assert_int_eq(add_named(b, "e", "second", &h2), 0);
	ck_assert_int_eq(add_named(b, "e", "third", &h3), 0);

	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "e", NULL, NULL), BUS_ESTATE);
	ck_assert_last_error(BUS_ESTATE, "'second'");
	ck_assert_str_eq(tr.order, "12");
	ck_assert_uint_eq(out.handlers, 2);
	ck_assert_uint_eq(out.failed, 1);
	bus_close(b);
}
END_TEST

START_TEST(run_all_runs_every_handler_and_reports_the_first_failure)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h1 = { &tr, '1', 0, NULL };
	struct tagged h2 = { &tr, '2', 0, "disk full" };
	struct tagged h3 = { &tr, '3', 0, NULL };
	struct tagged h4 = { &tr, '4', BUS_ENOMEM, NULL };
	struct tagged h5 = { &tr, '5', 0, NULL };
	ck_assert_int_eq(add_named(b, "e", "one", &h1), 0);
	ck_assert_int_eq(add_named(b, "e", "two", &h2), 0);
	ck_assert_int_eq(add_named(b, "e", "three", &h3), 0);
	ck_assert_int_eq(add_named(b, "e", "four", &h4), 0);
	ck_assert_int_eq(add_named(b, "e", "five", &h5), 0);

	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.flags = BUS_PUBLISH_RUN_ALL;
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "e", "[]", &opts), BUS_EHANDLER);
	ck_assert_str_eq(tr.order, "12345");
	ck_assert_uint_eq(out.handlers, 5);
	ck_assert_uint_eq(out.failed, 2);
	ck_assert_last_error(BUS_EHANDLER, "'two'");
	ck_assert_last_error(BUS_EHANDLER, "disk full");
	ck_assert_msg(strstr(bus_error_last()->message, "'four'") == NULL,
		      "message names a later failure: %s",
		      bus_error_last()->message);
	bus_close(b);
}
END_TEST

START_TEST(run_all_with_no_failure_returns_zero)
{
	bus *b = open_bus();
	int calls = 0;
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.flags = BUS_PUBLISH_RUN_ALL;
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "e", NULL, &opts), 0);
	ck_assert_int_eq(calls, 2);
	ck_assert_uint_eq(out.handlers, 2);
	ck_assert_uint_eq(out.failed, 0);
	bus_close(b);
}
END_TEST

START_TEST(event_without_handlers_returns_zero_and_logs_a_debug_line)
{
	bus *b = open_bus();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_DEBUG, capture_log, &cap);
	bus_publish_result out = { .handlers = 7, .failed = 7 };
	ck_assert_int_eq(bus_publish(&out, b, "nobody.listens", "{}", NULL), 0);
	ck_assert_uint_eq(out.handlers, 0);
	ck_assert_uint_eq(out.failed, 0);
	ck_assert_msg(capture_find(&cap, BUS_LOG_DEBUG, "nobody.listens",
				   NULL) >= 0,
		      "no debug line names the event (%d lines)", cap.n);
	bus_close(b);
}
END_TEST

START_TEST(logger_drops_lines_below_its_level)
{
	bus *b = open_bus();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_WARN, capture_log, &cap);
	ck_assert_int_eq(bus_publish(NULL, b, "nobody.listens", "{}", NULL), 0);
	ck_assert_int_eq(cap.n, 0);
	bus_close(b);
}
END_TEST

/* Sends this process's stderr to a temporary file until stderr_end, which
 * gives back what was written. */
struct stderr_capture {
	int saved;
	FILE *file;
	char text[4096];
};

static void stderr_begin(struct stderr_capture *c)
{
	fflush(stderr);
	c->file = tmpfile();
	ck_assert_ptr_nonnull(c->file);
	c->saved = dup(STDERR_FILENO);
	ck_assert_int_ge(c->saved, 0);
	ck_assert_int_ge(dup2(fileno(c->file), STDERR_FILENO), 0);
}

static void stderr_end(struct stderr_capture *c)
{
	fflush(stderr);
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	rewind(c->file);
	size_t n = fread(c->text, 1, sizeof c->text - 1, c->file);
	c->text[n] = '\0';
	fclose(c->file);
}

START_TEST(bus_log_debug_makes_the_default_logger_write_debug_lines)
{
	const char *old = getenv("BUS_LOG");
	char saved[64];
	snprintf(saved, sizeof saved, "%s", old ? old : "");
	setenv("BUS_LOG", "debug", 1);
	bus *b = open_bus();
	struct stderr_capture c;
	stderr_begin(&c);
	int rc = bus_publish(NULL, b, "unheard.event", NULL, NULL);
	stderr_end(&c);
	bus_close(b);

	unsetenv("BUS_LOG"); /* the default level, warn, drops debug lines */
	bus *quiet = open_bus();
	struct stderr_capture q;
	stderr_begin(&q);
	int quiet_rc = bus_publish(NULL, quiet, "unheard.event", NULL, NULL);
	stderr_end(&q);
	bus_close(quiet);
	if (old != NULL)
		setenv("BUS_LOG", saved, 1);

	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(c.text, "unheard.event") != NULL,
		      "stderr with BUS_LOG=debug: \"%s\"", c.text);
	ck_assert_int_eq(quiet_rc, 0);
	ck_assert_msg(strstr(q.text, "unheard.event") == NULL,
		      "stderr without BUS_LOG: \"%s\"", q.text);
}
END_TEST

START_TEST(null_logger_function_restores_the_stderr_logger)
{
	bus *b = open_bus();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_DEBUG, capture_log, &cap);
	bus_set_logger(b, BUS_LOG_DEBUG, NULL, NULL);
	struct stderr_capture c;
	stderr_begin(&c);
	int rc = bus_publish(NULL, b, "unheard.event", NULL, NULL);
	stderr_end(&c);
	bus_close(b);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(cap.n, 0);
	ck_assert_msg(strstr(c.text, "unheard.event") != NULL,
		      "stderr: \"%s\"", c.text);
}
END_TEST

START_TEST(handler_gets_its_udata)
{
	bus *b = open_bus();
	int calls = 0;
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(calls, 2);
	bus_close(b);
}
END_TEST

/* ---- commands and queries ------------------------------------------------ */

START_TEST(command_result_is_handed_back_to_the_caller)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_handle_command(b, "order.place", result_handler,
					    (void *)"{\"order\":42}", NULL),
			 0);
	char *result = NULL;
	ck_assert_int_eq(bus_send(&result, b, "order.place", "{}", NULL), 0);
	ck_assert_pstr_eq(result, "{\"order\":42}");
	bus_free(result);
	bus_close(b);
}
END_TEST

START_TEST(query_result_is_handed_back_to_the_caller)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_handle_query(b, "order.count", result_handler,
					  (void *)"[1,2,3]", NULL),
			 0);
	char *result = NULL;
	ck_assert_int_eq(bus_ask(&result, b, "order.count", NULL, NULL), 0);
	ck_assert_pstr_eq(result, "[1,2,3]");
	bus_free(result);
	bus_close(b);
}
END_TEST

START_TEST(result_is_null_when_the_handler_sets_none)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_handle_command(b, "c", result_handler, NULL, NULL),
			 0);
	ck_assert_int_eq(bus_handle_query(b, "q", result_handler, NULL, NULL),
			 0);
	char *result = (char *)"untouched";
	ck_assert_int_eq(bus_send(&result, b, "c", NULL, NULL), 0);
	ck_assert_ptr_null(result);
	result = (char *)"untouched";
	ck_assert_int_eq(bus_ask(&result, b, "q", NULL, NULL), 0);
	ck_assert_ptr_null(result);
	bus_close(b);
}
END_TEST

START_TEST(result_may_be_ignored_with_null_out)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_handle_command(b, "c", result_handler,
					    (void *)"{\"big\":true}", NULL),
			 0);
	/* Nothing to free: valgrind checks that the result is not leaked. */
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), 0);
	bus_close(b);
}
END_TEST

START_TEST(failed_command_hands_back_no_result)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h = { &tr, 'c', 0, "refused" };
	ck_assert_int_eq(bus_handle_command(b, "c", tagged_handler, &h, NULL),
			 0);
	char *result = (char *)"untouched";
	ck_assert_int_eq(bus_send(&result, b, "c", NULL, NULL), BUS_EHANDLER);
	ck_assert_ptr_null(result);
	bus_close(b);
}
END_TEST

START_TEST(second_command_or_query_handler_is_eexists)
{
	bus *b = open_bus();
	int calls = 0;
	ck_assert_int_eq(bus_handle_command(b, "c", counting_handler, &calls,
					    NULL),
			 0);
	ck_assert_int_eq(bus_handle_command(b, "c", counting_handler, &calls,
					    NULL),
			 BUS_EEXISTS);
	ck_assert_last_error(BUS_EEXISTS, "'c'");
	ck_assert_int_eq(bus_handle_query(b, "q", counting_handler, &calls,
					  NULL),
			 0);
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
	opts.name = "another-name";
	ck_assert_int_eq(bus_handle_query(b, "q", counting_handler, &calls,
					  &opts),
			 BUS_EEXISTS);
	/* The first handler is still the one that runs, once. */
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), 0);
	ck_assert_int_eq(calls, 1);
	bus_close(b);
}
END_TEST

START_TEST(send_or_ask_without_handler_is_enotfound_naming_it)
{
	bus *b = open_bus();
	char *result = (char *)"untouched";
	ck_assert_int_eq(bus_send(&result, b, "no.such.command", "{}", NULL),
			 BUS_ENOTFOUND);
	ck_assert_last_error(BUS_ENOTFOUND, "no.such.command");
	ck_assert_ptr_null(result);
	ck_assert_int_eq(bus_ask(&result, b, "no.such.query", "{}", NULL),
			 BUS_ENOTFOUND);
	ck_assert_last_error(BUS_ENOTFOUND, "no.such.query");
	bus_close(b);
}
END_TEST

START_TEST(commands_queries_and_events_are_separate_namespaces)
{
	bus *b = open_bus();
	int events = 0;
	ck_assert_int_eq(bus_handle_command(b, "x", result_handler,
					    (void *)"\"command\"", NULL),
			 0);
	ck_assert_int_eq(bus_handle_query(b, "x", result_handler,
					  (void *)"\"query\"", NULL),
			 0);
	ck_assert_int_eq(bus_on(b, "x", counting_handler, &events, NULL), 0);

	char *result = NULL;
	ck_assert_int_eq(bus_send(&result, b, "x", NULL, NULL), 0);
	ck_assert_pstr_eq(result, "\"command\"");
	bus_free(result);
	ck_assert_int_eq(bus_ask(&result, b, "x", NULL, NULL), 0);
	ck_assert_pstr_eq(result, "\"query\"");
	bus_free(result);
	ck_assert_int_eq(events, 0);
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "x", NULL, NULL), 0);
	ck_assert_int_eq(events, 1);
	ck_assert_uint_eq(out.handlers, 1);

	/* A query alone does not answer a command of the same name. */
	ck_assert_int_eq(bus_handle_query(b, "only.query", result_handler, NULL,
					  NULL),
			 0);
	ck_assert_int_eq(bus_send(NULL, b, "only.query", NULL, NULL),
			 BUS_ENOTFOUND);
	bus_close(b);
}
END_TEST

/* ---- registration rules -------------------------------------------------- */

START_TEST(duplicate_handler_name_on_an_event_is_eexists)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h = { &tr, 'h', 0, NULL };
	ck_assert_int_eq(add_named(b, "e", "mailer", &h), 0);
	ck_assert_int_eq(add_named(b, "e", "mailer", &h), BUS_EEXISTS);
	ck_assert_last_error(BUS_EEXISTS, "mailer");
	/* The same name on another event is fine. */
	ck_assert_int_eq(add_named(b, "other", "mailer", &h), 0);
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "e", NULL, NULL), 0);
	ck_assert_uint_eq(out.handlers, 1);
	bus_close(b);
}
END_TEST

START_TEST(default_handler_names_are_event_hash_n_and_message_name)
{
	bus *b = open_bus();
	char n1[256] = "", n2[256] = "", n3[256] = "", cmd[256] = "",
	     qry[256] = "";
	ck_assert_int_eq(bus_on(b, "evt", name_handler, n1, NULL), 0);
	ck_assert_int_eq(bus_on(b, "evt", name_handler, n2, NULL), 0);
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT; /* name NULL */
	ck_assert_int_eq(bus_on(b, "evt", name_handler, n3, &opts), 0);
	ck_assert_int_eq(bus_handle_command(b, "user.create", name_handler, cmd,
					    NULL),
			 0);
	ck_assert_int_eq(bus_handle_query(b, "user.get", name_handler, qry,
					  NULL),
			 0);
	ck_assert_int_eq(bus_publish(NULL, b, "evt", NULL, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, "user.create", NULL, NULL), 0);
	ck_assert_int_eq(bus_ask(NULL, b, "user.get", NULL, NULL), 0);
	ck_assert_str_eq(n1, "evt#1");
	ck_assert_str_eq(n2, "evt#2");
	ck_assert_str_eq(n3, "evt#3");
	ck_assert_str_eq(cmd, "user.create");
	ck_assert_str_eq(qry, "user.get");
	bus_close(b);
}
END_TEST

START_TEST(given_handler_name_is_used)
{
	bus *b = open_bus();
	char got[256] = "";
	bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
	opts.name = "send-welcome-mail";
	ck_assert_int_eq(bus_on(b, "user.created", name_handler, got, &opts), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "user.created", NULL, NULL), 0);
	ck_assert_str_eq(got, "send-welcome-mail");
	bus_close(b);
}
END_TEST

/* Every way a name can be wrong, for every function that takes one. */
static const char *bad_name(int i, char *buf256)
{
	switch (i) {
	case 0: return "";
	case 1: return NULL;
	case 2: return "bad\nname";
	case 3: return "tab\there";
	case 4: return "del\x7f";
	default:
		memset(buf256, 'n', 256);
		buf256[256] = '\0';
		return buf256;
	}
}

START_TEST(invalid_names_are_einval_everywhere)
{
	bus *b = open_bus();
	int calls = 0;
	char long_name[257];
	for (int i = 0; i < 6; i++) {
		const char *name = bad_name(i, long_name);
		ck_assert_int_eq(bus_on(b, name, counting_handler, &calls, NULL),
				 BUS_EINVAL);
		ck_assert_int_eq(bus_handle_command(b, name, counting_handler,
						    &calls, NULL),
				 BUS_EINVAL);
		ck_assert_int_eq(bus_handle_query(b, name, counting_handler,
						  &calls, NULL),
				 BUS_EINVAL);
		ck_assert_int_eq(bus_publish(NULL, b, name, NULL, NULL),
				 BUS_EINVAL);
		ck_assert_int_eq(bus_send(NULL, b, name, NULL, NULL),
				 BUS_EINVAL);
		ck_assert_int_eq(bus_ask(NULL, b, name, NULL, NULL), BUS_EINVAL);
		bus_handler_opts opts = BUS_HANDLER_OPTS_INIT;
		opts.name = name;
		if (name != NULL) /* NULL as handler name means the default */
			ck_assert_int_eq(bus_on(b, "good", counting_handler,
						&calls, &opts),
					 BUS_EINVAL);
	}
	ck_assert_int_eq(calls, 0);
	/* None of the refused registrations left a handler behind. */
	bus_publish_result out = { .handlers = 9, .failed = 9 };
	ck_assert_int_eq(bus_publish(&out, b, "good", NULL, NULL), 0);
	ck_assert_uint_eq(out.handlers, 0);
	bus_close(b);
}
END_TEST

START_TEST(name_of_255_bytes_is_accepted)
{
	bus *b = open_bus();
	char name[256];
	memset(name, 'n', 255);
	name[255] = '\0';
	int calls = 0;
	ck_assert_int_eq(bus_on(b, name, counting_handler, &calls, NULL), 0);
	ck_assert_int_eq(bus_handle_command(b, name, counting_handler, &calls,
					    NULL),
			 0);
	ck_assert_int_eq(bus_publish(NULL, b, name, NULL, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, name, NULL, NULL), 0);
	ck_assert_int_eq(calls, 2);
	bus_close(b);
}
END_TEST

START_TEST(utf8_names_are_accepted)
{
	bus *b = open_bus();
	int calls = 0;
	ck_assert_int_eq(bus_on(b, "commande.pass\xc3\xa9\x65", counting_handler,
				&calls, NULL),
			 0);
	ck_assert_int_eq(bus_publish(NULL, b, "commande.pass\xc3\xa9\x65", NULL,
				     NULL),
			 0);
	ck_assert_int_eq(calls, 1);
	bus_close(b);
}
END_TEST

START_TEST(null_handler_function_is_einval)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_on(b, "e", NULL, NULL, NULL), BUS_EINVAL);
	ck_assert_int_eq(bus_handle_command(b, "c", NULL, NULL, NULL),
			 BUS_EINVAL);
	ck_assert_int_eq(bus_handle_query(b, "q", NULL, NULL, NULL), BUS_EINVAL);
	/* Nothing was registered: the command still has no handler. */
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), BUS_ENOTFOUND);
	bus_close(b);
}
END_TEST

START_TEST(null_bus_is_einval)
{
	int calls = 0;
	ck_assert_int_eq(bus_on(NULL, "e", counting_handler, &calls, NULL),
			 BUS_EINVAL);
	ck_assert_int_eq(bus_publish(NULL, NULL, "e", NULL, NULL), BUS_EINVAL);
	ck_assert_int_eq(bus_send(NULL, NULL, "c", NULL, NULL), BUS_EINVAL);
	bus_close(NULL); /* fine */
}
END_TEST

START_TEST(options_with_wrong_version_are_einval)
{
	bus *b = open_bus();
	int calls = 0;
	bus_handler_opts hopts = BUS_HANDLER_OPTS_INIT;
	hopts.version = BUS_HANDLER_OPTS_VERSION + 1;
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, &hopts),
			 BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "version");
	hopts.version = 0;
	ck_assert_int_eq(bus_handle_command(b, "c", counting_handler, &calls,
					    &hopts),
			 BUS_EINVAL);

	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	bus_dispatch_opts dopts = BUS_DISPATCH_OPTS_INIT;
	dopts.version = 0;
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, &dopts), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "version");
	ck_assert_int_eq(calls, 0);
	bus_close(b);
}
END_TEST

START_TEST(run_all_flag_on_a_command_is_einval)
{
	bus *b = open_bus();
	int calls = 0;
	ck_assert_int_eq(bus_handle_command(b, "c", counting_handler, &calls,
					    NULL),
			 0);
	bus_dispatch_opts opts = BUS_DISPATCH_OPTS_INIT;
	opts.flags = BUS_PUBLISH_RUN_ALL;
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, &opts), BUS_EINVAL);
	opts.flags = 1u << 7; /* unknown */
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, &opts), BUS_EINVAL);
	ck_assert_int_eq(calls, 0);
	bus_close(b);
}
END_TEST

/* ---- failures ------------------------------------------------------------ */

START_TEST(handler_returning_positive_value_is_ehandler)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h = { &tr, 'p', 1, NULL };
	ck_assert_int_eq(bus_handle_command(b, "c", tagged_handler, &h, NULL),
			 0);
	ck_assert_int_eq(bus_on(b, "e", tagged_handler, &h, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), BUS_EHANDLER);
	ck_assert_last_error(BUS_EHANDLER, NULL);
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "e", NULL, NULL), BUS_EHANDLER);
	ck_assert_uint_eq(out.failed, 1);
	bus_close(b);
}
END_TEST

START_TEST(ctx_fail_message_becomes_the_dispatch_error)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h = { &tr, 'f', 0, "card 4242 declined (code 51)" };
	ck_assert_int_eq(bus_handle_command(b, "pay", tagged_handler, &h, NULL),
			 0);
	ck_assert_int_eq(bus_on(b, "paid", tagged_handler, &h, NULL), 0);
	ck_assert_int_eq(bus_send(NULL, b, "pay", "{}", NULL), BUS_EHANDLER);
	ck_assert_last_error(BUS_EHANDLER, "card 4242 declined (code 51)");
	bus_error_clear();
	ck_assert_int_eq(bus_publish(NULL, b, "paid", "{}", NULL), BUS_EHANDLER);
	ck_assert_last_error(BUS_EHANDLER, "card 4242 declined (code 51)");
	ck_assert_last_error(BUS_EHANDLER, "paid#1");
	bus_close(b);
}
END_TEST

START_TEST(handler_failing_without_message_is_named_by_its_code)
{
	bus *b = open_bus();
	struct trace tr = { "", 0 };
	struct tagged h = { &tr, 'f', BUS_ETIMEOUT, NULL };
	ck_assert_int_eq(bus_handle_command(b, "c", tagged_handler, &h, NULL),
			 0);
	ck_assert_int_eq(bus_send(NULL, b, "c", NULL, NULL), BUS_ETIMEOUT);
	ck_assert_last_error(BUS_ETIMEOUT, "BUS_ETIMEOUT");
	bus_close(b);
}
END_TEST

START_TEST(error_clear_resets_the_last_error)
{
	bus *b = open_bus();
	ck_assert_int_eq(bus_send(NULL, b, "missing", NULL, NULL),
			 BUS_ENOTFOUND);
	bus_error_clear();
	ck_assert_int_eq(bus_error_last()->code, 0);
	ck_assert_str_eq(bus_error_last()->message, "no error");
	ck_assert_str_eq(bus_error_name(BUS_ENOTFOUND), "BUS_ENOTFOUND");
	ck_assert_str_eq(bus_error_name(12345), "unknown");
	bus_close(b);
}
END_TEST

/* ---- registration while in use ------------------------------------------- */

START_TEST(handler_registered_after_dispatch_started_runs_next_time)
{
	bus *b = open_bus();
	int first = 0, second = 0;
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &first, NULL), 0);
	bus_publish_result out = { .handlers = 0, .failed = 0 };
	ck_assert_int_eq(bus_publish(&out, b, "e", NULL, NULL), 0);
	ck_assert_uint_eq(out.handlers, 1);
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &second, NULL), 0);
	ck_assert_int_eq(bus_publish(&out, b, "e", NULL, NULL), 0);
	ck_assert_uint_eq(out.handlers, 2);
	ck_assert_int_eq(first, 2);
	ck_assert_int_eq(second, 1);
	/* A command first sent without a handler can get one later. */
	ck_assert_int_eq(bus_send(NULL, b, "late", NULL, NULL), BUS_ENOTFOUND);
	ck_assert_int_eq(bus_handle_command(b, "late", counting_handler,
					    &second, NULL),
			 0);
	ck_assert_int_eq(bus_send(NULL, b, "late", NULL, NULL), 0);
	ck_assert_int_eq(second, 2);
	bus_close(b);
}
END_TEST

START_TEST(many_events_and_handlers_can_be_registered)
{
	bus *b = open_bus();
	int calls = 0;
	char name[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof name, "event.%d", i);
		ck_assert_int_eq(bus_on(b, name, counting_handler, &calls, NULL),
				 0);
	}
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(bus_on(b, "event.7", counting_handler, &calls,
					NULL),
				 0);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof name, "event.%d", i);
		ck_assert_int_eq(bus_publish(NULL, b, name, NULL, NULL), 0);
	}
	ck_assert_int_eq(calls, 1000 + 100);
	bus_close(b);
}
END_TEST

/* ---- opening a bus ------------------------------------------------------- */

/* Sets an environment variable for one test and puts the old value back, so
 * that tests also behave with CK_FORK=no. */
struct env_saved {
	const char *name;
	int had;
	char value[1024];
};

static void env_set(struct env_saved *saved, const char *name,
		    const char *value)
{
	const char *old = getenv(name);
	saved->name = name;
	saved->had = old != NULL;
	snprintf(saved->value, sizeof saved->value, "%s", old ? old : "");
	if (value != NULL)
		setenv(name, value, 1);
	else
		unsetenv(name);
}

static void env_restore(const struct env_saved *saved)
{
	if (saved->had)
		setenv(saved->name, saved->value, 1);
	else
		unsetenv(saved->name);
}

static void expect_usable(bus *b)
{
	int calls = 0;
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(bus_on(b, "e", counting_handler, &calls, NULL), 0);
	ck_assert_int_eq(bus_publish(NULL, b, "e", NULL, NULL), 0);
	ck_assert_int_eq(calls, 1);
}

/* No store plug-in can be found while this is set. */
#define NO_BACKENDS "/nonexistent/libbus-test-backends"

START_TEST(open_memory_urls_work)
{
	struct env_saved saved;
	env_set(&saved, "BUS_URL", NULL);
	const char *urls[] = { "memory:", "memory://", NULL };
	for (int i = 0; i < 3; i++) {
		bus *b = NULL;
		ck_assert_msg(bus_open(&b, urls[i]) == 0, "bus_open(%s): %s",
			      urls[i] ? urls[i] : "NULL",
			      bus_error_last()->message);
		expect_usable(b);
		bus_close(b);
	}
	env_restore(&saved);
}
END_TEST

START_TEST(open_null_uses_bus_url_from_the_environment)
{
	struct env_saved url, dir;
	env_set(&dir, "BUS_BACKEND_DIR", NO_BACKENDS);
	env_set(&url, "BUS_URL", "bogus");
	static int sentinel;
	bus *b = (bus *)&sentinel; /* must be reset to NULL on failure */
	ck_assert_int_eq(bus_open(&b, NULL), BUS_EINVAL);
	ck_assert_ptr_null(b);

	setenv("BUS_URL", "nosuchstore://localhost/db", 1);
	ck_assert_int_eq(bus_open(&b, NULL), BUS_ENOTFOUND);
	ck_assert_last_error(BUS_ENOTFOUND, "nosuchstore");

	setenv("BUS_URL", "", 1); /* empty: as if unset */
	ck_assert_int_eq(bus_open(&b, NULL), 0);
	expect_usable(b);
	bus_close(b);

	setenv("BUS_URL", "memory://", 1);
	ck_assert_int_eq(bus_open(&b, NULL), 0);
	expect_usable(b);
	bus_close(b);
	env_restore(&url);
	env_restore(&dir);
}
END_TEST

START_TEST(open_explicit_url_ignores_the_environment)
{
	struct env_saved saved;
	env_set(&saved, "BUS_URL", "bogus");
	bus *b = NULL;
	ck_assert_int_eq(bus_open(&b, "memory:"), 0);
	expect_usable(b);
	bus_close(b);
	env_restore(&saved);
}
END_TEST

START_TEST(open_unknown_scheme_is_enotfound_without_the_password)
{
	struct env_saved dir;
	env_set(&dir, "BUS_BACKEND_DIR", NO_BACKENDS);
	const char *urls[] = { "mysql://user:s3cret@host/db",
			       "nosuchstore://user:s3cret@host:5432/db" };
	for (int i = 0; i < 2; i++) {
		bus *b = NULL;
		ck_assert_int_eq(bus_open(&b, urls[i]), BUS_ENOTFOUND);
		ck_assert_last_error(BUS_ENOTFOUND, i == 0 ? "mysql"
							   : "nosuchstore");
		ck_assert_msg(strstr(bus_error_last()->message, "s3cret") ==
				      NULL,
			      "the password leaked: %s",
			      bus_error_last()->message);
		ck_assert_ptr_null(b);
	}
	env_restore(&dir);
}
END_TEST

START_TEST(open_malformed_urls_are_einval_without_the_password)
{
	const char *urls[] = { "nocolon", "MEM:", ":memory",
			       "Mysql://u:s3cret@h/db", "my sql://u:s3cret@h" };
	for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		bus *b = NULL;
		ck_assert_msg(bus_open(&b, urls[i]) == BUS_EINVAL,
			      "bus_open(\"%s\") is not BUS_EINVAL", urls[i]);
		ck_assert_ptr_null(b);
		ck_assert_msg(strstr(bus_error_last()->message, "s3cret") ==
				      NULL,
			      "the password leaked: %s",
			      bus_error_last()->message);
	}
	ck_assert_int_eq(bus_open(NULL, "memory:"), BUS_EINVAL);
}
END_TEST

static Suite *dispatch_suite(void)
{
	Suite *s = suite_create("dispatch");

	TCase *tc = tcase_create("events");
	tcase_add_test(tc, event_handlers_all_run_in_registration_order);
	tcase_add_test(tc, publish_stops_at_first_failure_and_returns_its_code);
	tcase_add_test(tc, run_all_runs_every_handler_and_reports_the_first_failure);
	tcase_add_test(tc, run_all_with_no_failure_returns_zero);
	tcase_add_test(tc, event_without_handlers_returns_zero_and_logs_a_debug_line);
	tcase_add_test(tc, logger_drops_lines_below_its_level);
	tcase_add_test(tc, bus_log_debug_makes_the_default_logger_write_debug_lines);
	tcase_add_test(tc, null_logger_function_restores_the_stderr_logger);
	tcase_add_test(tc, handler_gets_its_udata);
	suite_add_tcase(s, tc);

	tc = tcase_create("requests");
	tcase_add_test(tc, command_result_is_handed_back_to_the_caller);
	tcase_add_test(tc, query_result_is_handed_back_to_the_caller);
	tcase_add_test(tc, result_is_null_when_the_handler_sets_none);
	tcase_add_test(tc, result_may_be_ignored_with_null_out);
	tcase_add_test(tc, failed_command_hands_back_no_result);
	tcase_add_test(tc, second_command_or_query_handler_is_eexists);
	tcase_add_test(tc, send_or_ask_without_handler_is_enotfound_naming_it);
	tcase_add_test(tc, commands_queries_and_events_are_separate_namespaces);
	suite_add_tcase(s, tc);

	tc = tcase_create("registration");
	tcase_add_test(tc, duplicate_handler_name_on_an_event_is_eexists);
	tcase_add_test(tc, default_handler_names_are_event_hash_n_and_message_name);
	tcase_add_test(tc, given_handler_name_is_used);
	tcase_add_test(tc, invalid_names_are_einval_everywhere);
	tcase_add_test(tc, name_of_255_bytes_is_accepted);
	tcase_add_test(tc, utf8_names_are_accepted);
	tcase_add_test(tc, null_handler_function_is_einval);
	tcase_add_test(tc, null_bus_is_einval);
	tcase_add_test(tc, options_with_wrong_version_are_einval);
	tcase_add_test(tc, run_all_flag_on_a_command_is_einval);
	tcase_add_test(tc, handler_registered_after_dispatch_started_runs_next_time);
	tcase_add_test(tc, many_events_and_handlers_can_be_registered);
	suite_add_tcase(s, tc);

	tc = tcase_create("failures");
	tcase_add_test(tc, handler_returning_positive_value_is_ehandler);
	tcase_add_test(tc, ctx_fail_message_becomes_the_dispatch_error);
	tcase_add_test(tc, handler_failing_without_message_is_named_by_its_code);
	tcase_add_test(tc, error_clear_resets_the_last_error);
	suite_add_tcase(s, tc);

	tc = tcase_create("open");
	tcase_add_test(tc, open_memory_urls_work);
	tcase_add_test(tc, open_null_uses_bus_url_from_the_environment);
	tcase_add_test(tc, open_explicit_url_ignores_the_environment);
	tcase_add_test(tc, open_unknown_scheme_is_enotfound_without_the_password);
	tcase_add_test(tc, open_malformed_urls_are_einval_without_the_password);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(dispatch_suite());
}
