/*
 * The `bus` command-line tool: shared declarations.
 *
 * The tool uses libbus's public API only, so it works with every store URL.
 * Each command group has its own file (cmd_*.c); this header holds what
 * they share: the invocation (struct cli), exit statuses, option parsing
 * and output helpers.
 */
#ifndef BUS_TOOLS_CLI_H
#define BUS_TOOLS_CLI_H

#include <bus/bus.h>
#include <stdint.h>
#include <stdio.h>

struct cJSON;

/* Exit statuses, documented in bus(1) and `bus --help`. */
enum cli_exit {
	CLI_OK = 0,
	CLI_FAILED = 1,	     /* the operation failed (store error, ...) */
	CLI_USAGE = 2,	     /* unknown command or option, bad argument */
	CLI_BAD_URL = 3,     /* malformed URL, or no store for its scheme */
	CLI_UNREACHABLE = 4, /* the store's server cannot be reached */
	CLI_SCHEMA = 5,	     /* the schema is missing or old: bus migrate */
	CLI_NOT_FOUND = 6,   /* no job with that id */
	CLI_BAD_JSON = 7,    /* a payload (or other JSON) that does not parse */
	CLI_STATE = 8, /* the job's state forbids it (retry a running job) */
};

struct cli {
	const char *url; /* --url, else $BUS_URL, else memory: */
	int json;	 /* --json */
	bus *b;		 /* opened on first use by cli_bus; kept for `batch` */
};

/* The bus, opened on first use. On failure prints one line and returns
 * NULL with *exit_code set. */
bus *cli_bus(struct cli *c, int *exit_code);

/* Prints "bus: <what>: <bus_error_last()>" (or without what when NULL) and
 * returns the exit status for the libbus code `rc`. */
int cli_fail(int rc, const char *what);
/* The exit status for a libbus error code. */
int cli_exit_for(int rc);
/* Prints "bus: <message>" and returns CLI_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "bus: <message>" and returns `code`. */
int cli_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Option parsing ---- */

enum cli_opt_kind {
	OPT_FLAG,   /* --name: *flag = 1 */
	OPT_STRING, /* --name VALUE or --name=VALUE: *str = VALUE */
	OPT_LIST,   /* repeatable: appended to *list (malloc'd, NULL-ended) */
};

struct cli_opt {
	const char *name; /* without the dashes */
	enum cli_opt_kind kind;
	void *target; /* int *, const char **, or const char *** */
};

/*
 * Parses argv[0..argc) of command `cmd` ("jobs list"): options from `opts`
 * (NULL-name-terminated) plus the common --url and --json, anywhere among
 * the arguments ("--" ends options); the others are positional, put in
 * pos[0..*npos) (pos has room for argc). Returns 0 or CLI_USAGE, having
 * printed what is wrong.
 */
int cli_parse(struct cli *c, const char *cmd, int argc, char **argv,
	      const struct cli_opt *opts, char **pos, int *npos);

/* `arg` as it may be shown: a URL's password replaced by "***" (in buf). */
const char *cli_redact(const char *arg, char *buf, size_t size);

/* "7d", "12h", "30m", "45s", "250ms", or plain seconds; into
 * milliseconds. CLI_USAGE naming the option when malformed. */
int cli_duration_ms(int64_t *out, const char *opt, const char *text);
/* A decimal integer in [min, max]; CLI_USAGE naming `what` otherwise. */
int cli_int(long long *out, const char *what, const char *text, long long min,
	    long long max);
/* A state name or "all"; into a BUS_STATE_BIT set (0 for all).
 * Comma-separated names combine. */
int cli_states(unsigned *out, const char *text);

/* ---- Output ---- */

/* An ISO 8601 UTC time with microseconds, "-" for 0. */
void cli_time(char *buf, size_t size, int64_t us);
/* Prints the JSON value and a newline to stdout, and frees it. */
int cli_print_json(struct cJSON *v);
/* JSON text parsed into a value, or kept as a string when it does not
 * parse; NULL text is JSON null. */
struct cJSON *cli_json_value(const char *text);
/* A time as JSON: the ISO string, or null for 0. */
struct cJSON *cli_json_time(int64_t us);
/* A job as a JSON object (all columns). */
struct cJSON *cli_job_json(const bus_job *j);

/* ---- Commands ---- (argv[0] is the first argument after the command) */

int cmd_migrate(struct cli *c, int argc, char **argv);
int cmd_enqueue(struct cli *c, int argc, char **argv);
int cmd_jobs(struct cli *c, int argc, char **argv);
int cmd_queues(struct cli *c, int argc, char **argv);
int cmd_prune(struct cli *c, int argc, char **argv);
int cmd_stats(struct cli *c, int argc, char **argv);
int cmd_work(struct cli *c, int argc, char **argv);
int cmd_metrics(struct cli *c, int argc, char **argv);
int cmd_batch(struct cli *c, int argc, char **argv);

/* Runs one command line (argv[0] is the command's name). */
int cli_run(struct cli *c, int argc, char **argv);

/* ---- Pieces of `work` and `metrics` ---- */

/* signals.c: SIGTERM and SIGINT make *fd readable; cli_signal_seen tells
 * which came (0: none) and empties the pipe. */
int cli_signals_install(int *fd);
int cli_signal_seen(void);
void cli_signals_restore(void);

/* exec.c: runs a job with `command` (through /bin/sh -c). */
struct exec_opts {
	const char *command;
	int64_t timeout_ms; /* for jobs without their own; 0: none */
	size_t stderr_tail; /* bytes of stderr kept as the error */
	/* From SIGTERM to SIGKILL when a command is stopped; 0: SIGKILL at
	 * once. At most CLI_KILL_AFTER_MAX_MS. */
	int64_t kill_after_ms;
};
#define CLI_KILL_AFTER_DEFAULT_MS 5000
#define CLI_KILL_AFTER_MAX_MS 86400000 /* one day */
int exec_job_handler(bus_ctx *ctx, void *udata); /* udata: exec_opts */

/* http.c: a minimal HTTP/1.0 server answering GET /metrics. */
typedef int (*http_render_fn)(char **text, size_t *len, void *udata);
struct http_server;
/* Listens on "HOST:PORT" ("[::1]:PORT" for IPv6). */
int http_listen(struct http_server **out, const char *addr);
/* The port bound (useful with port 0). */
int http_port(const struct http_server *s);
/* Serves until `stop_fd` is readable. */
int http_serve(struct http_server *s, int stop_fd, http_render_fn fn,
	       void *udata);
void http_close(struct http_server *s);

/* metrics text of a bus and its workers, malloc'd; 0 or a libbus code. */
int metrics_text(char **text, size_t *len, bus *b, bus_worker *const *w,
		 size_t n_workers);

#endif
