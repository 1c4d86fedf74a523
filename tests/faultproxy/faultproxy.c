/*
 * faultproxy: a TCP proxy for the fault tests, between a client on this
 * machine and a MySQL/MariaDB or PostgreSQL server on this machine, that
 * breaks the connection where a test asks it to. Each connection's
 * protocol is told by who speaks first: a MySQL server greets its client,
 * a PostgreSQL client sends a startup packet (pgwire.c reads that
 * protocol, and says what each rule does there).
 *
 *   faultproxy TARGET_PORT [LISTEN_PORT]
 *
 * It listens on 127.0.0.1 (LISTEN_PORT, or one the kernel picks) and
 * forwards each connection to 127.0.0.1:TARGET_PORT: no other address is
 * ever used. Once listening it prints "listen PORT" on stdout. It is then
 * driven by lines on stdin, each answered with one line on stdout ("ok
 * ..." or "error ..."); it exits when stdin ends, so it never outlives the
 * test that started it.
 *
 *   drop-reply PATTERN   the next statement whose SQL text contains
 *                        PATTERN (ignoring case) (a COM_QUERY, or a COM_STMT_EXECUTE of a
 *                        statement prepared with such a text; on
 *                        PostgreSQL a Query, or a Bind of a statement
 *                        parsed with such a text) is passed to
 *                        the server; the server's reply is swallowed and
 *                        the connection reset: the statement ran (a COMMIT
 *                        committed) but the client never learns it.
 *   reset-mid PATTERN    the next such statement is cut: half of its
 *                        packet is passed, then the connection is reset.
 *   cut-reply PATTERN BYTES
 *                        the next such statement is passed, and BYTES of
 *                        its reply; then the connection is reset (in the
 *                        middle of a result set, when BYTES is past its
 *                        column definitions).
 *   fail-reply PATTERN ERRNO
 *                        the next such statement is not passed: the client
 *                        gets an error packet with ERRNO ("injected by
 *                        faultproxy") instead, as if the server had
 *                        refused it, and the connection goes on. On
 *                        PostgreSQL, ERRNO is the error's SQLSTATE (five
 *                        of 0-9 and A-Z; XX000 for a MySQL number).
 *   drop-reply PATTERN after PRIOR
 *   reset-mid PATTERN after PRIOR
 *                        the same, but only on a connection that has run
 *                        a statement containing PRIOR (to hit the COMMIT
 *                        of one kind of transaction: "drop-reply COMMIT
 *                        after claim_token").
 *   stall                stop passing bytes in both directions, on every
 *                        connection, new ones included (they are accepted
 *                        and held); the sockets stay open.
 *   resume               pass bytes again.
 *   orphan               from now on, a connection a rule resets is
 *                        reset on the client's side only: the server's
 *                        side stays open (never read again), so the
 *                        server's session lives on, as when the client's
 *                        network dies unseen by the server.
 *   reset-all            reset every connection now.
 *   disarm               forget an armed drop-reply or reset-mid.
 *   stats                "ok accepted=N open=N fired=N": connections made,
 *                        connections open, rules that have fired.
 *   quit                 exit.
 *
 * A rule fires once; arm it again for another. The MySQL protocol is read
 * only as far as needed: packets are a 3-byte length, a sequence byte and
 * the payload, whose first byte is the command. Connections must not use
 * TLS or compression (ssl-mode=disabled in the URL), or no statement is
 * recognised (the bytes are still passed); a PostgreSQL client asking for
 * TLS is told no (sslmode=prefer goes on in clear text).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy.h"

#define MAX_CONNS 128

static struct conn conns[MAX_CONNS];
static int n_conns;
static int target_port;
static int stalled;
enum rule armed = R_NONE;
static char pattern[PATTERN_MAX];
static char prior[PATTERN_MAX]; /* "": no prior statement needed */
long rule_arg;			/* BYTES or ERRNO */
char rule_state[6];
unsigned long fired;
static unsigned long accepted;
/* orphan: the server sides of connections reset by a rule, kept open. */
static int orphan;
#define ORPHANS_MAX 64
static int orphans[ORPHANS_MAX];
static int n_orphans;

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int local_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* Closes a socket with a reset (SO_LINGER 0), not an orderly FIN. */
static void reset_fd(int fd)
{
	if (fd < 0)
		return;
	struct linger l = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(fd);
}

