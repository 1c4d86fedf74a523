/* bus migrate [--check]: create or update the store's schema, or only tell
 * whether it is current (exit status 5 when it is not). */
#include <cjson/cJSON.h>

#include "cli.h"

int cmd_migrate(struct cli *c, int argc, char **argv)
{
	int check = 0;
	const struct cli_opt opts[] = {{"check", OPT_FLAG, &check},
				       {NULL, 0, NULL}};
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "migrate", argc, argv, opts, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos > 0)
		return cli_usage("'bus migrate' takes no arguments");
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		return rc;
	if (check) {
		/* Any job call checks the schema first; counts is the
		 * cheapest. */
		bus_job_count *counts = NULL;
		size_t n = 0;
		int brc = bus_job_counts(&counts, &n, b);
		bus_free(counts);
		if (brc != 0 && brc != BUS_ESCHEMA)
			return cli_fail(brc, "checking the schema");
		if (c->json) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddBoolToObject(o, "current", brc == 0);
			if (brc != 0)
				cJSON_AddStringToObject(
				    o, "error", bus_error_last()->message);
			cli_print_json(o);
		} else if (brc == 0) {
			printf("the schema is current\n");
		} else {
			fprintf(stderr, "bus: %s (run 'bus migrate')\n",
				bus_error_last()->message);
		}
		return brc == 0 ? CLI_OK : CLI_SCHEMA;
	}
	int brc = bus_migrate(b);
	if (brc != 0)
		return cli_fail(brc, "migrating");
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddBoolToObject(o, "current", 1);
		return cli_print_json(o);
	}
	printf("the schema is current\n");
	return CLI_OK;
}
