/* The shared worker scenario: set up, run, break, wait, check the books. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault_run.h"

#define ENQUEUE_BATCH 1000
#define LIST_PAGE 1000
#define POLL_MS 100
#define PROGRESS_S 5.0
#define STOP_WAIT_MS 30000

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

long fault_run_find(const struct fault_run *r, int64_t id)
{
	const int64_t *p = bsearch(&id, r->id, r->n, sizeof *r->id, cmp_id);
	return p ? (long)(p - r->id) : -1;
}

/* ---- set-up ------------------------------------------------------------- */

static void create_seen_table(struct fault_env *e)
{
	char why[512];
	fault_db *db = fault_connect(&e->dsn, why, sizeof why);
	if (db == NULL)
		fault_fail("connecting to create the seen table: %s", why);
	fault_sql(db,
		  "CREATE TABLE %s" FAULT_SEEN " (job_id BIGINT PRIMARY KEY, "
		  "n INT NOT NULL)%s",
		  e->prefix, e->dsn.postgres ? "" : " ENGINE=InnoDB");
	fault_db_close(db);
}

/* Enqueues the jobs in atomic batches and keeps their ids, sorted. */
static void enqueue_jobs(struct fault_run *r, bus *b)
{
	size_t n = (size_t)r->sc->n_jobs;
	r->n = n;
	r->id = calloc(n, sizeof *r->id);
	r->attempt = calloc(n, sizeof *r->attempt);
	r->seen = calloc(n, sizeof *r->seen);
	bus_enqueue_item *items = calloc(ENQUEUE_BATCH, sizeof *items);
	bus_enqueue_result *res = calloc(ENQUEUE_BATCH, sizeof *res);
	char(*payload)[32] = calloc(ENQUEUE_BATCH, sizeof *payload);
	if (!r->id || !r->attempt || !r->seen || !items || !res || !payload)
		fault_fail("out of memory");
	bus_job_opts opts = BUS_JOB_OPTS_INIT;
	/* Room for the retries a server restart may cost. */
	opts.max_attempts = 25;
	double t0 = fault_elapsed_s();
	for (size_t done = 0; done < n;) {
		size_t k = n - done < ENQUEUE_BATCH ? n - done : ENQUEUE_BATCH;
		for (size_t i = 0; i < k; i++) {
			snprintf(payload[i], sizeof payload[i], "{\"i\":%zu}",
				 done + i);
			items[i] = (bus_enqueue_item){ FAULT_COMMAND, NULL,
						       payload[i], &opts };
		}
		if (bus_enqueue_many(res, b, items, k) != 0)
			fault_fail("bus_enqueue_many of %zu jobs (after %zu): "
				   "%s",
				   k, done, bus_error_last()->message);
		for (size_t i = 0; i < k; i++) {
			if (res[i].status != BUS_INSERTED || res[i].id <= 0)
				fault_fail("enqueued job %zu: status %d, id "
					   "%lld; expected a new job",
					   done + i, (int)res[i].status,
					   (long long)res[i].id);
			r->id[done + i] = res[i].id;
		}
		done += k;
	}
	double dt = fault_elapsed_s() - t0;
	qsort(r->id, n, sizeof *r->id, cmp_id);
	for (size_t i = 1; i < n; i++)
		if (r->id[i] == r->id[i - 1])
			fault_fail("two enqueued jobs got id %lld",
				   (long long)r->id[i]);
	fault_note("enqueued %zu jobs in batches of %d in %.2f s (%.0f/s)", n,
		   ENQUEUE_BATCH, dt, dt > 0 ? (double)n / dt : 0.0);
	free(items);
	free(res);
	free(payload);
}

