/*
 * The PostgreSQL store (postgres.so): what its files share.
 *
 *   url.c      the URL: parse, percent-decode, options
 *   sql.c      statement texts: schema and table names
 *   conn.c     connecting, the statement cache, the retry wrapper
 *   fence.c    the lost session: remembered, then ended for certain
 *   param.c    binary parameters and arrays; result values; times
 *   row.c      result rows -> bus_job
 *   schema.c   schema_check and migrate (steps from migration/postgres/)
 *   insert.c   insert and insert_tx (the outbox), with NOTIFY
 *   listen.c   listen and wait_jobs (push wake-up)
 *   claim.c    claim
 *   jobs.c     finish, extend, expired
 *   admin.c    get, list, cancel, retry, remove, pause, counts, prune
 *   postgres.c open, close, the ops and the entry point
 *
 * Every statement is sent with its parameters apart (extended protocol),
 * in binary, and its results come back in binary: integers and times are
 * not printed and parsed, and text and JSON come back byte for byte.
 *
 * A failing server or client call records its error in the connection
 * (struct pg_conn) and returns PG_ERR_DB; the retry wrapper (bus__pg_run)
 * decides whether to retry, reconnect or report it. Running out of memory
 * returns PG_ERR_NOMEM, which the wrapper reports. Every other failure is
 * reported with env->error where it happens.
 */
#ifndef BUS_PG_STORE_H
#define BUS_PG_STORE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/backend.h"
#include "../token.h"

/* A database error recorded in the connection, not yet reported. */
#define PG_ERR_DB (-1000)
/* Out of memory, not yet reported. */
#define PG_ERR_NOMEM (-1001)

/* The longest table prefix and schema name, and the names they make. */
#define PG_PREFIX_MAX 32
#define PG_SCHEMA_MAX 63
#define PG_TABLE_MAX (PG_SCHEMA_MAX + PG_PREFIX_MAX + 24)

/* ---- url.c ---- */

/* A parsed URL. Every string is owned (malloc'd) or NULL; NULL leaves the
 * setting to libpq's defaults (and its environment variables). */
struct pg_url {
	char *user, *password; /* percent-decoded */
	char *host;	       /* a name, an address, or a socket directory */
	unsigned port;	       /* 5432 unless given */
	char *database;
	char *sslmode, *sslrootcert, *sslcert, *sslkey;
	char *application_name;
	unsigned connect_timeout;	/* s; 10 unless given */
	/* s, 0 for none: waiting for a reply, sending a statement (60
	 * unless given); TCP keepalive probes after this much silence (30
	 * unless given). */
	unsigned read_timeout, write_timeout, keepalive;
	char schema[PG_SCHEMA_MAX + 1]; /* [a-z0-9_]*; "" the search path */
	char prefix[PG_PREFIX_MAX + 1]; /* [a-z0-9_]*, "bus_" by default */
	/* Named prepared statements (the default); off for a pooler in
	 * transaction mode that cannot keep them (PgBouncer before 1.21). */
	int prepare;
	/* Inserts NOTIFY listening workers (the default). */
	int notify;
};

/* Parses `url` (postgres:// or postgresql://) into *out. On failure
 * returns BUS_EINVAL or BUS_ENOMEM through `error`, with a message that
 * says what is wrong and never shows the password, and leaves nothing to
 * free. */
int bus__pg_url_parse(struct pg_url *out, const char *url,
		      int (*error)(int code, const char *fmt, ...));
/* Frees the strings, wiping the password first. */
void bus__pg_url_free(struct pg_url *u);

/* ---- sql.c ---- */

/* The names a schema and a prefix make: tables qualified with the schema,
 * other objects (indexes) with the prefix alone. */
struct pg_tables {
	char schema[PG_SCHEMA_MAX + 3]; /* "name". or "" */
	char prefix[PG_PREFIX_MAX + 1];
	char jobs[PG_TABLE_MAX], queues[PG_TABLE_MAX], version[PG_TABLE_MAX];
	/* The channel NOTIFY wakes listeners on. */
	char channel[PG_TABLE_MAX];
};

void bus__pg_tables_init(struct pg_tables *t, const char *schema,
			 const char *prefix);

/*
 * `sql` with the default names swapped for those of `t`: bus_jobs,
 * bus_queues and bus_schema_version (whole words) for the tables, any
 * other word that starts with "bus_" for the prefix's. The result is
 * malloc'd; NULL when out of memory.
 */
