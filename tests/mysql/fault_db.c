/*
 * The fault tests' own connections to the store's server, MySQL/MariaDB
 * (libmariadb) or PostgreSQL (libpq): what the tests need of SQL is small
 * (DDL on the run's tables, a counter per job, reading rows back), and
 * these few calls are all that differs between the two servers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

#ifdef FAULT_WITH_MYSQL
#include <mysql.h>
#endif
#ifdef FAULT_WITH_POSTGRES
#include <libpq-fe.h>
#endif

struct fault_db {
	int postgres;
	void *handle; /* MYSQL * or PGconn * */
#ifdef FAULT_WITH_MYSQL
	MYSQL_STMT *seen;
#endif
	int seen_ready;
	char seen_sql[256];
};

/* ---- MySQL -------------------------------------------------------------- */

#ifdef FAULT_WITH_MYSQL
static void *my_connect(const struct fault_dsn *d, char *why, size_t why_len)
{
	MYSQL *db = mysql_init(NULL);
	if (db == NULL) {
		snprintf(why, why_len, "mysql_init: out of memory");
		return NULL;
	}
	unsigned connect_s = 5, io_s = 10;
	mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
	mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &io_s);
	mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &io_s);
	mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (mysql_real_connect(db, d->host, d->user, d->password, d->database,
			       d->port, d->socket, 0) == NULL) {
		snprintf(why, why_len, "%s (error %u)", mysql_error(db),
			 mysql_errno(db));
		mysql_close(db);
		return NULL;
	}
	return db;
}
#endif

/* ---- PostgreSQL --------------------------------------------------------- */

#ifdef FAULT_WITH_POSTGRES
static void *pg_connect(const struct fault_dsn *d, char *why, size_t why_len)
{
	char port[8];
	snprintf(port, sizeof port, "%u", d->port);
	const char *keys[] = { "host",	   "port",	      "dbname",
			       "user",	   "password",	      "connect_timeout",
			       "options",  NULL };
	/* A dead server must not hang a handler. */
	const char *vals[] = { d->host,	    port, d->database,
			       d->user,	    d->password,  "5",
			       "-c statement_timeout=10000", NULL };
	PGconn *db = PQconnectdbParams(keys, vals, 0);
	if (db == NULL || PQstatus(db) != CONNECTION_OK) {
		snprintf(why, why_len, "%s",
			 db ? PQerrorMessage(db) : "out of memory");
		why[strcspn(why, "\n")] = '\0';
		PQfinish(db);
		return NULL;
	}
	PQclear(PQexec(db, "SET client_min_messages = warning"));
	return db;
}

