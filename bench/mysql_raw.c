/*
 * bench/mysql-raw: the limit the MySQL store's worker can approach. The
 * store's own claim and finish statements, prepared once per connection
 * and driven in a plain loop with MariaDB Connector/C: no executors, no
 * handler, no job rows copied out of the result, no queue between threads
 * but the one a pipeline needs.
 *
 *   bench/mysql-raw --url URL [--runs R] [--jobs N] [--case NAME]
 *
 * The schema is applied once through bus_migrate. Then, per run and per
 * case, N jobs go into a queue of their own (raw.<pid>.<n>), are claimed
 * and completed until none is left, checked (N completed, each on its
 * first attempt) and deleted, and the server given a second to purge them
 * (bench/jobs does the same):
 *
 *   insert     the N jobs of the "serial" case, timed, inserted the way
 *              the store inserts bus_enqueue_many x1000: per 1,000 jobs,
 *              one transaction: a SELECT of the server's time, then
 *              INSERTs of 256, 256, 256, 128, 64, 32 and 8 rows. Figure:
 *              jobs/s.
 *   serial     one connection: claim up to 256 (START TRANSACTION; SELECT
 *              ... FOR UPDATE SKIP LOCKED; UPDATE ... WHERE id IN; COMMIT),
 *              then finish them as completed (START TRANSACTION; one
 *              guarded UPDATE of the batch; COMMIT); again.
 *   pipeline   a claimer and a completer thread on a connection each, the
 *              shape of one bus worker (its fetcher and its completer): the
 *              claimer takes 256 whenever at most 256 are claimed and not
 *              finished, so that a claim overlaps the finish before it (a
 *              worker holds at most concurrency + prefetch: with bench/jobs'
 *              prefetch 256 its claims wait for the finish, with 512 they
 *              overlap it); the completer finishes up to 256 at a time,
 *              without waiting for a batch to fill.
 *   x2         two such loops at once on the same queue.
 *
 * Work figures are jobs/s, timed from the start of the loops to the last
 * finish; each is the median of R runs. trips/job is the statements and
 * transaction commands sent per job. --case runs only one of serial,
 * serial2, pipeline, pipeline2 (for profiling).
 *
 * The statements are copies of those in backends/mysql/claim.c (claim_build,
 * claim_set_build), jobs.c (finish_set_build) and insert.c (insert_build,
 * now_build), with the same session settings as conn.c: keep them in step.
 * Times are the server's (a NULL "now"), as the store's are for a bus
 * without a clock of its own.
 *
 * The last line gives the rates bench/jobs --raw compares the library
 * with: the faster of serial and pipeline, for one loop and for two.
 */
#include <errno.h>
#include <mysql.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"

#define DEFAULT_JOBS 20000
#define BATCH 256      /* claim and finish batches: bench/jobs' */
#define IN_FLIGHT 512  /* claimed, not finished, in a pipeline */
#define INSERT_TX 1000 /* jobs per insert transaction: bus_enqueue_many's */
#define LEASE_US (30LL * 1000000) /* a worker's default lease */
#define MAX_LOOPS 2
/* After deleting a case's jobs, the pause that lets the server purge
 * them (bench/jobs' SETTLE_MS). */
#define SETTLE_MS 1000

#define PAYLOAD "{\"user_id\":42,\"email\":\"a@example.com\"}"
#define KIND "bench.noop"
/* What the library writes for a job enqueued outside a handler. */
#define META                                                                   \
	"{\"message_id\":\"0190d1c4-0000-7000-8000-000000000001\","            \
	"\"request_id\":\"0190d1c4-0000-7000-8000-000000000002\","             \
	"\"correlation_id\":\"0190d1c4-0000-7000-8000-000000000002\"}"

/* ------------------------------------------------------------------------ */
/* The statements (copied from backends/mysql/)                              */
/* ------------------------------------------------------------------------ */

#define JOB_COLS                                                               \
	"id, kind, handler, queue, priority, payload, meta, tags, state, "     \
	"attempt, max_attempts, timeout_ms, scheduled_at, inserted_at, "       \
	"attempted_at, lease_until, finished_at, attempted_by, errors, "       \
	"unique_key, unique_states"

/* claim.c, claim_build */
static const char claim_sql[] =
	"SELECT " JOB_COLS ", COALESCE(?, UTC_TIMESTAMP(6)) "
	"FROM bus_jobs WHERE queue = ? AND pending = 1 AND "
	"(state = 0 OR scheduled_at <= COALESCE(?, UTC_TIMESTAMP(6))) "
	"AND NOT EXISTS (SELECT 1 FROM bus_queues WHERE name = ? AND "
	"paused <> 0) "
	"ORDER BY priority, scheduled_at, id LIMIT ? "
	"FOR UPDATE SKIP LOCKED";

/* claim.c, claim_set_build */
static const char claim_set_sql[] =
	"UPDATE bus_jobs SET state = 2, attempt = attempt + 1, "
	"attempted_at = ?, attempted_by = ?, lease_until = ?, "
	"finished_at = NULL, "
	"unique_key = IF((unique_states >> 2) & 1, unique_key, NULL) "
	"WHERE id IN ({rows})";

/* jobs.c, finish_set_build */
#define FINISH_GUARD                                                           \
	"j.state = 2 AND j.attempted_by = b.node AND j.attempt = b.attempt "   \
	"AND (b.oie = 0 OR j.lease_until < n.now)"
#define NOW_TABLE "(SELECT COALESCE(?, UTC_TIMESTAMP(6)) AS now) n"