char *bus__pg_sql(const struct pg_tables *t, const char *sql);

/* ---- conn.c ---- */

/* Statements, by slot in a connection's cache. */
enum pg_slot {
	SL_INSERT,
	SL_UPSERT,
	SL_UNIQUE_ID,
	SL_CLAIM,
	SL_FINISH,
	SL_EXTEND,
	SL_START,
	SL_EXPIRED,
	SL_GET,
	SL_LIST,
	SL_CANCEL,
	SL_RETRY,
	SL_REMOVE,
	SL_PAUSE,
	SL_COUNTS,
	SL_PRUNE,
	SL_CANCEL_PENDING,
	SL_PAUSED,
	SL_NOW,
	SL_INSERT_READBACK,
	SL_CLAIM_READBACK,
	SL_JOB_LOCK,
	SL_JOB_LOOK,
	SL_COUNT
};

/* One connection and the statements prepared on it. */
struct pg_conn {
	PGconn *db; /* NULL while disconnected */
	const struct pg_tables *tables;
	int prepare; /* named prepared statements (else unnamed ones) */
	const char *notify; /* the channel inserts notify, or NULL */
	unsigned char prepared[SL_COUNT];
	char *text[SL_COUNT]; /* the slot's SQL for these names, once built */
	int in_tx;	      /* a transaction begun here is open */
	/* The last error (PG_ERR_DB): SQLSTATE ("" for our own or a lost
	 * connection) and message. */
	char sqlstate[6];
	char err_msg[400];
	int lost; /* the connection broke */
	/* s, 0 for none: how long a reply (a send) may take before the
	 * connection is treated as lost; none on the application's own
	 * connection (insert_tx). */
	unsigned read_timeout, write_timeout;
	/* A reconnect window passed in vain: calls try once until the
	 * server answers again. */
	int unreachable;
	/* This session's server backend: pid and start time (us since the
	 * epoch); pid 0 when unknown (behind a pooler). */
	int backend_pid;
	int64_t backend_start;
	/* A lost session not yet known to have ended (pid 0: none). */
	int lost_pid;
	int64_t lost_start;
};

/* ---- fence.c ---- */

/* Reads which backend serves c->db (at connect); PG_ERR_DB. */
int bus__pg_session_read(struct pg_conn *c);
/* The connection is being dropped as lost: its session is remembered
 * (unless an earlier lost one still is) to be ended. */
void bus__pg_session_lost(struct pg_conn *c);
/* On a new connection: terminates the lost session while it is still
 * that session, and waits until it has ended; 0 at once when there is
 * none; PG_ERR_DB (it would not end, or this connection failed). */
int bus__pg_lost_end(struct pg_conn *c);

/* ---- conn.c ---- */

/* Forgets what was prepared and frees the texts (the connection stays). */
void bus__pg_stmts_reset(struct pg_conn *c);

/* Record the error of a result (or of the connection when res is NULL),
 * or one of our own; PG_ERR_DB. */
int bus__pg_db_fail(struct pg_conn *c, const PGresult *res);
int bus__pg_fail(struct pg_conn *c, const char *fmt, ...) BUS_PRINTF(2, 3);

struct pg_params;

/* Runs `sql` (written with the default names; the statement of `slot`,
 * prepared on first use) with `p`, results in binary. *out is the result
 * (PQclear it) when it returned rows or a command tag; PG_ERR_DB or
 * PG_ERR_NOMEM otherwise. */
int bus__pg_exec(struct pg_conn *c, int slot, const char *sql,
		 const struct pg_params *p, PGresult **out);
/* Runs a statement without parameters (BEGIN, DDL); PG_ERR_DB. */
int bus__pg_simple(struct pg_conn *c, const char *sql);
/* After a PQsend* call on c->db: sends what it queued and waits for the
 * reply, each within the connection's timeout (poll, so a network that
 * stops passing packets cannot hang the call). *out is the reply's
 * result (an error first, else the last; PQclear it) or NULL when there
 * was none; PG_ERR_DB when the connection was lost or timed out (then
 * c->lost is set). */
int bus__pg_reply(struct pg_conn *c, PGresult **out);

int bus__pg_begin(struct pg_conn *c);
int bus__pg_commit(struct pg_conn *c);
void bus__pg_rollback(struct pg_conn *c);

/* ---- the store ---- */

