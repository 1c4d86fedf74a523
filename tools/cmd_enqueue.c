/* bus enqueue KIND JSON [options]: store one job. JSON "-" reads the payload
 * from stdin. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Checks that `text` is JSON, saying where it is not. */
static int check_json(const char *what, const char *text)
{
	const char *end = NULL;
	cJSON *v = cJSON_ParseWithOpts(text, &end, 1);
	if (v != NULL) {
		cJSON_Delete(v);
		return 0;
	}
	size_t at = end ? (size_t)(end - text) : 0;
	return cli_error(CLI_BAD_JSON, "%s is not valid JSON (at byte %zu)",
			 what, at);
}

static char *read_stdin(void)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	while (buf != NULL) {
		size_t n = fread(buf + len, 1, cap - len - 1, stdin);
		len += n;
		if (n == 0)
			break;
		if (cap - len - 1 == 0) {
			char *g = realloc(buf, cap * 2);
			if (g == NULL) {
				free(buf);
				return NULL;
			}
			buf = g;
			cap *= 2;
		}
	}
	if (buf != NULL)
		buf[len] = '\0';
	return buf;
}

/* --unique-by payload,queue,priority,max-attempts,timeout,tags,meta,kind
 * or payload.KEY (that payload key only; several allowed). */
static int parse_unique(bus_unique_opts *u, const char ***keys, char **words,
			const char *text)
{
	static const struct {
		const char *name;
		unsigned bit;
	} fields[] = {
	    {"payload", BUS_UNIQUE_PAYLOAD},
	    {"queue", BUS_UNIQUE_QUEUE},
	    {"priority", BUS_UNIQUE_PRIORITY},
	    {"max-attempts", BUS_UNIQUE_MAX_ATTEMPTS},
	    {"timeout", BUS_UNIQUE_TIMEOUT},
	    {"tags", BUS_UNIQUE_TAGS},
	    {"meta", BUS_UNIQUE_META},
	    {"kind", 0},
	};
	/* The payload keys point into this copy, split in place; the caller
	 * frees it with the keys, after the enqueue. */
	char *copy = *words = strdup(text);
	if (copy == NULL)
		return cli_error(CLI_FAILED, "out of memory");
	size_t n = 0;
	for (char *save, *f = strtok_r(copy, ",", &save); f != NULL;
	     f = strtok_r(NULL, ",", &save)) {
		if (strncmp(f, "payload.", 8) == 0 && f[8] != '\0') {
			const char **k = realloc(*keys, (n + 1) * sizeof *k);
			if (k == NULL)
				return cli_error(CLI_FAILED, "out of memory");
			k[n++] = f + 8;
			*keys = k;
			continue;
		}
		size_t i = 0;
		while (i < sizeof fields / sizeof fields[0] &&
		       strcmp(fields[i].name, f) != 0)
			i++;
		if (i == sizeof fields / sizeof fields[0])
			return cli_usage("--unique-by: '%s' is not one of "
					 "payload, payload.KEY, queue, "
					 "priority, max-attempts, timeout, "
					 "tags, meta, kind",
					 f);
		u->fields |= fields[i].bit;
	}
	u->payload_keys = *keys;
	u->n_payload_keys = n;
	return 0;
}

int cmd_enqueue(struct cli *c, int argc, char **argv)
{
	const char *queue = NULL, *priority = NULL, *attempts = NULL,
		   *timeout = NULL, *run_in = NULL, *tags = NULL, *meta = NULL,
		   *unique_by = NULL, *unique_for = NULL, *unique_states = NULL,
		   *handler = NULL;
	const struct cli_opt opts[] = {
	    {"queue", OPT_STRING, &queue},
	    {"priority", OPT_STRING, &priority},
	    {"max-attempts", OPT_STRING, &attempts},
	    {"timeout", OPT_STRING, &timeout},
	    {"run-in", OPT_STRING, &run_in},
	    {"tags", OPT_STRING, &tags},
	    {"meta", OPT_STRING, &meta},
	    {"unique-by", OPT_STRING, &unique_by},
	    {"unique-for", OPT_STRING, &unique_for},
	    {"unique-states", OPT_STRING, &unique_states},
	    {"handler", OPT_STRING, &handler},
	    {NULL, 0, NULL},
	};
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "enqueue", argc, argv, opts, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos != 2)
		return cli_usage("usage: bus enqueue KIND JSON [--queue Q] "
				 "[--priority N] [--run-in DUR] ...");
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	const char **keys = NULL;
	char *unique_words = NULL;
	long long v;
	o.queue = queue;
	if (priority != NULL &&
	    (rc = cli_int(&v, "--priority", priority, BUS_PRIORITY_MIN,
			  BUS_PRIORITY_MAX)) != 0)
		return rc;
	if (priority != NULL)
		o.priority = (int)v;
	if (attempts != NULL && (rc = cli_int(&v, "--max-attempts", attempts, 1,
					      BUS_MAX_ATTEMPTS_MAX)) != 0)
		return rc;
	if (attempts != NULL)
		o.max_attempts = (int)v;
	if (timeout != NULL &&
	    (rc = cli_duration_ms(&o.timeout_ms, "--timeout", timeout)) != 0)
		return rc;
	if (run_in != NULL &&
	    (rc = cli_duration_ms(&o.run_in_ms, "--run-in", run_in)) != 0)
		return rc;
	if (tags != NULL && (rc = check_json("--tags", tags)) != 0)
		return rc;
	if (meta != NULL && (rc = check_json("--meta", meta)) != 0)
		return rc;
	o.tags = tags;
	o.meta = meta;
	if ((unique_for || unique_states) && unique_by == NULL)
		return cli_usage("--unique-for and --unique-states need "
				 "--unique-by");
	if (unique_by != NULL) {
		if ((rc = parse_unique(&u, &keys, &unique_words, unique_by)) != 0)
			goto out;
		int64_t ms = 0;
		if (unique_for != NULL &&
		    (rc = cli_duration_ms(&ms, "--unique-for", unique_for)) !=
			0)
			goto out;
		u.period_s = ms / 1000;
		if (unique_for != NULL && u.period_s == 0) {
			rc = cli_usage("--unique-for: at least 1s");
			goto out;
		}
		if (unique_states != NULL &&
		    (rc = cli_states(&u.states, unique_states)) != 0)
			goto out;
		o.unique = &u;
	}

	char *stdin_payload = NULL;
	const char *payload = pos[1];
	if (strcmp(payload, "-") == 0) {
		if ((payload = stdin_payload = read_stdin()) == NULL) {
			rc = cli_error(CLI_FAILED, "cannot read the payload "
						   "from stdin");
			goto out;
		}
	}
	if ((rc = check_json("the payload", payload)) != 0)
		goto out_payload;
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		goto out_payload;
	bus_enqueue_result res;
	int brc = handler
		      ? bus_enqueue_to(&res, b, pos[0], handler, payload, &o)
		      : bus_enqueue(&res, b, pos[0], payload, &o);
	if (brc != 0) {
		rc = cli_fail(brc, "enqueue");
		goto out_payload;
	}
	static const char *const status[] = {"inserted", "replaced",
					     "duplicate"};
	if (c->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "id", (double)res.id);
		cJSON_AddStringToObject(j, "status", status[res.status]);
		rc = cli_print_json(j);
	} else {
		printf("job %lld %s\n", (long long)res.id, status[res.status]);
		rc = CLI_OK;
	}
out_payload:
	free(stdin_payload);
out:
	free(keys);
	free(unique_words);
	return rc;
}
