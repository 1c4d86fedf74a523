/* bus_metrics_render: store counts, worker counters and handler timings in
 * the Prometheus text exposition format 0.0.4. The text is written straight
 * into the caller's buffer; what does not fit is counted, not written, so
 * that the caller learns the size it needs. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"
#include "worker.h"

struct out {
	char *buf;
	size_t size; /* of buf */
	size_t len;  /* of the whole text so far, also what did not fit */
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + 1 < o->size) {
		size_t room = o->size - 1 - o->len;
		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len += n;
}

static void putf(struct out *o, const char *fmt, ...) BUS_PRINTF(2, 3);
static void putf(struct out *o, const char *fmt, ...)
{
	char small[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		put(o, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL)
		return; /* cannot happen for the short lines written here */
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	put(o, big, (size_t)n);
	free(big);
}

/* A label value, escaped as the format asks: backslash, double quote and
 * line feed. */
static void put_label(struct out *o, const char *v)
{
	put(o, "\"", 1);
	for (const char *p = v; *p != '\0'; p++) {
		switch (*p) {
		case '\\': put(o, "\\\\", 2); break;
		case '"': put(o, "\\\"", 2); break;
		case '\n': put(o, "\\n", 2); break;
		default: put(o, p, 1);
		}
	}
	put(o, "\"", 1);
}

static void header(struct out *o, const char *name, const char *type,
		   const char *help)
{
	putf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"[,label2="value2"]} value */
static void sample(struct out *o, const char *name, const char *label,
		   const char *value, const char *label2, const char *value2,
		   const char *number)
{
	putf(o, "%s{%s=", name, label);
	put_label(o, value);
	if (label2 != NULL) {
		putf(o, ",%s=", label2);
		put_label(o, value2);
	}
	putf(o, "} %s\n", number);
}

static void sample_u64(struct out *o, const char *name, const char *label,
		       const char *value, const char *label2,
		       const char *value2, uint64_t n)
{
	char num[32];
	snprintf(num, sizeof num, "%llu", (unsigned long long)n);
	sample(o, name, label, value, label2, value2, num);
}

static void sample_seconds(struct out *o, const char *name, const char *label,
			   const char *value, uint64_t ns)
{
	char num[48];
	snprintf(num, sizeof num, "%.9f", (double)ns / 1e9);
	sample(o, name, label, value, NULL, NULL, num);
}

static int render_store(struct out *o, bus *b)
{
	bus_queue_info *q = NULL;
	size_t n = 0;
	int rc = bus_queue_list(&q, &n, b);
	if (rc != 0)
		return rc;
	header(o, "bus_jobs", "gauge",
	       "Jobs in the store, by queue and state.");
	for (size_t i = 0; i < n; i++)
		for (int s = 0; s < BUS_JOB_STATE_COUNT; s++)
			sample_u64(o, "bus_jobs", "queue", q[i].name, "state",
				   bus_job_state_name((bus_job_state)s),
				   (uint64_t)q[i].counts[s]);
	header(o, "bus_queue_paused", "gauge",
	       "1 when the queue is paused (not claimed from).");
	for (size_t i = 0; i < n; i++)
		sample_u64(o, "bus_queue_paused", "queue", q[i].name, NULL,
			   NULL, q[i].paused ? 1 : 0);
	free(q);
	return 0;
}

/* The counters of one node: every worker given with that node name, summed
 * (two workers of one process may share a node, say one per queue, and a
 * series may appear only once in the text). */
struct node_total {
	const char *node; /* the first of its workers' */
	bus_worker_stats st;
	uint64_t claims, claim_ns, finishes, finish_ns;
};

static void add_stats(bus_worker_stats *to, const bus_worker_stats *s)
{
	to->claimed += s->claimed;
	to->completed += s->completed;
	to->retried += s->retried;
	to->discarded += s->discarded;
	to->snoozed += s->snoozed;
	to->cancelled += s->cancelled;
	to->given_back += s->given_back;
	to->rescued += s->rescued;
	to->lost += s->lost;
	to->running += s->running;
	to->refused += s->refused;
	to->lease_lost += s->lease_lost;
}

/* The nodes of w[0..n) in order of first appearance, into t (room for n);
 * a worker listed twice counts once. Returns how many nodes. */
static size_t node_totals(struct node_total *t, const bus_worker *const *w,
			  size_t n)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		int again = 0;
		for (size_t j = 0; j < i && !again; j++)
			again = w[j] == w[i];
		if (again)
			continue;
		struct bus_worker *x = (struct bus_worker *)w[i];
		size_t k = 0;
		while (k < m && strcmp(t[k].node, x->node) != 0)
			k++;
		if (k == m)
			t[m++].node = x->node;
		bus_worker_stats st;
		bus_worker_get_stats(&st, w[i]);
		add_stats(&t[k].st, &st);
		t[k].claims += atomic_load(&x->stats.claims);
		t[k].claim_ns += atomic_load(&x->stats.claim_ns);
		t[k].finishes += atomic_load(&x->stats.finishes);
		t[k].finish_ns += atomic_load(&x->stats.finish_ns);
	}
	return m;
}