struct bus_store {
	bus_store_env env;
	struct pg_url url;
	struct pg_tables tables;
	struct pg_conn conn;
	/* A listener's queues (listen.c); owned. */
	char **listen_queues;
	size_t n_listen;
};

/* Connects s->conn (closed before); PG_ERR_DB or PG_ERR_NOMEM. */
int bus__pg_connect(bus_store *s);
void bus__pg_disconnect(bus_store *s);

/* Where the store's messages say they come from: "host:port, database
 * name"; never the user or password. */
const char *bus__pg_where(const bus_store *s, char *buf, size_t size);

/*
 * Runs fn(s, arg) as one atomic step: (re)connects first when needed;
 * after a deadlock or serialization failure rolls back and runs it again
 * after a short backoff; after a lost connection reconnects (for a few
 * seconds) and runs it again. fn must start from scratch each time and
 * undo its own allocations when it fails. A database error that remains
 * is reported as BUS_EBACKEND naming `what`.
 */
typedef int (*pg_op_fn)(bus_store *s, void *arg);
int bus__pg_run(bus_store *s, const char *what, pg_op_fn fn, void *arg);
/*
 * The same for a write that may not run twice. A lost connection leaves
 * it in doubt: its COMMIT (or the Sync that commits a statement on its
 * own) may have reached the server. fn is then run again only when
 * landed(s, arg), run on the new connection, says the write did not land.
 * landed reads back what the write left (by a token fn wrote with it): 1
 * when it landed, with fn's results filled in from what it read; 0 when
 * it did not; or PG_ERR_DB / PG_ERR_NOMEM.
 */
int bus__pg_run_checked(bus_store *s, const char *what, pg_op_fn fn,
			pg_op_fn landed, void *arg);

/* Reports a recorded database error of `c` as BUS_EBACKEND. */
int bus__pg_report(const bus_store *s, const struct pg_conn *c,
		   const char *what);

/* ---- param.c ---- */

/* Type OIDs of the values sent and read (pg_type.h is a server header). */
#define PG_BOOL 16
#define PG_INT8 20
#define PG_INT2 21
#define PG_INT4 23
#define PG_TEXT 25
#define PG_JSON 114
#define PG_TIMESTAMPTZ 1184

/* Times: microseconds since the Unix epoch; 0 is NULL. Whether `us` is a
 * time this store takes (well inside timestamptz's range). */
int bus__pg_time_ok(int64_t us);
/* 0 when `now` is 0 or a time the store takes, else BUS_EINVAL saying so
 * for operation `op`. */
int bus__pg_now_check(const bus_store *s, const char *op, int64_t now);

/* Parameters in binary, in order. Room for `cap` is made up front;
 * strings are not copied (they must outlive the execution); arrays are
 * built in place and owned. Running out of memory is remembered and
 * reported by bus__pg_exec. */
struct pg_params {
	const char **val;
	int *len, *fmt;
	char (*inl)[8]; /* scalar values */
	char **owned;	/* arrays */
	size_t n, cap;
	int oom;
};

int bus__pg_params_init(struct pg_params *p, size_t cap);
void bus__pg_params_free(struct pg_params *p);
void bus__pg_p_int8(struct pg_params *p, int64_t v);
void bus__pg_p_int4(struct pg_params *p, int32_t v);
void bus__pg_p_bool(struct pg_params *p, int v);
void bus__pg_p_text(struct pg_params *p, const char *s); /* NULL: NULL */
void bus__pg_p_time(struct pg_params *p, int64_t us);	 /* 0: NULL */

/* A one-dimensional array parameter of element type `oid`, built element
 * by element, then handed to the parameters with bus__pg_p_array. */
struct pg_array {
	char *buf;
	size_t len, cap, count;
	uint32_t oid;
	int has_null, oom;
};

void bus__pg_array_init(struct pg_array *a, uint32_t oid);
void bus__pg_a_int8(struct pg_array *a, int64_t v);
void bus__pg_a_int4(struct pg_array *a, int32_t v);
void bus__pg_a_int2(struct pg_array *a, int16_t v);
void bus__pg_a_bool(struct pg_array *a, int v);
void bus__pg_a_text(struct pg_array *a, const char *s); /* NULL: NULL */
void bus__pg_a_time(struct pg_array *a, int64_t us);	/* 0: NULL */
/* Takes the array's buffer (the array is left empty). */
void bus__pg_p_array(struct pg_params *p, struct pg_array *a);

/* Values of a binary result: integers of any width, booleans, times (0
 * for NULL), and text (NULL for NULL; points into the result). */
