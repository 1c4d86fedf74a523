/*
 * bus work --exec CMD [--queue Q[:N]]...: a worker that runs every job of
 * its queues as a command (exec.c), whatever the job's kind. SIGTERM or
 * SIGINT stops it gracefully: no new claims, running jobs get the grace
 * period to finish, what is left is given back. --drain stops it once its
 * queues hold no job that is due or running.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

/* One line per finished job on stderr (stdout belongs to the commands). */
static int log_job(bus_ctx *ctx, bus_next *next, void *udata)
{
	int quiet = *(const int *)udata;
	int rc = bus_next_call(next);
	const bus_job *j = bus_ctx_job(ctx);
	if (quiet || j == NULL)
		return rc;
	double s = (double)bus_next_elapsed_ns(next) / 1e9;
	if (rc == 0)
		fprintf(stderr, "bus work: job %lld %s completed in %.3fs\n",
			(long long)j->id, j->kind, s);
	else
		fprintf(stderr,
			"bus work: job %lld %s failed (attempt %d of %d) in "
			"%.3fs: %s\n",
			(long long)j->id, j->kind, j->attempt, j->max_attempts,
			s, bus_ctx_error(ctx) ? bus_ctx_error(ctx) : "failed");
	return rc;
}

static int parse_queues(bus_worker_queue **out, size_t *n, const char **specs)
{
	size_t count = 0;
	while (specs && specs[count])
		count++;
	if (count == 0) {
		static const char *const def[] = {"default", NULL};
		specs = (const char **)def;
		count = 1;
	}
	bus_worker_queue *q = calloc(count, sizeof *q);
	if (q == NULL)
		return cli_error(CLI_FAILED, "out of memory");
	for (size_t i = 0; i < count; i++) {
		char *colon = strrchr(specs[i], ':');
		q[i].concurrency = 1;
		if (colon != NULL) {
			long long v;
			int rc = cli_int(&v, "--queue concurrency", colon + 1,
					 1, 1000);
			if (rc != 0) {
				free(q);
				return rc;
			}
			q[i].concurrency = (int)v;
			*colon = '\0'; /* argv is ours to cut */
		}
		if (specs[i][0] == '\0') {
			free(q);
			return cli_usage("--queue: a queue needs a name (Q or "
					 "Q:N)");
		}
		q[i].name = specs[i];
	}
	*out = q;
	*n = count;
	return 0;
}

