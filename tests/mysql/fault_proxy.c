/* Starting and driving the fault proxy from a test. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault_proxy.h"

void fault_proxy_start(struct fault_proxy *p, const struct fault_env *e)
{
	const char *prog = getenv("BUS_FAULTPROXY");
	if (prog == NULL || prog[0] == '\0')
		prog = "./faultproxy/faultproxy";
	if (e->dsn.socket != NULL)
		fault_skip("the test server is reached by a socket; the proxy "
			   "needs TCP");
	int in[2], out[2];
	if (pipe(in) != 0 || pipe(out) != 0)
		fault_fail("pipe: %s", strerror(errno));
	char port[16];
	snprintf(port, sizeof port, "%u", e->dsn.port);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		fault_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execl(prog, "faultproxy", port, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	fault_track_child(pid);
	p->pid = pid;
	p->to = fdopen(in[1], "w");
	p->from = fdopen(out[0], "r");
	char line[128];
	if (p->to == NULL || p->from == NULL ||
	    fgets(line, sizeof line, p->from) == NULL ||
	    sscanf(line, "listen %u", &p->port) != 1)
		fault_fail("the fault proxy (%s) did not start", prog);
}

const char *fault_proxy_cmd(struct fault_proxy *p, const char *fmt, ...)
{
	static char line[256];
	va_list ap;
	va_start(ap, fmt);
	vfprintf(p->to, fmt, ap);
	va_end(ap);
	fputc('\n', p->to);
	fflush(p->to);
	if (fgets(line, sizeof line, p->from) == NULL)
		fault_fail("the fault proxy is gone");
	line[strcspn(line, "\n")] = '\0';
	if (strncmp(line, "ok", 2) != 0)
		fault_fail("the fault proxy: %s", line);
	return line;
}

long fault_proxy_stat(struct fault_proxy *p, const char *name)
{
	const char *line = fault_proxy_cmd(p, "stats");
	char key[32];
	snprintf(key, sizeof key, " %s=", name);
	const char *at = strstr(line, key);
	if (at == NULL)
		fault_fail("the fault proxy's stats have no %s: %s", name,
			   line);
	return strtol(at + strlen(key), NULL, 10);
}

char *fault_proxy_url(const struct fault_env *e, const struct fault_proxy *p,
		      const char *options)
{
	/* mysql://user:password@HOST:PORT/db?... (or postgres://): the
	 * authority's host and port become the proxy's; TLS is turned off
	 * (the last setting of an option wins). */
	const char *url = e->url;
	const char *auth = strstr(url, "://");
	if (auth == NULL)
		fault_fail("the test URL has no ://");
	auth += 3;
	const char *path = auth + strcspn(auth, "/?");
	const char *host = auth;
	for (const char *q = auth; q < path; q++)
		if (*q == '@')
			host = q + 1;
	size_t len = strlen(url) + strlen(options) + 64;
	char *out = malloc(len);
	if (out == NULL)
		fault_fail("out of memory");
	snprintf(out, len, "%.*s127.0.0.1:%u%s%c%s%s%s", (int)(host - url),
		 url, p->port, path, strchr(path, '?') ? '&' : '?',
		 e->dsn.postgres ? "sslmode=disable" : "ssl-mode=disabled",
		 options[0] ? "&" : "", options);
	return out;
}

bus *fault_proxy_bus(const struct fault_env *e, const struct fault_proxy *p,
		     const char *options)
{
	char *url = fault_proxy_url(e, p, options);
	bus *b = NULL;
	if (bus_open(&b, url) != 0)
		fault_fail("bus_open through the proxy: %s",
			   bus_error_last()->message);
	free(url);
	if (getenv("BUS_LOG") == NULL)
		bus_set_logger(b, BUS_LOG_ERROR, NULL, NULL);
	return b;
}

void fault_proxy_stop(struct fault_proxy *p)
{
	if (p->pid <= 0)
		return;
	fclose(p->to);
	fclose(p->from);
	int status;
	if (!fault_wait_child(p->pid, 5000, &status)) {
		kill(p->pid, SIGKILL);
		fault_wait_child(p->pid, 5000, &status);
	}
	p->pid = 0;
}
