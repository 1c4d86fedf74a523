/*
 * The MySQL/MariaDB store (mysql.so): what its files share.
 *
 *   url.c     the URL: parse, percent-decode, options
 *   conn.c    connecting, the prepared-statement cache, the retry wrapper
 *   sql.c     statement texts: table names, repeated row groups
 *   row.c     parameters, result rows <-> bus_job, DATETIME(6) <-> us
 *   schema.c  schema_check and migrate (steps from migration/mysql/)
 *   insert.c  insert and insert_tx (the outbox)
 *   claim.c   claim
 *   jobs.c    finish, extend, expired
 *   admin.c   get, list, cancel, retry, remove, pause, counts, prune
 *   mysql.c   open, close, the ops and the entry point
 *
 * A failing server or client call records its error in the connection
 * (struct my_conn) and returns MY_ERR_DB; the retry wrapper (bus__my_run)
 * decides whether to retry, reconnect or report it. Running out of memory
 * returns MY_ERR_NOMEM, which the wrapper reports. Every other failure is
 * reported with env->error where it happens.
 */
#ifndef BUS_MYSQL_STORE_H
#define BUS_MYSQL_STORE_H

#include <mysql.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/backend.h"
#include "../token.h"

/* A database error recorded in the connection, not yet reported. */
#define MY_ERR_DB (-1000)
/* Out of memory, not yet reported. */
#define MY_ERR_NOMEM (-1001)

/* The longest table prefix, and the table names it makes. */
#define MY_PREFIX_MAX 32
#define MY_TABLE_MAX (MY_PREFIX_MAX + 16)

/* ---- url.c ---- */

enum my_ssl_mode {
	MY_SSL_PREFERRED = 0, /* TLS when the server offers it (default) */
	MY_SSL_DISABLED,
	MY_SSL_REQUIRED,	/* TLS or no connection; no verification */
	MY_SSL_VERIFY_CA,	/* TLS with the server's certificate */
	MY_SSL_VERIFY_IDENTITY, /* ... and its host name */
};

/* A parsed URL. Every string is owned (malloc'd) or NULL. */
struct my_url {
	char *user, *password; /* percent-decoded */
	char *host;	       /* NULL with a socket */
	unsigned port;	       /* 3306 unless given */
	char *database;
	char *socket; /* ?socket=/path */
	enum my_ssl_mode ssl_mode;
	char *ssl_ca, *ssl_capath, *ssl_cert, *ssl_key;
	/* Seconds; 0 none. A read or write that waits longer fails as a
	 * lost connection (and is retried like one): a network that drops
	 * packets silently cannot hang a call. keepalive: TCP keepalive
	 * probes after that many idle seconds. */
	unsigned connect_timeout, read_timeout, write_timeout, keepalive;
	char prefix[MY_PREFIX_MAX + 1]; /* [a-z0-9_]*, "bus_" by default */
};

/* Parses `url` (mysql:// or mariadb://) into *out. On failure returns
 * BUS_EINVAL or BUS_ENOMEM through `error`, with a message that says what
 * is wrong and never shows the password, and leaves nothing to free. */
int bus__my_url_parse(struct my_url *out, const char *url,
		      int (*error)(int code, const char *fmt, ...));
/* Frees the strings, wiping the password first. */
void bus__my_url_free(struct my_url *u);

/* ---- sql.c ---- */

/* The table names a prefix makes. */
struct my_tables {
	char jobs[MY_TABLE_MAX], queues[MY_TABLE_MAX], version[MY_TABLE_MAX];
};

void bus__my_tables_init(struct my_tables *t, const char *prefix);

/*
 * `sql` with the default table names (bus_jobs, bus_queues,
 * bus_schema_version, where they stand as whole words) replaced by those
 * of `t`, and each "{rows}" by `n` copies of `group` joined by `sep`.
 * The result is malloc'd; NULL when out of memory.
 */
char *bus__my_sql(const struct my_tables *t, const char *sql, const char *group,
		  const char *sep, size_t n);

/* ---- conn.c ---- */

/* Statements, by slot in a connection's cache. Those that take a batch
 * have a slot per size in bus__my_bucket_rows, the largest MY_ROWS_MAX. */