static void set_up(struct fault_run *r)
{
	bus *b = fault_open_bus(r->env);
	if (bus_migrate(b) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	/* Migrating twice is a no-op (bus_migrate's contract). */
	if (bus_migrate(b) != 0)
		fault_fail("bus_migrate, again: %s",
			   bus_error_last()->message);
	create_seen_table(r->env);
	enqueue_jobs(r, b);
	/* No connection crosses the fork. */
	bus_close(b);
}

/* ---- the workers -------------------------------------------------------- */

static void start_workers(struct fault_run *r, const char *tag)
{
	fflush(NULL);
	for (int i = 0; i < r->sc->n_workers; i++) {
		snprintf(r->node[i], sizeof r->node[i], "%s-w%d-%ld", tag, i,
			 (long)getpid());
		pid_t pid = fork();
		if (pid < 0)
			fault_fail("fork: %s", strerror(errno));
		if (pid == 0)
			fault_worker_main(r->env, r->sc, r->node[i]);
		r->pid[i] = pid;
		fault_track_child(pid);
	}
}

static const char *exit_text(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d",
			 WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "ended with wait status %d", status);
	return buf;
}

/* A worker that ended on its own is a failure: they must ride out faults. */
static void check_workers_alive(struct fault_run *r)
{
	for (int i = 0; i < r->sc->n_workers; i++) {
		int status;
		if (r->pid[i] == 0 || !fault_wait_child(r->pid[i], 0, &status))
			continue;
		char buf[64];
		r->pid[i] = 0;
		fault_fail("worker %s %s while jobs were left (see its lines "
			   "above)",
			   r->node[i], exit_text(status, buf, sizeof buf));
	}
}

void fault_run_kill(struct fault_run *r, int i)
{
	if (r->pid[i] == 0)
		fault_fail("worker %d is not running", i);
	kill(r->pid[i], SIGKILL);
	int status;
	if (!fault_wait_child(r->pid[i], 10000, &status))
		fault_fail("worker %s did not die of SIGKILL", r->node[i]);
	r->pid[i] = 0;
}

void fault_run_pause(struct fault_run *r, int i, int pause)
{
	if (r->pid[i] == 0)
		fault_fail("worker %d is not running", i);
	if (!pause) {
		kill(r->pid[i], SIGCONT);
		return;
	}
	kill(r->pid[i], SIGSTOP);
	int status;
	pid_t got;
	while ((got = waitpid(r->pid[i], &status, WUNTRACED)) < 0 &&
	       errno == EINTR)
		;
	if (got != r->pid[i] || !WIFSTOPPED(status))
		fault_fail("worker %s did not stop on SIGSTOP", r->node[i]);
}

/* SIGTERM asks for a graceful shutdown; each must end cleanly. */
static void stop_workers(struct fault_run *r)
{
	for (int i = 0; i < r->sc->n_workers; i++)
		if (r->pid[i] != 0)
			kill(r->pid[i], SIGTERM);
	for (int i = 0; i < r->sc->n_workers; i++) {
		int status;
		if (r->pid[i] == 0)
			continue;
		if (!fault_wait_child(r->pid[i], STOP_WAIT_MS, &status))
			fault_fail("worker %s did not stop within %d ms of "
				   "SIGTERM",
				   r->node[i], STOP_WAIT_MS);
		r->pid[i] = 0;
		char buf[64];
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fault_fail("worker %s %s on SIGTERM; expected a clean "
				   "exit",
				   r->node[i],
				   exit_text(status, buf, sizeof buf));
	}
}

/* ---- waiting ------------------------------------------------------------ */

/* Completed jobs now, or -1 when the store cannot say (it may be
 * restarting); *other gets the jobs in any other state. */
static int64_t count_completed(bus *b, int64_t *other, char *why,
			       size_t why_len)
{
	bus_job_count *c = NULL;
	size_t n = 0;
	if (bus_job_counts(&c, &n, b) != 0) {
		snprintf(why, why_len, "%s", bus_error_last()->message);
		return -1;
	}
	int64_t done = 0;
	*other = 0;
	for (size_t i = 0; i < n; i++) {
		if (c[i].state == BUS_JOB_COMPLETED)
			done += c[i].count;
		else
			*other += c[i].count;
	}
	bus_free(c);
	return done;
}

