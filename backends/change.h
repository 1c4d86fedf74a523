/*
 * What both SQL stores judge alike in an admin write (cancel, retry,
 * delete of one job): whether the change applies to the job as its
 * transaction read and locked it, and, after a connection lost once the
 * COMMIT was sent (and the lost session ended), whether the COMMIT
 * landed, from the job's row read again against the row before. Compiled
 * into each store plug-in; the names are bus__ and hidden
 * (-fvisibility=hidden).
 */
#ifndef BUS_BACKENDS_CHANGE_H
#define BUS_BACKENDS_CHANGE_H

enum bus_change { BUS_CHANGE_CANCEL, BUS_CHANGE_RETRY, BUS_CHANGE_REMOVE };

/* A job as a change judges it: its state (-1: there is no such job), its
 * attempt, and whether a cancel request is pending (0 or 1). */
struct bus_change_look {
	long long state, attempt, cancel_requested;
};

/* Whether `what` applies to job `j` as read (the changing statement's own
 * condition says the same): an executing job is not retried or deleted,
 * and only records a cancel request, once. */
int bus__change_applies(enum bus_change what, const struct bus_change_look *j);

/* Whether a committed `what` explains the job `now`, read again after
 * the lost session ended, the job having been `was` when the change ran
 * (so 0 when the change did not land, and must run again from its read). */
int bus__change_landed(enum bus_change what, const struct bus_change_look *was,
		       const struct bus_change_look *now);

/* "cancel", "retry" or "delete", for messages. */
const char *bus__change_name(enum bus_change what);

#endif
