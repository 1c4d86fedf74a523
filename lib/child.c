/*
 * Process isolation: a pre-forked child runs durable handlers, one job at a
 * time, for its parent (see child.h; the wire format is in child_proto.h).
 *
 * The children are forked by the worker's zygote (zygote.h), a process of
 * one thread forked at bus_worker_start before the worker's threads, so a
 * child's memory is a copy of a process in which no other thread held a
 * lock (the allocator's: ASan's does not survive a threaded fork). The
 * child reads the handler registry as the zygote copied it and never
 * touches a store connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "child_proto.h"
#include "clock.h"
#include "core.h"
#include "jobrow.h"
#include "ctx.h"
#include "error.h"
#include "zygote.h"

#define TICK_MS 10    /* how often a waiting parent looks at cancel */
#define LINGER_MS 100 /* how long a child told to stop may take */

struct bus_child {
	bus *bus;
	struct bus_zygote *zygote; /* not owned: the worker's */
	/* k.pid -1: none, the next run starts one; k.fd: the parent's end of
	 * the socket pair, -1 with no child; k.pidfd owned, -1 with none. */
	struct bus_zygote_child k;
};

/*
 * fork() copies every descriptor into the new process: the zygote's
 * control socket, the application's files and, had the zygote been forked
 * after them, the store's connections. SOCK_CLOEXEC cannot help: neither
 * the zygote nor the children exec. So the zygote and each child let go of
 * every descriptor but their standard streams and their own socket,
 * /dev/null taking the numbers (child_descriptors). When the zygote forks
 * a child it holds only its control socket and the new socket pair, so no
 * child holds another child's socket (which would hide that child's end
 * of stream from it) or the control socket (which would keep the zygote
 * from seeing its parent's death).
 */

/* ------------------------------------------------------------------------ */
/* The child                                                                 */
/* ------------------------------------------------------------------------ */

/* Runs one job and encodes its outcome into `reply`. */
static int run_job(bus *b, const bus_job *job, int64_t deadline_ns,
		   struct bus__proto_buf *reply)
{
	const struct bus_handler *h =
		bus__registry_find_runner(&b->registry, job->handler);
	if (h == NULL) {
		char why[320];
		snprintf(why, sizeof why,
			 "no durable handler named '%s' in this worker (a "
			 "child process knows the handlers registered before "
			 "bus_worker_start)",
			 job->handler ? job->handler : "(null)");
		return bus__proto_encode_outcome(reply, BUS_ENOTFOUND, 0, why);
	}

	/* The message reads the payload as text: a job without one carries
	 * JSON null, as a dispatch without one does. */
	bus_job view = *job;
	if (view.payload == NULL)
		view.payload = "null";
	struct bus_message msg;
	int rc = bus__message_from_job(&msg, b, &view, h->kind, deadline_ns);
	if (rc != 0) {
		bus__message_fini(&msg);
		return bus__proto_encode_outcome(reply, rc, 0,
						 bus_error_last()->message);
	}
	bus_ctx ctx = { .msg = &msg, .handler = h, .job = job };
	rc = bus__invoke_handler(&ctx);
	int erc = bus__proto_encode_outcome(reply, rc, ctx.snooze_s,
					    rc != 0 ? ctx.error : NULL);
	free(ctx.result);
	free(ctx.error);
	bus__message_fini(&msg);
	return erc;
}

/* Answers one job frame. Returns 0, or -1 when the parent is gone. */
static int serve_frame(bus *b, int fd, const char *body, size_t len)
{
	bus_job job;
	int64_t deadline_ns;
	struct bus__proto_buf reply = { 0 };
	int rc = bus__proto_decode_job(&job, &deadline_ns, body, len);
	if (rc == 0)
		rc = run_job(b, &job, deadline_ns, &reply);
	else
		rc = bus__proto_encode_outcome(&reply, rc, 0,
					       bus_error_last()->message);
	bus__job_clear(&job);
	if (rc != 0) {
		/* Out of memory: the job's memory is back, try a short
		 * answer. */
		bus__proto_buf_fini(&reply);
		if (bus__proto_encode_outcome(&reply, BUS_ENOMEM, 0,
					      "out of memory in the child "
					      "process") != 0)
			_exit(EXIT_FAILURE);
	}
	rc = bus__proto_write_all(fd, reply.data, reply.len);
	bus__proto_buf_fini(&reply);
	return rc;
}

