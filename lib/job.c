/* The job row: state names and freeing. */
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "error.h"
#include "jobrow.h"

static const char *const state_names[BUS_JOB_STATE_COUNT] = {
	"available", "scheduled", "executing", "retryable",
	"completed", "cancelled", "discarded",
};

const char *bus_job_state_name(bus_job_state state)
{
	if ((int)state < 0 || (int)state >= BUS_JOB_STATE_COUNT)
		return NULL;
	return state_names[state];
}

int bus_job_state_parse(bus_job_state *out, const char *name)
{
	for (int s = 0; name != NULL && s < BUS_JOB_STATE_COUNT; s++) {
		if (strcmp(name, state_names[s]) == 0) {
			*out = (bus_job_state)s;
			return 0;
		}
	}
	return bus__error_set(BUS_EINVAL,
			      "'%.64s' is not a job state (available, "
			      "scheduled, executing, retryable, completed, "
			      "cancelled, discarded)",
			      name ? name : "(null)");
}

void bus__job_clear(bus_job *job)
{
	free(job->kind);
	free(job->handler);
	free(job->queue);
	free(job->payload);
	free(job->meta);
	free(job->tags);
	free(job->attempted_by);
	free(job->errors);
	free(job->unique_key);
	memset(job, 0, sizeof *job);
}

void bus_job_free(bus_job *job)
{
	if (job == NULL)
		return;
	bus__job_clear(job);
	free(job);
}

void bus_job_list_free(bus_job *jobs, size_t n)
{
	if (jobs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		bus__job_clear(&jobs[i]);
	free(jobs);
}
