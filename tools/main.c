/* bus: inspect and operate a libbus store from the shell. This file holds
 * the entry point, the command table, the help text and the mapping of
 * libbus errors to exit statuses. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: bus [--url URL] [--json] COMMAND [ARGS]\n"
    "\n"
    "The store is --url URL, else $BUS_URL, else memory:.\n"
    "\n"
    "commands:\n"
    "  migrate [--check]               create or update the schema; --check "
    "only\n"
    "                                  tells whether it is current\n"
    "  enqueue KIND JSON [--queue Q] [--priority N] [--max-attempts N]\n"
    "          [--timeout DUR] [--run-in DUR] [--tags JSON] [--meta JSON]\n"
    "          [--unique-by FIELDS] [--unique-for DUR] [--handler NAME]\n"
    "  jobs list [--state S] [--queue Q] [--kind K] [--limit N] [--after ID]\n"
    "  jobs show ID\n"
    "  jobs retry|cancel|delete ID...\n"
    "  jobs retry|cancel|delete --all --state S [--queue Q] [--kind K]\n"
    "  queues                          counts per queue and state, paused "
    "flag\n"
    "  queues pause|resume QUEUE...\n"
    "  prune --older-than DUR          delete jobs finished before then\n"
    "  stats                           jobs per state, queues\n"
    "  work --exec CMD [--queue Q[:N]]... [--timeout DUR] [--grace DUR]\n"
    "       [--kill-after DUR] [--drain] [--poll DUR] [--node NAME]\n"
    "       [--metrics HOST:PORT]\n"
    "  metrics --listen HOST:PORT | --print\n"
    "  batch                           run commands read from stdin, one a\n"
    "                                  line, on one connection\n"
    "\n"
    "DUR is 250ms, 30s, 5m, 12h or 7d (a plain number is seconds).\n"
    "--json prints JSON instead of tables (read commands).\n"
    "\n"
    "exit status: 0 ok, 1 failed, 2 usage, 3 bad URL, 4 store unreachable,\n"
    "5 schema missing or old, 6 no such job, 7 bad JSON, 8 job state\n"
    "forbids it. See bus(1).\n";

int cli_exit_for(int rc)
{
	switch (rc) {
	case BUS_OK: return CLI_OK;
	case BUS_EINVAL: return CLI_USAGE;
	case BUS_ENOTFOUND: return CLI_NOT_FOUND;
	case BUS_EBACKEND: return CLI_UNREACHABLE;
	case BUS_ESCHEMA: return CLI_SCHEMA;
	case BUS_ESTATE: return CLI_STATE;
	default: return CLI_FAILED;
	}
}

int cli_fail(int rc, const char *what)
{
	/* The library's advice names its API; the tool's user runs this. */
	const char *hint = rc == BUS_ESCHEMA ? " (run 'bus migrate')" : "";
	if (what != NULL)
		fprintf(stderr, "bus: %s: %s%s\n", what,
			bus_error_last()->message, hint);
	else
		fprintf(stderr, "bus: %s%s\n", bus_error_last()->message, hint);
	return cli_exit_for(rc);
}

static void verror(const char *fmt, va_list ap)
{
	fputs("bus: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	return CLI_USAGE;
}

int cli_error(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	return code;
}

bus *cli_bus(struct cli *c, int *exit_code)
{
	if (c->b != NULL)
		return c->b;
	int rc = bus_open(&c->b, c->url);
	if (rc == 0) {
		/* The library warns applications about jobs of handlers they
		 * have not declared; the tool never declares any (its options
		 * are its arguments). Errors still show; $BUS_LOG overrides. */
		const char *level = getenv("BUS_LOG");
		if (level == NULL || level[0] == '\0')
			bus_set_logger(c->b, BUS_LOG_ERROR, NULL, NULL);
		return c->b;
	}
	c->b = NULL;
	/* A URL that does not parse or names no store is the user's to fix;
	 * a server that refuses or is not there is another matter. Messages
	 * from libbus never contain the password. */
	*exit_code = rc == BUS_EBACKEND ? CLI_UNREACHABLE : CLI_BAD_URL;
	fprintf(stderr, "bus: cannot open the store: %s\n",
		bus_error_last()->message);
	return NULL;
}

static const struct {
	const char *name;
	int (*run)(struct cli *c, int argc, char **argv);
} commands[] = {
    {"migrate", cmd_migrate}, {"enqueue", cmd_enqueue}, {"jobs", cmd_jobs},
    {"queues", cmd_queues},   {"prune", cmd_prune},	{"stats", cmd_stats},
    {"work", cmd_work},	      {"metrics", cmd_metrics}, {"batch", cmd_batch},
};

int cli_run(struct cli *c, int argc, char **argv)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(argv[0], commands[i].name) == 0)
			return commands[i].run(c, argc - 1, argv + 1);
	char shown[512];
	return cli_usage("unknown command '%s' (see 'bus --help')",
			 cli_redact(argv[0], shown, sizeof shown));
}

int main(int argc, char **argv)
{
	/* A job's command that stops reading its payload must not kill the
	 * worker; writes then fail with EPIPE, which the caller handles. */
	signal(SIGPIPE, SIG_IGN);
	struct cli c = {NULL, 0, NULL};
	int i = 1;
	/* Options before the command; each command also accepts them. */
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_text, stdout);
			return CLI_OK;
		} else if (strcmp(a, "--version") == 0) {
			printf("bus (libbus) %s\n", bus_version());
			return CLI_OK;
		} else if (strcmp(a, "--json") == 0) {
			c.json = 1;
		} else if (strcmp(a, "--url") == 0 && i + 1 < argc) {
			c.url = argv[++i];
		} else if (strncmp(a, "--url=", 6) == 0) {
			c.url = a + 6;
		} else if (strcmp(a, "--url") == 0) {
			return cli_usage("option '--url' needs a value");
		} else {
			char shown[512];
			return cli_usage(
			    "unknown option '%s' (see 'bus --help')",
			    cli_redact(a, shown, sizeof shown));
		}
	}
	if (i == argc) {
		fputs(usage_text, stderr);
		return CLI_USAGE;
	}
	int rc = cli_run(&c, argc - i, argv + i);
	bus_close(c.b);
	return rc;
}
