/* The suite's fixture: opening an empty store, the test clock, workers with
 * small intervals, and bounded waits. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract.h"

/* Queues some test pauses; a run that failed half-way may have left them
 * paused in a persistent store. */
static const char *const paused_queues[] = { "pause.q", "pause.list",
					      "pause.empty" };

/* How often waits look again. */
#define POLL_MS 2

const char *contract_url(void)
{
	const char *url = getenv("BUS_CONTRACT_URL");
	return url != NULL && url[0] != '\0' ? url : "memory:";
}

void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deletes every job, a page at a time. Deleting through the public API
 * (rather than truncating tables) works on every store. A job left
 * executing by a crashed earlier run cannot be deleted: it is asked to
 * cancel (it ends cancelled when its lease runs out and a later run's
 * worker rescues it) and left; tests use queues of their own, so it
 * cannot mix with theirs. */
static void empty_store(bus *b)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.limit = 100;
	for (;;) {
		bus_job *jobs = NULL;
		size_t n = 0;
		int rc = bus_job_list(&jobs, &n, b, &f);
		ck_assert_msg(rc == 0, "emptying the store: bus_job_list: %s",
			      bus_error_last()->message);
		for (size_t i = 0; i < n; i++) {
			rc = bus_job_delete(b, jobs[i].id);
			if (rc == BUS_ESTATE) {
				bus_job_cancel(b, jobs[i].id);
				rc = bus_job_delete(b, jobs[i].id);
				if (rc == BUS_ESTATE)
					rc = 0;
			}
			ck_assert_msg(rc == 0 || rc == BUS_ENOTFOUND,
				      "emptying the store: deleting job %lld: "
				      "%s",
				      (long long)jobs[i].id,
				      bus_error_last()->message);
		}
		if (n > 0)
			f.after_id = jobs[n - 1].id;
		bus_job_list_free(jobs, n);
		if (n == 0)
			break;
	}
}

void contract_open(bus **out)
{
	bus *b = NULL;
	int rc = bus_open(&b, contract_url());
	/* The message never carries a password (bus_open's contract). */
	ck_assert_msg(rc == 0, "bus_open: %s", bus_error_last()->message);
	/* Failing jobs are the point of many tests: keep their warnings out
	 * of the output unless asked for with $BUS_LOG. */
	if (getenv("BUS_LOG") == NULL)
		bus_set_logger(b, BUS_LOG_ERROR, NULL, NULL);
	rc = bus_migrate(b);
	ck_assert_msg(rc == 0, "bus_migrate: %s", bus_error_last()->message);
	empty_store(b);
	for (size_t i = 0; i < sizeof paused_queues / sizeof *paused_queues;
	     i++) {
		rc = bus_queue_resume(b, paused_queues[i]);
		ck_assert_msg(rc == 0, "bus_queue_resume(\"%s\"): %s",
			      paused_queues[i], bus_error_last()->message);
	}
	*out = b;
}

static int64_t test_clock_read(void *udata)
{
	struct test_clock *c = udata;
	return atomic_load(&c->now_us);
}

void contract_clock_install(bus *b, struct test_clock *c)
{
	atomic_store(&c->now_us, CONTRACT_T0_US);
	bus_set_clock(b, test_clock_read, c);
}

void clock_advance(struct test_clock *c, int64_t us)
{
	atomic_fetch_add(&c->now_us, us);
}

int64_t clock_now(struct test_clock *c)
{
	return atomic_load(&c->now_us);
}

bus_worker *contract_start_worker(bus *b,
				  const struct contract_worker_opts *o)
{
	bus_worker_queue q = { o->queue ? o->queue : "default",
			       o->concurrency > 0 ? o->concurrency : 1 };
	bus_worker_opts wo = BUS_WORKER_OPTS_INIT;
	wo.queues = o->queues ? o->queues : &q;
	wo.n_queues = o->queues ? o->n_queues : 1;
	wo.fetch_batch = o->fetch_batch;
	wo.poll_interval_ms = 5;
	wo.lease_ms = o->lease_ms;
	wo.node = o->node;
	wo.isolation = o->process ? BUS_ISOLATION_PROCESS
				  : BUS_ISOLATION_THREAD;
	wo.rescue_interval_ms =
		o->rescue_interval_ms > 0 ? o->rescue_interval_ms : 20;
	wo.retention_s = -1;
	wo.completer_flush_ms = 1;
	wo.shutdown_grace_ms = o->shutdown_grace_ms;
	wo.prefetch = o->prefetch;
	wo.rescue_delay_ms = o->rescue_delay_ms;
	wo.completer_batch = o->completer_batch;
	wo.cancel_check_ms = o->cancel_check_ms;
	bus_worker *w = NULL;
	int rc = bus_worker_new(&w, b, &wo);
	ck_assert_msg(rc == 0, "bus_worker_new: %s",
		      bus_error_last()->message);
	rc = bus_worker_start(w);
	ck_assert_msg(rc == 0, "bus_worker_start: %s",
		      bus_error_last()->message);
	return w;
}

