/*
 * What the fault proxy's files share (faultproxy.c: the sockets, the
 * commands and the MySQL protocol; pgwire.c: the PostgreSQL protocol):
 * one proxied connection, its buffers, and the armed rule.
 */
#ifndef BUS_TESTS_FAULTPROXY_PROXY_H
#define BUS_TESTS_FAULTPROXY_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define BUF_CAP (1u << 20) /* a packet held whole up to this size */
#define WATCH_MAX 1024	   /* prepared statements known per connection */
#define PATTERN_MAX 256

enum rule { R_NONE, R_DROP_REPLY, R_RESET_MID, R_CUT_REPLY, R_FAIL_REPLY };

/* Which protocol a connection speaks: told by who speaks first (a MySQL
 * server greets, a PostgreSQL client sends its startup packet). */
enum proto { P_UNKNOWN, P_MYSQL, P_PG };

/* Bytes read from one side, not yet written to the other. */
struct pipe_buf {
	unsigned char *p;
	size_t len;
	size_t scanned; /* bytes already judged (whole packets, passed) */
};

/* A statement prepared on a connection: MySQL's by the id its reply gave,
 * PostgreSQL's by the name its Parse gave (name owned, "" the unnamed
 * one). */
struct watch {
	uint32_t id;
	char *name;
	char *text; /* owned */
};

struct conn {
	int client, server;
	enum proto proto;
	struct pipe_buf up;   /* client -> server */
	struct pipe_buf down; /* server -> client */
	/* Client->server framing: bytes of the current packet still to
	 * pass without looking (a packet larger than BUF_CAP). */
	size_t up_skip;
	/* The text of a COM_STMT_PREPARE sent, waiting for the id its reply
	 * gives; the statements prepared (kept whatever is armed, so that a
	 * rule armed later knows statements prepared before). */
	char *await_prepare;
	struct watch watch[WATCH_MAX];
	int n_watch;
	/* A statement containing the prior pattern ran here. */
	int primed;
	/* The statement the rule fired on was passed: reset at the first
	 * byte of the reply (PostgreSQL: once the reply is complete, at its
	 * ReadyForQuery, swallowing it all). */
	int drop_at_reply;
	/* cut-reply fired: bytes of the reply still to pass before the
	 * reset (-1: none armed). */
	long cut_left;
	/* ---- PostgreSQL only (pgwire.c) ---- */
	int pg_typed;	   /* past the startup packet: typed messages */
	size_t down_skip;  /* server->client: bytes of a message to pass */
	int up_discard;	   /* fail-reply: drop client messages to Sync */
	int reset_at_sync; /* reset-mid: reset before the next Sync */
	int fail_at_z;	   /* fail-reply: an error before the next 'Z' */
	char pg_status;	   /* of the last ReadyForQuery: 'I', 'T', 'E' */
};

/* The armed rule (faultproxy.c). */
extern enum rule armed;
extern long rule_arg;	    /* BYTES, or a MySQL error number */
extern char rule_state[6];  /* fail-reply's SQLSTATE ("": none given) */
extern unsigned long fired;

/* The bits (1 pattern, 2 prior) a statement's text matches. */
int text_matches(const unsigned char *text, size_t len);
/* Whether a statement matching `what` fires the armed rule here (it
 * primes the connection when it matches the prior pattern). */
int rule_hits(struct conn *c, int what);
/* Puts bytes the proxy answers with where the server's bytes wait to be
 * passed: after those judged, before the rest. 0, or -1 when full. */
int inject_down(struct conn *c, const void *bytes, size_t n);
/* Removes n bytes at `at` of a buffer. */
void buf_cut(struct pipe_buf *b, size_t at, size_t n);

/* pgwire.c: scan_up / scan_down for a PostgreSQL connection; the same
 * returns as faultproxy.c's (1: reset now; 2: reset once the bytes judged
 * are passed). */
int pg_scan_up(struct conn *c);
int pg_scan_down(struct conn *c);
/* Whether the client's first bytes are a PostgreSQL startup packet (1),
 * not (0), or cannot tell yet (-1). */
int pg_detect(const struct pipe_buf *up);

#endif
