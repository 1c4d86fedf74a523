/*
 * The fault proxy's reading of the PostgreSQL protocol (version 3), as far
 * as its rules need.
 *
 * Client side: the startup phase sends untyped packets (a 4-byte length,
 * then a 4-byte code): an SSLRequest or GSSENCRequest is answered 'N' by
 * the proxy itself (the client goes on in clear text, so sslmode must be
 * disable, allow or prefer), the StartupMessage is passed, and from then
 * on every message is a type byte and a 4-byte length (counting itself).
 * A statement is a simple Query ('Q', its SQL text) or, in the extended
 * protocol, a Bind ('B') of a statement a Parse ('P') named and gave the
 * text of (the unnamed statement included), which is how libpq's
 * PQexecParams and PQexecPrepared (and their PQsend* forms) send theirs:
 * a rule matches the text of the Query, or of the statement bound.
 *
 * What a rule does to an extended statement, whose messages run up to a
 * Sync (where the server ends an implicit transaction, committing an
 * autocommit write, and answers):
 *   drop-reply  all passed; the reply swallowed up to its ReadyForQuery,
 *               then the connection reset: it committed, unseen.
 *   reset-mid   the Bind and what follows passed, up to the Sync, which
 *               is not: the statement ran, but in a transaction that never
 *               ends; then the connection reset (with orphan, the server's
 *               session lives on, holding what it locked).
 *   cut-reply   all passed, then BYTES of the reply, then the reset.
 *   fail-reply  dropped up to the Sync, which is passed; the server's
 *               ReadyForQuery is preceded by an ErrorResponse of the
 *               rule's SQLSTATE (XX000 unless given) and says "failed
 *               transaction" when one is open.
 * For a simple Query the same, except that reset-mid passes half of it,
 * and fail-reply drops it and answers the error and a ReadyForQuery
 * itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define PG_PROTOCOL_3 196608u
#define PG_SSL_REQUEST 80877103u
#define PG_GSSENC_REQUEST 80877104u
#define PG_CANCEL_REQUEST 80877102u

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

int pg_detect(const struct pipe_buf *up)
{
	if (up->len < 8)
		return -1;
	uint32_t len = be32(up->p), code = be32(up->p + 4);
	return len >= 8 && len < 10000 &&
	       (code == PG_PROTOCOL_3 || code == PG_SSL_REQUEST ||
		code == PG_GSSENC_REQUEST || code == PG_CANCEL_REQUEST);
}

/* The NUL-terminated string at p[0..len) (NULL when it is not). */
static const char *cstring(const unsigned char *p, size_t len)
{
	return memchr(p, '\0', len) != NULL ? (const char *)p : NULL;
}

/* Parse: statement name, text. Remembered whatever is armed. */
static void remember(struct conn *c, const unsigned char *body, size_t len)
{
	const char *name = cstring(body, len);
	if (name == NULL)
		return;
	size_t nlen = strlen(name) + 1;
	const char *text = cstring(body + nlen, len - nlen);
	if (text == NULL)
		return;
	int k = 0;
	while (k < c->n_watch && strcmp(c->watch[k].name, name) != 0)
		k++;
	if (k == c->n_watch) {
		if (c->n_watch == WATCH_MAX)
			return;
		c->watch[k].name = strdup(name);
		c->watch[k].text = NULL;
		if (c->watch[k].name == NULL)
			return;
		c->n_watch++;
	}
	free(c->watch[k].text);
	c->watch[k].text = strdup(text);
	if (c->watch[k].text == NULL)
		c->watch[k].text = strdup("");
}

/* Bind: portal name, statement name: what the statement's text matches. */
static int bound(const struct conn *c, const unsigned char *body, size_t len)
{
	const char *portal = cstring(body, len);
	if (portal == NULL)
		return 0;
	size_t plen = strlen(portal) + 1;
	const char *name = cstring(body + plen, len - plen);
	for (int k = 0; name != NULL && k < c->n_watch; k++)
		if (strcmp(c->watch[k].name, name) == 0)
			return c->watch[k].text == NULL
				       ? 0
				       : text_matches((const unsigned char *)
							      c->watch[k].text,
						      strlen(c->watch[k].text));
	return 0;
}

/* An ErrorResponse of the rule's SQLSTATE. */
static size_t error_response(unsigned char *out, size_t cap)
{
	static const char msg[] = "injected by faultproxy";
	const char *state = rule_state[0] ? rule_state : "XX000";
	size_t n = 5;
	if (cap < 64 + sizeof msg)
		return 0;
	out[0] = 'E';
	n += (size_t)sprintf((char *)out + n, "SERROR") + 1;
	n += (size_t)sprintf((char *)out + n, "VERROR") + 1;
	n += (size_t)sprintf((char *)out + n, "C%s", state) + 1;
	n += (size_t)sprintf((char *)out + n, "M%s", msg) + 1;
	out[n++] = '\0';
	put_be32(out + 1, (uint32_t)(n - 1));
	return n;
}

/* The startup phase: one untyped packet. Returns 0 to go on, 1 to wait
 * for more bytes. */
