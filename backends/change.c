/*
 * The judgement of an admin write, alike in both SQL stores (change.h).
 */
#include "change.h"

#include "bus/backend.h"

int bus__change_applies(enum bus_change what, const struct bus_change_look *j)
{
	if (j->state < 0)
		return 0;
	if (what == BUS_CHANGE_CANCEL)
		return (BUS_STATE_BIT(j->state) & BUS_STATES_UNFINISHED) &&
		       !(j->state == BUS_JOB_EXECUTING && j->cancel_requested);
	return j->state != BUS_JOB_EXECUTING;
}

/* What only the change (or a like change by someone else, which leaves
 * the job as the caller asked) explains counts as landed:
 *  - remove: the row is gone (ids are never reused);
 *  - cancel: the job is cancelled, or, executing before, it holds a cancel
 *    request (a job that completed meanwhile shows neither: the change
 *    then runs again and says it had finished, which is true);
 *  - retry: the job is available, or has been claimed since (a higher
 *    attempt): running the retry again would run the job once more.
 * Anything else is the row as it was, or moved on without the change. */
int bus__change_landed(enum bus_change what, const struct bus_change_look *was,
		       const struct bus_change_look *now)
{
	switch (what) {
	case BUS_CHANGE_REMOVE: return now->state < 0;
	case BUS_CHANGE_CANCEL:
		return now->state == BUS_JOB_CANCELLED ||
		       (was->state == BUS_JOB_EXECUTING &&
			now->state == BUS_JOB_EXECUTING &&
			now->cancel_requested);
	default:
		return now->state == BUS_JOB_AVAILABLE ||
		       (now->state >= 0 && now->attempt > was->attempt);
	}
}

const char *bus__change_name(enum bus_change what)
{
	return what == BUS_CHANGE_CANCEL  ? "cancel"
	       : what == BUS_CHANGE_RETRY ? "retry"
					  : "delete";
}