static void wait_for_all(struct fault_run *r)
{
	const struct fault_scenario *sc = r->sc;
	double t0 = fault_elapsed_s(), next_note = t0 + PROGRESS_S;
	int faulted = sc->fault == NULL;
	int64_t done = 0, other = (int64_t)r->n;
	char why[512] = "";
	for (;;) {
		int64_t d =
			count_completed(r->monitor, &other, why, sizeof why);
		if (d >= 0)
			done = d;
		if (d == (int64_t)r->n && faulted)
			break;
		if (!faulted && done >= sc->fault_at) {
			r->completed_at_fault = done;
			sc->fault(r);
			faulted = 1;
			continue;
		}
		double now = fault_elapsed_s();
		if ((now - t0) * 1000 > sc->timeout_ms)
			fault_fail("only %lld of %zu jobs completed within %ld "
				   "ms (%lld in other states)%s%s",
				   (long long)done, r->n, sc->timeout_ms,
				   (long long)other,
				   d < 0 ? "; the last count failed: " : "",
				   d < 0 ? why : "");
		if (now >= next_note) {
			fault_note("%lld/%zu completed, %lld in other states",
				   (long long)done, r->n, (long long)other);
			next_note = now + PROGRESS_S;
		}
		check_workers_alive(r);
		fault_sleep_ms(POLL_MS);
	}
	r->run_s = fault_elapsed_s() - t0;
	if (other != 0)
		fault_fail("all %zu jobs completed, yet %lld more are in other "
			   "states",
			   r->n, (long long)other);
	fault_note("all %zu jobs completed in %.2f s (%.0f jobs/s)", r->n,
		   r->run_s, (double)r->n / r->run_s);
}

/* ---- the books ---------------------------------------------------------- */

/* Calls `fn` for every executing job, a page at a time. */
static void each_executing(struct fault_run *r,
			   void (*fn)(const bus_job *job, void *udata),
			   void *udata)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.states = BUS_STATE_BIT(BUS_JOB_EXECUTING);
	f.limit = LIST_PAGE;
	for (;;) {
		bus_job *jobs = NULL;
		size_t k = 0;
		if (bus_job_list(&jobs, &k, r->monitor, &f) != 0)
			fault_fail("listing executing jobs: %s",
				   bus_error_last()->message);
		for (size_t i = 0; i < k; i++)
			fn(&jobs[i], udata);
		if (k > 0)
			f.after_id = jobs[k - 1].id;
		bus_job_list_free(jobs, k);
		if (k < LIST_PAGE)
			return;
	}
}

struct id_list {
	const char *node;
	int64_t *ids;
	size_t n, cap;
};

static void collect_ids(const bus_job *job, void *udata)
{
	struct id_list *l = udata;
	if (job->attempted_by == NULL || strcmp(job->attempted_by, l->node))
		return;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		if ((l->ids = realloc(l->ids, l->cap * sizeof *l->ids)) == NULL)
			fault_fail("out of memory");
	}
	l->ids[l->n++] = job->id;
}

int64_t *fault_run_executing(struct fault_run *r, const char *node,
			     size_t *n)
{
	struct id_list l = { node, NULL, 0, 0 };
	each_executing(r, collect_ids, &l);
	*n = l.n;
	return l.ids;
}

struct held_count {
	struct fault_run *r;
	size_t *held;
};

static void count_held(const bus_job *job, void *udata)
{
	struct held_count *c = udata;
	for (int i = 0; job->attempted_by != NULL && i < c->r->sc->n_workers;
	     i++)
		if (strcmp(job->attempted_by, c->r->node[i]) == 0)
			c->held[i]++;
}

void fault_run_held(struct fault_run *r, size_t held[FAULT_MAX_WORKERS])
{
	memset(held, 0, FAULT_MAX_WORKERS * sizeof *held);
	struct held_count c = { r, held };
	each_executing(r, count_held, &c);
}

/* Every job the store holds: the ones enqueued, each completed. */
static void read_jobs(struct fault_run *r)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.limit = LIST_PAGE;
	size_t total = 0;
	for (;;) {
		bus_job *jobs = NULL;
		size_t k = 0;
		if (bus_job_list(&jobs, &k, r->monitor, &f) != 0)
			fault_fail("listing the jobs: %s",
				   bus_error_last()->message);
		for (size_t i = 0; i < k; i++) {
			long at = fault_run_find(r, jobs[i].id);
			if (at < 0)
				fault_fail("the store holds job %lld, which "
					   "was never enqueued",
					   (long long)jobs[i].id);
			if (jobs[i].state != BUS_JOB_COMPLETED)
				fault_fail("job %lld is %s, not completed",
					   (long long)jobs[i].id,
					   bus_job_state_name(jobs[i].state));
			r->attempt[at] = jobs[i].attempt;
		}
		total += k;
		if (k > 0)
			f.after_id = jobs[k - 1].id;
		bus_job_list_free(jobs, k);
		if (k < LIST_PAGE)
			break;
	}
	if (total != r->n)
		fault_fail("the store holds %zu jobs; %zu were enqueued", total,
			   r->n);
}