static const char finish_sql[] =
	"UPDATE bus_jobs j JOIN ({rows}) b ON j.id = b.id "
	"JOIN " NOW_TABLE " SET "
	"j.attempt = j.attempt - "
	"IF(b.refund <> 0 AND j.attempt > 0, 1, 0), "
	"j.scheduled_at = IF(b.st IN (0, 1, 3) AND b.delay >= 0, "
	"n.now + INTERVAL b.delay MICROSECOND, j.scheduled_at), "
	"j.errors = IF(b.err IS NULL, j.errors, CONCAT("
	"IF(JSON_LENGTH(j.errors) = 0, '[', "
	"CONCAT(LEFT(TRIM(j.errors), CHAR_LENGTH(TRIM(j.errors)) - 1), "
	"',')), '{\"attempt\":', b.attempt, ',\"at\":', "
	"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', n.now), "
	"',\"error\":', b.err, '}]')), "
	"j.finished_at = IF(b.st IN (4, 5, 6), n.now, NULL), "
	"j.lease_until = NULL, "
	"j.unique_key = IF((j.unique_states >> b.st) & 1, "
	"j.unique_key, NULL), "
	"j.state = b.st WHERE " FINISH_GUARD;
static const char finish_row[] =
	"SELECT CAST(? AS SIGNED) AS i, CAST(? AS SIGNED) AS id, "
	"? AS node, CAST(? AS SIGNED) AS attempt, "
	"CAST(? AS SIGNED) AS oie, CAST(? AS SIGNED) AS st, "
	"CAST(? AS SIGNED) AS delay, ? AS err, "
	"CAST(? AS SIGNED) AS refund";
#define FINISH_PARAMS 9

/* insert.c, insert_build and now_build */
#define COLS                                                                   \
	"inserted_at, scheduled_at, state, kind, handler, queue, priority, "   \
	"payload, meta, tags, max_attempts, timeout_ms, unique_states, errors"
#define VALUES                                                                 \
	"COALESCE(?, UTC_TIMESTAMP(6)), "                                      \
	"COALESCE(?, inserted_at + INTERVAL ? MICROSECOND), "                  \
	"IF(scheduled_at <= inserted_at, 0, 1), "                              \
	"?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]'"
#define ROW_PARAMS 13
static const char insert_sql[] = "INSERT INTO bus_jobs (" COLS ") VALUES "
				 "{rows}";
static const char insert_row[] = "(" VALUES ")";
static const char now_sql[] = "SELECT TIMESTAMPDIFF(MICROSECOND, "
			      "'1970-01-01 00:00:00', UTC_TIMESTAMP(6))";

/* conn.c, session_sql */
static const char *const session_sql[] = {
	"SET SESSION time_zone = '+00:00', "
	"SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', "
	"SESSION innodb_lock_wait_timeout = 10",
	"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
};

/* conn.c, bus__my_bucket_rows: the batch sizes a statement is prepared
 * for; the claim's UPDATE and the finish take the smallest that holds a
 * batch, padded with NULLs; an insert the largest that fit. */
#define BUCKETS 9
static const size_t bucket_rows[BUCKETS] = { 1,  2,  4,   8,  16,
					     32, 64, 128, 256 };

