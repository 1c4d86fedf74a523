/*
 * Process isolation (lib/child.c, lib/child_proto.c, lib/zygote.c): the wire
 * format, jobs handed to a pre-forked child (forked by the zygote) and their
 * outcomes, and what happens when the child crashes, exits, overruns its
 * timeout or is cancelled, or its zygote dies. Internals are reached through
 * the library's internal headers.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "child.h"
#include "child_proto.h"
#include "zygote.h"

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */
/* ------------------------------------------------------------------------ */

static int h_ok(bus_ctx *ctx, void *udata)
{
	return 0;
}

static int h_fail(bus_ctx *ctx, void *udata)
{
	return bus_ctx_fail(ctx, "could not process %s", bus_ctx_payload(ctx));
}

static int h_snooze(bus_ctx *ctx, void *udata)
{
	return bus_ctx_snooze(ctx, 30);
}

static int h_cancel(bus_ctx *ctx, void *udata)
{
	return bus_ctx_cancel(ctx, "order %d was withdrawn", 7);
}

static int h_pid(bus_ctx *ctx, void *udata)
{
	return bus_ctx_fail(ctx, "pid %d", (int)getpid());
}

static int h_segv(bus_ctx *ctx, void *udata)
{
	/* Past any handler a sanitizer installs, which would exit instead. */
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
	return 0;
}

static int h_abort(bus_ctx *ctx, void *udata)
{
	abort();
}

static int h_exit(bus_ctx *ctx, void *udata)
{
	exit(3);
}

static int h_loop(bus_ctx *ctx, void *udata)
{
	volatile unsigned long n = 0;
	for (;;)
		n++;
	return 0;
}

/* Fails unless the payload is as long as *udata and is one JSON string of
 * 'x' characters. */
static int h_big(bus_ctx *ctx, void *udata)
{
	size_t want = *(const size_t *)udata;
	size_t len = bus_ctx_payload_len(ctx);
	const char *p = bus_ctx_payload(ctx);
	if (len != want)
		return bus_ctx_fail(ctx, "payload_len %zu, expected %zu", len,
				    want);
	if (p[0] != '"' || p[len - 1] != '"' || p[len] != '\0')
		return bus_ctx_fail(ctx, "payload is not the string sent");
	for (size_t i = 1; i < len - 1; i++)
		if (p[i] != 'x')
			return bus_ctx_fail(ctx, "payload byte %zu is 0x%02x",
					    i, (unsigned char)p[i]);
	return 0;
}

/* Compares what the handler sees of its job with what was sent. */
static int h_fields(bus_ctx *ctx, void *udata)
{
	const bus_job *j = bus_ctx_job(ctx);
	if (j == NULL)
		return bus_ctx_fail(ctx, "no job");
	if (j->id != 42 || strcmp(j->kind, "fields") != 0 ||
	    strcmp(j->handler, "fields") != 0 || strcmp(j->queue, "mail") != 0)
		return bus_ctx_fail(ctx, "id/kind/handler/queue differ");
	if (j->priority != -5 || j->state != BUS_JOB_EXECUTING ||
	    j->attempt != 2 || j->max_attempts != 9 || j->timeout_ms != 0)
		return bus_ctx_fail(ctx, "numbers differ");
	if (j->scheduled_at != 1000001 || j->inserted_at != 1000002 ||
	    j->attempted_at != 1000003 || j->lease_until != 1000004)
		return bus_ctx_fail(ctx, "times differ");
	if (strcmp(j->payload, "{\"a\":1}") != 0 ||
	    strcmp(j->tags, "") != 0 || j->attempted_by != NULL ||
	    strcmp(j->errors, "[{\"attempt\":1,\"at\":5,\"error\":\"x\"}]") !=
		    0 ||
	    j->unique_key != NULL)
		return bus_ctx_fail(ctx, "strings differ (NULL vs \"\"?)");
	if (strcmp(bus_ctx_name(ctx), "fields") != 0 ||
	    bus_ctx_kind(ctx) != BUS_KIND_COMMAND)
		return bus_ctx_fail(ctx, "message name or kind differ");
	if (strcmp(bus_ctx_request_id(ctx),
		   "0190a6e4-8c5f-7d2e-9a31-5b8c2f1e0d47") != 0 ||
	    strstr(bus_ctx_meta(ctx), "\"tenant\":\"acme\"") == NULL)
		return bus_ctx_fail(ctx, "meta differs: %s", bus_ctx_meta(ctx));
	if (bus_ctx_remaining_ms(ctx) != INT64_MAX)
		return bus_ctx_fail(ctx, "a deadline without a timeout");
	return 0;
}

/* Reports the time left before the deadline, in ms. */
static int h_remaining(bus_ctx *ctx, void *udata)
{
	return bus_ctx_fail(ctx, "%lld", (long long)bus_ctx_remaining_ms(ctx));
}

static void on_term(int sig);

/* Whether `sig` is caught by a handler of the library's own (not SIG_IGN,
 * which would survive an exec, not the default, not the parent's on_term),
 * restarting interrupted calls, and the child survives it. */