#define MY_BUCKETS 9
#define MY_ROWS_MAX 256
enum my_slot {
	SL_NOW,
	SL_SESSION,
	SL_INSERT,
	SL_UPSERT = SL_INSERT + MY_BUCKETS,
	SL_STATE,
	SL_CLAIM,
	SL_CLAIM_SET,
	SL_FINISH_CHECK = SL_CLAIM_SET + MY_BUCKETS,
	SL_FINISH_SET = SL_FINISH_CHECK + MY_BUCKETS,
	SL_EXTEND_CHECK = SL_FINISH_SET + MY_BUCKETS,
	SL_EXTEND_SET = SL_EXTEND_CHECK + MY_BUCKETS,
	SL_START_CHECK = SL_EXTEND_SET + MY_BUCKETS,
	SL_START_SET = SL_START_CHECK + MY_BUCKETS,
	SL_START_FAST = SL_START_SET + MY_BUCKETS,
	SL_EXPIRED = SL_START_FAST + MY_BUCKETS,
	SL_GET,
	SL_LIST,
	SL_CANCEL,
	SL_CANCEL_PENDING,
	SL_RETRY = SL_CANCEL_PENDING + MY_BUCKETS,
	SL_REMOVE,
	SL_PAUSE,
	SL_COUNTS,
	SL_PAUSED,
	SL_PRUNE,
	SL_VERSION,
	SL_LOCK,
	SL_UNLOCK,
	SL_SESSION_LOCK,
	SL_LOCK_OWNER,
	SL_INSERT_READBACK,
	SL_CLAIM_READBACK,
	SL_JOB_LOCK,
	SL_JOB_LOOK,
	SL_COUNT
};

/* The batch sizes a statement is prepared for. An insert covers a batch
 * exactly with the largest that fit; the others take the smallest that
 * holds a chunk, padded with rows of NULLs (which match no job). */
extern const size_t bus__my_bucket_rows[MY_BUCKETS];
/* The bucket for `n` (>= 1) rows: the smallest that holds them, or the
 * largest when none does. */
int bus__my_bucket(size_t n);

/* Tokens (../token.h). */
#define MY_TOKEN_LEN BUS_TOKEN_LEN

/* One connection and the statements prepared on it. */
struct my_conn {
	MYSQL *db; /* NULL while disconnected */
	/* The session holds the user lock "bus.session.<token>" while it
	 * lives, so that after a lost connection the next session can find
	 * it (IS_USED_LOCK), end it, and know that it has ended. */
	char session_token[MY_TOKEN_LEN + 1];
	/* The token of a lost session not yet known to have ended ("" when
	 * none): a write it sent may still commit until it has. */
	char lost_token[MY_TOKEN_LEN + 1];
	MYSQL_STMT *stmt[SL_COUNT];
	const struct my_tables *tables;
	/* Per session: INSERTs of several rows number them this far apart;
	 * no statement may exceed max_packet bytes. */
	unsigned long auto_inc_step, max_packet;
	int session_read;
	int in_tx; /* a transaction begun here is open */
	/* The last reconnect gave up: the next one tries once, not for the
	 * whole window, until a connection succeeds (so that a dead network
	 * does not cost every call the full window). */
	int unreachable;
	/* The last error (MY_ERR_DB). */
	unsigned err_no;
	char err_msg[400];
};

/* Builds the text of a statement for `rows` rows (malloc'd). */
typedef char *(*my_sql_fn)(const struct my_tables *t, size_t rows);

/* The statement in `slot`, prepared from build(rows) on first use;
 * MY_ERR_DB or MY_ERR_NOMEM. */
int bus__my_prepare(struct my_conn *c, MYSQL_STMT **out, int slot,
		    my_sql_fn build, size_t rows);
/* Closes every prepared statement (the connection stays). */
void bus__my_stmts_close(struct my_conn *c);

/* Record the error of the connection or of a statement; MY_ERR_DB. */
int bus__my_db_fail(struct my_conn *c);
int bus__my_stmt_fail(struct my_conn *c, MYSQL_STMT *st);
/* Records an error of our own as a database error (err_no 0). */
int bus__my_fail(struct my_conn *c, const char *fmt, ...) BUS_PRINTF(2, 3);

