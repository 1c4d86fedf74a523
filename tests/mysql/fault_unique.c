/*
 * Eight processes insert the same unique job at once, 200 times each,
 * released together from a pipe. The store's unique index decides: one
 * insert in all of them reports BUS_INSERTED, every other one
 * BUS_DUPLICATE with the same job id, none fails (a deadlock or lock wait
 * is the backend's to retry), and exactly one row exists.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"

#define PROCS 8
#define TIMES 200
#define KIND "fault.unique"
#define PAYLOAD "{\"order\":42,\"what\":\"the same job\"}"

/* One producer's results, in memory shared with the parent. */
struct tally {
	int inserted, replaced, duplicate, failed;
	int64_t id;    /* the job id of the first result */
	int other_ids; /* results naming another id */
	char error[256];
};

static _Noreturn void producer(const struct fault_env *e, int ready,
			       int go, struct tally *t)
{
	bus *b = NULL;
	if (bus_open(&b, e->url) != 0) {
		snprintf(t->error, sizeof t->error, "bus_open: %s",
			 bus_error_last()->message);
		_exit(1);
	}
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	char byte = 'r', c;
	if (write(ready, &byte, 1) != 1)
		_exit(1);
	/* EOF once the parent closes its end: everyone starts at once. */
	while (read(go, &c, 1) < 0 && errno == EINTR)
		;
	for (int i = 0; i < TIMES; i++) {
		bus_enqueue_result res = { 0, BUS_INSERTED };
		if (bus_enqueue(&res, b, KIND, PAYLOAD, &o) != 0) {
			if (t->failed++ == 0)
				snprintf(t->error, sizeof t->error,
					 "bus_enqueue #%d: %s", i,
					 bus_error_last()->message);
			continue;
		}
		switch (res.status) {
		case BUS_INSERTED: t->inserted++; break;
		case BUS_REPLACED: t->replaced++; break;
		case BUS_DUPLICATE: t->duplicate++; break;
		}
		if (t->id == 0)
			t->id = res.id;
		else if (res.id != t->id)
			t->other_ids++;
	}
	bus_close(b);
	_exit(0);
}

static void run_producers(const struct fault_env *e, struct tally *t)
{
	int ready[2], go[2];
	if (pipe(ready) != 0 || pipe(go) != 0)
		fault_fail("pipe: %s", strerror(errno));
	pid_t pid[PROCS];
	fflush(NULL);
	for (int i = 0; i < PROCS; i++) {
		if ((pid[i] = fork()) < 0)
			fault_fail("fork: %s", strerror(errno));
		if (pid[i] == 0) {
			close(ready[0]);
			close(go[1]);
			producer(e, ready[1], go[0], &t[i]);
		}
		fault_track_child(pid[i]);
	}
	close(ready[1]);
	close(go[0]);
	for (int i = 0; i < PROCS; i++) {
		char c;
		ssize_t n;
		while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n != 1)
			fault_fail("a producer ended before it was ready: %s",
				   t[0].error[0] ? t[0].error : "see above");
	}
	fault_note("%d producers ready; releasing them", PROCS);
	close(go[1]);
	close(ready[0]);
	for (int i = 0; i < PROCS; i++) {
		int status;
		if (!fault_wait_child(pid[i], 60000, &status))
			fault_fail("producer %d did not finish within 60 s", i);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fault_fail("producer %d failed (wait status %d): %s", i,
				   status, t[i].error);
	}
}

/* The store holds exactly one job of KIND: the one all results named. */
static void check_store(const struct fault_env *e, int64_t id)
{
	bus *b = fault_open_bus(e);
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = KIND;
	bus_job *jobs = NULL;
	size_t n = 0;
	if (bus_job_list(&jobs, &n, b, &f) != 0)
		fault_fail("bus_job_list: %s", bus_error_last()->message);
	if (n != 1)
		fault_fail("%zu jobs of '%s' exist; expected exactly one", n,
			   KIND);
	if (jobs[0].id != id)
		fault_fail("the job stored is %lld, the results named %lld",
			   (long long)jobs[0].id, (long long)id);
	if (jobs[0].state != BUS_JOB_AVAILABLE || jobs[0].unique_key == NULL)
		fault_fail("the job is %s with unique key %s; expected "
			   "available and keyed",
			   bus_job_state_name(jobs[0].state),
			   jobs[0].unique_key ? jobs[0].unique_key : "NULL");
	bus_job_list_free(jobs, n);

	bus_job_count *c = NULL;
	size_t nc = 0;
	if (bus_job_counts(&c, &nc, b) != 0)
		fault_fail("bus_job_counts: %s", bus_error_last()->message);
	int64_t total = 0;
	for (size_t i = 0; i < nc; i++)
		total += c[i].count;
	bus_free(c);
	if (total != 1)
		fault_fail("the store holds %lld jobs in all; expected one",
			   (long long)total);
	bus_close(b);
}

int main(void)
{
	struct fault_env env;
	fault_init(&env, "fault_unique", "fu", 180);
	bus *b = fault_open_bus(&env);
	if (bus_migrate(b) != 0)
		fault_fail("bus_migrate: %s", bus_error_last()->message);
	/* No connection crosses the fork. */
	bus_close(b);

	struct tally *t = mmap(NULL, PROCS * sizeof *t, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		fault_fail("mmap: %s", strerror(errno));
	memset(t, 0, PROCS * sizeof *t);
	double t0 = fault_elapsed_s();
	run_producers(&env, t);
	double dt = fault_elapsed_s() - t0;

	struct tally sum = { 0 };
	for (int i = 0; i < PROCS; i++) {
		if (t[i].failed > 0)
			fault_fail("producer %d: %d of %d inserts failed; the "
				   "first: %s",
				   i, t[i].failed, TIMES, t[i].error);
		if (t[i].other_ids > 0 || t[i].id != t[0].id)
			fault_fail("producer %d got job ids other than %lld",
				   i, (long long)t[0].id);
		sum.inserted += t[i].inserted;
		sum.replaced += t[i].replaced;
		sum.duplicate += t[i].duplicate;
	}
	if (sum.inserted != 1 || sum.replaced != 0 ||
	    sum.duplicate != PROCS * TIMES - 1)
		fault_fail("%d inserted, %d replaced, %d duplicate; expected "
			   "1, 0 and %d",
			   sum.inserted, sum.replaced, sum.duplicate,
			   PROCS * TIMES - 1);
	check_store(&env, t[0].id);
	munmap(t, PROCS * sizeof *t);
	fault_pass("%d processes x %d concurrent inserts of one unique job "
		   "made one row (%.0f inserts/s)",
		   PROCS, TIMES, dt > 0 ? PROCS * TIMES / dt : 0.0);
}
