/*
 * The schema: checking its version, and migrating.
 *
 * The steps are the files migration/postgres/NNN_name.sql, embedded by
 * gen-steps.sh (migration/postgres.sql is the same files end to end, for
 * those who apply SQL with their own tools). Each step records its version
 * itself and can be applied again. A migration is one transaction under
 * pg_advisory_xact_lock: DDL is transactional in PostgreSQL, so nodes that
 * migrate at once take turns, and one interrupted half-way leaves nothing
 * behind. These statements run rarely and are not prepared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_store.h"

/* Where `make install` puts the schema (set by the Makefile). */
#ifndef BUS_MIGRATIONDIR
#define BUS_MIGRATIONDIR "migration"
#endif

struct pg_step {
	int version;
	const char *name;
	const char *sql;
};

#include "schema_steps.h"

#define N_STEPS (sizeof pg_steps / sizeof *pg_steps)
/* The version this plug-in needs: its last step. */
#define SCHEMA_VERSION (pg_steps[N_STEPS - 1].version)

/* How long a node waits for another's migration. */
#define LOCK_WAIT "30s"

/* Runs a one-value query (the default names swapped), with at most one
 * text parameter; *value is -1 for NULL. */
static int query_int(struct pg_conn *c, const char *sql, const char *param,
		     long long *value)
{
	char *text = bus__pg_sql(c->tables, sql);
	if (text == NULL)
		return PG_ERR_NOMEM;
	const char *vals[1] = { param };
	PGresult *r = NULL;
	int sent = c->db != NULL && PQsendQueryParams(c->db, text,
						      param ? 1 : 0, NULL,
						      vals, NULL, NULL, 0);
	free(text);
	if (!sent)
		return bus__pg_db_fail(c, NULL);
	int rc = bus__pg_reply(c, &r);
	if (rc != 0)
		return rc;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = bus__pg_db_fail(c, r);
		PQclear(r);
		return rc;
	}
	*value = PQntuples(r) < 1 || PQgetisnull(r, 0, 0)
			 ? -1
			 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return 0;
}

/* The schema's version; *missing when there is no version table. */
static int read_version(struct pg_conn *c, long long *version, int *missing)
{
	long long exists = 0;
	*version = 0;
	int rc = query_int(c, "SELECT (to_regclass($1) IS NOT NULL)::int",
			   c->tables->version, &exists);
	*missing = rc == 0 && exists != 1;
	if (rc != 0 || *missing)
		return rc;
	rc = query_int(c,
		       "SELECT COALESCE(MAX(version), 0) "
		       "FROM bus_schema_version",
		       NULL, version);
	return rc;
}

/* ---- schema_check ---- */

static int check_op(bus_store *s, void *arg)
{
	(void)arg;
	long long v;
	int missing;
	int rc = read_version(&s->conn, &v, &missing);
	if (rc != 0)
		return rc;
	char where[300];
	bus__pg_where(s, where, sizeof where);
	const char *how = strcmp(s->url.prefix, "bus_") == 0 &&
				  s->url.schema[0] == '\0'
			      ? "run bus_migrate(), or apply "
				BUS_MIGRATIONDIR "/postgres.sql"
			      : "run bus_migrate() (" BUS_MIGRATIONDIR
				"/postgres.sql has the tables of the default "
				"prefix bus_ in the search path only)";
	if (missing)
		return s->env.error(BUS_ESCHEMA,
				    "postgres store (%s): the schema is "
				    "missing (there is no table %s): %s",
				    where, s->tables.version, how);
	if (v < SCHEMA_VERSION) {
		/* Name the first step it lacks (004_started: the start of
		 * an attempt, which the rescue reads). */
		const char *step = pg_steps[N_STEPS - 1].name;
		for (size_t i = N_STEPS; i-- > 0;)
			if (pg_steps[i].version > v)
				step = pg_steps[i].name;
		return s->env.error(BUS_ESCHEMA,
				    "postgres store (%s): the schema is at "
				    "version %lld, older than the %d this "
				    "store needs (it lacks step %s, "
				    BUS_MIGRATIONDIR "/postgres/%s.sql): %s",
				    where, v, SCHEMA_VERSION, step, step, how);
	}
	if (v > SCHEMA_VERSION && s->env.log != NULL)
		s->env.log(s->env.log_udata, BUS_LOG_INFO,
			   "postgres store (%s): the schema is at version "
			   "%lld, newer than the %d this store knows",
			   where, v, SCHEMA_VERSION);
	return 0;
}

int bus__pg_schema_check(bus_store *s)
{
	return bus__pg_run(s, "checking the schema", check_op, NULL);
}

/* ---- migrate ---- */

static int apply_step(struct pg_conn *c, const struct pg_step *step)
{
	char *sql = bus__pg_sql(c->tables, step->sql);
	if (sql == NULL)
		return PG_ERR_NOMEM;
	/* Without parameters, one call runs every statement of the step. */
	int rc = bus__pg_simple(c, sql);
	free(sql);
	if (rc != 0) {
		char msg[sizeof c->err_msg];
		snprintf(msg, sizeof msg, "step %s: %.300s", step->name,
			 c->err_msg);
		memcpy(c->err_msg, msg, sizeof msg);
	}
	return rc;
}

static int migrate_op(bus_store *s, void *arg)
{
	(void)arg;
	struct pg_conn *c = &s->conn;
	char key[PG_TABLE_MAX + 32];
	snprintf(key, sizeof key, "libbus migrate %s", s->tables.channel);
	long long got, v;
	int missing;
	int rc = bus__pg_begin(c);
	if (rc == 0)
		rc = bus__pg_simple(c, "SET LOCAL lock_timeout = '" LOCK_WAIT
				       "'");
	if (rc == 0)
		rc = query_int(c,
			       "SELECT 1 FROM pg_advisory_xact_lock("
			       "hashtextextended($1, 0))",
			       key, &got);
	if (rc == 0 && s->url.schema[0] != '\0') {
		char sql[PG_SCHEMA_MAX + 40];
		snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS \"%s\"",
			 s->url.schema);
		rc = bus__pg_simple(c, sql);
	}
	if (rc == 0)
		rc = read_version(c, &v, &missing);
	for (size_t i = 0; rc == 0 && i < N_STEPS; i++) {
		if (pg_steps[i].version <= v)
			continue;
		if (s->env.log != NULL)
			s->env.log(s->env.log_udata, BUS_LOG_INFO,
				   "postgres store: applying schema step %s",
				   pg_steps[i].name);
		rc = apply_step(c, &pg_steps[i]);
	}
	if (rc == 0)
		rc = bus__pg_commit(c);
	return rc;
}

int bus__pg_migrate(bus_store *s)
{
	return bus__pg_run(s, "migrating the schema", migrate_op, NULL);
}