static int deaf_to(int sig)
{
	struct sigaction sa;
	sigaction(sig, NULL, &sa);
	if (sa.sa_handler == SIG_IGN || sa.sa_handler == SIG_DFL ||
	    sa.sa_handler == on_term || !(sa.sa_flags & SA_RESTART))
		return 0;
	return raise(sig) == 0;
}

/* Reports whether the child starts deaf to the stop signals (the parent's
 * to act on) and with an empty signal mask, whatever the parent had. */
static int h_signals(bus_ctx *ctx, void *udata)
{
	sigset_t mask;
	int term = deaf_to(SIGTERM);
	int intr = deaf_to(SIGINT);
	sigprocmask(SIG_SETMASK, NULL, &mask);
	return bus_ctx_fail(ctx, "term %d int %d blocked %d", term, intr,
			    sigismember(&mask, SIGTERM));
}

/* The number of sockets this process holds; -1 when it cannot tell. (No
 * ck_assert: this also runs in a child, which holds none of Check's
 * descriptors.) */
static int count_sockets(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char path[300], target[300];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(path, target, sizeof target - 1);
		if (len > 0) {
			target[len] = '\0';
			n += strncmp(target, "socket:", 7) == 0;
		}
	}
	closedir(d);
	return n;
}

static int h_sockets(bus_ctx *ctx, void *udata)
{
	return bus_ctx_fail(ctx, "sockets %d", count_sockets());
}

/* Leaves a grandchild holding the child's socket, writes its pid into the
 * file named by udata (a child inherits no descriptor to tell it by), and
 * crashes. */
static int h_orphan_abort(bus_ctx *ctx, void *udata)
{
	pid_t g = fork();
	if (g == 0) {
		sleep(30);
		_exit(0);
	}
	int pid = (int)g;
	int fd = open((const char *)udata, O_WRONLY | O_TRUNC);
	if (fd < 0 || write(fd, &pid, sizeof pid) != sizeof pid)
		_exit(9);
	close(fd);
	abort();
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static size_t big_len;
static char orphan_path[64];

static void add(bus *b, const char *name, bus_handler_fn fn, void *udata)
{
	bus_handler_opts o = BUS_HANDLER_OPTS_INIT;
	o.durable = 1;
	int rc = bus_handle_command(b, name, fn, udata, &o);
	ck_assert_msg(rc == 0, "bus_handle_command(%s) = %d: %s", name, rc,
		      bus_error_last()->message);
}

/* A bus with every handler above, each registered under its own name. */
static bus *open_handlers(void)
{
	bus *b = open_bus();
	add(b, "ok", h_ok, NULL);
	add(b, "fail", h_fail, NULL);
	add(b, "snooze", h_snooze, NULL);
	add(b, "cancel", h_cancel, NULL);
	add(b, "pid", h_pid, NULL);
	add(b, "segv", h_segv, NULL);
	add(b, "abort", h_abort, NULL);
	add(b, "exit", h_exit, NULL);
	add(b, "loop", h_loop, NULL);
	add(b, "big", h_big, &big_len);
	add(b, "fields", h_fields, NULL);
	add(b, "remaining", h_remaining, NULL);
	add(b, "signals", h_signals, NULL);
	add(b, "sockets", h_sockets, NULL);
	add(b, "orphan", h_orphan_abort, orphan_path);
	return b;
}

/* A job for the command (and handler) `name`, as a claim returns it. The
 * strings point at literals: the job is only read. */
static bus_job make_job(const char *name, const char *payload)
{
	bus_job j;
	memset(&j, 0, sizeof j);
	j.id = 1;
	j.kind = (char *)name;
	j.handler = (char *)name;
	j.queue = (char *)"default";
	j.payload = (char *)payload;
	j.meta = (char *)"{}";
	j.tags = (char *)"[]";
	j.state = BUS_JOB_EXECUTING;
	j.attempt = 1;
	j.max_attempts = 3;
	j.errors = (char *)"[]";
	return j;
}

/* The zygote of this test's children (each test runs in a process of its
 * own), started by the first spawn and stopped by assert_no_children. */
static struct bus_zygote *zygote;

static struct bus_zygote *test_zygote(bus *b)
{
	if (zygote == NULL) {
		int rc = bus__zygote_start(&zygote, b);
		ck_assert_msg(rc == 0, "bus__zygote_start = %d: %s", rc,
			      bus_error_last()->message);
	}
	return zygote;
}

static struct bus_child *spawn(bus *b)
{
	struct bus_child *c = NULL;
	int rc = bus__child_spawn(&c, b, test_zygote(b));
	ck_assert_msg(rc == 0, "bus__child_spawn = %d: %s", rc,
		      bus_error_last()->message);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_gt(bus__child_pid(c), 0);
	return c;
}

/* Runs the handler `name` and returns its outcome (error owned). */
static struct bus_outcome run(struct bus_child *c, const char *name,
			      const char *payload, int64_t timeout_ms,
			      atomic_int *cancel)
{
	bus_job j = make_job(name, payload);
	j.timeout_ms = timeout_ms;
	struct bus_outcome o = { 99, NULL, -1 };
	int rc = bus__child_run(c, &j, timeout_ms, cancel, &o);
	ck_assert_msg(rc == 0, "bus__child_run(%s) = %d: %s", name, rc,
		      bus_error_last()->message);
	return o;
}

#define ck_assert_outcome(o, want_rc, part)                                    \
	do {                                                                   \
		const char *part_ = (part);                                    \
		ck_assert_msg((o).rc == (want_rc),                             \
			      "outcome rc %s (%d), expected %s; error \"%s\"", \
			      bus_error_name((o).rc), (o).rc,                  \
			      bus_error_name(want_rc),                         \
			      (o).error ? (o).error : "(null)");               \
		if (part_ == NULL)                                             \
			ck_assert_ptr_null((o).error);                         \
		else                                                           \
			ck_assert_msg((o).error && strstr((o).error, part_),   \
				      "outcome error \"%s\" lacks \"%s\"",     \
				      (o).error ? (o).error : "(null)",        \
				      part_);                                  \
	} while (0)

/* The process is gone: not running, not a zombie of ours. */
static void assert_gone(pid_t pid)
{
	errno = 0;
	ck_assert_msg(kill(pid, 0) == -1 && errno == ESRCH,
		      "process %d is still there (kill: %s)", (int)pid,
		      strerror(errno));
}

/* No child of this process is left unreaped, once the zygote is stopped
 * (which reaps it). */
static void assert_no_children(void)
{
	bus__zygote_stop(zygote);
	zygote = NULL;
	int status;
	errno = 0;
	pid_t r = waitpid(-1, &status, WNOHANG);
	ck_assert_msg(r == -1 && errno == ECHILD,
		      "waitpid(-1) = %d (%s): a child was left behind", (int)r,
		      strerror(errno));
}

/* Waits until `pid` has ended: a zombie, or (`gone_ok`) reaped. */
static void wait_ended(pid_t pid, int gone_ok)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	for (int waited = 0; waited < 10000; waited++) {
		char buf[512] = "";
		FILE *f = fopen(path, "r");
		if (f == NULL && gone_ok)
			return;
		ck_assert_ptr_nonnull(f);
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = '\0';
		const char *end = strrchr(buf, ')');
		if (end != NULL && end[1] == ' ' && end[2] == 'Z')
			return;
		sleep_ms(1);
	}
	ck_abort_msg("process %d did not end", (int)pid);
}

