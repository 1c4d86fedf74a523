/* bus jobs list|show|retry|cancel|delete. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* One line of a job's last error for the list: its text, shortened. */
static void last_error(char *buf, size_t size, const char *errors)
{
	buf[0] = '\0';
	cJSON *a = errors ? cJSON_Parse(errors) : NULL;
	int n = cJSON_GetArraySize(a);
	cJSON *e = n > 0 ? cJSON_GetArrayItem(a, n - 1) : NULL;
	cJSON *text = cJSON_GetObjectItemCaseSensitive(e, "error");
	if (cJSON_IsString(text)) {
		snprintf(buf, size, "%s", text->valuestring);
		for (char *p = buf; *p; p++)
			if (*p == '\n' || *p == '\t' || *p == '\r')
				*p = ' ';
		if (strlen(text->valuestring) >= size && size > 4)
			memcpy(buf + size - 4, "...", 4);
	}
	cJSON_Delete(a);
}

static int jobs_list(struct cli *c, int argc, char **argv)
{
	const char *state = NULL, *queue = NULL, *kind = NULL, *limit = NULL,
		   *after = NULL;
	const struct cli_opt opts[] = {
	    {"state", OPT_STRING, &state}, {"queue", OPT_STRING, &queue},
	    {"kind", OPT_STRING, &kind},   {"limit", OPT_STRING, &limit},
	    {"after", OPT_STRING, &after}, {NULL, 0, NULL},
	};
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "jobs list", argc, argv, opts, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos > 0)
		return cli_usage("'bus jobs list' takes no arguments");
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	long long v;
	f.queue = queue;
	f.kind = kind;
	if (state != NULL && (rc = cli_states(&f.states, state)) != 0)
		return rc;
	f.limit = 100;
	if (limit != NULL &&
	    (rc = cli_int(&v, "--limit", limit, 1, 1000000)) != 0)
		return rc;
	if (limit != NULL)
		f.limit = (size_t)v;
	if (after != NULL &&
	    (rc = cli_int(&v, "--after", after, 0, INT64_MAX)) != 0)
		return rc;
	if (after != NULL)
		f.after_id = v;
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		return rc;
	bus_job *jobs;
	size_t n;
	int brc = bus_job_list(&jobs, &n, b, &f);
	if (brc != 0)
		return cli_fail(brc, "listing jobs");
	if (c->json) {
		cJSON *a = cJSON_CreateArray();
		for (size_t i = 0; a && i < n; i++)
			cJSON_AddItemToArray(a, cli_job_json(&jobs[i]));
		bus_job_list_free(jobs, n);
		return cli_print_json(a);
	}
	printf("%-8s %-10s %-16s %-24s %-7s %-8s %-27s %s\n", "ID", "STATE",
	       "QUEUE", "KIND", "ATTEMPT", "PRIORITY", "SCHEDULED_AT",
	       "LAST_ERROR");
	for (size_t i = 0; i < n; i++) {
		const bus_job *j = &jobs[i];
		char at[40], err[61], attempt[24];
		cli_time(at, sizeof at, j->scheduled_at);
		last_error(err, sizeof err, j->errors);
		snprintf(attempt, sizeof attempt, "%d/%d", j->attempt,
			 j->max_attempts);
		if (err[0] != '\0')
			printf("%-8lld %-10s %-16s %-24s %-7s %-8d %-27s %s\n",
			       (long long)j->id, bus_job_state_name(j->state),
			       j->queue, j->kind, attempt, j->priority, at,
			       err);
		else
			printf("%-8lld %-10s %-16s %-24s %-7s %-8d %s\n",
			       (long long)j->id, bus_job_state_name(j->state),
			       j->queue, j->kind, attempt, j->priority, at);
	}
	/* A full page may not be all: say how to see the next one. */
	if (n > 0 && n == f.limit)
		fprintf(stderr,
			"bus: %zu jobs shown; the next ones with --after "
			"%lld\n",
			n, (long long)jobs[n - 1].id);
	bus_job_list_free(jobs, n);
	return CLI_OK;
}

static void show_line(const char *name, const char *value)
{
	printf("%-19s %s\n", name, value ? value : "-");
}

static void show_time(const char *name, int64_t us)
{
	char t[40];
	cli_time(t, sizeof t, us);
	show_line(name, t);
}