static void conn_close(int i, int with_reset)
{
	struct conn *c = &conns[i];
	if (with_reset && orphan && n_orphans < ORPHANS_MAX) {
		reset_fd(c->client);
		orphans[n_orphans++] = c->server;
	} else if (with_reset) {
		reset_fd(c->client);
		reset_fd(c->server);
	} else {
		close(c->client);
		close(c->server);
	}
	free(c->up.p);
	free(c->down.p);
	free(c->await_prepare);
	for (int k = 0; k < c->n_watch; k++) {
		free(c->watch[k].name);
		free(c->watch[k].text);
	}
	conns[i] = conns[--n_conns];
}

static void accept_one(int lfd)
{
	int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	if (n_conns == MAX_CONNS) {
		close(cfd);
		return;
	}
	int sfd = local_socket();
	struct sockaddr_in a = loopback(target_port);
	if (sfd < 0 || connect(sfd, (struct sockaddr *)&a, sizeof a) != 0) {
		if (sfd >= 0)
			close(sfd);
		reset_fd(cfd);
		return;
	}
	int one = 1;
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct conn *c = &conns[n_conns];
	memset(c, 0, sizeof *c);
	c->client = cfd;
	c->server = sfd;
	c->cut_left = -1;
	c->up.p = malloc(BUF_CAP);
	c->down.p = malloc(BUF_CAP);
	if (c->up.p == NULL || c->down.p == NULL) {
		free(c->up.p);
		free(c->down.p);
		reset_fd(cfd);
		reset_fd(sfd);
		return;
	}
	n_conns++;
	accepted++;
}

/* Whether payload[0..len) holds `pattern`, ignoring ASCII case (SQL
 * keywords may be written either way). */
static int contains(const unsigned char *payload, size_t len,
		    const char *needle)
{
	size_t plen = strlen(needle);
	for (size_t i = 0; plen > 0 && i + plen <= len; i++)
		if (strncasecmp((const char *)payload + i, needle, plen) == 0)
			return 1;
	return 0;
}

int text_matches(const unsigned char *text, size_t len)
{
	return (contains(text, len, pattern) ? 1 : 0) |
	       (prior[0] != '\0' && contains(text, len, prior) ? 2 : 0);
}

/* What the prepared statement `id` matches. */
static int watched(const struct conn *c, uint32_t id)
{
	for (int k = 0; k < c->n_watch; k++)
		if (c->watch[k].id == id)
			return text_matches((const unsigned char *)c->watch[k].text,
					    strlen(c->watch[k].text));
	return 0;
}

int rule_hits(struct conn *c, int what)
{
	if ((what & 1) && (prior[0] == '\0' || c->primed))
		return 1;
	if (what & 2)
		c->primed = 1;
	return 0;
}

void buf_cut(struct pipe_buf *b, size_t at, size_t n)
{
	memmove(b->p + at, b->p + at + n, b->len - at - n);
	b->len -= n;
}

int inject_down(struct conn *c, const void *bytes, size_t n)
{
	struct pipe_buf *d = &c->down;
	if (d->len + n > BUF_CAP)
		return -1;
	memmove(d->p + d->scanned + n, d->p + d->scanned, d->len - d->scanned);
	memcpy(d->p + d->scanned, bytes, n);
	d->len += n;
	d->scanned += n;
	return 0;
}

/* Whether a whole client packet (payload of `len`) is the statement the
 * armed rule waits for. */
