/*
 * The schema: checking its version, and migrating.
 *
 * The steps are the files migration/mysql/NNN_name.sql, embedded by
 * gen-steps.sh (migration/mysql.sql is the same files end to end, for
 * those who apply SQL with their own tools). Each step records its version
 * itself and can be applied again, so a migration interrupted half-way is
 * finished by the next one. DDL cannot be prepared with values and has
 * none: the steps run as plain queries, with the table names of the
 * prefix put in.
 */
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_store.h"

/* Where `make install` puts the schema (set by the Makefile). */
#ifndef BUS_MIGRATIONDIR
#define BUS_MIGRATIONDIR "migration"
#endif

struct my_step {
	int version;
	const char *name;
	const char *sql;
};

#include "schema_steps.h"

#define N_STEPS (sizeof my_steps / sizeof *my_steps)
/* The version this plug-in needs: its last step. */
#define SCHEMA_VERSION (my_steps[N_STEPS - 1].version)

/* How long a node waits for another's migration. */
#define LOCK_WAIT_S 30

static char *version_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT COALESCE(MAX(version), 0) "
			   "FROM bus_schema_version",
			   NULL, NULL, rows);
}

/* The lock is named after the prefix and the database (a lock is global
 * to the server); names longer than 64 are cut, which only makes two
 * migrations wait for each other. */
static char *lock_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT GET_LOCK(LEFT(CONCAT(?, 'migrate.', "
			   "DATABASE()), 64), ?)",
			   NULL, NULL, rows);
}

static char *unlock_build(const struct my_tables *t, size_t rows)
{
	return bus__my_sql(t,
			   "SELECT RELEASE_LOCK(LEFT(CONCAT(?, 'migrate.', "
			   "DATABASE()), 64))",
			   NULL, NULL, rows);
}

/* Runs a one-value query; *value is -1 for NULL. *missing is set (and 0
 * returned) when it fails because the version table does not exist. */
static int query_value(struct my_conn *c, int slot, my_sql_fn build,
		       struct my_params *p, long long *value, int *missing)
{
	MYSQL_STMT *st;
	long long v[1];
	size_t n = 0;
	if (missing != NULL)
		*missing = 0;
	int rc = bus__my_prepare(c, &st, slot, build, 0);
	if (rc == 0)
		rc = bus__my_exec(c, st, p);
	if (rc == 0)
		rc = bus__my_ints_fetch(c, st, v, 1, &n);
	if (rc == MY_ERR_DB && missing != NULL &&
	    c->err_no == ER_NO_SUCH_TABLE) {
		/* Prepared before the table existed: prepare again later. */
		if (c->stmt[slot] != NULL)
			mysql_stmt_close(c->stmt[slot]);
		c->stmt[slot] = NULL;
		*missing = 1;
		*value = 0;
		return 0;
	}
	if (rc != 0)
		return rc;
	*value = n == 1 ? v[0] : -1;
	return 0;
}

static int read_version(struct my_conn *c, long long *version, int *missing)
{
	return query_value(c, SL_VERSION, version_build, NULL, version,
			   missing);
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
	bus__my_where(s, where, sizeof where);
	const char *how = strcmp(s->url.prefix, "bus_") == 0
			      ? "run bus_migrate(), or apply "
				BUS_MIGRATIONDIR "/mysql.sql"
			      : "run bus_migrate() (" BUS_MIGRATIONDIR
				"/mysql.sql has the tables of the default "
				"prefix bus_ only)";
	if (missing)
		return s->env.error(BUS_ESCHEMA,
				    "mysql store (%s): the schema is missing "
				    "(there is no table %s): %s",
				    where, s->tables.version, how);
	if (v == 0)
		return s->env.error(BUS_ESCHEMA,
				    "mysql store (%s): the schema is not "
				    "complete (version 0: a migration is "
				    "running, or was interrupted): %s",
				    where, how);
	if (v < SCHEMA_VERSION) {
		/* Name the first step it lacks (004_started: the start of
		 * an attempt, which the rescue reads). */
		const char *step = my_steps[N_STEPS - 1].name;
		for (size_t i = N_STEPS; i-- > 0;)
			if (my_steps[i].version > v)
				step = my_steps[i].name;
		return s->env.error(BUS_ESCHEMA,
				    "mysql store (%s): the schema is at "
				    "version %lld, older than the %d this "
				    "store needs (it lacks step %s, "
				    BUS_MIGRATIONDIR "/mysql/%s.sql): %s",
				    where, v, SCHEMA_VERSION, step, step, how);
	}
	if (v > SCHEMA_VERSION && s->env.log != NULL)
		s->env.log(s->env.log_udata, BUS_LOG_INFO,
			   "mysql store (%s): the schema is at version %lld, "
			   "newer than the %d this store knows",
			   where, v, SCHEMA_VERSION);
	return 0;
}

int bus__my_schema_check(bus_store *s)
{
	return bus__my_run(s, "checking the schema", check_op, NULL);
}

/* ---- migrate ---- */

/* Whether sql[0..len) holds more than blanks and "--" comments. */
static int has_statement(const char *sql, size_t len)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (sql[i] == ' ' || sql[i] == '\t' ||
				   sql[i] == '\n' || sql[i] == '\r'))
			i++;
		if (i + 1 < len && sql[i] == '-' && sql[i + 1] == '-') {
			while (i < len && sql[i] != '\n')
				i++;
			continue;
		}
		return i < len;
	}
	return 0;
}