struct seen_read {
	struct fault_run *r;
	size_t rows;
};

static void seen_row(void *arg, const char *const *v, int n)
{
	struct seen_read *sr = arg;
	if (n < 2 || v[0] == NULL || v[1] == NULL)
		fault_fail("the seen table has a row of NULLs");
	int64_t id = strtoll(v[0], NULL, 10);
	long at = fault_run_find(sr->r, id);
	if (at < 0)
		fault_fail("the handler recorded job %lld, which was never "
			   "enqueued",
			   (long long)id);
	sr->r->seen[at] = atoi(v[1]);
	sr->rows++;
}

/* The handler's records: every job, and only those. */
static void read_seen(struct fault_run *r)
{
	char why[512], sql[256];
	fault_db *db = fault_connect(&r->env->dsn, why, sizeof why);
	if (db == NULL)
		fault_fail("connecting to read the seen table: %s", why);
	snprintf(sql, sizeof sql,
		 "SELECT job_id, n FROM %s" FAULT_SEEN " ORDER BY job_id",
		 r->env->prefix);
	struct seen_read sr = { r, 0 };
	if (fault_db_query(db, sql, seen_row, &sr, why, sizeof why) != 0)
		fault_fail("reading the seen table: %s", why);
	fault_db_close(db);
	size_t rows = sr.rows;
	if (rows != r->n) {
		for (size_t i = 0; i < r->n; i++)
			if (r->seen[i] == 0)
				fault_fail("job %lld completed but its handler "
					   "never recorded it (%zu of %zu "
					   "recorded)",
					   (long long)r->id[i], rows, r->n);
		fault_fail("%zu rows in the seen table for %zu jobs", rows,
			   r->n);
	}
}

static void check_books(struct fault_run *r)
{
	read_jobs(r);
	read_seen(r);
	int max_seen = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (r->seen[i] < 1)
			fault_fail("job %lld was never run",
				   (long long)r->id[i]);
		/* A run follows a claim, and every claim counts an attempt. */
		if (r->seen[i] > r->attempt[i])
			fault_fail("job %lld ran %d times in %d attempts",
				   (long long)r->id[i], r->seen[i],
				   r->attempt[i]);
		r->duplicates += r->seen[i] > 1;
		r->reclaimed += r->attempt[i] > 1;
		if (r->seen[i] > max_seen)
			max_seen = r->seen[i];
	}
	fault_note("books: %zu jobs completed and recorded; %zu ran more "
		   "than once (at most %d times), %zu were claimed more than "
		   "once",
		   r->n, r->duplicates, max_seen, r->reclaimed);
}

void fault_run_free(struct fault_run *r)
{
	free(r->id);
	free(r->attempt);
	free(r->seen);
	r->id = NULL;
	r->attempt = r->seen = NULL;
}

void fault_run_scenario(struct fault_run *r, struct fault_env *e,
			const struct fault_scenario *sc)
{
	if (sc->n_workers < 1 || sc->n_workers > FAULT_MAX_WORKERS)
		fault_fail("a scenario has 1..%d workers", FAULT_MAX_WORKERS);
	memset(r, 0, sizeof *r);
	r->env = e;
	r->sc = sc;
	set_up(r);
	/* The tag of the prefix names the nodes too. */
	char tag[16];
	snprintf(tag, sizeof tag, "%.*s", (int)strcspn(e->prefix, "_"),
		 e->prefix);
	start_workers(r, tag);
	r->monitor = fault_open_bus(e);
	wait_for_all(r);
	stop_workers(r);
	check_books(r);
	bus_close(r->monitor);
	r->monitor = NULL;
}
