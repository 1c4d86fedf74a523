/* Output helpers: times, and jobs and other values as JSON. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

void cli_time(char *buf, size_t size, int64_t us)
{
	if (us == 0) {
		snprintf(buf, size, "-");
		return;
	}
	time_t s = (time_t)(us / 1000000);
	long frac = (long)(us % 1000000);
	if (frac < 0) {
		s -= 1;
		frac += 1000000;
	}
	struct tm tm;
	gmtime_r(&s, &tm);
	char day[32];
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%06ldZ", day, frac);
}

int cli_print_json(cJSON *v)
{
	char *text = v ? cJSON_PrintUnformatted(v) : NULL;
	cJSON_Delete(v);
	if (text == NULL)
		return cli_error(CLI_FAILED, "out of memory printing JSON");
	puts(text);
	cJSON_free(text);
	return CLI_OK;
}

cJSON *cli_json_value(const char *text)
{
	if (text == NULL)
		return cJSON_CreateNull();
	cJSON *v = cJSON_Parse(text);
	return v ? v : cJSON_CreateString(text);
}

cJSON *cli_json_time(int64_t us)
{
	if (us == 0)
		return cJSON_CreateNull();
	char t[64];
	cli_time(t, sizeof t, us);
	return cJSON_CreateString(t);
}

static cJSON *string_or_null(const char *s)
{
	return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* The errors array with each "at" (microseconds) as an ISO time, which
 * is exact and readable where a JSON number would lose digits. */
static cJSON *errors_json(const char *errors)
{
	cJSON *a = errors ? cJSON_Parse(errors) : NULL;
	if (!cJSON_IsArray(a)) {
		cJSON_Delete(a);
		return errors ? cJSON_CreateString(errors)
			      : cJSON_CreateArray();
	}
	cJSON *e;
	cJSON_ArrayForEach(e, a)
	{
		cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "at");
		if (cJSON_IsNumber(at))
			cJSON_ReplaceItemInObjectCaseSensitive(
			    e, "at", cli_json_time((int64_t)at->valuedouble));
	}
	return a;
}

cJSON *cli_job_json(const bus_job *j)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	cJSON_AddNumberToObject(o, "id", (double)j->id);
	cJSON_AddStringToObject(o, "kind", j->kind ? j->kind : "");
	cJSON_AddStringToObject(o, "handler", j->handler ? j->handler : "");
	cJSON_AddStringToObject(o, "queue", j->queue ? j->queue : "");
	cJSON_AddStringToObject(o, "state", bus_job_state_name(j->state));
	cJSON_AddNumberToObject(o, "priority", j->priority);
	cJSON_AddNumberToObject(o, "attempt", j->attempt);
	cJSON_AddNumberToObject(o, "max_attempts", j->max_attempts);
	cJSON_AddNumberToObject(o, "timeout_ms", (double)j->timeout_ms);
	cJSON_AddItemToObject(o, "payload", cli_json_value(j->payload));
	cJSON_AddItemToObject(o, "meta", cli_json_value(j->meta));
	cJSON_AddItemToObject(o, "tags", cli_json_value(j->tags));
	cJSON_AddItemToObject(o, "scheduled_at",
			      cli_json_time(j->scheduled_at));
	cJSON_AddItemToObject(o, "inserted_at", cli_json_time(j->inserted_at));
	cJSON_AddItemToObject(o, "attempted_at",
			      cli_json_time(j->attempted_at));
	cJSON_AddItemToObject(o, "attempted_by",
			      string_or_null(j->attempted_by));
	cJSON_AddItemToObject(o, "lease_until", cli_json_time(j->lease_until));
	cJSON_AddItemToObject(o, "started_at", cli_json_time(j->started_at));
	cJSON_AddItemToObject(o, "finished_at", cli_json_time(j->finished_at));
	cJSON_AddItemToObject(o, "errors", errors_json(j->errors));
	cJSON_AddItemToObject(o, "cancel_requested_at",
			      cli_json_time(j->cancel_requested_at));
	cJSON_AddItemToObject(o, "unique_key", string_or_null(j->unique_key));
	cJSON *states = cJSON_AddArrayToObject(o, "unique_states");
	for (int s = 0; states && s < BUS_JOB_STATE_COUNT; s++)
		if (j->unique_states & BUS_STATE_BIT(s))
			cJSON_AddItemToArray(
			    states, cJSON_CreateString(
					bus_job_state_name((bus_job_state)s)));
	return o;
}
