/* bus prune --older-than DUR: delete finished jobs (completed, cancelled,
 * discarded) that finished more than DUR ago. */
#include <cjson/cJSON.h>

#include "cli.h"

int cmd_prune(struct cli *c, int argc, char **argv)
{
	const char *older = NULL;
	const struct cli_opt opts[] = {{"older-than", OPT_STRING, &older},
				       {NULL, 0, NULL}};
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "prune", argc, argv, opts, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos > 0 || older == NULL)
		return cli_usage("usage: bus prune --older-than DUR (say 7d)");
	int64_t ms;
	if ((rc = cli_duration_ms(&ms, "--older-than", older)) != 0)
		return rc;
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		return rc;
	int64_t deleted = 0;
	int brc = bus_job_prune(&deleted, b, ms / 1000);
	if (brc != 0)
		return cli_fail(brc, "prune");
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "deleted", (double)deleted);
		return cli_print_json(o);
	}
	printf("%lld finished jobs deleted\n", (long long)deleted);
	return CLI_OK;
}
