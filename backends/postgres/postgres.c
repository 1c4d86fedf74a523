/*
 * The PostgreSQL store plug-in: opening and closing a store, and the
 * operations the core loads through bus_backend_entry, the one symbol
 * postgres.so exports.
 *
 * A store is one connection (the core never shares one between threads,
 * and never uses one in a forked child), with the statements prepared on
 * it. It reconnects by itself when the server goes away, so a store stays
 * usable across a server restart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_store.h"

static int pg_open(bus_store **out, const char *url, const bus_store_env *env)
{
	*out = NULL;
	if (env == NULL || env->error == NULL)
		return BUS_EINVAL;
	struct bus_store *s = calloc(1, sizeof *s);
	if (s == NULL)
		return env->error(BUS_ENOMEM,
				  "postgres store: out of memory opening it");
	s->env = *env;
	int rc = bus__pg_url_parse(&s->url, url, env->error);
	if (rc != 0) {
		free(s);
		return rc;
	}
	bus__pg_tables_init(&s->tables, s->url.schema, s->url.prefix);
	s->conn.tables = &s->tables;
	s->conn.prepare = s->url.prepare;
	s->conn.notify = s->url.notify ? s->tables.channel : NULL;
	/* One try: a wrong URL or a server that is down fails bus_open at
	 * once; later calls reconnect patiently. */
	rc = bus__pg_connect(s);
	if (rc != 0) {
		char where[300];
		bus__pg_where(s, where, sizeof where);
		if (rc == PG_ERR_NOMEM)
			rc = env->error(BUS_ENOMEM, "postgres store: out of "
						    "memory connecting");
		else
			rc = env->error(BUS_EBACKEND,
					"postgres store (%s): cannot connect "
					"as user '%.64s': %s",
					where,
					s->url.user ? s->url.user : "(default)",
					s->conn.err_msg);
		bus__pg_url_free(&s->url);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void pg_close(bus_store *s)
{
	if (s == NULL)
		return;
	bus__pg_disconnect(s);
	bus__pg_listen_free(s);
	bus__pg_url_free(&s->url);
	free(s);
}

static const struct bus_store_ops pg_ops = {
	.abi_version = BUS_STORE_ABI_VERSION,
	.name = "postgres",
	.flags = 0,
	.open = pg_open,
	.close = pg_close,
	.schema_check = bus__pg_schema_check,
	.migrate = bus__pg_migrate,
	.insert = bus__pg_insert,
	.claim = bus__pg_claim,
	.finish = bus__pg_finish,
	.extend = bus__pg_extend,
	.expired = bus__pg_expired,
	.get = bus__pg_get,
	.list = bus__pg_list,
	.cancel = bus__pg_cancel,
	.retry = bus__pg_retry,
	.remove = bus__pg_remove,
	.set_paused = bus__pg_set_paused,
	.counts = bus__pg_counts,
	.prune = bus__pg_prune,
	.insert_tx = bus__pg_insert_tx,
	.cancel_pending = bus__pg_cancel_pending,
	.paused_queues = bus__pg_paused_queues,
	.listen = bus__pg_listen,
	.wait_jobs = bus__pg_wait_jobs,
	.now = bus__pg_now,
	.start = bus__pg_start,
	.claim_start = bus__pg_claim_start,
};

const struct bus_store_ops *bus_backend_entry(uint32_t core_abi)
{
	/* Operations are only appended, but ABI 6 made bus_job longer
	 * (started_at): an older core would read the rows this returns with
	 * the wrong stride. */
	return core_abi >= 6 ? &pg_ops : NULL;
}