/* The end of the statement starting at `s`: after the first line whose
 * last character is ';' and that is not a comment. */
static const char *statement_end(const char *s)
{
	while (*s != '\0') {
		const char *eol = strchr(s, '\n');
		const char *next = eol ? eol + 1 : s + strlen(s);
		const char *last = next;
		while (last > s && (last[-1] == '\n' || last[-1] == '\r' ||
				    last[-1] == ' ' || last[-1] == '\t'))
			last--;
		const char *first = s;
		while (first < last && (*first == ' ' || *first == '\t'))
			first++;
		int comment = last - first >= 2 && first[0] == '-' &&
			      first[1] == '-';
		if (last > s && last[-1] == ';' && !comment)
			return next;
		s = next;
	}
	return s;
}

static int apply_step(struct my_conn *c, const struct my_step *step)
{
	char *sql = bus__my_sql(c->tables, step->sql, NULL, NULL, 0);
	if (sql == NULL)
		return MY_ERR_NOMEM;
	int rc = 0;
	for (const char *s = sql; rc == 0 && *s != '\0';) {
		const char *end = statement_end(s);
		size_t len = (size_t)(end - s);
		/* ER_DUP_FIELDNAME: a column a step adds is there already
		 * (the step ran, its version was not recorded): MySQL has
		 * no ADD COLUMN IF NOT EXISTS. */
		if (has_statement(s, len) &&
		    mysql_real_query(c->db, s, len) != 0 &&
		    mysql_errno(c->db) != ER_DUP_FIELDNAME) {
			rc = bus__my_db_fail(c);
			char msg[sizeof c->err_msg];
			snprintf(msg, sizeof msg, "step %s: %.300s", step->name,
				 c->err_msg);
			memcpy(c->err_msg, msg, sizeof msg);
		}
		s = end;
	}
	free(sql);
	return rc;
}

static int unlock(bus_store *s)
{
	struct my_params p;
	long long v;
	int rc = bus__my_params_init(&p, 1);
	if (rc != 0)
		return rc;
	bus__my_p_str(&p, s->url.prefix);
	rc = query_value(&s->conn, SL_UNLOCK, unlock_build, &p, &v, NULL);
	bus__my_params_free(&p);
	return rc;
}

static int migrate_locked(bus_store *s)
{
	long long v;
	int missing;
	int rc = read_version(&s->conn, &v, &missing);
	for (size_t i = 0; rc == 0 && i < N_STEPS; i++) {
		if (my_steps[i].version <= v)
			continue;
		if (s->env.log != NULL)
			s->env.log(s->env.log_udata, BUS_LOG_INFO,
				   "mysql store: applying schema step %s",
				   my_steps[i].name);
		rc = apply_step(&s->conn, &my_steps[i]);
	}
	return rc;
}

static int migrate_op(bus_store *s, void *arg)
{
	(void)arg;
	struct my_params p;
	long long got;
	int rc = bus__my_params_init(&p, 2);
	if (rc != 0)
		return rc;
	bus__my_p_str(&p, s->url.prefix);
	bus__my_p_ll(&p, LOCK_WAIT_S);
	rc = query_value(&s->conn, SL_LOCK, lock_build, &p, &got, NULL);
	bus__my_params_free(&p);
	if (rc != 0)
		return rc;
	if (got != 1)
		return bus__my_fail(&s->conn,
				    "another node has been migrating for %d s "
				    "(the lock '%smigrate' is still held)",
				    LOCK_WAIT_S, s->url.prefix);
	rc = migrate_locked(s);
	if (rc != 0) {
		/* Keep the step's error, not the unlock's. */
		unsigned err_no = s->conn.err_no;
		char msg[sizeof s->conn.err_msg];
		memcpy(msg, s->conn.err_msg, sizeof msg);
		if (s->conn.db != NULL)
			unlock(s);
		s->conn.err_no = err_no;
		memcpy(s->conn.err_msg, msg, sizeof msg);
		return rc;
	}
	return unlock(s);
}

int bus__my_migrate(bus_store *s)
{
	return bus__my_run(s, "migrating the schema", migrate_op, NULL);
}
