/*
 * libbus metrics in the Prometheus text exposition format (version 0.0.4),
 * for an application to serve on its own /metrics endpoint (the `bus
 * metrics` and `bus work --metrics` commands serve the same text).
 * Included by <bus/bus.h>.
 */
#ifndef BUS_PROMETHEUS_H
#define BUS_PROMETHEUS_H

#ifndef BUS_BUS_H
#error "include <bus/bus.h>, not <bus/prometheus.h>"
#endif

/* What to render. Every source is optional; none set renders nothing. */
typedef struct bus_metrics_render_opts {
	unsigned int version;
	/* Jobs per queue and state (bus_jobs, every state of every queue,
	 * zeros included) and each queue's paused flag (bus_queue_paused),
	 * read from the store of this bus. NULL: none. */
	bus *bus;
	/* Counters of these workers, labelled node="<the worker's node>":
	 * claimed, outcomes by kind, rescued, running, and the time spent in
	 * the store's claim and finish calls (summaries: _sum in seconds and
	 * _count of calls). Workers with the same node are summed into one
	 * series; a worker listed twice counts once. NULL/0: none. */
	const bus_worker *const *workers;
	size_t n_workers;
	/* Handler calls, failures and time, labelled handler="<name>", from
	 * bus_middleware_metrics. NULL: none. */
	const bus_metrics *metrics;
} bus_metrics_render_opts;

#define BUS_METRICS_RENDER_OPTS_VERSION 1
#define BUS_METRICS_RENDER_OPTS_INIT                                           \
	{                                                                      \
		BUS_METRICS_RENDER_OPTS_VERSION, NULL, NULL, 0, NULL           \
	}

/*
 * Renders the metrics that `opts` names into `buf`, which is the caller's:
 * at most `size` bytes are written, the last a NUL (nothing when size is 0).
 * *len is set to the length of the whole text without the NUL, also when it
 * did not fit: when *len >= size the text was cut, and a call with a buffer
 * of *len + 1 bytes or more will hold it (the counts may have grown
 * meanwhile: loop). Returns 0, or the store's error when reading the counts
 * fails (then *len is 0 and buf holds an empty string). Safe from any
 * thread while the workers run.
 */
BUS_EXTERN int bus_metrics_render(char *buf, size_t size, size_t *len,
				  const bus_metrics_render_opts *opts);

#endif /* BUS_PROMETHEUS_H */
