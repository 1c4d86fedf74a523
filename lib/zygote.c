/*
 * The fork server of process-isolation children (see zygote.h for why).
 *
 * Requests and replies are fixed-size records over a SOCK_SEQPACKET pair,
 * one request at a time (the parent's side holds z->lock from its send to
 * the reply):
 *
 *   FORK      -> err, pid; with err 0 the child's socket and, where the
 *                kernel has pidfd_open, its pidfd as SCM_RIGHTS
 *   WAIT pid  -> err, reaped, status (waitpid(pid, WNOHANG) in the zygote)
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "error.h"
#include "zygote.h"

/* How long the parent waits for a reply before it takes the zygote for
 * dead (stopped by a debugger, say) and starts another. */
#define REPLY_MS 10000

enum { Z_FORK = 1, Z_WAIT = 2 };

struct zreq {
	int op;
	pid_t pid;
};

struct zrep {
	int err; /* 0, or the errno of the zygote's failed call */
	pid_t pid;
	int reaped;
	int status;
};

struct bus_zygote {
	pthread_mutex_t lock; /* one request at a time; guards the rest */
	bus *bus;
	pid_t pid; /* -1: none (it died and could not be restarted) */
	int ctl;   /* the parent's end of the control socket; -1 with none */
	unsigned gen;
};

/* ------------------------------------------------------------------------ */
/* The zygote                                                                */
/* ------------------------------------------------------------------------ */

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Room for the descriptors a reply carries (a socket and a pidfd). */
union fd_space {
	char buf[CMSG_SPACE(2 * sizeof(int))];
	struct cmsghdr align;
};

static void message_init(struct msghdr *m, struct iovec *iov)
{
	memset(m, 0, sizeof *m);
	m->msg_iov = iov;
	m->msg_iovlen = 1;
}

static void reply(int ctl, const struct zrep *rep, const int *fds, int nfds)
{
	struct iovec iov = { (void *)rep, sizeof *rep };
	union fd_space u;
	struct msghdr m;
	message_init(&m, &iov);
	if (nfds > 0) {
		memset(&u, 0, sizeof u);
		m.msg_control = u.buf;
		m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
	}
	/* A parent that is gone reads nothing: the next recv ends the
	 * zygote. */
	while (sendmsg(ctl, &m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static void serve_fork(bus *b, int ctl)
{
	struct zrep rep = { 0, -1, 0, 0 };
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		rep.err = errno;
		reply(ctl, &rep, NULL, 0);
		return;
	}
	pid_t self = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		close(ctl);
		close(sv[0]);
		bus__child_serve(b, sv[1], self);
	}
	rep.err = pid < 0 ? errno : 0;
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		reply(ctl, &rep, NULL, 0);
		return;
	}
	rep.pid = pid;
	int fds[2] = { sv[0], open_pidfd(pid) };
	reply(ctl, &rep, fds, fds[1] >= 0 ? 2 : 1);
	close(sv[0]);
	if (fds[1] >= 0)
		close(fds[1]);
}

static void serve_wait(int ctl, pid_t pid)
{
	struct zrep rep = { 0, pid, 0, 0 };
	pid_t r;
	while ((r = waitpid(pid, &rep.status, WNOHANG)) < 0 && errno == EINTR)
		;
	if (r == pid) {
		rep.reaped = 1;
	} else if (r < 0) {
		/* Not (or no longer) a child of this zygote. */
		rep.reaped = 1;
		rep.status = -1;
	}
	reply(ctl, &rep, NULL, 0);
}

/* The zygote's whole life: requests in, until the parent closes its end. */
static _Noreturn void zygote_main(bus *b, int ctl)
{
	bus__child_detach(ctl, "bus-zygote");
	/* The statuses are the parent's to read: an application that ignores
	 * SIGCHLD would have them discarded. */
	signal(SIGCHLD, SIG_DFL);
	for (;;) {
		struct zreq rq;
		ssize_t n = recv(ctl, &rq, sizeof rq, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof rq)
			break; /* end of stream (or nonsense): the parent is gone */
		if (rq.op == Z_FORK)
			serve_fork(b, ctl);
		else if (rq.op == Z_WAIT)
			serve_wait(ctl, rq.pid);
		else
			break;
	}
	/* The children have PR_SET_PDEATHSIG: they die with this process. */
	_exit(EXIT_SUCCESS);
}

/* ------------------------------------------------------------------------ */
/* The parent                                                                */
/* ------------------------------------------------------------------------ */

/* Forks a zygote for `z`, which has none. Under z->lock, or before z is
 * shared. */
static int launch(struct bus_zygote *z)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return bus__error_set(BUS_ERROR,
				      "cannot create the control socket of the "
				      "process-isolation fork server: %s",
				      strerror(errno));
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		zygote_main(z->bus, sv[1]);
	}
	int err = errno;
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return bus__error_set(BUS_ERROR,
				      "cannot fork the process-isolation fork "
				      "server: %s",
				      strerror(err));
	}
	z->pid = pid;
	z->ctl = sv[0];
	z->gen++;
	return 0;
}

/* Ends the zygote: end of stream on its control socket, SIGKILL when it
 * does not go at once (`now`: at once), and reaps it. */
