/*
 * Runs a job as a command: `sh -c CMD` in a process group of its own, the
 * payload on its stdin, the job in its environment (BUS_JOB_ID, ...), its
 * stdout shared with the worker's. Exit status 0 completes the job; any
 * other fails it with the tail of its stderr as the error. Past the
 * deadline (the job's timeout, else --timeout), or when the worker says the
 * job must stop (cancelled, lost, or shutting down after the grace), the
 * whole process group gets SIGTERM, and SIGKILL if it still runs
 * --kill-after later (at once when that is 0). When the command itself has
 * ended, whatever it left running in its group is killed, so that no job
 * leaves processes behind.
 *
 * The worker runs this on its executor threads, several at once: every
 * descriptor is opened close-on-exec so that one job's child never holds
 * another's pipes, and the child is made with posix_spawn, which is safe in
 * a threaded program.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

/* How often a running command is checked for its deadline and for a stop
 * request while it says nothing. */
#define TICK_MS 50

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The last `cap` bytes of a stream. */
struct tail {
	char *buf;
	size_t cap, len, start; /* ring: len bytes from start */
	int cut;		/* bytes were dropped at the front */
};

static void tail_add(struct tail *t, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (t->len < t->cap) {
			t->buf[(t->start + t->len++) % t->cap] = p[i];
		} else {
			t->buf[t->start] = p[i];
			t->start = (t->start + 1) % t->cap;
			t->cut = 1;
		}
	}
}

/* The tail as text that is safe to store: valid UTF-8 (a broken sequence,
 * say one cut at the front, becomes '?'), control characters other than
 * newline and tab as '?', trailing whitespace dropped. */
static char *tail_text(const struct tail *t)
{
	char *raw = malloc(t->len + 1);
	char *out = malloc(t->len + 4);
	if (raw == NULL || out == NULL) {
		free(raw);
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < t->len; i++)
		raw[i] = t->buf[(t->start + i) % t->cap];
	size_t o = 0;
	if (t->cut) {
		memcpy(out, "...", 3);
		o = 3;
	}
	for (size_t i = 0; i < t->len;) {
		unsigned char ch = (unsigned char)raw[i];
		size_t n = ch < 0x80		     ? 1
			   : ch >= 0xc2 && ch < 0xe0 ? 2
			   : ch >= 0xe0 && ch < 0xf0 ? 3
			   : ch >= 0xf0 && ch < 0xf5 ? 4
						     : 0;
		int ok = n > 0 && i + n <= t->len;
		for (size_t k = 1; ok && k < n; k++)
			ok = ((unsigned char)raw[i + k] & 0xc0) == 0x80;
		if (!ok) {
			out[o++] = '?';
			i++;
		} else if (n == 1 && ch < 0x20 && ch != '\n' && ch != '\t') {
			out[o++] = '?';
			i++;
		} else {
			memcpy(out + o, raw + i, n);
			o += n;
			i += n;
		}
	}
	while (o > 0 && (out[o - 1] == '\n' || out[o - 1] == ' ' ||
			 out[o - 1] == '\t' || out[o - 1] == '\r'))
		o--;
	out[o] = '\0';
	free(raw);
	return out;
}

/* environ without BUS_JOB_* entries, then the job's own. */
static char **job_environment(const bus_job *job, char ***own, size_t *n_own)
{
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	enum { N_OWN = 10 };
	char **env = calloc(n + N_OWN + 1, sizeof *env);
	char **mine = calloc(N_OWN, sizeof *mine);
	if (env == NULL || mine == NULL) {
		free(env);
		free(mine);
		return NULL;
	}
	size_t k = 0, m = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "BUS_JOB_", 8) != 0)
			env[k++] = environ[i];
	int ok = 1;
#define ADD(...)                                                               \
	do {                                                                   \
		if (asprintf(&mine[m], __VA_ARGS__) < 0)                       \
			ok = 0, mine[m] = NULL;                                \
		else                                                           \
			env[k++] = mine[m];                                    \
		m++;                                                           \
	} while (0)
	ADD("BUS_JOB_ID=%lld", (long long)job->id);
	ADD("BUS_JOB_KIND=%s", job->kind ? job->kind : "");
	ADD("BUS_JOB_HANDLER=%s", job->handler ? job->handler : "");
	ADD("BUS_JOB_QUEUE=%s", job->queue ? job->queue : "");
	ADD("BUS_JOB_ATTEMPT=%d", job->attempt);
	ADD("BUS_JOB_MAX_ATTEMPTS=%d", job->max_attempts);
	ADD("BUS_JOB_PRIORITY=%d", job->priority);
	ADD("BUS_JOB_TIMEOUT_MS=%lld", (long long)job->timeout_ms);
	ADD("BUS_JOB_META=%s", job->meta ? job->meta : "{}");
	ADD("BUS_JOB_TAGS=%s", job->tags ? job->tags : "[]");
#undef ADD
	env[k] = NULL;
	*own = mine;
	*n_own = m;
	if (!ok) {
		for (size_t i = 0; i < m; i++)
			free(mine[i]);
		free(mine);
		free(env);
		return NULL;
	}
	return env;
}

