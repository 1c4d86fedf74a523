/*
 * The server restarts mid-run under two worker processes. The workers
 * must ride it out: reconnect, write the outcomes they held, claim again
 * and finish. Nothing is lost. A job may run twice only when its run was
 * cut by the restart (its handler's write committed but the reply never
 * came back): at most one per executor.
 *
 * Needs the server's data directory and port ($BUS_TEST_MYSQL_DIR,
 * $BUS_TEST_MYSQL_PORT, or the POSTGRES ones) to restart it with the
 * store's script (scripts/mariadb.sh, scripts/postgres.sh); skips
 * without them, since it must not restart a server it does not own (in CI,
 * where they are always set, it fails instead).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault_run.h"

#define CONCURRENCY 8
#define WORKERS 2

static struct fault_env env;

static const char *script_path(void)
{
	static char path[4096];
	const char *s = getenv("BUS_TEST_RESTART_SH");
	if (s != NULL && s[0] != '\0')
		return s;
	const char *top = getenv("top_srcdir");
	snprintf(path, sizeof path, "%s/%s",
		 top != NULL && top[0] != '\0' ? top : ".", env.store->script);
	return path;
}

/* Prints what the restart script said (it goes to a file: the server it
 * starts keeps the script's output open for as long as it runs, which
 * would hold a pipe open under whoever reads this test's output). */
static void show_output(int fd)
{
	char buf[4096];
	ssize_t n;
	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		fwrite(buf, 1, (size_t)n, stderr);
}

static void restart_server(struct fault_run *r)
{
	const char *dir = getenv(env.store->dir_var);
	const char *port = getenv(env.store->port_var);
	const char *script = script_path();
	fault_note("restarting the server (%s restart %s %s) after %lld "
		   "completions",
		   script, dir, port, (long long)r->completed_at_fault);
	char out_path[] = "/tmp/bus-fault-restart.XXXXXX";
	int out = mkstemp(out_path);
	if (out < 0)
		fault_fail("mkstemp: %s", strerror(errno));
	unlink(out_path);
	double t0 = fault_elapsed_s();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		fault_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(out, STDOUT_FILENO);
		dup2(out, STDERR_FILENO);
		/* Nothing of this process (its connections) goes on to the
		 * server the script starts. */
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execlp("bash", "bash", script, "restart", dir, port,
		       (char *)NULL);
		fprintf(stderr, "cannot run bash %s: %s\n", script,
			strerror(errno));
		_exit(127);
	}
	fault_track_child(pid);
	int status;
	if (!fault_wait_child(pid, 60000, &status)) {
		show_output(out);
		fault_fail("%s restart did not finish within 60 s", script);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		show_output(out);
		fault_fail("%s restart %s %s failed (wait status %d)", script,
			   dir, port, status);
	}
	close(out);
	fault_note("the server is back after %.2f s", fault_elapsed_s() - t0);
}

int main(void)
{
	fault_init(&env, "fault_restart", "fr", 300);
	const struct fault_store *st = env.store;
	const char *dir = getenv(st->dir_var);
	const char *port = getenv(st->port_var);
	if ((dir == NULL || dir[0] == '\0' || port == NULL ||
	     port[0] == '\0') &&
	    fault_in_ci())
		fault_fail("CI: %s and %s are not set: the restart test must "
			   "run",
			   st->dir_var, st->port_var);
	if (dir == NULL || dir[0] == '\0' || port == NULL || port[0] == '\0')
		fault_skip("%s and %s are not set: not restarting a server "
			   "this test does not own; skipping the %s restart "
			   "test",
			   st->dir_var, st->port_var, st->label);
	if (strtoul(port, NULL, 10) != env.dsn.port)
		fault_fail("%s is %s but %s names port %u", st->port_var, port,
			   st->url_var, env.dsn.port);
	static const struct fault_scenario sc = {
		.n_jobs = 10000,
		.n_workers = WORKERS,
		.concurrency = CONCURRENCY,
		/* Longer than a restart, so held jobs are not rescued
		 * from a worker that merely lost the server for a moment,
		 * yet short enough for jobs whose claim's reply was lost. */
		.lease_ms = 10000,
		.rescue_ms = 1000,
		.fault_at = 2000,
		.fault = restart_server,
		.timeout_ms = 120000,
	};
	const size_t bound = WORKERS * CONCURRENCY;
	struct fault_run r;
	fault_run_scenario(&r, &env, &sc);
	if (r.completed_at_fault >= (int64_t)r.n)
		fault_fail("the server restarted only after all jobs were "
			   "done: the test proved nothing");
	if (r.duplicates > bound)
		fault_fail("%zu jobs ran twice; at most %zu runs (one per "
			   "executor) can be cut by a restart",
			   r.duplicates, bound);
	fault_run_free(&r);
	fault_pass("%d workers finished all %zu jobs across a server "
		   "restart; %zu ran twice (bound %zu)",
		   sc.n_workers, r.n, r.duplicates, bound);
}