void contract_handle(bus *b, const char *name, bus_handler_fn fn,
		     void *udata, const bus_handler_opts *base,
		     const char *queue)
{
	bus_handler_opts o = BUS_HANDLER_OPTS_INIT;
	if (base != NULL)
		o = *base;
	o.durable = 1;
	if (queue != NULL)
		o.queue = queue;
	int rc = bus_handle_command(b, name, fn, udata, &o);
	ck_assert_msg(rc == 0, "bus_handle_command(\"%s\"): %s", name,
		      bus_error_last()->message);
}

static const char *status_name(bus_insert_status s)
{
	switch (s) {
	case BUS_INSERTED: return "inserted";
	case BUS_REPLACED: return "replaced";
	case BUS_DUPLICATE: return "duplicate";
	}
	return "?";
}

int64_t contract_enqueue_ok(bus *b, const char *kind, const char *payload,
			    const bus_job_opts *opts, bus_insert_status want,
			    const char *file, int line)
{
	bus_enqueue_result r = { -1, BUS_DUPLICATE };
	int rc = bus_enqueue(&r, b, kind, payload, opts);
	ck_assert_msg(rc == 0, "%s:%d: bus_enqueue(\"%s\", %s) = %s: %s", file,
		      line, kind, payload ? payload : "NULL",
		      bus_error_name(rc), bus_error_last()->message);
	ck_assert_msg(r.status == want,
		      "%s:%d: bus_enqueue(\"%s\", %s) was %s (job %lld), "
		      "expected %s",
		      file, line, kind, payload ? payload : "NULL",
		      status_name(r.status), (long long)r.id,
		      status_name(want));
	ck_assert_msg(r.id > 0, "%s:%d: job id %lld", file, line,
		      (long long)r.id);
	return r.id;
}

bus_job *contract_get_job(bus *b, int64_t id, const char *file, int line)
{
	bus_job *job = NULL;
	int rc = bus_job_get(&job, b, id);
	ck_assert_msg(rc == 0, "%s:%d: bus_job_get(%lld) = %s: %s", file, line,
		      (long long)id, bus_error_name(rc),
		      bus_error_last()->message);
	ck_assert_int_eq(job->id, id);
	return job;
}

bus_job *contract_wait_job(bus *b, int64_t id, bus_job_state state,
			   int attempt, const char *file, int line)
{
	int64_t deadline = mono_ms() + CONTRACT_LIVENESS_MS;
	for (;;) {
		bus_job *job = contract_get_job(b, id, file, line);
		if (job->state == state &&
		    (attempt < 0 || job->attempt == attempt))
			return job;
		if (mono_ms() > deadline) {
			ck_abort_msg("%s:%d: job %lld did not become %s with "
				     "attempt %d within %d ms: it is %s with "
				     "attempt %d/%d, errors %s",
				     file, line, (long long)id,
				     bus_job_state_name(state), attempt,
				     CONTRACT_LIVENESS_MS,
				     bus_job_state_name(job->state),
				     job->attempt, job->max_attempts,
				     job->errors ? job->errors : "NULL");
		}
		bus_job_free(job);
		sleep_ms(POLL_MS);
	}
}

int contract_poll(contract_cond_fn cond, void *arg)
{
	int64_t deadline = mono_ms() + CONTRACT_LIVENESS_MS;
	while (!cond(arg)) {
		if (mono_ms() > deadline)
			return 0;
		sleep_ms(POLL_MS);
	}
	return 1;
}