int64_t bus__pg_get_int(const PGresult *r, int row, int col);
int64_t bus__pg_get_time(const PGresult *r, int row, int col);
const char *bus__pg_get_text(const PGresult *r, int row, int col);

/* ---- row.c ---- */

/* The columns a job row is read from, in the order bus__pg_rows_read
 * expects. */
#define PG_JOB_COLS                                                            \
	"id, kind, handler, queue, priority, payload, meta, tags, state, "     \
	"attempt, max_attempts, timeout_ms, scheduled_at, inserted_at, "       \
	"attempted_at, lease_until, finished_at, attempted_by, errors, "       \
	"unique_key, unique_states, cancel_requested_at, started_at"
#define PG_JOB_NCOLS 22

/* The rows of `r`, whose first columns are PG_JOB_COLS starting at column
 * `first`, into a malloc'd array (*out NULL when none). On failure
 * (PG_ERR_NOMEM, or PG_ERR_DB for a result of the wrong shape) nothing is
 * left to free. */
int bus__pg_rows_read(struct pg_conn *c, const PGresult *r, int first,
		      bus_job **out, size_t *n_out);

/* Frees the strings of rows[0..n) and the array. */
void bus__pg_rows_free(bus_job *rows, size_t n);

/* ---- postgres.c: the one exported symbol ---- */

BUS_EXTERN const struct bus_store_ops *bus_backend_entry(uint32_t core_abi);

/* ---- the operations (schema.c, insert.c, claim.c, jobs.c, admin.c) ---- */

int bus__pg_schema_check(bus_store *s);
int bus__pg_migrate(bus_store *s);

int bus__pg_insert(bus_store *s, int64_t now, const bus_store_new_job *jobs,
		   size_t n, bus_enqueue_result *results);
int bus__pg_insert_tx(bus_store *s, void *tx, int64_t now,
		      const bus_store_new_job *jobs, size_t n,
		      bus_enqueue_result *results);

int bus__pg_claim(bus_store *s, int64_t now, const char *node, int64_t lease_us,
		  const bus_store_claim *queues, size_t n_queues, bus_job **out,
		  size_t *n_out);
/* The claim's statement (default names), for tests that EXPLAIN it. */
const char *bus__pg_claim_sql(void);
int bus__pg_finish(bus_store *s, int64_t now, const bus_store_finish *items,
		   size_t n, unsigned char *applied);
int bus__pg_claim_start(bus_store *s, int64_t now, const char *node,
			int64_t lease_us, const bus_store_claim *queues,
			const unsigned char *start, size_t n_queues,
			bus_job **out, size_t *n_out);
int bus__pg_start(bus_store *s, int64_t now, const char *node,
		  const int64_t *ids, const int *attempts, size_t n,
		  unsigned char *held);
int bus__pg_extend(bus_store *s, int64_t now, const char *node,
		   int64_t lease_us, const int64_t *ids, const int *attempts,
		   size_t n, unsigned char *held);
int bus__pg_expired(bus_store *s, int64_t now, size_t limit, bus_job **out,
		    size_t *n_out);
int bus__pg_cancel_pending(bus_store *s, const char *node,
			   const int64_t *ids, const int *attempts, size_t n,
			   unsigned char *pending);

int bus__pg_listen(bus_store *s, const char *const *queues, size_t n);
int bus__pg_wait_jobs(bus_store *s, int timeout_ms);
void bus__pg_listen_free(bus_store *s);

int bus__pg_get(bus_store *s, int64_t id, bus_job **out);
int bus__pg_list(bus_store *s, const bus_job_filter *filter, bus_job **out,
		 size_t *n_out);
int bus__pg_cancel(bus_store *s, int64_t now, int64_t id);
int bus__pg_retry(bus_store *s, int64_t now, int64_t id);
int bus__pg_remove(bus_store *s, int64_t id);
int bus__pg_set_paused(bus_store *s, const char *queue, int paused);
int bus__pg_counts(bus_store *s, bus_job_count **out, size_t *n_out);
int bus__pg_paused_queues(bus_store *s, bus_queue_info **out,
			  size_t *n_out);
/* The server's clock (ABI 5): now(), in microseconds since the epoch. */
int bus__pg_now(bus_store *s, int64_t *out);
int bus__pg_prune(bus_store *s, int64_t now, int64_t age_us, size_t limit,
		  int64_t *deleted);

#endif
