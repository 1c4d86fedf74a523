/*
 * Eight processes insert the same unique job at once, 200 times each,
 * released together from a pipe. The store's unique index decides: one
 * insert in all of them reports BUS_INSERTED, every other one
 * BUS_DUPLICATE with the same job id, none fails (a deadlock or lock wait
 * is the backend's to retry), and exactly one row exists.
 *
 * Then the same race 200 times over: the producers, released together
 * again, insert 200 different unique jobs in the same order, so that each
 * one is contended by all eight; each must still give one row and one
 * BUS_INSERTED.
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
#define KEYS 200
#define KIND "fault.unique"
#define KIND_MANY "fault.unique.many"
#define PAYLOAD "{\"order\":42,\"what\":\"the same job\"}"

/* One producer's results, in memory shared with the parent. */
struct tally {
	int inserted, replaced, duplicate, failed;
	int64_t id;    /* the job id of the first result */
	int other_ids; /* results naming another id */
	char error[256];
	/* The second round: per key, the status and id. */
	int key_status[KEYS];
	int64_t key_id[KEYS];
};

/* Releases all producers at once: each writes a byte to `ready` and
 * waits for EOF on `go`, which comes when the parent closes its end. */
struct barrier {
	int ready[2], go[2];
};

static void barrier_init(struct barrier *b)
{
	if (pipe(b->ready) != 0 || pipe(b->go) != 0)
		fault_fail("pipe: %s", strerror(errno));
}

/* In a producer, after fork. */
static void barrier_child_side(struct barrier *b)
{
	close(b->ready[0]);
	close(b->go[1]);
}

/* `byte` 'r' is ready; anything else says the producer gave up. */
static void barrier_wait(struct barrier *b, char byte)
{
	if (write(b->ready[1], &byte, 1) != 1 || byte != 'r')
		_exit(1);
	while (read(b->go[0], &byte, 1) < 0 && errno == EINTR)
		;
}