/* One counter family over every node: the field at `offset` of its stats.
 */
static void node_counter(struct out *o, const char *name, const char *help,
			 const struct node_total *t, size_t n, size_t offset)
{
	header(o, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		sample_u64(o, name, "node", t[i].node, NULL, NULL,
			   *(const uint64_t *)((const char *)&t[i].st + offset));
}

static int render_workers(struct out *o, const bus_worker *const *w, size_t n)
{
	struct node_total *t = calloc(n, sizeof *t);
	if (t == NULL)
		return bus__error_oom();
	size_t m = node_totals(t, w, n);
	node_counter(o, "bus_worker_claimed_total",
		     "Jobs claimed by the node's workers.", t, m,
		     offsetof(bus_worker_stats, claimed));
	static const struct {
		const char *outcome;
		size_t offset;
	} outcomes[] = {
	    {"completed", offsetof(bus_worker_stats, completed)},
	    {"retried", offsetof(bus_worker_stats, retried)},
	    {"discarded", offsetof(bus_worker_stats, discarded)},
	    {"snoozed", offsetof(bus_worker_stats, snoozed)},
	    {"cancelled", offsetof(bus_worker_stats, cancelled)},
	    {"given_back", offsetof(bus_worker_stats, given_back)},
	    {"lost", offsetof(bus_worker_stats, lost)},
	};
	header(o, "bus_worker_outcomes_total", "counter",
	       "Outcomes the node's workers recorded, by kind (lost: the job "
	       "was no longer the worker's).");
	for (size_t i = 0; i < m; i++)
		for (size_t k = 0; k < sizeof outcomes / sizeof outcomes[0];
		     k++)
			sample_u64(o, "bus_worker_outcomes_total", "node",
				   t[i].node, "outcome", outcomes[k].outcome,
				   *(const uint64_t *)((const char *)&t[i].st +
						       outcomes[k].offset));
	node_counter(o, "bus_worker_rescued_total",
		     "Jobs of other workers whose lease had expired, rescued "
		     "by the node's workers.",
		     t, m, offsetof(bus_worker_stats, rescued));
	header(o, "bus_worker_running", "gauge", "Jobs running now.");
	for (size_t i = 0; i < m; i++)
		sample_u64(o, "bus_worker_running", "node", t[i].node, NULL,
			   NULL, t[i].st.running);

	static const char *const names[] = {
	    "bus_worker_claim_duration_seconds",
	    "bus_worker_finish_duration_seconds"};
	static const char *const helps[] = {
	    "Time spent in the store's claim calls.",
	    "Time spent writing batches of outcomes to the store."};
	for (int k = 0; k < 2; k++) {
		char sum[64], count[64];
		snprintf(sum, sizeof sum, "%s_sum", names[k]);
		snprintf(count, sizeof count, "%s_count", names[k]);
		header(o, names[k], "summary", helps[k]);
		for (size_t i = 0; i < m; i++) {
			sample_seconds(o, sum, "node", t[i].node,
				       k ? t[i].finish_ns : t[i].claim_ns);
			sample_u64(o, count, "node", t[i].node, NULL, NULL,
				   k ? t[i].finishes : t[i].claims);
		}
	}
	free(t);
	return 0;
}

struct handler_rows {
	struct out *o;
	int pass; /* which family is written */
};

static int handler_row(const char *handler, const bus_metrics_stats *s,
		       void *udata)
{
	struct handler_rows *r = udata;
	switch (r->pass) {
	case 0:
		sample_u64(r->o, "bus_handler_calls_total", "handler", handler,
			   NULL, NULL, s->calls);
		break;
	case 1:
		sample_u64(r->o, "bus_handler_failures_total", "handler",
			   handler, NULL, NULL, s->failures);
		break;
	default:
		sample_seconds(r->o, "bus_handler_duration_seconds_sum",
			       "handler", handler, s->total_ns);
		sample_u64(r->o, "bus_handler_duration_seconds_count",
			   "handler", handler, NULL, NULL, s->calls);
	}
	return 0;
}

static void render_handlers(struct out *o, const bus_metrics *m)
{
	struct handler_rows r = {o, 0};
	header(o, "bus_handler_calls_total", "counter",
	       "Handler calls counted by bus_middleware_metrics.");
	bus_metrics_foreach(m, handler_row, &r);
	r.pass = 1;
	header(o, "bus_handler_failures_total", "counter",
	       "Handler calls that failed.");
	bus_metrics_foreach(m, handler_row, &r);
	r.pass = 2;
	header(o, "bus_handler_duration_seconds", "summary",
	       "Time spent in handler calls.");
	bus_metrics_foreach(m, handler_row, &r);
}

int bus_metrics_render(char *buf, size_t size, size_t *len,
		       const bus_metrics_render_opts *opts)
{
	if (len != NULL)
		*len = 0;
	if (buf != NULL && size > 0)
		buf[0] = '\0';
	if (len == NULL || (buf == NULL && size > 0) || opts == NULL)
		return bus__error_set(BUS_EINVAL,
				      "bus_metrics_render: NULL argument");
	if (opts->version != BUS_METRICS_RENDER_OPTS_VERSION)
		return bus__error_set(BUS_EINVAL,
				      "bus_metrics_render_opts.version is %u, "
				      "expected %u: initialise it with "
				      "BUS_METRICS_RENDER_OPTS_INIT",
				      opts->version,
				      BUS_METRICS_RENDER_OPTS_VERSION);
	if (opts->n_workers > 0 && opts->workers == NULL)
		return bus__error_set(
		    BUS_EINVAL,
		    "bus_metrics_render: n_workers is %zu but "
		    "workers is NULL",
		    opts->n_workers);
	for (size_t i = 0; i < opts->n_workers; i++)
		if (opts->workers[i] == NULL)
			return bus__error_set(
			    BUS_EINVAL,
			    "bus_metrics_render: workers[%zu] "
			    "is NULL",
			    i);
	struct out o = {buf, size, 0};
	int rc = 0;
	if (opts->bus != NULL)
		rc = render_store(&o, opts->bus);
	if (rc == 0 && opts->n_workers > 0)
		rc = render_workers(&o, opts->workers, opts->n_workers);
	if (rc != 0) {
		if (size > 0)
			buf[0] = '\0';
		return rc;
	}
	if (opts->metrics != NULL)
		render_handlers(&o, opts->metrics);
	if (size > 0)
		buf[o.len < size ? o.len : size - 1] = '\0';
	*len = o.len;
	return 0;
}