/* Whether none of the queues holds a job that is due now or running. */
static int drained(bus *b, const bus_worker_queue *q, size_t n, int *rc)
{
	bus_queue_info *info;
	size_t ni;
	*rc = bus_queue_list(&info, &ni, b);
	if (*rc != 0)
		return 0;
	/* A paused queue's jobs wait for a resume, not for this worker; its
	 * running jobs still count. */
	int busy = 0;
	unsigned char *paused = calloc(n, 1);
	for (size_t i = 0; i < ni; i++)
		for (size_t k = 0; k < n; k++)
			if (strcmp(info[i].name, q[k].name) == 0) {
				if (paused != NULL)
					paused[k] = info[i].paused != 0;
				if (info[i].counts[BUS_JOB_EXECUTING] > 0 ||
				    (!info[i].paused &&
				     info[i].counts[BUS_JOB_AVAILABLE] > 0))
					busy = 1;
			}
	bus_free(info);
	if (busy || paused == NULL) {
		free(paused);
		return 0;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	int64_t now = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
	for (size_t k = 0; k < n && !busy; k++) {
		if (paused[k])
			continue;
		bus_job_filter f = BUS_JOB_FILTER_INIT;
		f.states = BUS_STATE_BIT(BUS_JOB_SCHEDULED) |
			   BUS_STATE_BIT(BUS_JOB_RETRYABLE);
		f.queue = q[k].name;
		f.limit = 1000;
		for (;;) {
			bus_job *jobs;
			size_t nj;
			if ((*rc = bus_job_list(&jobs, &nj, b, &f)) != 0) {
				busy = 1;
				break;
			}
			for (size_t i = 0; i < nj; i++)
				if (jobs[i].scheduled_at <= now)
					busy = 1;
			if (nj > 0)
				f.after_id = jobs[nj - 1].id;
			bus_job_list_free(jobs, nj);
			if (busy || nj < f.limit)
				break;
		}
	}
	free(paused);
	return !busy;
}

struct metrics_thread {
	struct http_server *server;
	bus *b;
	bus_worker *w;
	int stop[2];
	pthread_t thread;
};

static int render_worker(char **text, size_t *len, void *udata)
{
	struct metrics_thread *m = udata;
	return metrics_text(text, len, m->b, &m->w, 1);
}

static void *serve_metrics(void *arg)
{
	struct metrics_thread *m = arg;
	http_serve(m->server, m->stop[0], render_worker, m);
	return NULL;
}

int cmd_work(struct cli *c, int argc, char **argv)
{
	const char *command = NULL, *timeout = NULL, *grace = NULL,
		   *poll_every = NULL, *node = NULL, *metrics = NULL,
		   *tail = NULL, *kill_after = NULL;
	const char **queues = NULL;
	int drain = 0, quiet = 0;
	const struct cli_opt opts[] = {
	    {"exec", OPT_STRING, &command},
	    {"queue", OPT_LIST, &queues},
	    {"timeout", OPT_STRING, &timeout},
	    {"grace", OPT_STRING, &grace},
	    {"kill-after", OPT_STRING, &kill_after},
	    {"poll", OPT_STRING, &poll_every},
	    {"node", OPT_STRING, &node},
	    {"metrics", OPT_STRING, &metrics},
	    {"stderr-tail", OPT_STRING, &tail},
	    {"drain", OPT_FLAG, &drain},
	    {"quiet", OPT_FLAG, &quiet},
	    {NULL, 0, NULL},
	};
	char *pos[argc + 1];
	bus_worker_queue *wq = NULL;
	size_t nq = 0;
	/* Static: the any-job handler registered on a `batch` bus keeps
	 * pointing here across several `work` commands. */
	static struct exec_opts eo;
	eo = (struct exec_opts){NULL, 0, 2048, CLI_KILL_AFTER_DEFAULT_MS};
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	int npos, rc = cli_parse(c, "work", argc, argv, opts, pos, &npos);
	if (rc != 0)
		goto out;
	rc = CLI_USAGE;
	if (npos > 0) {
		cli_usage("'bus work' takes no arguments (the command goes in "
			  "--exec CMD)");
		goto out;
	}
	if (command == NULL || command[0] == '\0') {
		cli_usage("'bus work' needs --exec CMD (run with the job's "
			  "payload on stdin)");
		goto out;
	}
	eo.command = command;
	if ((timeout &&
	     cli_duration_ms(&eo.timeout_ms, "--timeout", timeout)) ||
	    (grace &&
	     cli_duration_ms(&wo.shutdown_grace_ms, "--grace", grace)) ||
	    (poll_every &&
	     cli_duration_ms(&wo.poll_interval_ms, "--poll", poll_every)))
		goto out;
	if (kill_after &&
	    cli_duration_ms(&eo.kill_after_ms, "--kill-after", kill_after))
		goto out;
	if (eo.kill_after_ms > CLI_KILL_AFTER_MAX_MS) {
		cli_usage("--kill-after: '%s' is more than a day (the time a "
			  "stopped command has between SIGTERM and SIGKILL)",
			  kill_after);
		goto out;
	}
	if (poll_every && wo.poll_interval_ms == 0)
		wo.poll_interval_ms = 1;
	if (grace && wo.shutdown_grace_ms == 0)
		wo.shutdown_grace_ms = 1; /* 0 would mean the default */
	long long v;
	if (tail && cli_int(&v, "--stderr-tail", tail, 16, 1 << 20))
		goto out;
	if (tail)
		eo.stderr_tail = (size_t)v;
	if ((rc = parse_queues(&wq, &nq, queues)) != 0)
		goto out;
	wo.queues = wq;
	wo.n_queues = nq;
	wo.node = node;
	/* The handler only starts and watches a process: threads suffice,
	 * and the command's own crash cannot take the worker down. */
	wo.isolation = BUS_ISOLATION_THREAD;

	bus *b = cli_bus(c, &rc);
	if (b == NULL)
		goto out;
	/* Fail now, clearly, rather than log failed claims for ever: any job
	 * call checks the schema and the connection. */
	bus_job_count *counts;
	size_t nc;
	int brc = bus_job_counts(&counts, &nc, b);
	if (brc != 0) {
		rc = cli_fail(brc, "reading the store");
		goto out;
	}
	bus_free(counts);
	if ((brc = bus_handle_any_job(b, exec_job_handler, &eo, NULL)) != 0 &&
	    brc != BUS_EEXISTS) {
		rc = cli_fail(brc, "work");
		goto out;
	}
	static int quiet_flag;
	quiet_flag = quiet;
	static int logging_added;
	if (!logging_added++ && (brc = bus_use(b, log_job, &quiet_flag)) != 0) {
		rc = cli_fail(brc, "work");
		goto out;
	}
	bus_worker *w;
	if ((brc = bus_worker_new(&w, b, &wo)) != 0) {
		rc = cli_fail(brc, "work");
		goto out;
	}
	struct metrics_thread mt = {NULL, b, w, {-1, -1}, 0};
	if (metrics != NULL) {
		if ((rc = http_listen(&mt.server, metrics)) != 0) {
			bus_worker_free(w);
			goto out;
		}
		if (pipe2(mt.stop, O_CLOEXEC) != 0 ||
		    pthread_create(&mt.thread, NULL, serve_metrics, &mt) != 0) {
			rc = cli_error(CLI_FAILED, "cannot start the metrics "
						   "server");
			http_close(mt.server);
			bus_worker_free(w);
			goto out;
		}
		const char *colon = strrchr(metrics, ':');
		fprintf(stderr, "bus work: serving http://%.*s:%d/metrics\n",
			(int)(colon - metrics), metrics, http_port(mt.server));
	}
	int sig_fd, sig = 0;
	if ((rc = cli_signals_install(&sig_fd)) != 0)
		goto stop;
	if ((brc = bus_worker_start(w)) != 0) {
		rc = cli_fail(brc, "starting the worker");
		goto stop;
	}
	if (!quiet)
		fprintf(stderr,
			"bus work: serving %zu queue%s; SIGTERM stops "
			"gracefully\n",
			nq, nq == 1 ? "" : "s");
	rc = CLI_OK;
	for (;;) {
		struct pollfd p = {sig_fd, POLLIN, 0};
		poll(&p, 1, drain ? 100 : 1000);
		if ((sig = cli_signal_seen()) != 0)
			break;
		if (drain) {
			int drc;
			if (drained(b, wq, nq, &drc))
				break;
			if (drc == BUS_ESCHEMA) {
				rc = cli_fail(drc, "work");
				break;
			}
		}
	}
	if (!quiet && sig != 0)
		fprintf(stderr,
			"bus work: %s: stopping; running jobs may finish "
			"within the grace period\n",
			sig == SIGINT ? "SIGINT" : "SIGTERM");
	if ((brc =
		 bus_worker_stop(w, wo.shutdown_grace_ms ? wo.shutdown_grace_ms
							 : 30000)) != 0 &&
	    rc == CLI_OK)
		rc = cli_fail(brc, "stopping the worker");
stop:
	cli_signals_restore();
	if (mt.server != NULL) {
		char x = 1;
		if (write(mt.stop[1], &x, 1) == 1)
			pthread_join(mt.thread, NULL);
		close(mt.stop[0]);
		close(mt.stop[1]);
		http_close(mt.server);
	}
	bus_worker_free(w);
out:
	free(wq);
	free((void *)queues);
	return rc;
}