/* Waits until `pid` (a child of the zygote) has ended and is a zombie. */
static void wait_zombie(pid_t pid)
{
	wait_ended(pid, 0);
}

/* ------------------------------------------------------------------------ */
/* The wire format                                                           */
/* ------------------------------------------------------------------------ */

static const char *body_of(const struct bus__proto_buf *f, size_t *len)
{
	uint32_t head;
	memcpy(&head, f->data, sizeof head);
	ck_assert_uint_eq(head, f->len - BUS__PROTO_HEAD);
	*len = head;
	return f->data + BUS__PROTO_HEAD;
}

#define ck_assert_str_or_null_eq(a, b)                                         \
	do {                                                                   \
		if ((b) == NULL)                                               \
			ck_assert_ptr_null(a);                                 \
		else                                                           \
			ck_assert_str_eq(a, b);                                \
	} while (0)

START_TEST(test_proto_job_roundtrip)
{
	bus_job j = make_job("wire", "{\"k\":[1,2]}");
	j.id = -7;
	j.queue = (char *)"";
	j.meta = NULL;
	j.priority = -32768;
	j.state = BUS_JOB_RETRYABLE;
	j.attempt = 4;
	j.max_attempts = 1000;
	j.timeout_ms = 1234;
	j.scheduled_at = 1;
	j.inserted_at = 2;
	j.attempted_at = 3;
	j.lease_until = 4;
	j.finished_at = 5;
	j.attempted_by = (char *)"node-a";
	j.unique_key = (char *)"ab12";
	j.unique_states = 0x5f;
	struct bus__proto_buf f = { 0 };
	ck_assert_int_eq(bus__proto_encode_job(&f, &j, 987654321), 0);
	size_t len;
	const char *body = body_of(&f, &len);
	bus_job d;
	int64_t deadline;
	ck_assert_int_eq(bus__proto_decode_job(&d, &deadline, body, len), 0);
	ck_assert_int_eq(deadline, 987654321);
	ck_assert_int_eq(d.id, -7);
	ck_assert_str_eq(d.kind, "wire");
	ck_assert_str_eq(d.handler, "wire");
	ck_assert_str_eq(d.queue, "");
	ck_assert_ptr_null(d.meta);
	ck_assert_str_eq(d.payload, j.payload);
	ck_assert_str_eq(d.tags, "[]");
	ck_assert_int_eq(d.priority, -32768);
	ck_assert_int_eq(d.state, BUS_JOB_RETRYABLE);
	ck_assert_int_eq(d.attempt, 4);
	ck_assert_int_eq(d.max_attempts, 1000);
	ck_assert_int_eq(d.timeout_ms, 1234);
	ck_assert_int_eq(d.scheduled_at, 1);
	ck_assert_int_eq(d.inserted_at, 2);
	ck_assert_int_eq(d.attempted_at, 3);
	ck_assert_int_eq(d.lease_until, 4);
	ck_assert_int_eq(d.finished_at, 5);
	ck_assert_str_or_null_eq(d.attempted_by, "node-a");
	ck_assert_str_eq(d.errors, "[]");
	ck_assert_str_eq(d.unique_key, "ab12");
	ck_assert_uint_eq(d.unique_states, 0x5f);
	bus_job *heap = malloc(sizeof *heap);
	*heap = d;
	bus_job_free(heap);

	/* Cut short, or with bytes to spare, the frame is refused. */
	ck_assert_int_eq(bus__proto_decode_job(&d, &deadline, body, len - 1),
			 BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "truncated");
	heap = malloc(sizeof *heap);
	*heap = d;
	bus_job_free(heap);
	bus__proto_buf_fini(&f);
}
END_TEST

