/* bus queues [pause|resume QUEUE...]: counts per queue and state with the
 * paused flag, or pause and resume queues. */
#include <cjson/cJSON.h>
#include <string.h>

#include "cli.h"

static int queues_show(struct cli *c, bus *b)
{
	bus_queue_info *q;
	size_t n;
	int brc = bus_queue_list(&q, &n, b);
	if (brc != 0)
		return cli_fail(brc, "listing queues");
	if (c->json) {
		cJSON *a = cJSON_CreateArray();
		for (size_t i = 0; a && i < n; i++) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "queue", q[i].name);
			cJSON_AddBoolToObject(o, "paused", q[i].paused);
			cJSON *counts = cJSON_AddObjectToObject(o, "counts");
			for (int s = 0; s < BUS_JOB_STATE_COUNT; s++)
				cJSON_AddNumberToObject(
				    counts,
				    bus_job_state_name((bus_job_state)s),
				    (double)q[i].counts[s]);
			cJSON_AddItemToArray(a, o);
		}
		bus_free(q);
		return cli_print_json(a);
	}
	printf("%-20s %-6s", "QUEUE", "PAUSED");
	for (int s = 0; s < BUS_JOB_STATE_COUNT; s++) {
		char head[16];
		const char *name = bus_job_state_name((bus_job_state)s);
		size_t k = 0;
		for (; name[k] && k < sizeof head - 1; k++)
			head[k] = (char)(name[k] - 'a' + 'A');
		head[k] = '\0';
		printf(" %10s", head);
	}
	printf("\n");
	for (size_t i = 0; i < n; i++) {
		printf("%-20s %-6s", q[i].name, q[i].paused ? "yes" : "no");
		for (int s = 0; s < BUS_JOB_STATE_COUNT; s++)
			printf(" %10lld", (long long)q[i].counts[s]);
		printf("\n");
	}
	bus_free(q);
	return CLI_OK;
}

int cmd_queues(struct cli *c, int argc, char **argv)
{
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "queues", argc, argv, NULL, pos, &npos);
	if (rc != 0)
		return rc;
	int pause = npos > 0 && strcmp(pos[0], "pause") == 0;
	int resume = npos > 0 && strcmp(pos[0], "resume") == 0;
	if (npos > 0 && !pause && !resume) {
		char shown[512];
		return cli_usage("unknown command 'queues %s' (pause, resume, "
				 "or none to list)",
				 cli_redact(pos[0], shown, sizeof shown));
	}
	if ((pause || resume) && npos < 2)
		return cli_usage("usage: bus queues %s QUEUE...",
				 pause ? "pause" : "resume");
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		return rc;
	if (npos == 0)
		return queues_show(c, b);
	for (int i = 1; i < npos; i++) {
		int brc = pause ? bus_queue_pause(b, pos[i])
				: bus_queue_resume(b, pos[i]);
		if (brc != 0)
			return cli_fail(brc, pause ? "pause" : "resume");
		if (!c->json)
			printf("queue %s %s\n", pos[i],
			       pause ? "paused" : "resumed");
	}
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON *a =
		    cJSON_AddArrayToObject(o, pause ? "paused" : "resumed");
		for (int i = 1; i < npos; i++)
			cJSON_AddItemToArray(a, cJSON_CreateString(pos[i]));
		return cli_print_json(o);
	}
	return CLI_OK;
}