/* Closes every descriptor from `first` up. */
static void close_from(int first)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)first, ~0u, 0u) == 0)
		return;
#endif
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 1 << 20)
		max = 1 << 20;
	for (int fd = first; fd < max; fd++)
		close(fd);
}

/* Puts /dev/null (`null`) in place of every descriptor listed in
 * /proc/self/fd but 0-2, `sock` and `null`; -1 when the list cannot be
 * read. Read with getdents64, which allocates nothing. */
static int null_inherited(int sock, int null)
{
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -1;
	char buf[4096] __attribute__((aligned(8)));
	long n;
	while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n;) {
			/* struct linux_dirent64: ino, off, reclen, type,
			 * name. */
			unsigned short reclen;
			memcpy(&reclen, buf + off + 16, sizeof reclen);
			const char *name = buf + off + 19;
			off += reclen;
			if (name[0] < '0' || name[0] > '9')
				continue;
			int fd = atoi(name);
			if (fd > 2 && fd != sock && fd != null && fd != dir)
				dup2(null, fd);
		}
	}
	close(dir);
	return n < 0 ? -1 : 0;
}

/* Leaves the child with its standard streams and its socket, and nothing
 * else of the parent's: no database connection (a handler writing to it
 * would corrupt the parent's session), no listening socket, no file. The
 * numbers stay taken, by /dev/null: the parent's code in the child (an
 * application's log file, syslog, a library) still holds them, and a
 * descriptor the child opens later (its own database connection) must not
 * take one, or those writes would go into it. */
static void child_descriptors(int sock)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0 && null_inherited(sock, null) == 0) {
		close(null);
		return;
	}
	/* No /proc or no /dev/null: closed, as the next best. */
	if (null >= 0)
		close(null);
	for (int fd = 3; fd < sock; fd++)
		close(fd);
	close_from(sock + 1);
}

/* Stands in for the stop signals' default action in a child. */
static void ignore_stop_signal(int sig)
{
	(void)sig;
}

/* Leaves the child as a fresh process would be, as far as the handlers'
 * code can tell: nothing blocked, no output of the parent's waiting in the
 * stdio buffers (it would come out twice); but deaf to the stop signals. */