static int pg_ok(PGresult *r)
{
	ExecStatusType t = PQresultStatus(r);
	return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

static void pg_why(PGconn *db, char *why, size_t why_len)
{
	snprintf(why, why_len, "%s", PQerrorMessage(db));
	why[strcspn(why, "\n")] = '\0';
}
#endif

/* ---- Both --------------------------------------------------------------- */

fault_db *fault_connect(const struct fault_dsn *d, char *why, size_t why_len)
{
	fault_db *db = calloc(1, sizeof *db);
	if (db == NULL) {
		snprintf(why, why_len, "out of memory");
		return NULL;
	}
	db->postgres = d->postgres;
	snprintf(why, why_len, "this build has no client library for it");
#ifdef FAULT_WITH_MYSQL
	if (!d->postgres)
		db->handle = my_connect(d, why, why_len);
#endif
#ifdef FAULT_WITH_POSTGRES
	if (d->postgres)
		db->handle = pg_connect(d, why, why_len);
#endif
	if (db->handle == NULL) {
		free(db);
		return NULL;
	}
	return db;
}

void fault_db_close(fault_db *db)
{
	if (db == NULL)
		return;
#ifdef FAULT_WITH_MYSQL
	if (!db->postgres) {
		if (db->seen != NULL)
			mysql_stmt_close(db->seen);
		mysql_close(db->handle);
	}
#endif
#ifdef FAULT_WITH_POSTGRES
	if (db->postgres)
		PQfinish(db->handle);
#endif
	free(db);
}

void *fault_db_handle(fault_db *db)
{
	return db->handle;
}

void fault_db_thread_end(void)
{
#ifdef FAULT_WITH_MYSQL
	mysql_thread_end();
#endif
}

int fault_db_exec(fault_db *db, const char *sql, char *why, size_t why_len)
{
#ifdef FAULT_WITH_MYSQL
	if (!db->postgres) {
		if (mysql_real_query(db->handle, sql, strlen(sql)) == 0) {
			MYSQL_RES *res = mysql_store_result(db->handle);
			mysql_free_result(res);
			return 0;
		}
		snprintf(why, why_len, "%s", mysql_error(db->handle));
		return -1;
	}
#endif
#ifdef FAULT_WITH_POSTGRES
	if (db->postgres) {
		PGresult *r = PQexec(db->handle, sql);
		int ok = pg_ok(r);
		PQclear(r);
		if (ok)
			return 0;
		pg_why(db->handle, why, why_len);
		return -1;
	}
#endif
	snprintf(why, why_len, "no client library");
	return -1;
}

void fault_sql(fault_db *db, const char *fmt, ...)
{
	char sql[1024], why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	if (fault_db_exec(db, sql, why, sizeof why) != 0)
		fault_fail("SQL \"%s\": %s", sql, why);
}

int fault_db_query(fault_db *db, const char *sql, fault_row_fn fn, void *arg,
		   char *why, size_t why_len)
{
#ifdef FAULT_WITH_MYSQL
	if (!db->postgres) {
		MYSQL_RES *res = NULL;
		if (mysql_real_query(db->handle, sql, strlen(sql)) != 0 ||
		    (res = mysql_store_result(db->handle)) == NULL) {
			snprintf(why, why_len, "%s", mysql_error(db->handle));
			return -1;
		}
		unsigned nf = mysql_num_fields(res);
		MYSQL_ROW row;
		while ((row = mysql_fetch_row(res)) != NULL)
			fn(arg, (const char *const *)row, (int)nf);
		mysql_free_result(res);
		return 0;
	}
#endif
#ifdef FAULT_WITH_POSTGRES
	if (db->postgres) {
		PGresult *r = PQexec(db->handle, sql);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			pg_why(db->handle, why, why_len);
			PQclear(r);
			return -1;
		}
		int nf = PQnfields(r);
		const char *vals[16];
		for (int i = 0; i < PQntuples(r); i++) {
			for (int f = 0; f < nf && f < 16; f++)
				vals[f] = PQgetisnull(r, i, f)
						  ? NULL
						  : PQgetvalue(r, i, f);
			fn(arg, vals, nf < 16 ? nf : 16);
		}
		PQclear(r);
		return 0;
	}
#endif
	snprintf(why, why_len, "no client library");
	return -1;
}

void fault_db_seen_sql(fault_db *db, const char *table)
{
	if (db->postgres)
		snprintf(db->seen_sql, sizeof db->seen_sql,
			 "INSERT INTO %s AS s (job_id, n) "
			 "VALUES ($1::int8, 1) ON CONFLICT (job_id) DO "
			 "UPDATE SET n = s.n + 1",
			 table);
	else
		snprintf(db->seen_sql, sizeof db->seen_sql,
			 "INSERT INTO %s (job_id, n) "
			 "VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1",
			 table);
}

int fault_db_seen_add(fault_db *db, int64_t id, char *why, size_t why_len)
{
#ifdef FAULT_WITH_MYSQL
	if (!db->postgres) {
		if (db->seen == NULL &&
		    ((db->seen = mysql_stmt_init(db->handle)) == NULL ||
		     mysql_stmt_prepare(db->seen, db->seen_sql,
					strlen(db->seen_sql)) != 0)) {
			snprintf(why, why_len, "preparing the insert: %s",
				 db->seen ? mysql_stmt_error(db->seen)
					  : mysql_error(db->handle));
			return -1;
		}
		long long v = id;
		MYSQL_BIND b = { 0 };
		b.buffer_type = MYSQL_TYPE_LONGLONG;
		b.buffer = &v;
		if (mysql_stmt_bind_param(db->seen, &b) == 0 &&
		    mysql_stmt_execute(db->seen) == 0)
			return 0;
		snprintf(why, why_len, "%s (error %u)",
			 mysql_stmt_error(db->seen), mysql_stmt_errno(db->seen));
		return -1;
	}
#endif
#ifdef FAULT_WITH_POSTGRES
	if (db->postgres) {
		if (!db->seen_ready) {
			PGresult *r = PQprepare(db->handle, "seen",
						db->seen_sql, 1, NULL);
			int ok = pg_ok(r);
			PQclear(r);
			if (!ok) {
				pg_why(db->handle, why, why_len);
				return -1;
			}
			db->seen_ready = 1;
		}
		char v[24];
		snprintf(v, sizeof v, "%lld", (long long)id);
		const char *vals[1] = { v };
		PGresult *r = PQexecPrepared(db->handle, "seen", 1, vals, NULL,
					     NULL, 0);
		int ok = pg_ok(r);
		PQclear(r);
		if (ok)
			return 0;
		pg_why(db->handle, why, why_len);
		return -1;
	}
#endif
	snprintf(why, why_len, "no client library");
	return -1;
}