static int spawn(pid_t *pid, const char *command, char **env, int in_fd,
		 int err_fd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	/* Its own process group, so that a timeout kills what it started
	 * too; signals as a fresh program expects them. */
	sigset_t none, dflt;
	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGINT);
	sigaddset(&dflt, SIGPIPE);
	sigaddset(&dflt, SIGHUP);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
					    POSIX_SPAWN_SETSIGMASK |
					    POSIX_SPAWN_SETSIGDEF);
	char *argv[] = {"sh", "-c", (char *)command, NULL};
	int rc = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return rc;
}

static const char *signal_name(int sig)
{
	switch (sig) {
	case SIGKILL: return "SIGKILL";
	case SIGTERM: return "SIGTERM";
	case SIGINT: return "SIGINT";
	case SIGSEGV: return "SIGSEGV";
	case SIGABRT: return "SIGABRT";
	case SIGPIPE: return "SIGPIPE";
	case SIGHUP: return "SIGHUP";
	default: return "a signal";
	}
}

struct run {
	const struct exec_opts *o;
	bus_ctx *ctx;
	pid_t pid;
	int in_fd, err_fd;
	const char *payload;
	size_t payload_len, written;
	struct tail tail;
	int status, exited;
	int killed_for;	 /* 0, 1: deadline, 2: told to stop */
	int64_t term_at; /* when SIGTERM went to the group; 0: not sent */
	int sent_kill;	 /* SIGKILL went to the group */
};

/* Whether the command (the group's leader) has ended. It is left a zombie
 * (WNOWAIT): while it is unreaped its pid cannot be reused, so a kill of
 * its group still reaches only what it left behind. */
static int leader_ended(const struct run *r)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	return waitid(P_PID, (id_t)r->pid, &si, WEXITED | WNOHANG | WNOWAIT) ==
		   0 &&
	       si.si_pid == r->pid;
}

/* The first step of stopping the command: SIGTERM to its group, so that it
 * can clean up, or SIGKILL at once when --kill-after is 0. */
static void stop_group(struct run *r)
{
	if (r->o->kill_after_ms == 0) {
		kill(-r->pid, SIGKILL);
		r->sent_kill = 1;
		return;
	}
	kill(-r->pid, SIGTERM);
	r->term_at = mono_ms();
}

/* Feeds the payload, gathers stderr and watches the deadline until the
 * command has exited. */
static void supervise(struct run *r, int64_t deadline_ms)
{
	/* Once its pipes are closed only its exit is awaited: look often at
	 * first, since it is usually a moment away. */
	int idle_ms = 1;
	while (!r->exited) {
		struct pollfd p[2];
		int n = 0;
		if (r->err_fd >= 0)
			p[n++] = (struct pollfd){r->err_fd, POLLIN, 0};
		if (r->in_fd >= 0)
			p[n++] = (struct pollfd){r->in_fd, POLLOUT, 0};
		int wait = TICK_MS;
		if (n == 0) {
			if (idle_ms < wait)
				wait = idle_ms;
			idle_ms = idle_ms * 2 < TICK_MS ? idle_ms * 2 : TICK_MS;
		}
		if (deadline_ms > 0 && r->killed_for == 0) {
			int64_t left = deadline_ms - mono_ms();
			if (left < wait)
				wait = left < 0 ? 0 : (int)left;
		}
		if (r->term_at != 0 && !r->sent_kill) {
			int64_t left =
			    r->term_at + r->o->kill_after_ms - mono_ms();
			if (left < wait)
				wait = left < 0 ? 0 : (int)left;
		}
		if (poll(p, (nfds_t)n, wait) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (p[i].fd == r->err_fd && p[i].revents) {
				char buf[4096];
				ssize_t got = read(r->err_fd, buf, sizeof buf);
				if (got > 0) {
					tail_add(&r->tail, buf, (size_t)got);
				} else if (got == 0 || (errno != EINTR &&
							errno != EAGAIN)) {
					close(r->err_fd);
					r->err_fd = -1;
				}
			} else if (p[i].fd == r->in_fd && p[i].revents) {
				ssize_t put =
				    write(r->in_fd, r->payload + r->written,
					  r->payload_len - r->written);
				if (put > 0)
					r->written += (size_t)put;
				/* EPIPE: it does not read its payload, which
				 * is its business. */
				if ((put < 0 && errno != EINTR &&
				     errno != EAGAIN) ||
				    r->written == r->payload_len) {
					close(r->in_fd);
					r->in_fd = -1;
				}
			}
		}
		if (leader_ended(r)) {
			r->exited = 1;
			break;
		}
		if (r->killed_for != 0) {
			/* SIGTERM was not enough within --kill-after. */
			if (!r->sent_kill &&
			    mono_ms() - r->term_at >= r->o->kill_after_ms) {
				kill(-r->pid, SIGKILL);
				r->sent_kill = 1;
			}
			continue;
		}
		if (deadline_ms > 0 && mono_ms() >= deadline_ms)
			r->killed_for = 1;
		else if (bus_ctx_expired(r->ctx))
			r->killed_for = 2;
		if (r->killed_for != 0)
			stop_group(r);
	}
	/* The command has ended (or poll failed, see the caller): what it left
	 * in its group goes with it, then the leader is reaped. */
	if (r->exited) {
		kill(-r->pid, SIGKILL);
		while (waitpid(r->pid, &r->status, 0) < 0 && errno == EINTR)
			;
	}
	/* Whatever it wrote last, unless a process it left behind keeps the
	 * pipe open. */
	while (r->err_fd >= 0) {
		struct pollfd p = {r->err_fd, POLLIN, 0};
		char buf[4096];
		ssize_t got =
		    poll(&p, 1, 0) > 0 ? read(r->err_fd, buf, sizeof buf) : 0;
		if (got > 0) {
			tail_add(&r->tail, buf, (size_t)got);
			continue;
		}
		close(r->err_fd);
		r->err_fd = -1;
	}
}