void contract_wait_for(contract_cond_fn cond, void *arg, const char *what,
		       const char *file, int line)
{
	if (!contract_poll(cond, arg))
		ck_abort_msg("%s:%d: waited %d ms for %s", file, line,
			     CONTRACT_LIVENESS_MS, what);
}

void contract_wait_atomic(atomic_int *v, int want, const char *what,
			  const char *file, int line)
{
	int64_t deadline = mono_ms() + CONTRACT_LIVENESS_MS;
	while (atomic_load(v) < want) {
		if (mono_ms() > deadline)
			ck_abort_msg("%s:%d: waited %d ms for %s (%d of %d)",
				     file, line, CONTRACT_LIVENESS_MS, what,
				     atomic_load(v), want);
		sleep_ms(POLL_MS);
	}
}

void contract_wait_idle(bus_worker *w, const char *file, int line)
{
	int64_t deadline = mono_ms() + CONTRACT_LIVENESS_MS;
	for (;;) {
		bus_worker_stats st;
		bus_worker_get_stats(&st, w);
		if (st.running == 0)
			return;
		if (mono_ms() > deadline)
			ck_abort_msg("%s:%d: the worker still runs %llu jobs "
				     "after %d ms",
				     file, line, (unsigned long long)st.running,
				     CONTRACT_LIVENESS_MS);
		sleep_ms(POLL_MS);
	}
}

size_t count_jobs(bus *b, unsigned states, const char *queue,
		  const char *kind)
{
	bus_job_filter f = BUS_JOB_FILTER_INIT;
	f.states = states;
	f.queue = queue;
	f.kind = kind;
	f.limit = 100;
	size_t total = 0;
	for (;;) {
		bus_job *jobs = NULL;
		size_t n = 0;
		int rc = bus_job_list(&jobs, &n, b, &f);
		ck_assert_msg(rc == 0, "bus_job_list: %s",
			      bus_error_last()->message);
		total += n;
		if (n > 0)
			f.after_id = jobs[n - 1].id;
		bus_job_list_free(jobs, n);
		if (n == 0)
			return total;
	}
}

struct cJSON *job_errors(const bus_job *job)
{
	ck_assert_msg(job->errors != NULL, "job %lld has no errors array",
		      (long long)job->id);
	cJSON *arr = cJSON_Parse(job->errors);
	ck_assert_msg(cJSON_IsArray(arr), "job %lld: errors %s is not an array",
		      (long long)job->id, job->errors);
	return arr;
}

const char *job_error_text(const struct cJSON *errors, int i)
{
	const cJSON *e = cJSON_GetArrayItem(errors, i);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "error");
	return cJSON_IsString(t) ? t->valuestring : "";
}

void assert_errors(const bus_job *job, int n, const char *part)
{
	cJSON *arr = job_errors(job);
	ck_assert_msg(cJSON_GetArraySize(arr) == n,
		      "job %lld: %d errors expected, got %s",
		      (long long)job->id, n, job->errors);
	for (int i = 0; i < n; i++) {
		const cJSON *e = cJSON_GetArrayItem(arr, i);
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "attempt");
		ck_assert_msg(cJSON_IsNumber(a) && a->valuedouble == i + 1,
			      "job %lld: error %d should be of attempt %d: %s",
			      (long long)job->id, i, i + 1, job->errors);
		ck_assert_msg(cJSON_GetObjectItemCaseSensitive(e, "at"),
			      "job %lld: error %d has no \"at\": %s",
			      (long long)job->id, i, job->errors);
		ck_assert_msg(strstr(job_error_text(arr, i), part),
			      "job %lld: error %d lacks \"%s\": %s",
			      (long long)job->id, i, part, job->errors);
	}
	cJSON_Delete(arr);
}

double json_number(const char *json, const char *key)
{
	cJSON *obj = cJSON_Parse(json ? json : "");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	ck_assert_msg(cJSON_IsNumber(v), "%s has no number \"%s\"",
		      json ? json : "NULL", key);
	double d = v->valuedouble;
	cJSON_Delete(obj);
	return d;
}

void json_string(char *buf, size_t size, const char *json, const char *key)
{
	cJSON *obj = cJSON_Parse(json ? json : "");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	snprintf(buf, size, "%s", cJSON_IsString(v) ? v->valuestring : "");
	cJSON_Delete(obj);
}

TCase *contract_tcase(const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, CONTRACT_TCASE_TIMEOUT_S);
	return tc;
}