static int bucket_holding(size_t n)
{
	int b = 0;
	while (b < BUCKETS - 1 && bucket_rows[b] < n)
		b++;
	return b;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static void die_msg(const char *fmt, const char *detail)
{
	fprintf(stderr, "mysql-raw: ");
	fprintf(stderr, fmt, detail);
	fprintf(stderr, "\n");
	exit(1);
}

static void *xmalloc(size_t size)
{
	void *p = calloc(1, size ? size : 1);
	if (p == NULL)
		die_msg("%s", "out of memory");
	return p;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Sorts `v`. */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof v[0], cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* `sql` with "{rows}" replaced by `n` copies of `group` joined by `sep`
 * (malloc'd). */
static char *sql_rows(const char *sql, const char *group, const char *sep,
		      size_t n)
{
	const char *at = strstr(sql, "{rows}");
	if (at == NULL) {
		char *s = strdup(sql);
		if (s == NULL)
			die_msg("%s", "out of memory");
		return s;
	}
	size_t glen = strlen(group), slen = strlen(sep);
	char *s = xmalloc(strlen(sql) + n * (glen + slen) + 1);
	size_t len = (size_t)(at - sql);
	memcpy(s, sql, len);
	for (size_t i = 0; i < n; i++) {
		if (i > 0) {
			memcpy(s + len, sep, slen);
			len += slen;
		}
		memcpy(s + len, group, glen);
		len += glen;
	}
	strcpy(s + len, at + 6);
	return s;
}

/* DATETIME(6) <-> microseconds since the epoch (row.c's, H. Hinnant's
 * civil calendar). */
#define DAY_US INT64_C(86400000000)

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static void time_set(MYSQL_TIME *t, int64_t us)
{
	int64_t days = us / DAY_US, rem = us % DAY_US, y;
	int m, d;
	civil_from_days(days, &y, &m, &d);
	memset(t, 0, sizeof *t);
	t->year = (unsigned)y;
	t->month = (unsigned)m;
	t->day = (unsigned)d;
	int64_t secs = rem / 1000000;
	t->hour = (unsigned)(secs / 3600);
	t->minute = (unsigned)(secs / 60 % 60);
	t->second = (unsigned)(secs % 60);
	t->second_part = (unsigned long)(rem % 1000000);
	t->time_type = MYSQL_TIMESTAMP_DATETIME;
}

static int64_t time_get(const MYSQL_TIME *t)
{
	int64_t days = days_from_civil(t->year, (int)t->month, (int)t->day);
	int64_t secs = (int64_t)t->hour * 3600 + t->minute * 60 + t->second;
	return days * DAY_US + secs * 1000000 + (int64_t)t->second_part;
}

/* ------------------------------------------------------------------------ */
/* The URL                                                                   */
/* ------------------------------------------------------------------------ */

/* mysql://user:password@host:port/database?socket=/path (or mariadb://);
 * user and password percent-decoded. Other options are not read: this
 * is a benchmark for a server of one's own. Strings point into `buf`. */
struct url {
	char *buf;
	const char *user, *password, *host, *database, *socket;
	unsigned port;
};

static int hex(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* Decodes %XX in place. */
static void pct_decode(char *s)
{
	char *out = s;
	for (; *s != '\0'; s++) {
		if (s[0] == '%' && hex(s[1]) >= 0 && hex(s[2]) >= 0) {
			*out++ = (char)(hex(s[1]) * 16 + hex(s[2]));
			s += 2;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

static void url_option(struct url *u, char *opt)
{
	char *eq = strchr(opt, '=');
	if (eq == NULL)
		return;
	*eq = '\0';
	if (strcmp(opt, "socket") == 0) {
		pct_decode(eq + 1);
		u->socket = eq + 1;
	} else if (strcmp(opt, "table-prefix") == 0 &&
		   strcmp(eq + 1, "bus_") != 0) {
		die_msg("the URL's table-prefix is '%s': this benchmark uses "
			"the default tables (bus_jobs)",
			eq + 1);
	}
}

static void url_parse(struct url *u, const char *text)
{
	memset(u, 0, sizeof *u);
	const char *rest = NULL;
	if (strncmp(text, "mysql://", 8) == 0)
		rest = text + 8;
	else if (strncmp(text, "mariadb://", 10) == 0)
		rest = text + 10;
	else
		die_msg("%s", "the URL does not start with mysql:// or "
			      "mariadb://");
	u->buf = strdup(rest);
	if (u->buf == NULL)
		die_msg("%s", "out of memory");
	char *s = u->buf;
	char *query = strchr(s, '?');
	if (query != NULL)
		*query++ = '\0';
	char *slash = strchr(s, '/');
	if (slash == NULL || slash[1] == '\0')
		die_msg("%s", "the URL names no database (mysql://.../db)");
	*slash = '\0';
	u->database = slash + 1;
	char *at = strrchr(s, '@');
	char *hostport = s;
	if (at != NULL) {
		*at = '\0';
		hostport = at + 1;
		char *colon = strchr(s, ':');
		if (colon != NULL) {
			*colon = '\0';
			pct_decode(colon + 1);
			u->password = colon + 1;
		}
		pct_decode(s);
		u->user = s;
	}
	u->port = 3306;
	char *colon = strchr(hostport, ':');
	if (colon != NULL) {
		*colon = '\0';
		u->port = (unsigned)strtoul(colon + 1, NULL, 10);
	}
	u->host = *hostport ? hostport : "localhost";
	for (char *opt = query; opt != NULL;) {
		char *amp = strchr(opt, '&');
		if (amp != NULL)
			*amp++ = '\0';
		url_option(u, opt);
		opt = amp;
	}
}

/* ------------------------------------------------------------------------ */
/* A connection, its statements and parameters                               */
/* ------------------------------------------------------------------------ */

/* Input parameters, bound in order; room for the largest statement. */
struct params {
	MYSQL_BIND *b;
	long long *ll;
	MYSQL_TIME *t;
	my_bool *null;
	size_t n, cap;
};

/* The columns of a claimed row (JOB_COLS, then the server's time). */
enum { C_ID = 0, C_ATTEMPT = 9, C_NOW = 21, C_COUNT = 22 };
#define STR_MAX 1024

struct claim_row {
	MYSQL_BIND b[C_COUNT];
	long long ll[C_COUNT];
	MYSQL_TIME t[C_COUNT];
	char s[C_COUNT][STR_MAX];
	unsigned long len[C_COUNT];
	my_bool null[C_COUNT], err[C_COUNT];
};

/* Where a connection's time goes: the claim's SELECT (with its rows
 * fetched), its UPDATE, the finish's UPDATE, and START TRANSACTION and
 * COMMIT (whose fsync the server makes before it answers). */
enum phase { PH_SELECT, PH_MARK, PH_FINISH, PH_TX, PH_COUNT };

struct conn {
	MYSQL *db;
	MYSQL_STMT *claim, *now;
	MYSQL_STMT *claim_set[BUCKETS], *finish[BUCKETS], *insert[BUCKETS];
	struct params p;
	struct claim_row r;
	char node[96];
	/* Round trips to the server: statements and transaction commands. */
	unsigned long trips;
	int64_t ns[PH_COUNT];
};

/* Adds the time since *t to phase `ph`; *t becomes now. */
static void lap(struct conn *c, enum phase ph, int64_t *t)
{
	int64_t now = now_ns();
	c->ns[ph] += now - *t;
	*t = now;
}

static void die_db(struct conn *c, const char *what)
{
	fprintf(stderr, "mysql-raw: %s: %s (error %u)\n", what,
		mysql_error(c->db), mysql_errno(c->db));
	exit(1);
}

static void die_stmt(MYSQL_STMT *st, const char *what)
{
	fprintf(stderr, "mysql-raw: %s: %s (error %u)\n", what,
		mysql_stmt_error(st), mysql_stmt_errno(st));
	exit(1);
}

static void query(struct conn *c, const char *sql)
{
	c->trips++;
	if (mysql_real_query(c->db, sql, strlen(sql)) != 0)
		die_db(c, sql);
	MYSQL_RES *res = mysql_store_result(c->db);
	if (res != NULL)
		mysql_free_result(res);
}

static void begin(struct conn *c)
{
	int64_t t = now_ns();
	query(c, "START TRANSACTION");
	lap(c, PH_TX, &t);
}

static void commit(struct conn *c)
{
	int64_t t = now_ns();
	c->trips++;
	if (mysql_commit(c->db) != 0)
		die_db(c, "COMMIT");
	lap(c, PH_TX, &t);
}

static void p_reset(struct params *p)
{
	p->n = 0;
}

static MYSQL_BIND *p_next(struct params *p, size_t *i)
{
	if (p->n == p->cap)
		die_msg("%s", "internal error: too many parameters");
	*i = p->n++;
	MYSQL_BIND *b = &p->b[*i];
	memset(b, 0, sizeof *b);
	p->null[*i] = 0;
	b->is_null = &p->null[*i];
	return b;
}

static void p_ll(struct params *p, long long v)
{
	size_t i;
	MYSQL_BIND *b = p_next(p, &i);
	p->ll[i] = v;
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = &p->ll[i];
}

static void p_str(struct params *p, const char *s)
{
	size_t i;
	MYSQL_BIND *b = p_next(p, &i);
	b->buffer_type = MYSQL_TYPE_STRING;
	if (s == NULL) {
		p->null[i] = 1;
		return;
	}
	b->buffer = (void *)s;
	b->buffer_length = strlen(s);
}

/* A DATETIME; us 0: NULL (the server's time, in these statements). */
static void p_time(struct params *p, int64_t us)
{
	size_t i;
	MYSQL_BIND *b = p_next(p, &i);
	b->buffer_type = MYSQL_TYPE_DATETIME;
	b->buffer = &p->t[i];
	if (us == 0)
		p->null[i] = 1;
	else
		time_set(&p->t[i], us);
}

static void p_null(struct params *p)
{
	size_t i;
	MYSQL_BIND *b = p_next(p, &i);
	b->buffer_type = MYSQL_TYPE_NULL;
	p->null[i] = 1;
}

/* The statement in *slot, prepared on first use (as the store does). */
static MYSQL_STMT *prepared(struct conn *c, MYSQL_STMT **slot,
			    const char *sql, const char *group,
			    const char *sep, size_t rows)
{
	if (*slot != NULL)
		return *slot;
	char *text = sql_rows(sql, group, sep, rows);
	MYSQL_STMT *st = mysql_stmt_init(c->db);
	if (st == NULL)
		die_msg("%s", "out of memory");
	if (mysql_stmt_prepare(st, text, strlen(text)) != 0)
		die_stmt(st, "preparing a statement");
	free(text);
	return *slot = st;
}

static void exec(struct conn *c, MYSQL_STMT *st, const char *what)
{
	if (mysql_stmt_param_count(st) != c->p.n)
		die_msg("internal error: the parameters of %s do not match",
			what);
	c->trips++;
	if (c->p.n > 0 && mysql_stmt_bind_param(st, c->p.b) != 0)
		die_stmt(st, what);
	if (mysql_stmt_execute(st) != 0)
		die_stmt(st, what);
}

static void claim_row_bind(struct claim_row *r)
{
	memset(r->b, 0, sizeof r->b);
	for (int i = 0; i < C_COUNT; i++) {
		MYSQL_BIND *b = &r->b[i];
		b->is_null = &r->null[i];
		b->length = &r->len[i];
		b->error = &r->err[i];
		int is_string = (i >= 1 && i <= 3) || (i >= 5 && i <= 7) ||
				(i >= 17 && i <= 19);
		int is_time = (i >= 12 && i <= 16) || i == C_NOW;
		if (is_string) {
			b->buffer_type = MYSQL_TYPE_STRING;
			b->buffer = r->s[i];
			b->buffer_length = STR_MAX;
		} else if (is_time) {
			b->buffer_type = MYSQL_TYPE_DATETIME;
			b->buffer = &r->t[i];
			b->buffer_length = sizeof r->t[i];
		} else {
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->buffer = &r->ll[i];
			b->buffer_length = sizeof r->ll[i];
		}
	}
}

static const struct url *the_url;

/* A worker's node name as the library makes it (host:pid), and a number
 * for the loop: a claimer and its completer share theirs. */
static void node_name(char *buf, size_t size, unsigned loop)
{
	char host[64] = "localhost";
	gethostname(host, sizeof host - 1);
	host[sizeof host - 1] = '\0';
	snprintf(buf, size, "%s:%ld.%u", host, (long)getpid(), loop);
}

/* A connection set up as the store's are, claiming and finishing as
 * worker `node`. */
static struct conn *conn_open(const char *node)
{
	struct conn *c = xmalloc(sizeof *c);
	const struct url *u = the_url;
	c->db = mysql_init(NULL);
	if (c->db == NULL)
		die_msg("%s", "out of memory");
	unsigned proto = u->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
	mysql_optionsv(c->db, MYSQL_OPT_PROTOCOL, &proto);
	mysql_optionsv(c->db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (mysql_real_connect(c->db, u->socket ? "localhost" : u->host,
			       u->user, u->password, u->database, u->port,
			       u->socket, 0) == NULL)
		die_db(c, "connecting");
	for (size_t i = 0; i < sizeof session_sql / sizeof *session_sql; i++)
		query(c, session_sql[i]);
	size_t cap = BATCH * ROW_PARAMS + 8;
	c->p.cap = cap;
	c->p.b = xmalloc(cap * sizeof *c->p.b);
	c->p.ll = xmalloc(cap * sizeof *c->p.ll);
	c->p.t = xmalloc(cap * sizeof *c->p.t);
	c->p.null = xmalloc(cap * sizeof *c->p.null);
	claim_row_bind(&c->r);
	snprintf(c->node, sizeof c->node, "%s", node);
	c->trips = 0;
	return c;
}

static void conn_close(struct conn *c)
{
	MYSQL_STMT **all[] = { &c->claim, &c->now };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		if (*all[i] != NULL)
			mysql_stmt_close(*all[i]);
	for (int b = 0; b < BUCKETS; b++) {
		if (c->claim_set[b] != NULL)
			mysql_stmt_close(c->claim_set[b]);
		if (c->finish[b] != NULL)
			mysql_stmt_close(c->finish[b]);
		if (c->insert[b] != NULL)
			mysql_stmt_close(c->insert[b]);
	}
	mysql_close(c->db);
	free(c->p.b);
	free(c->p.ll);
	free(c->p.t);
	free(c->p.null);
	free(c);
}

/* ------------------------------------------------------------------------ */
/* Insert, claim, finish                                                     */
/* ------------------------------------------------------------------------ */

static int64_t server_now(struct conn *c)
{
	MYSQL_STMT *st = prepared(c, &c->now, now_sql, NULL, NULL, 0);
	p_reset(&c->p);
	exec(c, st, "reading the server's time");
	long long v = 0;
	MYSQL_BIND b;
	memset(&b, 0, sizeof b);
	b.buffer_type = MYSQL_TYPE_LONGLONG;
	b.buffer = &v;
	if (mysql_stmt_bind_result(st, &b) != 0 || mysql_stmt_fetch(st) != 0)
		die_stmt(st, "reading the server's time");
	mysql_stmt_free_result(st);
	return v;
}

static void insert_rows(struct conn *c, const char *queue, int64_t now,
			int bucket)
{
	size_t rows = bucket_rows[bucket];
	MYSQL_STMT *st =
		prepared(c, &c->insert[bucket], insert_sql, insert_row, ", ",
			 rows);
	p_reset(&c->p);
	for (size_t k = 0; k < rows; k++) {
		p_time(&c->p, now);
		p_time(&c->p, 0);
		p_ll(&c->p, 0);
		p_str(&c->p, KIND);
		p_str(&c->p, KIND);
		p_str(&c->p, queue);
		p_ll(&c->p, 0);
		p_str(&c->p, PAYLOAD);
		p_str(&c->p, META);
		p_str(&c->p, "[]");
		p_ll(&c->p, 3);
		p_ll(&c->p, 0);
		p_ll(&c->p, 0);
	}
	exec(c, st, "inserting jobs");
	if (mysql_stmt_affected_rows(st) != rows)
		die_msg("%s", "an INSERT did not insert all its rows");
}

/* `n` jobs into `queue`, as bus_enqueue_many inserts batches of 1,000. */
static void insert_jobs(struct conn *c, const char *queue, size_t n)
{
	for (size_t done = 0; done < n;) {
		size_t left = n - done < INSERT_TX ? n - done : INSERT_TX;
		done += left;
		begin(c);
		int64_t now = server_now(c);
		while (left > 0) {
			int b = BUCKETS - 1;
			while (bucket_rows[b] > left)
				b--;
			insert_rows(c, queue, now, b);
			left -= bucket_rows[b];
		}
		commit(c);
	}
}

/* Claims up to `limit` (<= BATCH) jobs of `queue`: their ids and the
 * attempts the claim gave them. */
static size_t claim(struct conn *c, const char *queue, size_t limit,
		    long long *ids, int *attempts)
{
	begin(c);
	int64_t t = now_ns();
	MYSQL_STMT *st = prepared(c, &c->claim, claim_sql, NULL, NULL, 0);
	p_reset(&c->p);
	p_time(&c->p, 0);
	p_str(&c->p, queue);
	p_time(&c->p, 0);
	p_str(&c->p, queue);
	p_ll(&c->p, (long long)limit);
	exec(c, st, "claiming");
	if (mysql_stmt_bind_result(st, c->r.b) != 0)
		die_stmt(st, "claiming");
	size_t n = 0;
	int64_t now = 0;
	int f;
	while ((f = mysql_stmt_fetch(st)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		if (n < limit) {
			ids[n] = c->r.ll[C_ID];
			attempts[n] = (int)c->r.ll[C_ATTEMPT] + 1;
			n++;
		}
		now = time_get(&c->r.t[C_NOW]);
	}
	if (f != MYSQL_NO_DATA)
		die_stmt(st, "claiming");
	mysql_stmt_free_result(st);
	lap(c, PH_SELECT, &t);
	if (n > 0) {
		int b = bucket_holding(n);
		size_t rows = bucket_rows[b];
		MYSQL_STMT *set = prepared(c, &c->claim_set[b], claim_set_sql,
					   "?", ", ", rows);
		p_reset(&c->p);
		p_time(&c->p, now);
		p_str(&c->p, c->node);
		p_time(&c->p, now + LEASE_US);
		for (size_t k = 0; k < rows; k++)
			if (k < n)
				p_ll(&c->p, ids[k]);
			else
				p_null(&c->p);
		exec(c, set, "marking claimed jobs");
		if (mysql_stmt_affected_rows(set) != n)
			die_msg("%s", "a claim did not update every job it "
				      "locked");
		lap(c, PH_MARK, &t);
	}
	commit(c);
	return n;
}

/* Records `n` (<= BATCH) jobs as completed. */
static void finish(struct conn *c, const long long *ids, const int *attempts,
		   size_t n)
{
	begin(c);
	int64_t t = now_ns();
	int b = bucket_holding(n);
	size_t rows = bucket_rows[b];
	MYSQL_STMT *st =
		prepared(c, &c->finish[b], finish_sql, finish_row,
			 " UNION ALL ", rows);
	p_reset(&c->p);
	for (size_t k = 0; k < rows; k++) {
		if (k >= n) {
			for (int f = 0; f < FINISH_PARAMS; f++)
				p_null(&c->p);
			continue;
		}
		p_ll(&c->p, (long long)k);
		p_ll(&c->p, ids[k]);
		p_str(&c->p, c->node);
		p_ll(&c->p, attempts[k]);
		p_ll(&c->p, 0);
		p_ll(&c->p, 4); /* completed */
		p_ll(&c->p, -1);
		p_str(&c->p, NULL);
		p_ll(&c->p, 0);
	}
	p_time(&c->p, 0);
	exec(c, st, "finishing jobs");
	if (mysql_stmt_affected_rows(st) != n)
		die_msg("%s", "a finish did not complete every job of its "
			      "batch");
	lap(c, PH_FINISH, &t);
	commit(c);
}

/* ------------------------------------------------------------------------ */
/* The loops                                                                 */
/* ------------------------------------------------------------------------ */

struct run {
	char queue[64];
	size_t n;
	atomic_size_t claimed;
	pthread_barrier_t start;
	atomic_llong end_ns; /* the last finish */
	/* The sums of the loops' connections. */
	atomic_ulong trips;
	atomic_llong ns[PH_COUNT];
};

static void run_add(struct run *r, const struct conn *c)
{
	atomic_fetch_add(&r->trips, c->trips);
	for (int ph = 0; ph < PH_COUNT; ph++)
		atomic_fetch_add(&r->ns[ph], c->ns[ph]);
}

static void run_finished(struct run *r, struct conn *c)
{
	int64_t t = now_ns();
	long long end = atomic_load(&r->end_ns);
	while (t > end && !atomic_compare_exchange_weak(&r->end_ns, &end, t))
		;
	run_add(r, c);
}

/* Claims up to `limit`; 0 once every job of the run is claimed (a claim
 * that finds none while some are not yet counted looks again). */
static size_t claim_more(struct conn *c, struct run *r, size_t limit,
			 long long *ids, int *attempts)
{
	for (;;) {
		size_t n = claim(c, r->queue, limit, ids, attempts);
		if (n > 0) {
			atomic_fetch_add(&r->claimed, n);
			return n;
		}
		if (atomic_load(&r->claimed) >= r->n)
			return 0;
		sleep_ms(1);
	}
}

/* A loop: its worker's node name; for a pipeline, the jobs claimed and
 * not yet handed to the completer (a ring), and how many are claimed and
 * not finished. */
struct loop {
	struct run *run;
	char node[96];
	pthread_mutex_t lock;
	pthread_cond_t more, room;
	long long ids[IN_FLIGHT];
	int attempts[IN_FLIGHT];
	size_t head, len, in_flight;
	int claimer_done;
};

static void *serial_loop(void *arg)
{
	struct loop *pl = arg;
	mysql_thread_init();
	struct conn *c = conn_open(pl->node);
	long long ids[BATCH];
	int attempts[BATCH];
	pthread_barrier_wait(&pl->run->start);
	size_t n;
	while ((n = claim_more(c, pl->run, BATCH, ids, attempts)) > 0)
		finish(c, ids, attempts, n);
	run_finished(pl->run, c);
	conn_close(c);
	mysql_thread_end();
	return NULL;
}

static void *claimer(void *arg)
{
	struct loop *pl = arg;
	mysql_thread_init();
	struct conn *c = conn_open(pl->node);
	long long ids[BATCH];
	int attempts[BATCH];
	pthread_barrier_wait(&pl->run->start);
	for (;;) {
		pthread_mutex_lock(&pl->lock);
		while (pl->in_flight > IN_FLIGHT - BATCH)
			pthread_cond_wait(&pl->room, &pl->lock);
		pthread_mutex_unlock(&pl->lock);
		size_t n = claim_more(c, pl->run, BATCH, ids, attempts);
		pthread_mutex_lock(&pl->lock);
		for (size_t i = 0; i < n; i++) {
			size_t at = (pl->head + pl->len++) % IN_FLIGHT;
			pl->ids[at] = ids[i];
			pl->attempts[at] = attempts[i];
		}
		pl->in_flight += n;
		pl->claimer_done = n == 0;
		pthread_cond_signal(&pl->more);
		pthread_mutex_unlock(&pl->lock);
		if (n == 0)
			break;
	}
	run_add(pl->run, c);
	conn_close(c);
	mysql_thread_end();
	return NULL;
}

static void *completer(void *arg)
{
	struct loop *pl = arg;
	mysql_thread_init();
	struct conn *c = conn_open(pl->node);
	long long ids[BATCH];
	int attempts[BATCH];
	pthread_barrier_wait(&pl->run->start);
	pthread_mutex_lock(&pl->lock);
	for (;;) {
		while (pl->len == 0 && !pl->claimer_done)
			pthread_cond_wait(&pl->more, &pl->lock);
		if (pl->len == 0)
			break;
		size_t n = pl->len < BATCH ? pl->len : BATCH;
		for (size_t i = 0; i < n; i++) {
			ids[i] = pl->ids[(pl->head + i) % IN_FLIGHT];
			attempts[i] = pl->attempts[(pl->head + i) % IN_FLIGHT];
		}
		pl->head = (pl->head + n) % IN_FLIGHT;
		pl->len -= n;
		pthread_mutex_unlock(&pl->lock);
		finish(c, ids, attempts, n);
		pthread_mutex_lock(&pl->lock);
		pl->in_flight -= n;
		pthread_cond_signal(&pl->room);
	}
	pthread_mutex_unlock(&pl->lock);
	run_finished(pl->run, c);
	conn_close(c);
	mysql_thread_end();
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                     */
/* ------------------------------------------------------------------------ */

enum shape { SERIAL, PIPELINE };

enum {
	M_INSERT,
	M_SERIAL1,
	M_SERIAL2,
	M_PIPE1,
	M_PIPE2,
	M_COUNT
};

static const char *const labels[M_COUNT] = {
	"insert  tx per 1,000 jobs", "serial      1 connection",
	"serial x2   2 connections", "pipeline    2 connections",
	"pipeline x2 4 connections",
};

static unsigned queue_seq;

static void run_init(struct run *r, size_t n, unsigned threads)
{
	snprintf(r->queue, sizeof r->queue, "raw.%ld.%u", (long)getpid(),
		 ++queue_seq);
	r->n = n;
	atomic_init(&r->claimed, 0);
	atomic_init(&r->end_ns, 0);
	atomic_init(&r->trips, 0);
	for (int ph = 0; ph < PH_COUNT; ph++)
		atomic_init(&r->ns[ph], 0);
	if (pthread_barrier_init(&r->start, NULL, threads + 1) != 0)
		die_msg("%s", "pthread_barrier_init failed");
}

/* Every job of the run completed once, on its first attempt; then the
 * queue's rows are deleted. */
static void run_check(struct conn *c, struct run *r)
{
	char sql[256];
	snprintf(sql, sizeof sql,
		 "SELECT COUNT(*), SUM(state = 4 AND attempt = 1) FROM "
		 "bus_jobs WHERE queue = '%s'",
		 r->queue);
	if (mysql_real_query(c->db, sql, strlen(sql)) != 0)
		die_db(c, "checking the run");
	MYSQL_RES *res = mysql_store_result(c->db);
	MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
	unsigned long long all = row && row[0] ? strtoull(row[0], NULL, 10) : 0;
	unsigned long long ok = row && row[1] ? strtoull(row[1], NULL, 10) : 0;
	if (res != NULL)
		mysql_free_result(res);
	if (all != r->n || ok != r->n) {
		fprintf(stderr,
			"mysql-raw: queue %s: %zu jobs, but %llu rows and "
			"%llu completed on their first attempt\n",
			r->queue, r->n, all, ok);
		exit(1);
	}
	snprintf(sql, sizeof sql, "DELETE FROM bus_jobs WHERE queue = '%s'",
		 r->queue);
	if (mysql_real_query(c->db, sql, strlen(sql)) != 0)
		die_db(c, "deleting the run's jobs");
	/* Let the server purge them before the next case (as bench/jobs
	 * does). */
	sleep_ms(SETTLE_MS);
}

/* A work case's figures: jobs/s, round trips per job, and the
 * connections' time per job in each phase (us). */
struct result {
	double rate, trips, us[PH_COUNT];
};

/* One work case; *insert_rate (if not NULL) the insert's jobs/s. */
static struct result measure(enum shape shape, unsigned loops, size_t n,
			     double *insert_rate)
{
	struct run r;
	unsigned threads = loops * (shape == PIPELINE ? 2 : 1);
	run_init(&r, n, threads);
	char node[96];
	node_name(node, sizeof node, MAX_LOOPS);
	struct conn *admin = conn_open(node);
	int64_t t0 = now_ns();
	insert_jobs(admin, r.queue, n);
	if (insert_rate != NULL)
		*insert_rate = (double)n * 1e9 / (double)(now_ns() - t0);

	pthread_t tid[2 * MAX_LOOPS];
	struct loop *l = xmalloc(loops * sizeof *l);
	unsigned k = 0;
	for (unsigned i = 0; i < loops; i++) {
		l[i].run = &r;
		node_name(l[i].node, sizeof l[i].node, i);
		pthread_mutex_init(&l[i].lock, NULL);
		pthread_cond_init(&l[i].more, NULL);
		pthread_cond_init(&l[i].room, NULL);
		int rc;
		if (shape == SERIAL) {
			rc = pthread_create(&tid[k++], NULL, serial_loop,
					    &l[i]);
		} else {
			rc = pthread_create(&tid[k++], NULL, claimer, &l[i]);
			if (rc == 0)
				rc = pthread_create(&tid[k++], NULL, completer,
						    &l[i]);
		}
		if (rc != 0)
			die_msg("%s", "pthread_create failed");
	}
	pthread_barrier_wait(&r.start);
	int64_t start = now_ns();
	for (unsigned i = 0; i < k; i++)
		pthread_join(tid[i], NULL);
	struct result res;
	res.rate = (double)n * 1e9 / (double)(atomic_load(&r.end_ns) - start);
	res.trips = (double)atomic_load(&r.trips) / (double)n;
	for (int ph = 0; ph < PH_COUNT; ph++)
		res.us[ph] = (double)atomic_load(&r.ns[ph]) / 1e3 / (double)n;
	for (unsigned i = 0; i < loops; i++) {
		pthread_mutex_destroy(&l[i].lock);
		pthread_cond_destroy(&l[i].more);
		pthread_cond_destroy(&l[i].room);
	}
	free(l);
	pthread_barrier_destroy(&r.start);
	run_check(admin, &r);
	conn_close(admin);
	return res;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

static void migrate(const char *url)
{
	bus *b;
	if (bus_open(&b, url) != 0 || bus_migrate(b) != 0) {
		const bus_error *e = bus_error_last();
		fprintf(stderr, "mysql-raw: opening the store: %s (%s)\n",
			e->message, bus_error_name(e->code));
		exit(1);
	}
	bus_close(b);
}

/* The server and the settings that move these figures. */
static void print_server(void)
{
	struct conn *c = conn_open("");
	const char *sql = "SELECT @@version, @@innodb_flush_log_at_trx_commit, "
			  "@@innodb_buffer_pool_size DIV 1048576, @@log_bin, "
			  "@@sync_binlog";
	if (mysql_real_query(c->db, sql, strlen(sql)) != 0)
		die_db(c, "reading the server's settings");
	MYSQL_RES *res = mysql_store_result(c->db);
	MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
	if (row == NULL)
		die_db(c, "reading the server's settings");
	printf("server %s, innodb_flush_log_at_trx_commit %s, buffer pool "
	       "%s MB, log_bin %s, sync_binlog %s\n",
	       row[0], row[1], row[2], row[3], row[4]);
	mysql_free_result(res);
	conn_close(c);
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi) {
		fprintf(stderr, "mysql-raw: bad %s '%s' (%ld to %ld)\n", what,
			s, lo, hi);
		exit(2);
	}
	return v;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mysql-raw --url URL [--runs R] [--jobs N] "
		   "[--case NAME]\n"
		   "  --url URL   mysql://user:password@host:port/database\n"
		   "  --runs R    runs; figures are medians (default 3)\n"
		   "  --jobs N    jobs per case (default %d)\n"
		   "  --case NAME only serial (with insert), serial2, "
		   "pipeline or pipeline2\n",
		DEFAULT_JOBS);
}

static int parse_case(const char *s)
{
	static const char *const names[] = { "serial", "serial2", "pipeline",
					     "pipeline2" };
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return M_SERIAL1 + i;
	fprintf(stderr,
		"mysql-raw: bad --case '%s' (serial, serial2, pipeline or "
		"pipeline2)\n",
		s);
	exit(2);
}

static void fmt_rate(char *buf, size_t size, double r)
{
	if (r >= 1e4)
		snprintf(buf, size, "%.1fk", r / 1e3);
	else
		snprintf(buf, size, "%.0f", r);
}

/* The median over the runs of one figure of case `m`: its rate (ph < 0),
 * or its time per job in phase `ph`, or (ph == PH_COUNT) its trips. */
static double med_of(struct result (*fig)[M_COUNT], int runs, int m, int ph,
		     double *spread)
{
	double *v = xmalloc((size_t)runs * sizeof *v);
	for (int r = 0; r < runs; r++)
		v[r] = ph < 0		 ? fig[r][m].rate
		       : ph == PH_COUNT ? fig[r][m].trips
					: fig[r][m].us[ph];
	double med = median(v, runs);
	if (spread != NULL)
		*spread = med > 0 ? 100.0 * (v[runs - 1] - v[0]) / med : 0;
	free(v);
	return med;
}

/* The faster shape for a number of loops: the limit bench/jobs --raw
 * compares the library with. */
static double best_of(struct result (*fig)[M_COUNT], int runs, int a, int b)
{
	double x = med_of(fig, runs, a, -1, NULL);
	double y = med_of(fig, runs, b, -1, NULL);
	return x > y ? x : y;
}

static void print_table(struct result (*fig)[M_COUNT], int runs, size_t n,
			const int *done)
{
	printf("%-26s %6s %8s %6s %6s %29s\n", "", "", "", "", "trips",
	       "connection time per job (us)");
	printf("%-26s %6s %8s %6s %6s %7s %7s %7s %7s\n", "case", "jobs",
	       "jobs/s", "spread", "/job", "select", "mark", "finish", "tx");
	for (int m = 0; m < M_COUNT; m++) {
		if (!done[m])
			continue;
		double spread;
		char rate[32];
		fmt_rate(rate, sizeof rate, med_of(fig, runs, m, -1, &spread));
		printf("%-26s %6zu %8s %5.0f%%", labels[m], n, rate, spread);
		if (m != M_INSERT) {
			printf(" %6.3f", med_of(fig, runs, m, PH_COUNT, NULL));
			for (int ph = 0; ph < PH_COUNT; ph++)
				printf(" %7.1f",
				       med_of(fig, runs, m, ph, NULL));
		}
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	const char *url = NULL;
	int runs = 3;
	size_t n = DEFAULT_JOBS;
	int only = -1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
			url = argv[++i];
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			runs = (int)parse_long(argv[++i], "--runs", 1, 1000);
		} else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
			n = (size_t)parse_long(argv[++i], "--jobs", 1,
					       100000000);
		} else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
			only = parse_case(argv[++i]);
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (url == NULL) {
		usage(stderr);
		return 2;
	}
	struct url u;
	url_parse(&u, url);
	the_url = &u;
	if (mysql_library_init(0, NULL, NULL) != 0)
		die_msg("%s", "mysql_library_init failed");
	migrate(url);

	printf("$ bench/mysql-raw --url %.*s://... --runs %d --jobs %zu\n",
	       (int)(strchr(url, ':') - url), url, runs, n);
	print_server();
	printf("claim batch %d, finish batch %d, pipeline: at most %d jobs "
	       "claimed and not finished; medians of %d run%s\n\n",
	       BATCH, BATCH, IN_FLIGHT, runs, runs == 1 ? "" : "s");
	fflush(stdout);

	struct result(*fig)[M_COUNT] = xmalloc((size_t)runs * sizeof *fig);
	int done[M_COUNT] = { 0 };
	for (int r = 0; r < runs; r++) {
		for (int m = M_SERIAL1; m < M_COUNT; m++) {
			if (only >= 0 && m != only)
				continue;
			enum shape shape = m <= M_SERIAL2 ? SERIAL : PIPELINE;
			unsigned loops = m == M_SERIAL1 || m == M_PIPE1 ? 1 : 2;
			fig[r][m] = measure(
				shape, loops, n,
				m == M_SERIAL1 ? &fig[r][M_INSERT].rate : NULL);
			done[m] = 1;
		}
		done[M_INSERT] = done[M_SERIAL1];
		fprintf(stderr, "mysql-raw: run %d of %d done\n", r + 1, runs);
	}
	print_table(fig, runs, n, done);
	if (only < 0)
		printf("\nrates for bench/jobs --raw: %.0f,%.0f\n",
		       best_of(fig, runs, M_SERIAL1, M_PIPE1),
		       best_of(fig, runs, M_SERIAL2, M_PIPE2));
	free(fig);
	free(u.buf);
	mysql_library_end();
	return 0;
}