static void show_job(const bus_job *j)
{
	char n[64];
	snprintf(n, sizeof n, "%lld", (long long)j->id);
	show_line("id", n);
	show_line("kind", j->kind);
	show_line("handler", j->handler);
	show_line("queue", j->queue);
	show_line("state", bus_job_state_name(j->state));
	snprintf(n, sizeof n, "%d", j->priority);
	show_line("priority", n);
	snprintf(n, sizeof n, "%d of %d", j->attempt, j->max_attempts);
	show_line("attempt", n);
	if (j->timeout_ms > 0)
		snprintf(n, sizeof n, "%lld ms", (long long)j->timeout_ms);
	else
		snprintf(n, sizeof n, "none");
	show_line("timeout", n);
	show_line("payload", j->payload);
	show_line("meta", j->meta);
	show_line("tags", j->tags);
	show_time("inserted_at", j->inserted_at);
	show_time("scheduled_at", j->scheduled_at);
	show_time("attempted_at", j->attempted_at);
	show_line("attempted_by", j->attempted_by);
	show_time("lease_until", j->lease_until);
	show_time("started_at", j->started_at);
	show_time("finished_at", j->finished_at);
	show_time("cancel_requested_at", j->cancel_requested_at);
	show_line("unique_key", j->unique_key);
	char states[128] = "";
	for (int s = 0; s < BUS_JOB_STATE_COUNT; s++)
		if (j->unique_states & BUS_STATE_BIT(s)) {
			if (states[0])
				strcat(states, ",");
			strcat(states, bus_job_state_name((bus_job_state)s));
		}
	show_line("unique_states", states[0] ? states : "-");
	cJSON *errors = j->errors ? cJSON_Parse(j->errors) : NULL;
	int ne = cJSON_GetArraySize(errors);
	printf("%-19s %d\n", "errors", ne);
	for (int i = 0; i < ne; i++) {
		cJSON *e = cJSON_GetArrayItem(errors, i);
		cJSON *att = cJSON_GetObjectItemCaseSensitive(e, "attempt");
		cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "at");
		cJSON *text = cJSON_GetObjectItemCaseSensitive(e, "error");
		char when[40] = "?";
		if (cJSON_IsNumber(at))
			cli_time(when, sizeof when, (int64_t)at->valuedouble);
		else if (cJSON_IsString(at))
			snprintf(when, sizeof when, "%s", at->valuestring);
		printf("  attempt %d at %s: %s\n",
		       cJSON_IsNumber(att) ? att->valueint : 0, when,
		       cJSON_IsString(text) ? text->valuestring : "?");
	}
	cJSON_Delete(errors);
}

static int parse_id(int64_t *id, const char *text)
{
	long long v;
	int rc = cli_int(&v, "job id", text, 1, INT64_MAX);
	*id = v;
	return rc;
}

static int jobs_show(struct cli *c, int argc, char **argv)
{
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "jobs show", argc, argv, NULL, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos != 1)
		return cli_usage("usage: bus jobs show ID");
	int64_t id;
	if ((rc = parse_id(&id, pos[0])) != 0)
		return rc;
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		return rc;
	bus_job *j;
	int brc = bus_job_get(&j, b, id);
	if (brc == BUS_ENOTFOUND)
		return cli_error(CLI_NOT_FOUND, "no job with id %lld",
				 (long long)id);
	if (brc != 0)
		return cli_fail(brc, "reading the job");
	if (c->json)
		rc = cli_print_json(cli_job_json(j));
	else
		show_job(j);
	bus_job_free(j);
	return rc;
}

enum job_action { ACT_RETRY, ACT_CANCEL, ACT_DELETE };
static const char *const action_name[] = {"retry", "cancel", "delete"};
static const char *const action_done[] = {"retried", "cancelled", "deleted"};

static int act(bus *b, enum job_action a, int64_t id)
{
	switch (a) {
	case ACT_RETRY: return bus_job_retry(b, id);
	case ACT_CANCEL: return bus_job_cancel(b, id);
	default: return bus_job_delete(b, id);
	}
}

/* --all --state S: every matching job, page by page. A job that changed
 * meanwhile (now executing, say) is skipped and counted. */
static int act_all(struct cli *c, bus *b, enum job_action a,
		   const bus_job_filter *filter)
{
	bus_job_filter f = *filter;
	f.limit = 500;
	long long done = 0, skipped = 0;
	for (;;) {
		bus_job *jobs;
		size_t n;
		int brc = bus_job_list(&jobs, &n, b, &f);
		if (brc != 0)
			return cli_fail(brc, "listing jobs");
		for (size_t i = 0; i < n; i++) {
			brc = act(b, a, jobs[i].id);
			if (brc == 0)
				done++;
			else if (brc == BUS_ESTATE || brc == BUS_ENOTFOUND)
				skipped++;
			else {
				bus_job_list_free(jobs, n);
				return cli_fail(brc, action_name[a]);
			}
		}
		if (n > 0)
			f.after_id = jobs[n - 1].id;
		bus_job_list_free(jobs, n);
		if (n < f.limit)
			break;
	}
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, action_done[a], (double)done);
		cJSON_AddNumberToObject(o, "skipped", (double)skipped);
		return cli_print_json(o);
	}
	printf("%lld jobs %s", done, action_done[a]);
	if (skipped > 0)
		printf(", %lld skipped (their state changed meanwhile)",
		       skipped);
	printf("\n");
	return CLI_OK;
}