START_TEST(test_proto_outcome)
{
	struct bus__proto_buf f = { 0 };
	ck_assert_int_eq(bus__proto_encode_outcome(&f, BUS_ESNOOZE, 30, ""),
			 0);
	size_t len;
	const char *body = body_of(&f, &len);
	struct bus_outcome o = { 0, NULL, 0 };
	ck_assert_int_eq(bus__proto_decode_outcome(&o, body, len), 0);
	ck_assert_int_eq(o.rc, BUS_ESNOOZE);
	ck_assert_int_eq(o.snooze_s, 30);
	ck_assert_str_eq(o.error, "");
	free(o.error);

	ck_assert_int_eq(bus__proto_encode_outcome(&f, 0, 0, NULL), 0);
	body = body_of(&f, &len);
	ck_assert_int_eq(bus__proto_decode_outcome(&o, body, len), 0);
	ck_assert_ptr_null(o.error);

	/* An outcome says 0 or a negative code. */
	ck_assert_int_eq(bus__proto_encode_outcome(&f, 3, 0, "x"), 0);
	body = body_of(&f, &len);
	ck_assert_int_eq(bus__proto_decode_outcome(&o, body, len), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "positive");
	ck_assert_ptr_null(o.error);
	bus__proto_buf_fini(&f);
}
END_TEST

/* A long error is cut to the limit, never inside a UTF-8 character. */
START_TEST(test_proto_error_cut)
{
	/* "a" and then "é" (2 bytes) up to past the limit, so that the limit
	 * falls between the two bytes of one "é". */
	size_t n = 1 + 2 * (BUS__PROTO_ERROR_MAX / 2 + 500);
	char *e = malloc(n + 1);
	ck_assert_ptr_nonnull(e);
	e[0] = 'a';
	for (size_t i = 1; i < n; i += 2) {
		e[i] = (char)0xc3;
		e[i + 1] = (char)0xa9;
	}
	e[n] = '\0';
	struct bus__proto_buf f = { 0 };
	ck_assert_int_eq(bus__proto_encode_outcome(&f, BUS_EHANDLER, 0, e), 0);
	size_t len;
	const char *body = body_of(&f, &len);
	struct bus_outcome o = { 0, NULL, 0 };
	ck_assert_int_eq(bus__proto_decode_outcome(&o, body, len), 0);
	size_t got = strlen(o.error);
	ck_assert_uint_le(got, BUS__PROTO_ERROR_MAX);
	ck_assert_uint_ge(got, BUS__PROTO_ERROR_MAX - 1);
	ck_assert_int_eq(got % 2, 1); /* "a" and whole characters */
	ck_assert_int_eq(memcmp(o.error, e, got), 0);
	free(o.error);
	free(e);
	bus__proto_buf_fini(&f);
}
END_TEST