/* In the parent: waits for all producers to arrive, then releases them. */
static void barrier_release(struct barrier *b, const struct tally *t)
{
	close(b->ready[1]);
	close(b->go[0]);
	for (int i = 0; i < PROCS; i++) {
		char c;
		ssize_t n;
		while ((n = read(b->ready[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n != 1 || c != 'r') {
			for (int k = 0; k < PROCS; k++)
				if (t[k].error[0] != '\0')
					fault_fail("producer %d ended early: "
						   "%s",
						   k, t[k].error);
			fault_fail("a producer ended before the barrier");
		}
	}
	close(b->go[1]);
	close(b->ready[0]);
}

static int enqueue_unique(bus_enqueue_result *res, bus *b, const char *kind,
			  const char *payload)
{
	bus_unique_opts u = BUS_UNIQUE_OPTS_INIT;
	u.fields = BUS_UNIQUE_PAYLOAD;
	bus_job_opts o = BUS_JOB_OPTS_INIT;
	o.unique = &u;
	return bus_enqueue(res, b, kind, payload, &o);
}

static void same_job(bus *b, struct tally *t)
{
	for (int i = 0; i < TIMES; i++) {
		bus_enqueue_result res = { 0, BUS_INSERTED };
		if (enqueue_unique(&res, b, KIND, PAYLOAD) != 0) {
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
}

static void many_jobs(bus *b, struct tally *t)
{
	for (int k = 0; k < KEYS; k++) {
		char payload[32];
		snprintf(payload, sizeof payload, "{\"key\":%d}", k);
		bus_enqueue_result res = { 0, BUS_INSERTED };
		if (enqueue_unique(&res, b, KIND_MANY, payload) != 0) {
			if (t->failed++ == 0)
				snprintf(t->error, sizeof t->error,
					 "bus_enqueue of key %d: %s", k,
					 bus_error_last()->message);
			t->key_status[k] = -1;
			continue;
		}
		t->key_status[k] = (int)res.status;
		t->key_id[k] = res.id;
	}
}

static _Noreturn void producer(const struct fault_env *e, struct barrier *b1,
			       struct barrier *b2, struct tally *t)
{
	barrier_child_side(b1);
	barrier_child_side(b2);
	bus *b = NULL;
	if (bus_open(&b, e->url) != 0) {
		snprintf(t->error, sizeof t->error, "bus_open: %s",
			 bus_error_last()->message);
		barrier_wait(b1, 'x');
		_exit(1);
	}
	barrier_wait(b1, 'r');
	same_job(b, t);
	barrier_wait(b2, 'r');
	many_jobs(b, t);
	bus_close(b);
	_exit(0);
}

static void run_producers(const struct fault_env *e, struct tally *t)
{
	struct barrier b1, b2;
	barrier_init(&b1);
	barrier_init(&b2);
	pid_t pid[PROCS];
	fflush(NULL);
	for (int i = 0; i < PROCS; i++) {
		if ((pid[i] = fork()) < 0)
			fault_fail("fork: %s", strerror(errno));
		if (pid[i] == 0)
			producer(e, &b1, &b2, &t[i]);
		fault_track_child(pid[i]);
	}
	barrier_release(&b1, t);
	fault_note("%d producers released: %d inserts each of one job", PROCS,
		   TIMES);
	barrier_release(&b2, t);
	fault_note("%d producers released: %d different jobs each", PROCS,
		   KEYS);
	for (int i = 0; i < PROCS; i++) {
		int status;
		if (!fault_wait_child(pid[i], 60000, &status))
			fault_fail("producer %d did not finish within 60 s", i);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fault_fail("producer %d failed (wait status %d): %s", i,
				   status, t[i].error);
	}
}

static void check_same_job(const struct tally *t)
{
	struct tally sum = { 0 };
	for (int i = 0; i < PROCS; i++) {
		if (t[i].other_ids > 0 || t[i].id != t[0].id)
			fault_fail("producer %d got job ids other than %lld",
				   i, (long long)t[0].id);
		sum.inserted += t[i].inserted;
		sum.replaced += t[i].replaced;
		sum.duplicate += t[i].duplicate;
	}
	if (sum.inserted != 1 || sum.replaced != 0 ||
	    sum.duplicate != PROCS * TIMES - 1)
		fault_fail("the same job: %d inserted, %d replaced, %d "
			   "duplicate; expected 1, 0 and %d",
			   sum.inserted, sum.replaced, sum.duplicate,
			   PROCS * TIMES - 1);
}

static void check_many_jobs(const struct tally *t)
{
	for (int k = 0; k < KEYS; k++) {
		int inserted = 0;
		for (int i = 0; i < PROCS; i++) {
			inserted += t[i].key_status[k] == BUS_INSERTED;
			if (t[i].key_status[k] == BUS_REPLACED)
				fault_fail("key %d: producer %d replaced the "
					   "job; nothing allows a replace",
					   k, i);
			if (t[i].key_id[k] != t[0].key_id[k])
				fault_fail("key %d: producer %d got job %lld, "
					   "producer 0 job %lld",
					   k, i, (long long)t[i].key_id[k],
					   (long long)t[0].key_id[k]);
		}
		if (inserted != 1)
			fault_fail("key %d: %d of %d producers inserted it; "
				   "expected exactly one",
				   k, inserted, PROCS);
	}
}

/* The jobs of `kind` in the store, in id order (free with
 * bus_job_list_free). */
static bus_job *list_kind(bus *b, const char *kind, size_t *n)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.kind = kind;
	f.limit = KEYS + PROCS * TIMES;
	bus_job *jobs = NULL;
	if (bus_job_list(&jobs, n, b, &f) != 0)
		fault_fail("bus_job_list: %s", bus_error_last()->message);
	for (size_t i = 0; i < *n; i++)
		if (jobs[i].state != BUS_JOB_AVAILABLE ||
		    jobs[i].unique_key == NULL)
			fault_fail("job %lld is %s with unique key %s; "
				   "expected available and keyed",
				   (long long)jobs[i].id,
				   bus_job_state_name(jobs[i].state),
				   jobs[i].unique_key ? jobs[i].unique_key
						      : "NULL");
	return jobs;
}

/* One row per unique job, and the ids the producers were told. */
static void check_store(const struct fault_env *e, const struct tally *t)
{
	bus *b = fault_open_bus(e);
	size_t n;
	bus_job *jobs = list_kind(b, KIND, &n);
	if (n != 1)
		fault_fail("%zu jobs of '%s' exist; expected exactly one", n,
			   KIND);
	if (jobs[0].id != t[0].id)
		fault_fail("the job stored is %lld, the results named %lld",
			   (long long)jobs[0].id, (long long)t[0].id);
	bus_job_list_free(jobs, n);

	jobs = list_kind(b, KIND_MANY, &n);
	if (n != KEYS)
		fault_fail("%zu jobs of '%s' exist; expected %d, one per key",
			   n, KIND_MANY, KEYS);
	for (int k = 0; k < KEYS; k++) {
		int found = 0;
		for (size_t i = 0; i < n && !found; i++)
			found = jobs[i].id == t[0].key_id[k];
		if (!found)
			fault_fail("key %d: job %lld, named by the results, "
				   "is not in the store",
				   k, (long long)t[0].key_id[k]);
	}
	bus_job_list_free(jobs, n);
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
	for (int i = 0; i < PROCS; i++)
		if (t[i].failed > 0)
			fault_fail("producer %d: %d of %d inserts failed; the "
				   "first: %s",
				   i, t[i].failed, TIMES + KEYS, t[i].error);
	check_same_job(t);
	check_many_jobs(t);
	check_store(&env, t);
	munmap(t, PROCS * sizeof *t);
	fault_pass("%d processes inserting at once: one job %d times each "
		   "made one row, %d jobs raced by all made one row each "
		   "(%.0f inserts/s)",
		   PROCS, TIMES, KEYS,
		   dt > 0 ? PROCS * (TIMES + KEYS) / dt : 0.0);
}