/* Reads auto_increment_increment and max_allowed_packet once. */
int bus__my_session_read(struct my_conn *c);

int bus__my_begin(struct my_conn *c);
int bus__my_commit(struct my_conn *c);
void bus__my_rollback(struct my_conn *c);

/* Once per process and per thread, before any other client call. */
int bus__my_library_init(const bus_store_env *env);
void bus__my_thread_enter(void);

/* ---- the store ---- */

struct bus_store {
	bus_store_env env;
	struct my_url url;
	struct my_tables tables;
	struct my_conn conn;
	/* The session settings last read on an application's connection
	 * (insert_tx), known by its pointer and server thread id. */
	struct {
		MYSQL *db;
		unsigned long thread_id, auto_inc_step, max_packet;
	} tx_session;
};

/* Connects s->conn (closed before), the session set up; MY_ERR_DB or
 * MY_ERR_NOMEM on failure. */
int bus__my_connect(bus_store *s);
void bus__my_disconnect(bus_store *s);

/* Where the store's messages say they come from: "host:port, database
 * name" (or the socket's path); never the user or password. */
const char *bus__my_where(const bus_store *s, char *buf, size_t size);

/*
 * Runs fn(s, arg) as one atomic step: (re)connects first when needed;
 * after a deadlock or lock wait timeout rolls back and runs it again after
 * a short backoff; after a lost connection reconnects (for a few seconds)
 * and runs it again. fn must start from scratch each time and undo its
 * own allocations when it fails. A database error that remains is
 * reported as BUS_EBACKEND naming `what`.
 *
 * A lost connection leaves a write in doubt: its COMMIT may have reached
 * the server. Before anything runs again, the new session ends the lost
 * one for certain (it finds it by its session lock, kills it and waits
 * until the lock is free), so that nothing it sent can still commit; then
 * fn is re-run only when `landed` is NULL or says the write did not land.
 * landed(s, arg) reads back what the write left (by a token fn wrote with
 * it): 1 when it landed, with fn's results filled in from what it read;
 * 0 when it did not; or MY_ERR_DB / MY_ERR_NOMEM.
 */
typedef int (*my_op_fn)(bus_store *s, void *arg);
int bus__my_run(bus_store *s, const char *what, my_op_fn fn, void *arg);
int bus__my_run_checked(bus_store *s, const char *what, my_op_fn fn,
			my_op_fn landed, void *arg);

/* Reports a recorded database error of `c` as BUS_EBACKEND. */
int bus__my_report(const bus_store *s, const struct my_conn *c,
		   const char *what);

/* ---- row.c ---- */

/* DATETIME(6) in UTC <-> microseconds since the epoch. */
void bus__my_time_set(MYSQL_TIME *t, int64_t us);
int64_t bus__my_time_get(const MYSQL_TIME *t);
/* Whether `us` is within DATETIME's years 1000..9999. */
int bus__my_time_ok(int64_t us);
/* 0 when `now` is 0 or a time DATETIME holds, else BUS_EINVAL saying so
 * for operation `op`. */
int bus__my_now_check(const bus_store *s, const char *op, int64_t now);

/* Input parameters, bound in order. Room for `cap` is made up front
 * (bus__my_params_init: 0 or MY_ERR_NOMEM), so the values stay where the
 * binds point. Strings are not copied: they must outlive the execution. */
struct my_param {
	union {
		long long ll;
		MYSQL_TIME t;
	} v;
	my_bool is_null;
};

struct my_params {
	MYSQL_BIND *b;
	struct my_param *v;
	size_t n, cap;
};

int bus__my_params_init(struct my_params *p, size_t cap);
void bus__my_params_free(struct my_params *p);
void bus__my_params_reset(struct my_params *p);
void bus__my_p_ll(struct my_params *p, long long v);
void bus__my_p_str(struct my_params *p, const char *s); /* NULL: NULL */
void bus__my_p_time(struct my_params *p, int64_t us);	/* 0: NULL */
void bus__my_p_null(struct my_params *p);