/* The parent's reader takes a frame in pieces and tells the end apart. */
START_TEST(test_proto_reader)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct bus__proto_buf f = { 0 };
	ck_assert_int_eq(bus__proto_encode_outcome(&f, BUS_EHANDLER, 0,
						   "slow"),
			 0);
	struct bus__proto_reader r;
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(bus__proto_reader_feed(&r, sv[0], 1024),
			 BUS__PROTO_MORE);
	ck_assert_int_eq(bus__proto_write_all(sv[1], f.data, 3), 0);
	ck_assert_int_eq(bus__proto_reader_feed(&r, sv[0], 1024),
			 BUS__PROTO_MORE);
	ck_assert_int_eq(bus__proto_write_all(sv[1], f.data + 3, 5), 0);
	ck_assert_int_eq(bus__proto_reader_feed(&r, sv[0], 1024),
			 BUS__PROTO_MORE);
	ck_assert_int_eq(bus__proto_write_all(sv[1], f.data + 8, f.len - 8),
			 0);
	ck_assert_int_eq(bus__proto_reader_feed(&r, sv[0], 1024),
			 BUS__PROTO_DONE);
	ck_assert_uint_eq(r.len, f.len - BUS__PROTO_HEAD);
	ck_assert_int_eq(memcmp(r.body, f.data + BUS__PROTO_HEAD, r.len), 0);
	bus__proto_reader_fini(&r);

	/* Over the limit: refused before the body is allocated. */
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(bus__proto_write_all(sv[1], f.data, f.len), 0);
	errno = 0;
	ck_assert_int_eq(bus__proto_reader_feed(&r, sv[0], 4),
			 BUS__PROTO_FAIL);
	ck_assert_int_eq(errno, EMSGSIZE);
	bus__proto_reader_fini(&r);

	memset(&r, 0, sizeof r);
	close(sv[1]);
	char drain[64];
	while (recv(sv[0], drain, sizeof drain, MSG_DONTWAIT) > 0)
		;
	ck_assert_int_eq(bus__proto_reader_feed(&r, sv[0], 1024),
			 BUS__PROTO_EOF);
	close(sv[0]);
	bus__proto_buf_fini(&f);
}
END_TEST

/* The child's blocking reader: whole frames, a clean end, a cut frame. */
START_TEST(test_proto_read_frame)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct bus__proto_buf f = { 0 };
	ck_assert_int_eq(bus__proto_encode_outcome(&f, 0, 0, "abc"), 0);
	ck_assert_int_eq(bus__proto_write_all(sv[1], f.data, f.len), 0);
	ck_assert_int_eq(bus__proto_write_all(sv[1], f.data, f.len - 1), 0);
	char *body;
	size_t len;
	ck_assert_int_eq(bus__proto_read_frame(sv[0], 1024, &body, &len), 1);
	ck_assert_uint_eq(len, f.len - BUS__PROTO_HEAD);
	free(body);
	close(sv[1]);
	errno = 0;
	ck_assert_int_eq(bus__proto_read_frame(sv[0], 1024, &body, &len), -1);
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_ptr_null(body);
	close(sv[0]);

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	ck_assert_int_eq(bus__proto_read_frame(sv[0], 1024, &body, &len), 0);
	close(sv[0]);
	bus__proto_buf_fini(&f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Outcomes of handlers that return                                          */
/* ------------------------------------------------------------------------ */

START_TEST(test_success)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "ok", "{}", 0, NULL);
	ck_assert_outcome(o, 0, NULL);
	ck_assert_int_eq(o.snooze_s, 0);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

START_TEST(test_failure_message)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "fail", "[1,2]", 0, NULL);
	ck_assert_outcome(o, BUS_EHANDLER, "could not process [1,2]");
	free(o.error);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

START_TEST(test_snooze)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "snooze", "{}", 0, NULL);
	ck_assert_int_eq(o.rc, BUS_ESNOOZE);
	ck_assert_int_eq(o.snooze_s, 30);
	free(o.error);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

START_TEST(test_handler_cancels)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "cancel", "{}", 0, NULL);
	ck_assert_outcome(o, BUS_ECANCEL, "order 7 was withdrawn");
	free(o.error);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

START_TEST(test_unknown_handler)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "nope", "{}", 0, NULL);
	ck_assert_outcome(o, BUS_ENOTFOUND,
			  "no durable handler named 'nope' in this worker");
	free(o.error);
	/* The child is still good. */
	pid_t pid = bus__child_pid(c);
	o = run(c, "ok", "{}", 0, NULL);
	ck_assert_outcome(o, 0, NULL);
	ck_assert_int_eq(bus__child_pid(c), pid);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

START_TEST(test_runs_in_the_child)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	pid_t pid = bus__child_pid(c);
	ck_assert_int_ne(pid, getpid());
	for (int i = 0; i < 3; i++) {
		struct bus_outcome o = run(c, "pid", "{}", 0, NULL);
		char want[32];
		snprintf(want, sizeof want, "pid %d", (int)pid);
		ck_assert_outcome(o, BUS_EHANDLER, want);
		free(o.error);
	}
	bus__child_free(c);
	bus_close(b);
}
END_TEST

START_TEST(test_job_fields)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	bus_job j = make_job("fields", "{\"a\":1}");
	j.id = 42;
	j.queue = (char *)"mail";
	j.priority = -5;
	j.meta = (char *)"{\"request_id\":\"0190a6e4-8c5f-7d2e-9a31-"
			 "5b8c2f1e0d47\",\"tenant\":\"acme\"}";
	j.tags = (char *)"";
	j.attempt = 2;
	j.max_attempts = 9;
	j.scheduled_at = 1000001;
	j.inserted_at = 1000002;
	j.attempted_at = 1000003;
	j.lease_until = 1000004;
	j.attempted_by = NULL;
	j.errors = (char *)"[{\"attempt\":1,\"at\":5,\"error\":\"x\"}]";
	struct bus_outcome o = { 99, NULL, -1 };
	ck_assert_int_eq(bus__child_run(c, &j, 0, NULL, &o), 0);
	ck_assert_outcome(o, 0, NULL);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

