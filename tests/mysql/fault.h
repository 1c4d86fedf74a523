/*
 * The multi-node and fault tests against a real server: MySQL/MariaDB, or
 * PostgreSQL with $BUS_FAULT_STORE=postgres (the same programs serve both
 * stores, each taking its URL from $BUS_TEST_MYSQL_URL or
 * $BUS_TEST_POSTGRES_URL; the scripts in tests/postgres run them so).
 *
 * Each test is one program that exits 0 (pass), 1 (fail) or 77 (skip, for
 * automake). It skips only when its store's URL is unset; once the URL is
 * set, a server it cannot reach is a failure, so CI cannot pass by
 * accident. Every run works in tables of its own (the URL's table-prefix,
 * unique per run), so the tests may run beside each other and beside the
 * contract suite, and it drops them at the end.
 *
 * The helpers here end the program on failure: fault_fail() prints one
 * "FAIL: <test>: <reason>" line, kills and reaps the worker processes,
 * drops the run's tables and exits 1.
 */
#ifndef BUS_TESTS_MYSQL_FAULT_H
#define BUS_TESTS_MYSQL_FAULT_H

#include <bus/bus.h>
#include <stdint.h>
#include <sys/types.h>

#define FAULT_SKIP 77

/* Where the test's own connections go, parsed from the URL. Strings owned
 * by the struct. */
struct fault_dsn {
	char *user, *password, *host, *database, *socket;
	unsigned port;
	int postgres; /* a postgres:// URL (else mysql://) */
};

/* The store under test, from $BUS_FAULT_STORE ("mysql" by default). */
struct fault_store {
	const char *name;      /* "mysql", "postgres": the plug-in's name */
	const char *label;     /* "MySQL", "PostgreSQL", for messages */
	const char *url_var;   /* BUS_TEST_MYSQL_URL, ... */
	const char *dir_var;   /* BUS_TEST_MYSQL_DIR: the server's files */
	const char *port_var;  /* BUS_TEST_MYSQL_PORT */
	const char *build_var; /* BUS_MYSQL_BACKEND_DIR: the build tree's */
	const char *script;    /* scripts/mariadb.sh: start, stop, restart */
};

struct fault_env {
	const char *test;   /* the program's name, for messages */
	char prefix[64];    /* this run's table prefix, "<tag>_<pid>_" */
	char *url;          /* the bus URL with the table prefix; owned */
	struct fault_dsn dsn;
	const struct fault_store *store;
};

/*
 * Reads the store's URL (exits 77 when unset, fails in CI), takes the
 * plug-in from $BUS_MYSQL_BACKEND_DIR (or $BUS_POSTGRES_BACKEND_DIR) when
 * $BUS_BACKEND_DIR is unset (make check sets it to the build tree's), checks the URL names a
 * server on this machine, reaches it (fails when it cannot), picks the
 * run's table prefix from `tag` and drops any table left with it. Arms a
 * watchdog of `limit_s` seconds for the whole program.
 */
void fault_init(struct fault_env *e, const char *test, const char *tag,
		unsigned limit_s);

/* Whether this runs in CI ($CI is "true"), where nothing may skip. */
int fault_in_ci(void);

/* Prints "SKIP: ..." and exits 77 (nothing to clean up yet). */
_Noreturn void fault_skip(const char *fmt, ...) BUS_PRINTF(1, 2);
/* Prints "FAIL: <test>: ...", cleans up, exits 1. */
_Noreturn void fault_fail(const char *fmt, ...) BUS_PRINTF(1, 2);
/* Prints "PASS: <test>: ...", cleans up, exits 0. */
_Noreturn void fault_pass(const char *fmt, ...) BUS_PRINTF(1, 2);
/* One progress line on stdout, prefixed with the test and elapsed time. */
void fault_note(const char *fmt, ...) BUS_PRINTF(1, 2);

/* Seconds since fault_init. */
double fault_elapsed_s(void);
void fault_sleep_ms(long ms);

/* ---- fault_db.c: the test's own connections ---- */

/* A connection of the test's own to the server (MYSQL * or PGconn *). */
typedef struct fault_db fault_db;

/* A new connection to the test database, NULL with the reason in `why`
 * (the server's message: never the password). Statements time out after
 * 10 s, so a dead server cannot hang a handler. */
fault_db *fault_connect(const struct fault_dsn *d, char *why, size_t why_len);
void fault_db_close(fault_db *db);
/* The client library's handle: MYSQL * or PGconn *. */
void *fault_db_handle(fault_db *db);
/* At the end of a thread that used a connection. */
void fault_db_thread_end(void);

/* Runs one statement; 0, or -1 with the server's message in `why`. */
int fault_db_exec(fault_db *db, const char *sql, char *why, size_t why_len);
/* Runs one statement on `db` (DDL on the run's own tables: names are the
 * only thing formatted in); fails the test on error. */
void fault_sql(fault_db *db, const char *fmt, ...) BUS_PRINTF(2, 3);
/* Runs a query and calls fn with each row's values as text (NULL for
 * NULL); 0, or -1 with the reason in `why`. */
typedef void (*fault_row_fn)(void *arg, const char *const *values, int n);
int fault_db_query(fault_db *db, const char *sql, fault_row_fn fn, void *arg,
		   char *why, size_t why_len);
/* The counter of runs per job in `table` (job_id BIGINT PRIMARY KEY, n):
 * name the table once, then add one to a job's row per call. */
void fault_db_seen_sql(fault_db *db, const char *table);
int fault_db_seen_add(fault_db *db, int64_t id, char *why, size_t why_len);

/* Opens a bus on the run's URL, errors-only logging unless $BUS_LOG is
 * set; fails the test when it cannot. */
bus *fault_open_bus(const struct fault_env *e);

/* Worker processes that fault_fail must kill and reap. */
void fault_track_child(pid_t pid);
void fault_untrack_child(pid_t pid);

/* Waits up to `ms` for `pid`; 1 with *status set when it ended, 0 when it
 * is still running. */
int fault_wait_child(pid_t pid, long ms, int *status);

#endif