/* Whether a job is executing: a cancel then only records a request. */
static int still_running(bus *b, int64_t id)
{
	bus_job *j;
	if (bus_job_get(&j, b, id) != 0)
		return 0;
	int running = j->state == BUS_JOB_EXECUTING;
	bus_job_free(j);
	return running;
}

static int jobs_act(struct cli *c, enum job_action a, int argc, char **argv)
{
	int all = 0;
	const char *state = NULL, *queue = NULL, *kind = NULL;
	const struct cli_opt opts[] = {
	    {"all", OPT_FLAG, &all},
	    {"state", OPT_STRING, &state},
	    {"queue", OPT_STRING, &queue},
	    {"kind", OPT_STRING, &kind},
	    {NULL, 0, NULL},
	};
	char cmd[32];
	snprintf(cmd, sizeof cmd, "jobs %s", action_name[a]);
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, cmd, argc, argv, opts, pos, &npos);
	if (rc != 0)
		return rc;
	if (all && npos > 0)
		return cli_usage("'bus %s': give job ids or --all, not both",
				 cmd);
	if (!all && (state || queue || kind))
		return cli_usage("'bus %s': --state, --queue and --kind go "
				 "with --all",
				 cmd);
	if (all && state == NULL)
		return cli_usage("'bus %s --all' needs --state (say "
				 "--state discarded; --state all for every "
				 "job)",
				 cmd);
	if (!all && npos == 0)
		return cli_usage("usage: bus %s ID... | --all --state S", cmd);
	int64_t *ids = calloc((size_t)npos + 1, sizeof *ids);
	if (ids == NULL)
		return cli_error(CLI_FAILED, "out of memory");
	for (int i = 0; i < npos; i++)
		if ((rc = parse_id(&ids[i], pos[i])) != 0) {
			free(ids);
			return rc;
		}
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	if (all && (rc = cli_states(&f.states, state)) != 0) {
		free(ids);
		return rc;
	}
	bus *b = cli_bus(c, &rc);
	if (b == NULL) {
		free(ids);
		return rc;
	}
	if (all) {
		f.queue = queue;
		f.kind = kind;
		free(ids);
		return act_all(c, b, a, &f);
	}
	/* Every id is tried; the status is the first failure's. */
	int first = CLI_OK;
	cJSON *out = c->json ? cJSON_CreateArray() : NULL;
	for (int i = 0; i < npos; i++) {
		int brc = act(b, a, ids[i]);
		int code = brc == 0 ? CLI_OK
			   : brc == BUS_ENOTFOUND
			       ? cli_error(CLI_NOT_FOUND, "no job with id %lld",
					   (long long)ids[i])
			       : cli_fail(brc, action_name[a]);
		if (first == CLI_OK)
			first = code;
		if (out != NULL) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "id", (double)ids[i]);
			cJSON_AddBoolToObject(o, "ok", brc == 0);
			if (brc != 0)
				cJSON_AddStringToObject(
				    o, "error", bus_error_last()->message);
			cJSON_AddItemToArray(out, o);
		} else if (brc == 0 && a == ACT_CANCEL && still_running(b, ids[i])) {
			printf("job %lld: cancel requested (it is running; its "
			       "worker stops it)\n",
			       (long long)ids[i]);
		} else if (brc == 0) {
			printf("job %lld %s\n", (long long)ids[i],
			       action_done[a]);
		}
	}
	free(ids);
	if (out != NULL)
		cli_print_json(out);
	return first;
}

int cmd_jobs(struct cli *c, int argc, char **argv)
{
	if (argc == 0)
		return cli_usage(
		    "usage: bus jobs list|show|retry|cancel|delete "
		    "...");
	const char *sub = argv[0];
	if (strcmp(sub, "list") == 0)
		return jobs_list(c, argc - 1, argv + 1);
	if (strcmp(sub, "show") == 0)
		return jobs_show(c, argc - 1, argv + 1);
	if (strcmp(sub, "retry") == 0)
		return jobs_act(c, ACT_RETRY, argc - 1, argv + 1);
	if (strcmp(sub, "cancel") == 0)
		return jobs_act(c, ACT_CANCEL, argc - 1, argv + 1);
	if (strcmp(sub, "delete") == 0)
		return jobs_act(c, ACT_DELETE, argc - 1, argv + 1);
	char shown[512];
	return cli_usage("unknown command 'jobs %s' (list, show, retry, "
			 "cancel, delete)",
			 cli_redact(sub, shown, sizeof shown));
}