/* Binds p to st and executes it; MY_ERR_DB on failure. */
int bus__my_exec(struct my_conn *c, MYSQL_STMT *st, struct my_params *p);

/* The columns a job row is read from, in the order bus__my_rows_fetch
 * expects. */
#define MY_JOB_COLS                                                            \
	"id, kind, handler, queue, priority, payload, meta, tags, state, "     \
	"attempt, max_attempts, timeout_ms, scheduled_at, inserted_at, "       \
	"attempted_at, lease_until, finished_at, attempted_by, errors, "       \
	"unique_key, unique_states, cancel_requested_at, started_at"

/*
 * Reads the result of an executed statement whose columns are MY_JOB_COLS,
 * then, with `now` not NULL, one DATETIME column into *now, into a
 * malloc'd array of at most `limit` jobs (*out NULL when none). On failure
 * nothing is left to free.
 */
int bus__my_rows_fetch(struct my_conn *c, MYSQL_STMT *st, size_t limit,
		       bus_job **out, size_t *n_out, int64_t *now);

/* Reads one column of BIGINT values (at most `limit`); MY_ERR_DB. */
int bus__my_ints_fetch(struct my_conn *c, MYSQL_STMT *st, long long *out,
		       size_t limit, size_t *n_out);

/* Frees the strings of rows[0..n) and the array. */
void bus__my_rows_free(bus_job *rows, size_t n);

/* ---- mysql.c: the one exported symbol ---- */

BUS_EXTERN const struct bus_store_ops *bus_backend_entry(uint32_t core_abi);

/* ---- the operations (schema.c, insert.c, claim.c, jobs.c, admin.c) ---- */

int bus__my_schema_check(bus_store *s);
int bus__my_migrate(bus_store *s);

int bus__my_insert(bus_store *s, int64_t now, const bus_store_new_job *jobs,
		   size_t n, bus_enqueue_result *results);
int bus__my_insert_tx(bus_store *s, void *tx, int64_t now,
		      const bus_store_new_job *jobs, size_t n,
		      bus_enqueue_result *results);
/* The server's clock (UTC_TIMESTAMP(6)). */
int bus__my_now(bus_store *s, int64_t *out);

int bus__my_claim(bus_store *s, int64_t now, const char *node, int64_t lease_us,
		  const bus_store_claim *queues, size_t n_queues, bus_job **out,
		  size_t *n_out);
int bus__my_finish(bus_store *s, int64_t now, const bus_store_finish *items,
		   size_t n, unsigned char *applied);
int bus__my_extend(bus_store *s, int64_t now, const char *node,
		   int64_t lease_us, const int64_t *ids, const int *attempts,
		   size_t n, unsigned char *held);
int bus__my_claim_start(bus_store *s, int64_t now, const char *node,
			int64_t lease_us, const bus_store_claim *queues,
			const unsigned char *start, size_t n_queues,
			bus_job **out, size_t *n_out);
int bus__my_start(bus_store *s, int64_t now, const char *node,
		  const int64_t *ids, const int *attempts, size_t n,
		  unsigned char *held);
int bus__my_expired(bus_store *s, int64_t now, size_t limit, bus_job **out,
		    size_t *n_out);

int bus__my_get(bus_store *s, int64_t id, bus_job **out);
int bus__my_list(bus_store *s, const bus_job_filter *filter, bus_job **out,
		 size_t *n_out);
int bus__my_cancel(bus_store *s, int64_t now, int64_t id);
int bus__my_cancel_pending(bus_store *s, const char *node, const int64_t *ids,
			   const int *attempts, size_t n,
			   unsigned char *pending);
int bus__my_retry(bus_store *s, int64_t now, int64_t id);
int bus__my_remove(bus_store *s, int64_t id);
int bus__my_set_paused(bus_store *s, const char *queue, int paused);
int bus__my_counts(bus_store *s, bus_job_count **out, size_t *n_out);
int bus__my_paused_queues(bus_store *s, bus_queue_info **out, size_t *n_out);
int bus__my_prune(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		  int64_t *deleted);

#endif
