/*
 * The MySQL/MariaDB store plug-in: opening and closing a store, and the
 * operations the core loads through bus_backend_entry, the one symbol
 * mysql.so exports.
 *
 * A store is one connection (the core never shares one between threads,
 * and never uses one in a forked child), with the statements prepared on
 * it. It reconnects by itself when the server goes away, so a store stays
 * usable across a server restart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_store.h"

/* " (MySQL error N)" for a server or client error, "" for our own. */
static const char *errno_text(const struct my_conn *c, char *buf, size_t size)
{
	if (c->err_no == 0)
		return "";
	snprintf(buf, size, " (MySQL error %u)", c->err_no);
	return buf;
}

static int my_open(bus_store **out, const char *url, const bus_store_env *env)
{
	*out = NULL;
	if (env == NULL || env->error == NULL)
		return BUS_EINVAL;
	int rc = bus__my_library_init(env);
	if (rc != 0)
		return rc;
	struct bus_store *s = calloc(1, sizeof *s);
	if (s == NULL)
		return env->error(BUS_ENOMEM,
				  "mysql store: out of memory opening it");
	s->env = *env;
	rc = bus__my_url_parse(&s->url, url, env->error);
	if (rc != 0) {
		free(s);
		return rc;
	}
	bus__my_tables_init(&s->tables, s->url.prefix);
	s->conn.tables = &s->tables;
	/* One try: a wrong URL or a server that is down fails bus_open at
	 * once; later calls reconnect patiently. */
	rc = bus__my_connect(s);
	if (rc != 0) {
		char where[300], buf[32];
		bus__my_where(s, where, sizeof where);
		if (rc == MY_ERR_NOMEM)
			rc = env->error(BUS_ENOMEM, "mysql store: out of "
						    "memory connecting");
		else
			rc = env->error(BUS_EBACKEND,
					"mysql store (%s): cannot connect as "
					"user '%.64s': %s%s",
					where,
					s->url.user ? s->url.user : "(none)",
					s->conn.err_msg,
					errno_text(&s->conn, buf, sizeof buf));
		bus__my_url_free(&s->url);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void my_close(bus_store *s)
{
	if (s == NULL)
		return;
	bus__my_thread_enter();
	bus__my_disconnect(s);
	bus__my_url_free(&s->url);
	free(s);
}

static const struct bus_store_ops my_ops = {
	.abi_version = BUS_STORE_ABI_VERSION,
	.name = "mysql",
	.flags = 0,
	.open = my_open,
	.close = my_close,
	.schema_check = bus__my_schema_check,
	.migrate = bus__my_migrate,
	.insert = bus__my_insert,
	.claim = bus__my_claim,
	.finish = bus__my_finish,
	.extend = bus__my_extend,
	.expired = bus__my_expired,
	.get = bus__my_get,
	.list = bus__my_list,
	.cancel = bus__my_cancel,
	.retry = bus__my_retry,
	.remove = bus__my_remove,
	.set_paused = bus__my_set_paused,
	.counts = bus__my_counts,
	.prune = bus__my_prune,
	.insert_tx = bus__my_insert_tx,
	.cancel_pending = bus__my_cancel_pending,
	.paused_queues = bus__my_paused_queues,
	/* No push wake-up: MySQL has no LISTEN; workers poll. */
	.listen = NULL,
	.wait_jobs = NULL,
	.now = bus__my_now,
	.start = bus__my_start,
	.claim_start = bus__my_claim_start,
};

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	/* Operations are only appended, but ABI 6 made bus_job longer
	 * (started_at): an older core would read the rows this returns with
	 * the wrong stride (this is ABI 6). */
	return core_abi >= 6 ? &my_ops : NULL;
}
