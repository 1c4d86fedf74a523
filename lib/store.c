#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "store.h"

/* Backends cannot link against libbus internals: they report errors and log
 * through these. */
static int env_error(int code, const char *fmt, ...) BUS_PRINTF(2, 3);
static void env_log(void *log_udata, bus_log_level level, const char *fmt,
		    ...) BUS_PRINTF(3, 4);

static int env_error(int code, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	return bus__error_set(code, "%s", text);
}

static void env_log(void *log_udata, bus_log_level level, const char *fmt,
		    ...)
{
	const struct bus_logger *lg = log_udata;
	if (lg == NULL || !bus__log_enabled(lg, level))
		return;
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	lg->fn(level, text, lg->udata);
}

const bus_store_env bus__store_env = { BUS_STORE_ABI_VERSION, env_error,
				       env_log, NULL };

int bus__store_pool_init(struct bus_store_pool *p,
			 const struct bus_store_ops *ops, const char *url,
			 const struct bus_logger *log)
{
	memset(p, 0, sizeof *p);
	p->ops = ops;
	p->env = bus__store_env;
	p->env.log_udata = (void *)log;
	atomic_init(&p->schema_ok, 0);
	if ((p->url = strdup(url)) == NULL)
		return bus__error_oom();
	pthread_mutex_init(&p->lock, NULL);
	bus_store *first;
	int rc = ops->open(&first, p->url, &p->env);
	if (rc != 0) {
		pthread_mutex_destroy(&p->lock);
		free(p->url);
		p->url = NULL;
		return rc;
	}
	if (ops->flags & BUS_STORE_SHARED) {
		p->shared = first;
		return 0;
	}
	bus__store_release(p, first);
	return 0;
}

void bus__store_pool_destroy(struct bus_store_pool *p)
{
	if (p->ops == NULL)
		return;
	if (p->shared != NULL)
		p->ops->close(p->shared);
	for (size_t i = 0; i < p->n_idle; i++)
		p->ops->close(p->idle[i]);
	free(p->idle);
	if (p->url != NULL) {
		/* The URL may hold a password: do not leave it in freed memory. */
		explicit_bzero(p->url, strlen(p->url));
		free(p->url);
	}
	pthread_mutex_destroy(&p->lock);
	p->ops = NULL;
}

static int refuse_in_child(const struct bus_store_pool *p)
{
	return bus__error_set(BUS_ESTATE,
			      "the %s store lives in the worker process: a "
			      "handler in a child process (process isolation) "
			      "cannot use it; use thread isolation",
			      p->ops->name);
}

int bus__store_open(struct bus_store_pool *p, bus_store **out)
{
	if (p->in_child && p->shared != NULL)
		return refuse_in_child(p);
	if (p->shared != NULL) {
		*out = p->shared;
		return 0;
	}
	return p->ops->open(out, p->url, &p->env);
}

void bus__store_close(struct bus_store_pool *p, bus_store *s)
{
	if (s != NULL && s != p->shared)
		p->ops->close(s);
}

static int check_schema(struct bus_store_pool *p, bus_store *s)
{
	if (atomic_load_explicit(&p->schema_ok, memory_order_acquire))
		return 0;
	int rc = p->ops->schema_check(s);
	if (rc == 0)
		atomic_store_explicit(&p->schema_ok, 1, memory_order_release);
	return rc;
}

void bus__store_after_fork(struct bus_store_pool *p)
{
	p->idle = NULL; /* the parent's: not ours to close or free */
	p->n_idle = p->cap = 0;
	pthread_mutex_init(&p->lock, NULL); /* it may have been held */
	p->in_child = 1;
}

/* A connection for one call, without the schema check: the shared one, an
 * idle one, or a new one. */
static int take(struct bus_store_pool *p, bus_store **out)
{
	if (p->in_child && p->shared != NULL)
		return refuse_in_child(p);
	bus_store *s = p->shared;
	if (s == NULL) {
		pthread_mutex_lock(&p->lock);
		if (p->n_idle > 0)
			s = p->idle[--p->n_idle];
		pthread_mutex_unlock(&p->lock);
		if (s == NULL) {
			int rc = p->ops->open(&s, p->url, &p->env);
			if (rc != 0)
				return rc;
		}
	}
	*out = s;
	return 0;
}

int bus__store_acquire(struct bus_store_pool *p, bus_store **out)
{
	bus_store *s;
	int rc = take(p, &s);
	if (rc == 0 && (rc = check_schema(p, s)) != 0)
		bus__store_release(p, s);
	if (rc == 0)
		*out = s;
	return rc;
}

void bus__store_release(struct bus_store_pool *p, bus_store *s)
{
	if (s == NULL || s == p->shared)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->n_idle == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4;
		bus_store **idle = realloc(p->idle, cap * sizeof *idle);
		if (idle == NULL) {
			pthread_mutex_unlock(&p->lock);
			p->ops->close(s);
			return;
		}
		p->idle = idle;
		p->cap = cap;
	}
	p->idle[p->n_idle++] = s;
	pthread_mutex_unlock(&p->lock);
}

int bus__store_migrate(struct bus_store_pool *p)
{
	bus_store *s;
	int rc = take(p, &s);
	if (rc != 0)
		return rc;
	rc = p->ops->migrate(s);
	if (rc == 0)
		rc = p->ops->schema_check(s);
	if (rc == 0)
		atomic_store_explicit(&p->schema_ok, 1, memory_order_release);
	bus__store_release(p, s);
	return rc;
}