static void end_zygote(struct bus_zygote *z, int now)
{
	if (z->ctl >= 0)
		close(z->ctl);
	z->ctl = -1;
	if (z->pid < 0)
		return;
	if (now)
		kill(z->pid, SIGKILL);
	for (int waited = 0;; waited++) {
		pid_t r = waitpid(z->pid, NULL, WNOHANG);
		if (r == z->pid || (r < 0 && errno != EINTR))
			break; /* reaped (or by someone else: ECHILD) */
		if (waited == 1000)
			kill(z->pid, SIGKILL);
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	z->pid = -1;
}

/* Sends `rq` and reads the reply (with at most two descriptors, -1 where
 * none came). Returns 0, or -1 when the zygote did not answer. Under
 * z->lock. */
static int ask_once(struct bus_zygote *z, const struct zreq *rq,
		    struct zrep *rep, int fds[2])
{
	fds[0] = fds[1] = -1;
	if (z->ctl < 0)
		return -1;
	ssize_t n;
	while ((n = send(z->ctl, rq, sizeof *rq, MSG_NOSIGNAL)) < 0 &&
	       errno == EINTR)
		;
	if (n != (ssize_t)sizeof *rq)
		return -1;
	struct pollfd p = { z->ctl, POLLIN, 0 };
	int r;
	while ((r = poll(&p, 1, REPLY_MS)) < 0 && errno == EINTR)
		;
	if (r <= 0)
		return -1;
	struct iovec iov = { rep, sizeof *rep };
	union fd_space u;
	struct msghdr m;
	message_init(&m, &iov);
	m.msg_control = u.buf;
	m.msg_controllen = sizeof u.buf;
	while ((n = recvmsg(z->ctl, &m, MSG_CMSG_CLOEXEC)) < 0 &&
	       errno == EINTR)
		;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); n > 0 && cm != NULL;
	     cm = CMSG_NXTHDR(&m, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		memcpy(fds, CMSG_DATA(cm), (k > 2 ? 2 : k) * sizeof(int));
	}
	if (n != (ssize_t)sizeof *rep || (m.msg_flags & MSG_CTRUNC)) {
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		fds[0] = fds[1] = -1;
		return -1;
	}
	return 0;
}

/* ask_once, and when the zygote does not answer, a new zygote and once
 * more. Under z->lock. */
static int ask(struct bus_zygote *z, const struct zreq *rq, struct zrep *rep,
	       int fds[2])
{
	if (ask_once(z, rq, rep, fds) == 0)
		return 0;
	end_zygote(z, 1);
	int rc = launch(z);
	if (rc != 0)
		return rc;
	if (ask_once(z, rq, rep, fds) == 0)
		return 0;
	end_zygote(z, 1);
	return bus__error_set(BUS_ERROR,
			      "the process-isolation fork server does not "
			      "answer");
}

int bus__zygote_start(struct bus_zygote **out, bus *b)
{
	*out = NULL;
	struct bus_zygote *z = calloc(1, sizeof *z);
	if (z == NULL)
		return bus__error_oom();
	z->bus = b;
	z->pid = -1;
	z->ctl = -1;
	int rc = launch(z);
	if (rc != 0) {
		free(z);
		return rc;
	}
	pthread_mutex_init(&z->lock, NULL);
	*out = z;
	return 0;
}

int bus__zygote_fork(struct bus_zygote *z, struct bus_zygote_child *out)
{
	struct zreq rq = { Z_FORK, 0 };
	struct zrep rep;
	int fds[2];
	out->pid = -1;
	out->fd = out->pidfd = -1;
	pthread_mutex_lock(&z->lock);
	int rc = ask(z, &rq, &rep, fds);
	unsigned gen = z->gen;
	pthread_mutex_unlock(&z->lock);
	if (rc != 0)
		return rc;
	if (rep.err != 0 || fds[0] < 0) {
		if (fds[0] >= 0)
			close(fds[0]);
		if (fds[1] >= 0)
			close(fds[1]);
		return bus__error_set(BUS_ERROR,
				      "cannot fork a child process to run "
				      "durable handlers: %s",
				      rep.err != 0 ? strerror(rep.err)
						   : "no socket came with it");
	}
	out->pid = rep.pid;
	out->fd = fds[0];
	out->pidfd = fds[1];
	out->gen = gen;
	return 0;
}

int bus__zygote_wait(struct bus_zygote *z, const struct bus_zygote_child *c,
		     int *status)
{
	if (c->pidfd >= 0) {
		/* Readable once the process has ended: no request before. */
		struct pollfd p = { c->pidfd, POLLIN, 0 };
		if (poll(&p, 1, 0) == 0)
			return 0;
	}
	pthread_mutex_lock(&z->lock);
	if (c->gen != z->gen) {
		/* Its zygote died, and it with it; the pid may be anyone's
		 * now, even a child of this zygote's. */
		pthread_mutex_unlock(&z->lock);
		*status = -1;
		return 1;
	}
	struct zreq rq = { Z_WAIT, c->pid };
	struct zrep rep;
	int fds[2];
	int rc = ask(z, &rq, &rep, fds);
	int same = c->gen == z->gen;
	pthread_mutex_unlock(&z->lock);
	if (rc != 0)
		return rc;
	if (!same) {
		/* ask restarted the zygote: the answer is the new one's. */
		*status = -1;
		return 1;
	}
	if (!rep.reaped)
		return 0;
	*status = rep.status;
	return 1;
}

void bus__zygote_kill(struct bus_zygote *z, const struct bus_zygote_child *c)
{
#ifdef SYS_pidfd_send_signal
	if (c->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
		return;
	}
#endif
	/* By pid: unreaped, so still this child's, while its zygote lives. */
	pthread_mutex_lock(&z->lock);
	if (c->gen == z->gen && z->pid > 0)
		kill(c->pid, SIGKILL);
	pthread_mutex_unlock(&z->lock);
}

int bus__zygote_pid(const struct bus_zygote *z)
{
	return z != NULL && z->pid > 0 ? (int)z->pid : -1;
}

void bus__zygote_stop(struct bus_zygote *z)
{
	if (z == NULL)
		return;
	end_zygote(z, 0);
	pthread_mutex_destroy(&z->lock);
	free(z);
}
