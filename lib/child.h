/*
 * Process isolation: one pre-forked child process that runs durable
 * handlers for its parent, fed one job at a time over a socketpair.
 *
 * The parent keeps every store connection; the child never touches one. A
 * child that dies (a signal, exit) or overruns the job's timeout is killed
 * and reaped, the job's outcome says why, and the next bus__child_run starts
 * a fresh child.
 */
#ifndef BUS_LIB_CHILD_H
#define BUS_LIB_CHILD_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "bus/bus.h"

struct bus_child;

/* What running one job's handler came to. */
struct bus_outcome {
	int rc;          /* 0, BUS_ESNOOZE, BUS_ECANCEL, or a failure code */
	char *error;     /* owned; why it failed or was cancelled, or NULL */
	int64_t snooze_s; /* with BUS_ESNOOZE */
};

struct bus_zygote;

/* Has `zygote` (zygote.h; it must outlive the child) fork a child serving
 * jobs of bus `b`, with the handlers the zygote copied when it started. */
int bus__child_spawn(struct bus_child **out, bus *b,
		     struct bus_zygote *zygote);

/*
 * Runs `job` in the child and waits for its outcome, for at most timeout_ms
 * (0: no limit), or until *cancel becomes non-zero (checked every few ms).
 * On timeout the child is killed and the outcome is BUS_ETIMEOUT with
 * "timeout after <N>s"; on cancel, killed, BUS_ECANCEL; when the child dies
 * the outcome is BUS_EHANDLER with "killed by signal SIGSEGV" or "exited
 * with status N". After any of these the child is replaced at the next call.
 * Returns 0 when an outcome was produced (see out->rc), or a negative code
 * when the job could not be handed over at all.
 */
int bus__child_run(struct bus_child *c, const bus_job *job, int64_t timeout_ms,
		   atomic_int *cancel, struct bus_outcome *out);

/* The child's process id (for tests), or -1 when it has none right now. */
int bus__child_pid(const struct bus_child *c);

/* For the zygote: the life of a child forked from it (`parent`), serving
 * jobs over `fd` until end of stream. Never returns. */
_Noreturn void bus__child_serve(bus *b, int fd, pid_t parent);

/* For the zygote and the children: ignore the group's stop signals,
 * unblock every signal, drop the parent's stdio buffers, take the process
 * name `name`, and let go of every descriptor but 0-2 and `keep`. */
void bus__child_detach(int keep, const char *name);

/* Stops the child (closing its socket, then SIGKILL if it lingers), reaps
 * it, and frees `c`. NULL is fine. */
void bus__child_free(struct bus_child *c);

#endif