START_TEST(test_deadline_reaches_handler)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "remaining", "{}", 5000, NULL);
	ck_assert_int_eq(o.rc, BUS_EHANDLER);
	long long left = atoll(o.error);
	ck_assert_msg(left > 4000 && left <= 5000,
		      "%lld ms left of a 5000 ms timeout", left);
	free(o.error);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

START_TEST(test_big_payload)
{
	/* The handler reads the child's copy of big_len, taken at fork. */
	big_len = (size_t)4 << 20;
	char *p = malloc(big_len + 1);
	ck_assert_ptr_nonnull(p);
	memset(p, 'x', big_len);
	p[0] = p[big_len - 1] = '"';
	p[big_len] = '\0';
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	for (int i = 0; i < 2; i++) {
		struct bus_outcome o = run(c, "big", p, 0, NULL);
		ck_assert_outcome(o, 0, NULL);
	}
	free(p);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Children that die, overrun or are cancelled                               */
/* ------------------------------------------------------------------------ */

START_TEST(test_segv_then_respawn)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	pid_t first = bus__child_pid(c);
	struct bus_outcome o = run(c, "segv", "{}", 0, NULL);
	ck_assert_outcome(o, BUS_EHANDLER,
			  "killed by signal SIGSEGV (Segmentation fault)");
	free(o.error);
	assert_gone(first);
	ck_assert_int_eq(bus__child_pid(c), -1);

	o = run(c, "ok", "{}", 0, NULL);
	ck_assert_outcome(o, 0, NULL);
	pid_t second = bus__child_pid(c);
	ck_assert_int_gt(second, 0);
	ck_assert_int_ne(second, first);
	bus__child_free(c);
	assert_gone(second);
	bus_close(b);
	assert_no_children();
}
END_TEST

START_TEST(test_abort)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "abort", "{}", 0, NULL);
	ck_assert_outcome(o, BUS_EHANDLER, "killed by signal SIGABRT");
	free(o.error);
	o = run(c, "ok", "{}", 0, NULL);
	ck_assert_outcome(o, 0, NULL);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

START_TEST(test_exit_status)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "exit", "{}", 0, NULL);
	ck_assert_outcome(o, BUS_EHANDLER, "exited with status 3");
	free(o.error);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

START_TEST(test_timeout_kills)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	pid_t pid = bus__child_pid(c);
	int64_t t0 = mono_ns();
	struct bus_outcome o = run(c, "loop", "{}", 200, NULL);
	int64_t ms = (mono_ns() - t0) / 1000000;
	ck_assert_outcome(o, BUS_ETIMEOUT, "timeout after 0.2s");
	ck_assert_str_eq(o.error, "timeout after 0.2s");
	free(o.error);
	ck_assert_msg(ms >= 200 && ms < 2000, "took %lld ms", (long long)ms);
	assert_gone(pid);
	ck_assert_int_eq(bus__child_pid(c), -1);

	o = run(c, "ok", "{}", 200, NULL);
	ck_assert_outcome(o, 0, NULL);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

START_TEST(test_timeout_text)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "loop", "{}", 1050, NULL);
	ck_assert_outcome(o, BUS_ETIMEOUT, "timeout after");
	ck_assert_str_eq(o.error, "timeout after 1.05s");
	free(o.error);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

static void *cancel_later(void *arg)
{
	sleep_ms(100);
	atomic_store((atomic_int *)arg, 1);
	return NULL;
}

START_TEST(test_cancel_flag)
{
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	pid_t pid = bus__child_pid(c);
	atomic_int cancel;
	atomic_init(&cancel, 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_later, &cancel), 0);
	int64_t t0 = mono_ns();
	struct bus_outcome o = run(c, "loop", "{}", 0, &cancel);
	int64_t ms = (mono_ns() - t0) / 1000000;
	pthread_join(t, NULL);
	ck_assert_outcome(o, BUS_ECANCEL, "cancelled while running");
	free(o.error);
	ck_assert_msg(ms >= 100 && ms < 2000, "took %lld ms", (long long)ms);
	assert_gone(pid);

	atomic_store(&cancel, 0);
	o = run(c, "ok", "{}", 0, &cancel);
	ck_assert_outcome(o, 0, NULL);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

/* A grandchild keeps the socket open, so only the parent's watch on the
 * child itself can tell it died. */
START_TEST(test_death_behind_grandchild)
{
	/* Orphans come to this process, so that the test can reap them. */
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	snprintf(orphan_path, sizeof orphan_path, "/tmp/bus-orphan.XXXXXX");
	int fd = mkstemp(orphan_path);
	ck_assert_int_ge(fd, 0);
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "orphan", "{}", 10000, NULL);
	ck_assert_outcome(o, BUS_EHANDLER, "SIGABRT");
	free(o.error);
	int g;
	ck_assert_int_eq(read(fd, &g, sizeof g), sizeof g);
	close(fd);
	unlink(orphan_path);
	kill(g, SIGKILL);
	ck_assert_int_eq(waitpid(g, NULL, 0), g);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The child's process                                                       */
