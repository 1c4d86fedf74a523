/*
 * The listener: push wake-up for stores that have it (ops->listen). A
 * thread of the worker waits on a connection of its own for word of jobs
 * inserted into the worker's queues by any process or node, and wakes the
 * fetcher at once, so that an idle worker starts a new job without waiting
 * for its poll interval. The poll stays the fallback: while the listener
 * is down (the server restarting, say) the worker polls as before, and
 * once the listener is back it wakes the fetcher for whatever was
 * inserted meanwhile.
 */
#include <pthread.h>
#include <stdlib.h>

#include "core.h"
#include "error.h"
#include "log.h"
#include "worker.h"

/* How long one wait lasts: the listener notices a stopping worker within
 * this (the wait itself costs no round trip to the server). */
#define WAIT_MS 100

static int still_claiming(struct bus_worker *w)
{
	pthread_mutex_lock(&w->lock);
	int go = w->claiming;
	pthread_mutex_unlock(&w->lock);
	return go;
}

/* The worker's queue names, for listen (the strings are the queues'). */
static const char **queue_names(const struct bus_worker *w)
{
	const char **names = calloc(w->n_queues ? w->n_queues : 1,
				    sizeof *names);
	for (size_t i = 0; names != NULL && i < w->n_queues; i++)
		names[i] = w->queues[i].name;
	return names;
}

static int start_listening(struct bus_worker *w, int *complained)
{
	const struct bus_store_ops *ops = w->bus->store.ops;
	const char **names = queue_names(w);
	int rc = names == NULL ? bus__error_set(BUS_ENOMEM, "out of memory")
			       : ops->listen(w->listen_store, names,
					     w->n_queues);
	free(names);
	if (rc != 0) {
		if (!(*complained)++)
			bus__log(&w->bus->log, BUS_LOG_WARN,
				 "worker '%s': cannot listen for new jobs "
				 "(polling every %lld ms meanwhile): %s",
				 w->node, (long long)w->poll_ms,
				 bus_error_last()->message);
		return rc;
	}
	if (*complained)
		bus__log(&w->bus->log, BUS_LOG_INFO,
			 "worker '%s': listening for new jobs again", w->node);
	*complained = 0;
	return 0;
}

static void *listener(void *arg)
{
	struct bus_worker *w = arg;
	const struct bus_store_ops *ops = w->bus->store.ops;
	int listening = 1, complained = 0;
	while (still_claiming(w)) {
		if (!listening) {
			if (start_listening(w, &complained) != 0) {
				bus__worker_nap(w, w->poll_ms, &w->claiming,
						0);
				continue;
			}
			listening = 1;
			/* Jobs inserted while it was deaf. */
			bus__worker_wake(w);
		}
		int rc = ops->wait_jobs(w->listen_store, WAIT_MS);
		if (rc > 0) {
			bus__worker_wake(w);
		} else if (rc < 0) {
			listening = 0;
			if (!complained++)
				bus__log(&w->bus->log, BUS_LOG_WARN,
					 "worker '%s': the listener lost its "
					 "connection (polling meanwhile): %s",
					 w->node, bus_error_last()->message);
		}
	}
	return NULL;
}

int bus__worker_listen_start(struct bus_worker *w)
{
	struct bus_store_pool *p = &w->bus->store;
	if (p->ops->listen == NULL || p->ops->wait_jobs == NULL)
		return 0;
	int rc = bus__store_open(p, &w->listen_store);
	if (rc != 0)
		return rc;
	/* Listening before the fetcher's first claim: nothing inserted
	 * after that claim can go unheard. */
	int complained = 0;
	rc = start_listening(w, &complained);
	if (rc != 0)
		return rc;
	if (pthread_create(&w->listener, NULL, listener, w) != 0) {
		bus__store_close(p, w->listen_store);
		w->listen_store = NULL;
		return bus__error_set(BUS_ERROR,
				      "cannot start the listener thread");
	}
	w->listener_started = 1;
	return 0;
}

void bus__worker_listen_stop(struct bus_worker *w)
{
	if (w->listener_started)
		pthread_join(w->listener, NULL);
	w->listener_started = 0;
	if (w->listen_store != NULL)
		bus__store_close(&w->bus->store, w->listen_store);
	w->listen_store = NULL;
}