static int startup_packet(struct conn *c)
{
	struct pipe_buf *b = &c->up;
	size_t avail = b->len - b->scanned;
	if (avail < 8)
		return 1;
	const unsigned char *h = b->p + b->scanned;
	uint32_t len = be32(h), code = be32(h + 4);
	if (len < 8) {
		/* Not the protocol we know: pass everything unjudged. */
		c->pg_typed = 1;
		c->up_skip = (size_t)-1 / 2;
		return 0;
	}
	if (code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST) {
		/* "No": the client goes on in clear text on this socket. */
		if (inject_down(c, "N", 1) != 0)
			return 1;
		buf_cut(b, b->scanned, 8);
		return 0;
	}
	b->scanned += avail < len ? avail : len;
	if (avail < len)
		c->up_skip = len - avail;
	c->pg_typed = 1;
	return 0;
}

int pg_scan_up(struct conn *c)
{
	struct pipe_buf *b = &c->up;
	while (b->scanned < b->len) {
		size_t avail = b->len - b->scanned;
		if (c->up_skip > 0) {
			size_t take = avail < c->up_skip ? avail : c->up_skip;
			if (c->up_discard)
				buf_cut(b, b->scanned, take);
			else
				b->scanned += take;
			c->up_skip -= take;
			continue;
		}
		if (!c->pg_typed) {
			if (startup_packet(c))
				return 0;
			continue;
		}
		if (avail < 5)
			return 0;
		const unsigned char *h = b->p + b->scanned;
		unsigned char type = h[0];
		size_t mlen = be32(h + 1), total = 1 + mlen;
		if (mlen < 4) {
			c->up_skip = (size_t)-1 / 2; /* lost: pass the rest */
			continue;
		}
		if (type == 'S' && c->reset_at_sync) {
			c->reset_at_sync = 0;
			return 1; /* what came before passes; the Sync not */
		}
		if (type == 'S' && c->up_discard) {
			c->up_discard = 0;
			c->fail_at_z = 1;
		}
		int judged = type == 'Q' || type == 'P' || type == 'B';
		if (!judged || total > BUF_CAP - 8) {
			/* Passed (or dropped) without a look. */
			if (c->up_discard)
				buf_cut(b, b->scanned, 5);
			else
				b->scanned += 5;
			c->up_skip = mlen - 4;
			continue;
		}
		if (avail < total)
			return 0; /* wait for the rest */
		const unsigned char *body = h + 5;
		size_t blen = mlen - 4;
		int what = 0;
		if (type == 'P')
			remember(c, body, blen);
		else if (type == 'Q' && armed != R_NONE)
			what = text_matches(body, blen);
		else if (type == 'B' && armed != R_NONE)
			what = bound(c, body, blen);
		if (c->up_discard) {
			buf_cut(b, b->scanned, total);
			continue;
		}
		if (!rule_hits(c, what)) {
			b->scanned += total;
			continue;
		}
		enum rule r = armed;
		armed = R_NONE;
		fired++;
		if (r == R_RESET_MID && type == 'Q') {
			b->scanned += total / 2;
			return 1;
		}
		if (r == R_RESET_MID) {
			b->scanned += total;
			c->reset_at_sync = 1;
			continue;
		}
		if (r == R_FAIL_REPLY && type == 'Q') {
			unsigned char e[160];
			size_t n = error_response(e, sizeof e);
			unsigned char z[6] = { 'Z', 0, 0, 0, 5, 'I' };
			if (c->pg_status != 'I' && c->pg_status != 0)
				z[5] = 'E';
			buf_cut(b, b->scanned, total);
			inject_down(c, e, n);
			inject_down(c, z, sizeof z);
			continue;
		}
		if (r == R_FAIL_REPLY) {
			c->up_discard = 1;
			buf_cut(b, b->scanned, total);
			continue;
		}
		if (r == R_CUT_REPLY)
			c->cut_left = rule_arg;
		else
			c->drop_at_reply = 1;
		b->scanned += total;
	}
	return 0;
}

int pg_scan_down(struct conn *c)
{
	struct pipe_buf *b = &c->down;
	if (c->cut_left >= 0) {
		size_t fresh = b->len - b->scanned;
		if (fresh < (size_t)c->cut_left) {
			c->cut_left -= (long)fresh;
			b->scanned = b->len;
			return 0;
		}
		b->scanned += (size_t)c->cut_left;
		c->cut_left = -1;
		return 2;
	}
	while (b->scanned < b->len) {
		size_t avail = b->len - b->scanned;
		if (c->down_skip > 0) {
			size_t take = avail < c->down_skip ? avail : c->down_skip;
			if (c->drop_at_reply)
				buf_cut(b, b->scanned, take);
			else
				b->scanned += take;
			c->down_skip -= take;
			continue;
		}
		if (!c->pg_typed) {
			b->scanned = b->len; /* nothing the server says yet */
			return 0;
		}
		if (avail < 5)
			return 0;
		unsigned char *h = b->p + b->scanned;
		size_t mlen = be32(h + 1);
		if (mlen < 4) {
			c->down_skip = (size_t)-1 / 2;
			continue;
		}
		if (h[0] == 'Z') {
			if (avail < 6)
				return 0;
			if (c->drop_at_reply)
				return 1; /* the whole reply swallowed */
			if (c->fail_at_z) {
				unsigned char e[160];
				size_t n = error_response(e, sizeof e);
				c->fail_at_z = 0;
				if (h[5] == 'T')
					h[5] = 'E';
				if (inject_down(c, e, n) != 0)
					return 1;
				h = b->p + b->scanned;
			}
			c->pg_status = (char)h[5];
		}
		if (c->drop_at_reply)
			buf_cut(b, b->scanned, 5);
		else
			b->scanned += 5;
		c->down_skip = mlen - 4;
	}
	return 0;
}