/* ------------------------------------------------------------------------ */

static void on_term(int sig)
{
	(void)sig;
}

START_TEST(test_signals_ignored)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, NULL);

	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "signals", "{}", 0, NULL);
	ck_assert_outcome(o, BUS_EHANDLER, "term 1 int 1 blocked 0");
	free(o.error);
	bus__child_free(c);
	bus_close(b);
}
END_TEST

/* A child holds only its own socket, not those of the children before it,
 * which would keep them from seeing their parent close them, nor any other
 * socket of its parent's. */
START_TEST(test_sockets_not_inherited)
{
	bus *b = open_handlers();
	struct bus_child *c1 = spawn(b);
	struct bus_child *c2 = spawn(b);
	struct bus_child *c3 = spawn(b);
	struct bus_child *all[] = { c1, c2, c3 };
	const char *want = "sockets 1";
	for (int i = 0; i < 3; i++) {
		struct bus_outcome o = run(all[i], "sockets", "{}", 0, NULL);
		ck_assert_outcome(o, BUS_EHANDLER, want);
		free(o.error);
	}
	/* The first child sees its end of stream and exits at once. */
	pid_t p1 = bus__child_pid(c1);
	bus__child_free(c1);
	assert_gone(p1);
	bus__child_free(c2);
	bus__child_free(c3);
	bus_close(b);
	assert_no_children();
}
END_TEST

START_TEST(test_idle_death_is_replaced)
{
	bus *b = open_handlers();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_DEBUG, capture_log, &cap);
	struct bus_child *c = spawn(b);
	pid_t first = bus__child_pid(c);
	kill(first, SIGKILL);
	/* Until it is dead, leaving it for the library to reap. */
	wait_zombie(first);
	struct bus_outcome o = run(c, "ok", "{}", 0, NULL);
	ck_assert_outcome(o, 0, NULL);
	ck_assert_int_ne(bus__child_pid(c), first);
	ck_assert_int_ge(capture_find(&cap, BUS_LOG_WARN, "while idle",
				      "SIGKILL"),
			 0);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

/* The zygote holds no descriptor of its parent's but its control socket
 * (and /dev/null in place of the others): not the children's sockets, not
 * the parent's files or connections. */
START_TEST(test_zygote_holds_one_socket)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	struct bus_outcome o = run(c, "ok", "{}", 0, NULL);
	ck_assert_outcome(o, 0, NULL);
	int zpid = bus__zygote_pid(zygote);
	ck_assert_int_gt(zpid, 0);
	char dir[64];
	snprintf(dir, sizeof dir, "/proc/%d/fd", zpid);
	/* The zygote closes its copy of a new child's socket just after it
	 * has sent it, so the parent (and this test) may run before that
	 * close: look again for up to 2 s before calling it a leak. */
	int sockets = 0, other = 0;
	for (int tries = 0; tries < 400; tries++) {
		DIR *d = opendir(dir);
		ck_assert_ptr_nonnull(d);
		sockets = other = 0;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.' || atoi(e->d_name) <= 2)
				continue;
			char path[400], target[300];
			snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
			ssize_t len = readlink(path, target, sizeof target - 1);
			if (len <= 0)
				continue; /* closed while we looked */
			target[len] = '\0';
			if (strncmp(target, "socket:", 7) == 0)
				sockets++;
			else if (strcmp(target, "/dev/null") != 0)
				other++;
		}
		closedir(d);
		if (sockets == 1 && other == 0)
			break;
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(sockets, 1);
	ck_assert_int_eq(other, 0);
	bus__child_free(c);
	bus_close(b);
	close(p[0]);
	close(p[1]);
	assert_no_children();
}
END_TEST

/* A zygote that dies (an operator's kill) takes its idle children with it;
 * the next run starts another zygote and another child, and says the old
 * child's status was lost. */
START_TEST(test_zygote_death_is_replaced)
{
	bus *b = open_handlers();
	struct log_capture cap = { 0 };
	bus_set_logger(b, BUS_LOG_DEBUG, capture_log, &cap);
	struct bus_child *c = spawn(b);
	pid_t first = bus__child_pid(c);
	int zpid = bus__zygote_pid(zygote);
	ck_assert_int_eq(kill(zpid, SIGKILL), 0);
	int status;
	/* Reaped here: the library finds it gone at its next request. */
	ck_assert_int_eq(waitpid(zpid, &status, 0), zpid);
	/* The old child died with its zygote (PR_SET_PDEATHSIG). */
	wait_ended(first, 1);
	struct bus_outcome o = run(c, "ok", "{}", 0, NULL);
	ck_assert_outcome(o, 0, NULL);
	ck_assert_int_ne(bus__child_pid(c), first);
	ck_assert_int_gt(bus__zygote_pid(zygote), 0);
	ck_assert_int_ne(bus__zygote_pid(zygote), zpid);
	ck_assert_int_ge(capture_find(&cap, BUS_LOG_WARN, "while idle",
				      "lost with the process-isolation fork "
				      "server"),
			 0);
	bus__child_free(c);
	bus_close(b);
	assert_no_children();
}
END_TEST

