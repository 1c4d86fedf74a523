/*
 * The fork server ("zygote") of a worker's process-isolation children.
 *
 * A child forked by a multi-threaded process is a copy of memory that the
 * other threads were changing, locks included. glibc's malloc copes (it
 * locks its arenas around fork), but not every allocator does: GCC 12's
 * AddressSanitizer does not lock its allocator, and a child forked while
 * the fetcher, completer or maintenance thread held one of its locks hung
 * in its first malloc for ever (seen under ASan on the SQL stores: the
 * child blocked in SizeClassAllocator64::GetFromAllocator's region mutex,
 * inside mysql_optionsv of the handler's own bus_enqueue). So the worker
 * forks one process, the zygote, at bus_worker_start before any thread of
 * its own exists, and every child is forked by the zygote, which has one
 * thread and never allocates while another thread could hold a lock.
 * What is left is that one fork (and the fork of a replacement zygote,
 * below): threads the process has besides this worker's (the
 * application's, another worker's) may hold a lock at that moment, which
 * glibc's malloc survives and GCC 12's ASan may not; a far narrower
 * window than a fork per child from a busy worker.
 *
 * Children: the zygote makes the socket pair, forks, and passes the
 * parent's end back over its control socket (SCM_RIGHTS) with the child's
 * pid and a pidfd of the child (opened by the zygote, whose unreaped child
 * it is, so it names that process and no other), through which the parent
 * watches the child end and kills it; the parent then talks to the child
 * over the socket exactly as before. The zygote reaps a child only when
 * the parent asks (bus__zygote_wait), so its pid is not reused before, and
 * the exit status reaches the parent, which says why a job's child died.
 *
 * Life: the zygote ends at end of stream on its control socket, which only
 * the parent holds (close-on-exec, and every process the zygote forks lets
 * go of it), so when the worker stops or its process dies, in whichever
 * thread; its children die with it (PR_SET_PDEATHSIG, set by each child;
 * the zygote has one thread, the one that forked them). It is deaf to the
 * process group's SIGTERM and SIGINT, as the children are: shutdown is the
 * parent's. If it dies anyway (killed by an operator), the next request
 * starts another; the children of the dead one died with it, their exit
 * statuses lost.
 *
 * What the children know of the bus is what the zygote copied at
 * bus_worker_start: handlers registered later do not reach them.
 */
#ifndef BUS_LIB_ZYGOTE_H
#define BUS_LIB_ZYGOTE_H

#include <sys/types.h>

#include "bus/bus.h"

struct bus_zygote;

/* A child the zygote forked, as its parent holds it. `fd` and `pidfd` are
 * owned by the holder (close them); `pidfd` is -1 where the kernel has no
 * pidfd_open (before Linux 5.3): then the child is watched and killed by
 * pid, which is safe while the zygote that forked it lives. */
struct bus_zygote_child {
	pid_t pid;
	int fd;          /* the parent's end of the socket pair */
	int pidfd;       /* or -1 */
	unsigned gen;    /* which zygote forked it (restarts count up) */
};

/* Forks the zygote of bus `b`; call it before the caller's threads start.
 * The caller owns *out: bus__zygote_stop. Several threads may use one
 * zygote at once (each request holds its lock). */
int bus__zygote_start(struct bus_zygote **out, bus *b);

/* Has the zygote fork a child serving jobs of its bus. */
int bus__zygote_fork(struct bus_zygote *z, struct bus_zygote_child *out);

/* Whether the child has ended: 0 when it still runs; 1 when it ended and
 * was reaped (*status is its wait status, or -1 when it was lost with a
 * zygote that died); a negative BUS_E* code when the zygote cannot be
 * asked. After 1 the pid is free for reuse: do not signal it again. */
int bus__zygote_wait(struct bus_zygote *z, const struct bus_zygote_child *c,
		     int *status);

/* Sends SIGKILL to the child (through its pidfd where there is one). */
void bus__zygote_kill(struct bus_zygote *z, const struct bus_zygote_child *c);

/* The zygote's pid, for tests; -1 when it has none. */
int bus__zygote_pid(const struct bus_zygote *z);

/* Ends the zygote (its remaining children die with it), reaps it, and
 * frees `z`. NULL is fine. */
void bus__zygote_stop(struct bus_zygote *z);

#endif