static int matches(struct conn *c, const unsigned char *payload, size_t len)
{
	if (len > 0 && payload[0] == 0x16) {
		/* COM_STMT_PREPARE: its reply gives the id. */
		free(c->await_prepare);
		c->await_prepare = strndup((const char *)payload + 1, len - 1);
		return 0;
	}
	if (armed == R_NONE || len == 0)
		return 0;
	int what = 0;
	/* (the switch below) */
	switch (payload[0]) {
	case 0x03: /* COM_QUERY */
		what = text_matches(payload + 1, len - 1);
		break;
	case 0x17: /* COM_STMT_EXECUTE: stmt id, 4 bytes little-endian */
		if (len >= 5)
			what = watched(c, (uint32_t)payload[1] |
						  (uint32_t)payload[2] << 8 |
						  (uint32_t)payload[3] << 16 |
						  (uint32_t)payload[4] << 24);
		break;
	default: return 0;
	}
	return rule_hits(c, what);
}

/* Writes what it can of b to fd; -1 when the peer is gone. */
static int flush_buf(int fd, struct pipe_buf *b, size_t upto)
{
	while (upto > 0) {
		ssize_t w = send(fd, b->p, upto, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		memmove(b->p, b->p + w, b->len - (size_t)w);
		b->len -= (size_t)w;
		b->scanned -= (size_t)w;
		upto -= (size_t)w;
	}
	return 0;
}

/* Answers for the server: an ERR packet after the client's packet of
 * sequence `seq`, put where the server's bytes wait to be passed. */
static void fail_reply(struct conn *c, unsigned char seq)
{
	static const char msg[] = "injected by faultproxy";
	unsigned char pkt[4 + 9 + sizeof msg];
	size_t len = 9 + sizeof msg - 1;
	pkt[0] = (unsigned char)len;
	pkt[1] = 0;
	pkt[2] = 0;
	pkt[3] = (unsigned char)(seq + 1);
	pkt[4] = 0xff;
	long err = rule_arg > 0 ? rule_arg : 1105; /* ER_UNKNOWN_ERROR */
	pkt[5] = (unsigned char)(err & 0xff);
	pkt[6] = (unsigned char)(err >> 8);
	memcpy(pkt + 7, "#HY000", 6);
	memcpy(pkt + 13, msg, sizeof msg - 1);
	inject_down(c, pkt, 4 + len);
}

/*
 * Judges the client's bytes packet by packet, marking those that may
 * pass (up.scanned). Returns 1 when the connection must be reset now.
 */
static int scan_up(struct conn *c)
{
	struct pipe_buf *b = &c->up;
	while (b->scanned < b->len) {
		size_t avail = b->len - b->scanned;
		if (c->up_skip > 0) {
			size_t take = avail < c->up_skip ? avail : c->up_skip;
			b->scanned += take;
			c->up_skip -= take;
			continue;
		}
		if (avail < 4)
			return 0;
		const unsigned char *h = b->p + b->scanned;
		size_t plen = (size_t)h[0] | (size_t)h[1] << 8 |
			      (size_t)h[2] << 16;
		if (4 + plen > BUF_CAP - 4) {
			/* Too large to hold: pass it unjudged. */
			b->scanned += 4;
			c->up_skip = plen;
			continue;
		}
		if (avail < 4 + plen)
			return 0; /* wait for the rest */
		if (matches(c, h + 4, plen)) {
			enum rule r = armed;
			armed = R_NONE;
			fired++;
			if (r == R_RESET_MID) {
				/* Pass what came before and half of this one. */
				b->scanned += 4 + plen / 2;
				return 1;
			}
			if (r == R_FAIL_REPLY) {
				fail_reply(c, h[3]);
				buf_cut(b, b->scanned, 4 + plen);
				continue;
			}
			if (r == R_CUT_REPLY)
				c->cut_left = rule_arg;
			else
				c->drop_at_reply = 1;
		}
		b->scanned += 4 + plen;
	}
	return 0;
}

/* Looks at the server's bytes: a watched prepare's id, or the reply a
 * rule swallows or cuts. Returns 1 when the connection must be reset now,
 * 2 when it must be once the bytes judged are passed. */
static int scan_down(struct conn *c)
{
	struct pipe_buf *b = &c->down;
	if (c->drop_at_reply && b->len > 0)
		return 1;
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
	if (c->await_prepare != NULL) {
		if (b->len < 9)
			return 0; /* hold until the id is there */
		/* COM_STMT_PREPARE_OK: 0x00, then the statement id. */
		if (b->p[4] == 0x00 && c->n_watch < WATCH_MAX) {
			c->watch[c->n_watch].name = NULL;
			c->watch[c->n_watch].id =
				(uint32_t)b->p[5] | (uint32_t)b->p[6] << 8 |
				(uint32_t)b->p[7] << 16 |
				(uint32_t)b->p[8] << 24;
			c->watch[c->n_watch++].text = c->await_prepare;
		} else {
			free(c->await_prepare);
		}
		c->await_prepare = NULL;
	}
	b->scanned = b->len;
	return 0;
}

/* Reads from fd into b; -1 at EOF or error. */
static int fill(int fd, struct pipe_buf *b)
{
	if (b->len == BUF_CAP)
		return 0;
	ssize_t r = recv(fd, b->p + b->len, BUF_CAP - b->len, MSG_DONTWAIT);
	if (r == 0)
		return -1;
	if (r < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	b->len += (size_t)r;
	return 0;
}

/* Five of 0-9 and A-Z. */
static int sqlstate_ok(const char *s)
{
	if (strlen(s) != 5)
		return 0;
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return 0;
	return 1;
}

static void command(char *line)
{
	line[strcspn(line, "\r\n")] = '\0';
	char *arg = strchr(line, ' ');
	if (arg != NULL)
		*arg++ = '\0';
	int with_number = strcmp(line, "cut-reply") == 0 ||
			  strcmp(line, "fail-reply") == 0;
	if (strcmp(line, "drop-reply") == 0 || strcmp(line, "reset-mid") == 0 ||
	    with_number) {
		if (arg == NULL || *arg == '\0' || strlen(arg) >= PATTERN_MAX) {
			reply("error %s needs a pattern", line);
			return;
		}
		rule_arg = 0;
		rule_state[0] = '\0';
		if (with_number) {
			char *num = strrchr(arg, ' ');
			char *end = NULL;
			if (num != NULL)
				rule_arg = strtol(num + 1, &end, 10);
			int state = num != NULL && line[0] == 'f' &&
				    sqlstate_ok(num + 1);
			if (state)
				memcpy(rule_state, num + 1, 6);
			if (num == NULL ||
			    (!state && (end == num + 1 || *end != '\0' ||
					rule_arg < 0 ||
					rule_arg > (line[0] == 'f' ? 65535
								   : 1L << 30)))) {
				reply("error %s needs PATTERN NUMBER", line);
				return;
			}
			if (state && (*end != '\0' || rule_arg > 65535))
				rule_arg = 0; /* not a MySQL number */
			*num = '\0';
		}
		char *after = strstr(arg, " after ");
		prior[0] = '\0';
		if (after != NULL) {
			*after = '\0';
			snprintf(prior, sizeof prior, "%s", after + 7);
		}
		snprintf(pattern, sizeof pattern, "%s", arg);
		/* Statements seen before the rule was armed do not count. */
		for (int i = 0; i < n_conns; i++)
			conns[i].primed = 0;
		armed = line[0] == 'd'	 ? R_DROP_REPLY
			: line[0] == 'r' ? R_RESET_MID
			: line[0] == 'c' ? R_CUT_REPLY
					 : R_FAIL_REPLY;
		reply("ok armed");
	} else if (strcmp(line, "disarm") == 0) {
		armed = R_NONE;
		reply("ok");
	} else if (strcmp(line, "stall") == 0) {
		stalled = 1;
		reply("ok stalled");
	} else if (strcmp(line, "resume") == 0) {
		stalled = 0;
		reply("ok resumed");
	} else if (strcmp(line, "orphan") == 0) {
		orphan = 1;
		reply("ok orphan");
	} else if (strcmp(line, "reset-all") == 0) {
		int n = n_conns;
		while (n_conns > 0)
			conn_close(n_conns - 1, 1);
		reply("ok reset %d", n);
	} else if (strcmp(line, "stats") == 0) {
		reply("ok accepted=%lu open=%d fired=%lu", accepted, n_conns,
		      fired);
	} else if (strcmp(line, "quit") == 0) {
		reply("ok bye");
		exit(0);
	} else {
		reply("error unknown command '%.60s'", line);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: faultproxy TARGET_PORT [LISTEN_PORT]\n");
		return 2;
	}
	target_port = atoi(argv[1]);
	int listen_port = argc == 3 ? atoi(argv[2]) : 0;
	if (target_port <= 0 || target_port > 65535 || listen_port < 0 ||
	    listen_port > 65535) {
		fprintf(stderr, "faultproxy: bad port\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int lfd = local_socket();
	struct sockaddr_in a = loopback(listen_port);
	socklen_t alen = sizeof a;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(lfd, 64) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
		perror("faultproxy: listen on 127.0.0.1");
		return 1;
	}
	reply("listen %d", ntohs(a.sin_port));

	char line[512];
	size_t line_len = 0;
	for (;;) {
		struct pollfd p[2 + 2 * MAX_CONNS];
		int n = 0;
		p[n++] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < n_conns; i++) {
			struct conn *c = &conns[i];
			short up = 0, down = 0;
			if (!stalled) {
				if (c->up.len < BUF_CAP)
					up |= POLLIN;
				if (c->down.len < BUF_CAP)
					down |= POLLIN;
				if (c->up.scanned > 0)
					down |= POLLOUT; /* server writable */
				if (c->down.scanned > 0)
					up |= POLLOUT;
			}
			p[n++] = (struct pollfd){ .fd = c->client, .events = up };
			p[n++] = (struct pollfd){ .fd = c->server,
						  .events = down };
		}
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("faultproxy: poll");
			return 1;
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			ssize_t r = read(STDIN_FILENO, line + line_len,
					 sizeof line - 1 - line_len);
			if (r <= 0)
				return 0; /* the test is gone */
			line_len += (size_t)r;
			char *nl;
			while ((nl = memchr(line, '\n', line_len)) != NULL) {
				*nl = '\0';
				command(line);
				size_t used = (size_t)(nl + 1 - line);
				memmove(line, nl + 1, line_len - used);
				line_len -= used;
			}
			if (line_len == sizeof line - 1)
				line_len = 0;
		}
		/* The connections as polled; a command may have closed some. */
		int polled = (n - 2) / 2;
		if (polled > n_conns)
			polled = n_conns;
		for (int i = polled - 1; i >= 0; i--) {
			struct conn *c = &conns[i];
			struct pollfd *pc = &p[2 + 2 * i], *ps = &p[3 + 2 * i];
			if (pc->fd != c->client || stalled)
				continue;
			int gone = 0, reset = 0;
			if (pc->revents & (POLLIN | POLLHUP | POLLERR))
				gone |= fill(c->client, &c->up) < 0;
			if (ps->revents & (POLLIN | POLLHUP | POLLERR))
				gone |= fill(c->server, &c->down) < 0;
			if (c->proto == P_UNKNOWN && c->down.len > 0)
				c->proto = P_MYSQL; /* the server spoke first */
			if (c->proto == P_UNKNOWN && c->up.len > 0) {
				int pg = pg_detect(&c->up);
				if (pg >= 0)
					c->proto = pg ? P_PG : P_MYSQL;
			}
			int down = 0;
			if (c->proto == P_PG) {
				reset |= pg_scan_up(c);
				down = pg_scan_down(c);
			} else if (c->proto == P_MYSQL) {
				reset |= scan_up(c);
				down = scan_down(c);
			}
			reset |= down == 1;
			if (!reset) {
				gone |= flush_buf(c->server, &c->up,
						  c->up.scanned) < 0;
				gone |= flush_buf(c->client, &c->down,
						  c->down.scanned) < 0;
				if (down == 2) {
					/* Pass the bytes before the cut, all
					 * of them, then cut. */
					while (c->down.scanned > 0 &&
					       flush_buf(c->client, &c->down,
							 c->down.scanned) == 0)
						poll(NULL, 0, 1);
					reset = 1;
				}
			} else {
				/* Pass what was judged before the cut. */
				flush_buf(c->server, &c->up, c->up.scanned);
			}
			if (reset || gone)
				conn_close(i, 1);
		}
		if (p[1].revents & POLLIN)
			accept_one(lfd);
	}
}
