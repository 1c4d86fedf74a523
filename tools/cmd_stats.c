/* bus stats: one table of jobs per state over every queue, with the number
 * of queues and of paused queues. */
#include <cjson/cJSON.h>

#include "cli.h"

int cmd_stats(struct cli *c, int argc, char **argv)
{
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "stats", argc, argv, NULL, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos > 0)
		return cli_usage("'bus stats' takes no arguments");
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		return rc;
	bus_queue_info *q;
	size_t n;
	int brc = bus_queue_list(&q, &n, b);
	if (brc != 0)
		return cli_fail(brc, "reading counts");
	long long by_state[BUS_JOB_STATE_COUNT] = {0}, total = 0, paused = 0;
	for (size_t i = 0; i < n; i++) {
		paused += q[i].paused != 0;
		for (int s = 0; s < BUS_JOB_STATE_COUNT; s++) {
			by_state[s] += q[i].counts[s];
			total += q[i].counts[s];
		}
	}
	bus_free(q);
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON *st = cJSON_AddObjectToObject(o, "states");
		for (int s = 0; s < BUS_JOB_STATE_COUNT; s++)
			cJSON_AddNumberToObject(
			    st, bus_job_state_name((bus_job_state)s),
			    (double)by_state[s]);
		cJSON_AddNumberToObject(o, "total", (double)total);
		cJSON_AddNumberToObject(o, "queues", (double)n);
		cJSON_AddNumberToObject(o, "paused_queues", (double)paused);
		return cli_print_json(o);
	}
	printf("%-14s %12s\n", "STATE", "JOBS");
	for (int s = 0; s < BUS_JOB_STATE_COUNT; s++)
		printf("%-14s %12lld\n", bus_job_state_name((bus_job_state)s),
		       by_state[s]);
	printf("%-14s %12lld\n", "total", total);
	printf("%-14s %12zu\n", "queues", n);
	printf("%-14s %12lld\n", "paused queues", paused);
	return CLI_OK;
}