static void child_reset(const char *name)
{
	/* Shutdown is the parent's: systemd's SIGTERM and a terminal's
	 * SIGINT reach the whole process group, and a child that died of
	 * them would lose its running job instead of finishing it in the
	 * parent's grace. The parent stops a child by closing its socket,
	 * or with SIGKILL. A handler that does nothing, rather than SIG_IGN:
	 * an ignored signal stays ignored across exec, so a program a job
	 * runs (sh -c, a converter) could not be stopped with SIGTERM, while
	 * a handled one is reset to its default by exec. SA_RESTART, so that
	 * the signal interrupts no read or write of the handler's. */
	struct sigaction deaf;
	memset(&deaf, 0, sizeof deaf);
	deaf.sa_handler = ignore_stop_signal;
	deaf.sa_flags = SA_RESTART;
	sigemptyset(&deaf.sa_mask);
	sigaction(SIGTERM, &deaf, NULL);
	sigaction(SIGINT, &deaf, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	__fpurge(stdout);
	__fpurge(stderr);
	prctl(PR_SET_NAME, name, 0, 0, 0);
}

void bus__child_detach(int keep, const char *name)
{
	child_reset(name);
	child_descriptors(keep);
}

/* The child's whole life: jobs in, outcomes out, until the parent closes
 * the socket. It never returns into the parent's code. */
_Noreturn void bus__child_serve(bus *b, int fd, pid_t parent)
{
	bus__child_detach(fd, "bus-child");
	bus__store_after_fork(&b->store);
	/* Die with the zygote (`parent`), which dies with the worker, so that
	 * no child outlives a crashed worker. Linux sends the signal when the
	 * *thread* that forked exits: the zygote's one thread. A zygote that
	 * died before this call is caught by getppid. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
	    getppid() != parent)
		_exit(EXIT_FAILURE);
	for (;;) {
		char *body;
		size_t len;
		int n = bus__proto_read_frame(fd, BUS__PROTO_JOB_MAX, &body,
					      &len);
		if (n == 0)
			break;
		if (n < 0)
			_exit(EXIT_FAILURE);
		int rc = serve_frame(b, fd, body, len);
		free(body);
		if (rc != 0)
			break;
	}
	/* What handlers printed comes out now rather than never. */
	fflush(stdout);
	_exit(EXIT_SUCCESS);
}

/* ------------------------------------------------------------------------ */
/* The parent                                                                */
/* ------------------------------------------------------------------------ */

/* Has the zygote fork a child for `c`, which has none. */
static int spawn(struct bus_child *c)
{
	return bus__zygote_fork(c->zygote, &c->k);
}

/* Closes the parent's end of the socket: the child sees end of stream. */
static void close_socket(struct bus_child *c)
{
	if (c->k.fd < 0)
		return;
	close(c->k.fd);
	c->k.fd = -1;
}

/* The child was reaped: its pid may now belong to anyone. */
static void forget(struct bus_child *c)
{
	if (c->k.pidfd >= 0)
		close(c->k.pidfd);
	c->k.pidfd = -1;
	c->k.pid = -1;
}

static void sleep_1ms(void)
{
	struct timespec ts = { 0, 1000000 };
	nanosleep(&ts, NULL);
}

/*
 * Waits for the child to end, giving it `grace_ms` (0: none) before killing
 * it, and reaps it (through the zygote). *status is its wait status, or -1
 * when it was lost (with a zygote that died, or one that cannot be asked).
 * Returns 1 when it had to be killed.
 */
static int reap(struct bus_child *c, int grace_ms, int *status)
{
	int killed = 0;
	if (c->k.pid < 0)
		return 0;
	int64_t give_up = bus__mono_ns() + (int64_t)grace_ms * 1000000;
	if (grace_ms == 0) {
		bus__zygote_kill(c->zygote, &c->k);
		killed = 1;
	}
	for (;;) {
		int r = bus__zygote_wait(c->zygote, &c->k, status);
		if (r == 1)
			break;
		if (r < 0) {
			/* The zygote is gone for good: so is the child
			 * (PR_SET_PDEATHSIG). */
			*status = -1;
			break;
		}
		if (!killed && bus__mono_ns() >= give_up) {
			bus__zygote_kill(c->zygote, &c->k);
			killed = 1;
		}
		sleep_1ms();
	}
	forget(c);
	return killed;
}

/* Kills the child, reaps it, and forgets it: the next run starts anew. */
static void discard(struct bus_child *c)
{
	int status;
	close_socket(c);
	reap(c, 0, &status);
}

/* Why a child ended, from its wait status; owned by the caller. */
static char *describe_end(int status)
{
	char *text = NULL;
	int n;
	if (status == -1) {
		n = asprintf(&text, "ended, but its exit status was lost "
				    "with the process-isolation fork server, "
				    "which died");
	} else if (WIFEXITED(status)) {
		n = asprintf(&text, "exited with status %d",
			     WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		const char *abbrev = sigabbrev_np(sig);
		const char *descr = sigdescr_np(sig);
		if (abbrev != NULL)
			n = asprintf(&text, "killed by signal SIG%s (%s)",
				     abbrev, descr ? descr : "no description");
		else
			n = asprintf(&text, "killed by signal %d", sig);
	} else {
		n = asprintf(&text, "ended with wait status 0x%x", status);
	}
	return n < 0 ? NULL : text;
}

/* "2", "0.5", "1.25": seconds with up to three decimals. */
static void format_seconds(char *buf, size_t size, int64_t ms)
{
	int n = snprintf(buf, size, "%lld.%03lld", (long long)(ms / 1000),
			 (long long)(ms % 1000));
	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
}

static void set_outcome(struct bus_outcome *out, int rc, char *error)
{
	out->rc = rc;
	out->error = error;
	out->snooze_s = 0;
}

/* Before a hand-off: a child that died while idle (killed by an operator,
 * the OOM killer, or its parent thread's exit) or spoke out of turn is
 * replaced, so that a job is never blamed for it. */
static int ensure_child(struct bus_child *c)
{
	if (c->k.pid < 0)
		return spawn(c);
	pid_t pid = c->k.pid;
	int status = 0;
	struct pollfd p = { c->k.fd, POLLIN, 0 };
	int r = bus__zygote_wait(c->zygote, &c->k, &status);
	if (r < 0)
		return r;
	if (r == 1)
		forget(c); /* reaped */
	else if (poll(&p, 1, 0) <= 0)
		return 0; /* idle and well */
	/* Its socket closed (it is ending: let it finish) or it wrote. */
	close_socket(c);
	char *why = reap(c, LINGER_MS, &status) ? NULL : describe_end(status);
	bus__log(&c->bus->log, BUS_LOG_WARN,
		 "child process %d %s while idle; starting another", (int)pid,
		 why ? why : "stopped answering and was killed");
	free(why);
	return spawn(c);
}

/* How an exchange with the child ended. */
enum ending {
	END_OUTCOME, /* out holds the child's answer */
	END_DIED,    /* the child ended; `status` says how */
	END_LOST,    /* the child ended before it had the whole job */
	END_TIMEOUT,
	END_CANCEL,
	END_BROKEN, /* the child sent nonsense; `why` says what */
};

struct exchange {
	struct bus_child *c;
	const struct bus__proto_buf *frame;
	size_t sent;
	struct bus__proto_reader reader;
	int64_t deadline_ns;
	atomic_int *cancel;
	struct bus_outcome *out;
	int status; /* with END_DIED/END_LOST, once reaped */
	char *why;  /* with END_BROKEN; owned */
};

/* Sends what the socket takes now. Returns -1 when the child is gone. */
static int send_some(struct exchange *x)
{
	while (x->sent < x->frame->len) {
		ssize_t n = send(x->c->k.fd, x->frame->data + x->sent,
				 x->frame->len - x->sent,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n >= 0) {
			x->sent += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
	return 0;
}

/* Reads what the child sent. Returns an ending, or -1 to keep waiting. */
static int receive(struct exchange *x)
{
	int r = bus__proto_reader_feed(&x->reader, x->c->k.fd,
				       BUS__PROTO_OUTCOME_MAX);
	if (r == BUS__PROTO_MORE)
		return -1;
	if (r == BUS__PROTO_EOF)
		return x->sent < x->frame->len ? END_LOST : END_DIED;
	if (r == BUS__PROTO_FAIL) {
		if (asprintf(&x->why, "sent an unreadable outcome (%s)",
			     strerror(errno)) < 0)
			x->why = NULL;
		return END_BROKEN;
	}
	if (x->sent < x->frame->len) {
		x->why = strdup("answered before it had the whole job");
		return END_BROKEN;
	}
	if (bus__proto_decode_outcome(x->out, x->reader.body,
				      x->reader.len) != 0) {
		x->why = strdup(bus_error_last()->message);
		return END_BROKEN;
	}
	return END_OUTCOME;
}

/* Between polls: the cancel flag, the clock, and the child's life (a
 * grandchild holding the socket would hide its end from poll). */
static int check(struct exchange *x)
{
	if (x->cancel != NULL && atomic_load(x->cancel) != 0)
		return END_CANCEL;
	if (x->deadline_ns != 0 && bus__mono_ns() >= x->deadline_ns)
		return END_TIMEOUT;
	int r = bus__zygote_wait(x->c->zygote, &x->c->k, &x->status);
	if (r < 0) {
		if (asprintf(&x->why, "cannot be watched (%s)",
			     bus_error_last()->message) < 0)
			x->why = NULL;
		return END_BROKEN;
	}
	if (r == 1) {
		forget(x->c);
		/* It may have answered just before it ended. */
		int end = receive(x);
		if (end == END_OUTCOME)
			return end;
		free(x->why);
		x->why = NULL;
		return x->sent < x->frame->len ? END_LOST : END_DIED;
	}
	return -1;
}

static int poll_wait_ms(int64_t deadline_ns)
{
	if (deadline_ns == 0)
		return TICK_MS;
	int64_t left = deadline_ns - bus__mono_ns();
	if (left <= 0)
		return 0;
	int64_t ms = (left + 999999) / 1000000;
	return ms < TICK_MS ? (int)ms : TICK_MS;
}

/* Hands the frame over and waits for how it ends. */
static int exchange_run(struct exchange *x)
{
	for (;;) {
		short want = POLLIN;
		if (x->sent < x->frame->len)
			want |= POLLOUT;
		/* The pidfd, where there is one, wakes the wait as soon as
		 * the child ends. */
		struct pollfd ps[2] = { { x->c->k.fd, want, 0 },
					{ x->c->k.pidfd, POLLIN, 0 } };
		int n = poll(ps, x->c->k.pidfd >= 0 ? 2 : 1,
			     poll_wait_ms(x->deadline_ns));
		struct pollfd p = ps[0];
		if (n < 0 && errno != EINTR) {
			if (asprintf(&x->why, "cannot be watched (poll: %s)",
				     strerror(errno)) < 0)
				x->why = NULL;
			return END_BROKEN;
		}
		if (n > 0 && (p.revents & POLLOUT) && send_some(x) != 0)
			return END_LOST;
		if (n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
			int end = receive(x);
			if (end >= 0)
				return end;
		}
		int end = check(x);
		if (end >= 0)
			return end;
	}
}

/* Turns an ending other than END_OUTCOME into the outcome, stopping and
 * reaping the child. */
static void conclude(struct exchange *x, int end, int64_t timeout_ms)
{
	struct bus_child *c = x->c;
	char *error = NULL;
	char secs[32];
	switch (end) {
	case END_TIMEOUT:
		discard(c);
		format_seconds(secs, sizeof secs, timeout_ms);
		if (asprintf(&error, "timeout after %ss", secs) < 0)
			error = NULL;
		set_outcome(x->out, BUS_ETIMEOUT, error);
		return;
	case END_CANCEL:
		discard(c);
		set_outcome(x->out, BUS_ECANCEL,
			    strdup("cancelled while running"));
		return;
	case END_BROKEN:
		discard(c);
		if (asprintf(&error, "child process %s",
			     x->why ? x->why : "failed") < 0)
			error = NULL;
		set_outcome(x->out, BUS_EHANDLER, error);
		return;
	default:
		break;
	}
	/* END_DIED, END_LOST: it is ending on its own, or closed its socket
	 * and went on: give it a moment, then make sure. */
	close_socket(c);
	if (reap(c, LINGER_MS, &x->status))
		error = strdup("closed its socket while running and was "
			       "killed");
	else
		error = describe_end(x->status);
	set_outcome(x->out, BUS_EHANDLER, error);
}

/* What run_once returns when the child ended before it had the whole job,
 * so that the job never ran (besides 0 and negative BUS_E* codes). */
#define HAND_OFF_LOST 1

/* One hand-off: 0 with *out filled, a BUS_E* code, or HAND_OFF_LOST with
 * the child's wait status in *status. */
static int run_once(struct bus_child *c, const bus_job *job,
		    int64_t timeout_ms, atomic_int *cancel,
		    struct bus_outcome *out, int *status)
{
	int64_t deadline = 0;
	if (timeout_ms > 0) {
		int64_t now = bus__mono_ns();
		deadline = timeout_ms > (INT64_MAX - now) / 1000000
				   ? INT64_MAX
				   : now + timeout_ms * 1000000;
	}
	struct bus__proto_buf frame = { 0 };
	int rc = bus__proto_encode_job(&frame, job, deadline);
	if (rc != 0) {
		bus__proto_buf_fini(&frame);
		return rc;
	}
	struct exchange x = { .c = c,
			      .frame = &frame,
			      .deadline_ns = deadline,
			      .cancel = cancel,
			      .out = out };
	int end = exchange_run(&x);
	bus__proto_reader_fini(&x.reader);
	bus__proto_buf_fini(&frame);
	rc = 0;
	if (end == END_LOST) {
		close_socket(c);
		reap(c, LINGER_MS, &x.status);
		*status = x.status;
		rc = HAND_OFF_LOST;
	} else if (end != END_OUTCOME) {
		conclude(&x, end, timeout_ms);
	} else if (c->k.pid < 0) {
		/* It answered, then ended (and was reaped). */
		close_socket(c);
	}
	free(x.why);
	return rc;
}

int bus__child_spawn(struct bus_child **out, bus *b,
		     struct bus_zygote *zygote)
{
	if (out == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus__child_spawn: out is NULL");
	*out = NULL;
	if (b == NULL || zygote == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus__child_spawn: %s is NULL",
				      b == NULL ? "bus" : "zygote");
	struct bus_child *c = calloc(1, sizeof *c);
	if (c == NULL)
		return bus__error_oom();
	c->bus = b;
	c->zygote = zygote;
	c->k.pid = -1;
	c->k.fd = c->k.pidfd = -1;
	int rc = spawn(c);
	if (rc != 0) {
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int bus__child_run(struct bus_child *c, const bus_job *job, int64_t timeout_ms,
		   atomic_int *cancel, struct bus_outcome *out)
{
	if (out != NULL)
		set_outcome(out, 0, NULL);
	if (c == NULL || job == NULL || out == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus__child_run: %s is NULL",
				      c == NULL     ? "child"
				      : job == NULL ? "job"
						    : "out");
	if (timeout_ms < 0)
		return bus__error_set(BUS_EINVAL,
				      "bus__child_run: timeout_ms is %lld; it "
				      "must be 0 (none) or positive",
				      (long long)timeout_ms);
	/* A child that ends before it has the whole job never ran it: try a
	 * fresh one once before giving up on the hand-off. */
	int status = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		int rc = ensure_child(c);
		if (rc != 0)
			return rc;
		rc = run_once(c, job, timeout_ms, cancel, out, &status);
		if (rc != HAND_OFF_LOST)
			return rc;
	}
	char *why = describe_end(status);
	int rc = bus__error_set(BUS_ERROR,
				"cannot hand job %lld to a child process: it "
				"%s before it had read the job",
				(long long)job->id, why ? why : "ended");
	free(why);
	return rc;
}

int bus__child_pid(const struct bus_child *c)
{
	return c != NULL && c->k.pid > 0 ? (int)c->k.pid : -1;
}

void bus__child_free(struct bus_child *c)
{
	if (c == NULL)
		return;
	close_socket(c);
	if (c->k.pid >= 0) {
		int status;
		reap(c, LINGER_MS, &status);
	}
	free(c);
}
