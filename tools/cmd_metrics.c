/* bus metrics --listen HOST:PORT | --print: the store's job counts and
 * queue flags in the Prometheus text format, served on /metrics until
 * SIGTERM or SIGINT, or printed once. */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int metrics_text(char **text, size_t *len, bus *b, bus_worker *const *w,
		 size_t n_workers)
{
	bus_metrics_render_opts o = BUS_METRICS_RENDER_OPTS_INIT;
	o.bus = b;
	o.workers = (const bus_worker *const *)w;
	o.n_workers = n_workers;
	size_t size = 16384;
	*text = NULL;
	for (;;) {
		char *buf = realloc(*text, size);
		if (buf == NULL) {
			free(*text);
			*text = NULL;
			cli_error(CLI_FAILED,
				  "out of memory rendering metrics");
			return BUS_ENOMEM;
		}
		*text = buf;
		int rc = bus_metrics_render(buf, size, len, &o);
		if (rc != 0) {
			free(*text);
			*text = NULL;
			return rc;
		}
		if (*len < size)
			return 0;
		size = *len + 4096; /* it may grow before the next call */
	}
}

static int render_store(char **text, size_t *len, void *udata)
{
	return metrics_text(text, len, udata, NULL, 0);
}

int cmd_metrics(struct cli *c, int argc, char **argv)
{
	const char *listen = NULL;
	int print = 0;
	const struct cli_opt opts[] = {{"listen", OPT_STRING, &listen},
				       {"print", OPT_FLAG, &print},
				       {NULL, 0, NULL}};
	char *pos[argc + 1];
	int npos, rc = cli_parse(c, "metrics", argc, argv, opts, pos, &npos);
	if (rc != 0)
		return rc;
	if (npos > 0 || (listen == NULL) == !print)
		return cli_usage("usage: bus metrics --listen HOST:PORT | "
				 "--print");
	if (c->json)
		return cli_usage("'bus metrics' writes the Prometheus text "
				 "format; --json does not apply");
	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		return rc;
	char *text;
	size_t len;
	int brc = metrics_text(&text, &len, b, NULL, 0);
	if (brc != 0)
		return cli_fail(brc, "reading the metrics");
	if (print) {
		fwrite(text, 1, len, stdout);
		free(text);
		return CLI_OK;
	}
	free(text);
	struct http_server *s;
	if ((rc = http_listen(&s, listen)) != 0)
		return rc;
	int sig_fd;
	if ((rc = cli_signals_install(&sig_fd)) != 0) {
		http_close(s);
		return rc;
	}
	const char *colon = strrchr(listen, ':');
	fprintf(stderr, "bus metrics: serving http://%.*s:%d/metrics\n",
		(int)(colon - listen), listen, http_port(s));
	rc = http_serve(s, sig_fd, render_store, b);
	cli_signals_restore();
	http_close(s);
	return rc;
}