static int outcome(struct run *r, const bus_job *job, int64_t timeout_ms)
{
	char *err = tail_text(&r->tail);
	const char *sep = err && err[0] ? ": " : "";
	const char *text = err ? err : "";
	int rc;
	/* Which signals it took, so that a command that does not end on
	 * SIGTERM shows in its job's errors. */
	char how[96];
	if (r->term_at == 0)
		snprintf(how, sizeof how, "SIGKILL");
	else if (r->sent_kill)
		snprintf(how, sizeof how, "SIGTERM, then SIGKILL after %gs",
			 (double)r->o->kill_after_ms / 1000.0);
	else
		snprintf(how, sizeof how, "SIGTERM");
	if (r->killed_for == 1)
		rc = bus_ctx_fail(r->ctx,
				  "timeout after %gs: stopped the command's "
				  "process group (%s)%s%s",
				  (double)timeout_ms / 1000.0, how, sep, text);
	else if (r->killed_for == 2)
		rc = bus_ctx_fail(r->ctx,
				  "stopped: the job was cancelled or its worker "
				  "is stopping (%s to the command's process "
				  "group)%s%s",
				  how, sep, text);
	else if (WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0)
		rc = 0;
	else if (WIFEXITED(r->status))
		rc = bus_ctx_fail(r->ctx, "exit status %d%s%s",
				  WEXITSTATUS(r->status), sep, text);
	else
		rc = bus_ctx_fail(r->ctx, "killed by signal %s (%d)%s%s",
				  signal_name(WTERMSIG(r->status)),
				  WTERMSIG(r->status), sep, text);
	(void)job;
	free(err);
	return rc;
}

int exec_job_handler(bus_ctx *ctx, void *udata)
{
	const struct exec_opts *o = udata;
	const bus_job *job = bus_ctx_job(ctx);
	if (job == NULL)
		return bus_ctx_fail(ctx,
				    "bus work --exec runs stored jobs only");
	int64_t timeout_ms =
	    job->timeout_ms > 0 ? job->timeout_ms : o->timeout_ms;
	int64_t deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;

	struct run r = {.o = o, .ctx = ctx, .in_fd = -1, .err_fd = -1};
	r.payload = job->payload ? job->payload : "null";
	r.payload_len = strlen(r.payload);
	r.tail.cap = o->stderr_tail > 0 ? o->stderr_tail : 2048;
	r.tail.buf = malloc(r.tail.cap);
	char **own = NULL;
	size_t n_own = 0;
	char **env = job_environment(job, &own, &n_own);
	int in[2] = {-1, -1}, err[2] = {-1, -1};
	int rc;
	if (r.tail.buf == NULL || env == NULL) {
		rc = bus_ctx_fail(ctx, "out of memory starting the command");
		goto out;
	}
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
		rc =
		    bus_ctx_fail(ctx, "cannot make pipes: %s", strerror(errno));
		goto out;
	}
	int serr = spawn(&r.pid, o->command, env, in[0], err[1]);
	close(in[0]);
	close(err[1]);
	in[0] = err[1] = -1;
	if (serr != 0) {
		rc = bus_ctx_fail(ctx, "cannot start /bin/sh: %s",
				  strerror(serr));
		goto out;
	}
	r.in_fd = in[1];
	r.err_fd = err[0];
	in[1] = err[0] = -1;
	fcntl(r.in_fd, F_SETFL, O_NONBLOCK);
	fcntl(r.err_fd, F_SETFL, O_NONBLOCK);
	if (r.payload_len == 0) {
		close(r.in_fd);
		r.in_fd = -1;
	}
	supervise(&r, deadline);
	if (!r.exited) {
		/* poll failed: do not leave the command running unwatched. */
		kill(-r.pid, SIGKILL);
		while (waitpid(r.pid, &r.status, 0) < 0 && errno == EINTR)
			;
		r.exited = 1;
	}
	if (r.in_fd >= 0)
		close(r.in_fd);
	rc = outcome(&r, job, timeout_ms);
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	for (size_t i = 0; i < n_own; i++)
		free(own[i]);
	free(own);
	free(env);
	free(r.tail.buf);
	return rc;
}