static void *exit_soon(void *arg)
{
	sleep_ms(50);
	_exit(0);
}

/* The children die with their parent, even in the middle of a job (a child
 * between jobs would see its socket close as well). */
START_TEST(test_die_with_parent)
{
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		bus *b = open_handlers();
		struct bus_zygote *z = NULL;
		struct bus_child *c = NULL;
		if (bus__zygote_start(&z, b) != 0 ||
		    bus__child_spawn(&c, b, z) != 0)
			_exit(1);
		int pids[2] = { bus__child_pid(c), bus__zygote_pid(z) };
		pthread_t t;
		if (write(fds[1], pids, sizeof pids) != sizeof pids ||
		    pthread_create(&t, NULL, exit_soon, NULL) != 0)
			_exit(1);
		bus_job j = make_job("loop", "{}");
		struct bus_outcome o;
		bus__child_run(c, &j, 0, NULL, &o);
		_exit(1);
	}
	int pids[2] = { 0, 0 };
	ck_assert_int_eq(read(fds[0], pids, sizeof pids), sizeof pids);
	int status;
	ck_assert_int_eq(waitpid(mid, &status, 0), mid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The zygote sees its control socket close and ends; the child dies
	 * with it. Both come to this process (the subreaper) once their
	 * parents are gone. */
	int child_status = -1, zygote_status = -1;
	for (int waited = 0; waited < 10000; waited++) {
		pid_t r = waitpid(-1, &status, WNOHANG);
		if (r == pids[0])
			child_status = status;
		else if (r == pids[1])
			zygote_status = status;
		if (child_status != -1 && zygote_status != -1)
			break;
		if (r <= 0)
			sleep_ms(1);
	}
	ck_assert_msg(zygote_status != -1, "the zygote did not end");
	ck_assert_msg(WIFSIGNALED(child_status) &&
			      WTERMSIG(child_status) == SIGKILL,
		      "the child ended with wait status 0x%x", child_status);
	assert_no_children();
}
END_TEST

START_TEST(test_free_null_and_bad_args)
{
	bus__child_free(NULL);
	struct bus_outcome o = { 5, NULL, 5 };
	bus_job j = make_job("ok", "{}");
	ck_assert_int_eq(bus__child_run(NULL, &j, 0, NULL, &o), BUS_EINVAL);
	ck_assert_int_eq(o.rc, 0);
	ck_assert_ptr_null(o.error);
	bus *b = open_handlers();
	struct bus_child *c = spawn(b);
	ck_assert_int_eq(bus__child_run(c, &j, -1, NULL, &o), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "timeout_ms");
	ck_assert_int_eq(bus__child_spawn(NULL, b, zygote), BUS_EINVAL);
	struct bus_child *none = NULL;
	ck_assert_int_eq(bus__child_spawn(&none, b, NULL), BUS_EINVAL);
	ck_assert_last_error(BUS_EINVAL, "zygote");
	bus__child_free(c);
	bus_close(b);
}
END_TEST

static Suite *child_suite(void)
{
	Suite *s = suite_create("child");
	TCase *tc = tcase_create("wire");
	tcase_add_test(tc, test_proto_job_roundtrip);
	tcase_add_test(tc, test_proto_outcome);
	tcase_add_test(tc, test_proto_error_cut);
	tcase_add_test(tc, test_proto_reader);
	tcase_add_test(tc, test_proto_read_frame);
	suite_add_tcase(s, tc);

	tc = tcase_create("outcomes");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_success);
	tcase_add_test(tc, test_failure_message);
	tcase_add_test(tc, test_snooze);
	tcase_add_test(tc, test_handler_cancels);
	tcase_add_test(tc, test_unknown_handler);
	tcase_add_test(tc, test_runs_in_the_child);
	tcase_add_test(tc, test_job_fields);
	tcase_add_test(tc, test_deadline_reaches_handler);
	tcase_add_test(tc, test_big_payload);
	suite_add_tcase(s, tc);

	tc = tcase_create("deaths");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_segv_then_respawn);
	tcase_add_test(tc, test_abort);
	tcase_add_test(tc, test_exit_status);
	tcase_add_test(tc, test_timeout_kills);
	tcase_add_test(tc, test_timeout_text);
	tcase_add_test(tc, test_cancel_flag);
	tcase_add_test(tc, test_death_behind_grandchild);
	suite_add_tcase(s, tc);

	tc = tcase_create("process");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_signals_ignored);
	tcase_add_test(tc, test_sockets_not_inherited);
	tcase_add_test(tc, test_zygote_holds_one_socket);
	tcase_add_test(tc, test_zygote_death_is_replaced);
	tcase_add_test(tc, test_idle_death_is_replaced);
	tcase_add_test(tc, test_die_with_parent);
	tcase_add_test(tc, test_free_null_and_bad_args);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(child_suite());
}
