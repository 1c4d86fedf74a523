/*
 * The smallest HTTP server that a Prometheus scraper needs: one connection
 * at a time, GET (or HEAD) /metrics answered with the text exposition
 * format, 404 for other paths, 405 for other methods, and the connection
 * closed after each answer. A client gets 5 seconds in all to send its
 * request and 10 seconds to take the answer: deadlines for the whole
 * exchange, not for each read or write, so that a client trickling a byte
 * at a time cannot hold the server (it serves one connection at a time).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

struct http_server {
	int fd;
	int port;
};

int http_listen(struct http_server **out, const char *addr)
{
	*out = NULL;
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (colon == NULL || colon == addr || colon[1] == '\0' ||
	    (size_t)(colon - addr) >= sizeof host)
		return cli_usage("--listen: '%s' is not HOST:PORT (say "
				 "127.0.0.1:9464)",
				 addr);
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	/* [::1]:9464 */
	char *h = host;
	size_t hl = strlen(h);
	if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
		h[hl - 1] = '\0';
		h++;
	}
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int gai = getaddrinfo(h, colon + 1, &hints, &res);
	if (gai != 0)
		return cli_usage("--listen: cannot use '%s': %s", addr,
				 gai_strerror(gai));
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, 16) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return cli_error(CLI_FAILED, "cannot listen on %s: %s", addr,
				 strerror(e));
	}
	freeaddrinfo(res);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int port = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		port = ss.ss_family == AF_INET6
			   ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
			   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	struct http_server *s = malloc(sizeof *s);
	if (s == NULL) {
		close(fd);
		return cli_error(CLI_FAILED, "out of memory");
	}
	s->fd = fd;
	s->port = port;
	*out = s;
	return 0;
}

int http_port(const struct http_server *s)
{
	return s->port;
}

#define REQUEST_MS 5000
#define ANSWER_MS 10000

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes: 1 ready,
 * 0 not (deadline, error or hang-up). */
static int ready(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = {fd, events, 0};
		int n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
		if (n < 0 && errno != EINTR)
			return 0;
		if (n > 0)
			return (p.revents & events) != 0 ||
			       (p.revents & POLLHUP) == 0;
	}
}

static void send_all(int fd, const char *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!ready(fd, POLLOUT, deadline))
				return;
			continue;
		}
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void respond(int fd, const char *status, const char *type,
		    const char *body, size_t len, int head)
{
	int64_t deadline = now_ms() + ANSWER_MS;
	char h[256];
	int n = snprintf(h, sizeof h,
			 "HTTP/1.0 %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, type, len);
	send_all(fd, h, (size_t)n, deadline);
	if (!head)
		send_all(fd, body, len, deadline);
}

static void answer(int fd, http_render_fn fn, void *udata)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	int64_t deadline = now_ms() + REQUEST_MS;
	char req[8192];
	size_t len = 0;
	/* Read up to the end of the headers; only the request line counts. */
	while (len < sizeof req - 1) {
		ssize_t r = recv(fd, req + len, sizeof req - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!ready(fd, POLLIN, deadline))
				break;
			continue;
		}
		if (r <= 0)
			break;
		len += (size_t)r;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[len] = '\0';
	char method[16], target[1024];
	if (sscanf(req, "%15s %1023s", method, target) != 2) {
		static const char m[] = "bad request\n";
		respond(fd, "400 Bad Request", "text/plain", m, sizeof m - 1,
			0);
		return;
	}
	int head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		static const char m[] = "only GET and HEAD\n";
		respond(fd, "405 Method Not Allowed", "text/plain", m,
			sizeof m - 1, 0);
		return;
	}
	char *query = strchr(target, '?');
	if (query != NULL)
		*query = '\0';
	if (strcmp(target, "/metrics") != 0) {
		static const char m[] =
		    "not found: the metrics are at /metrics\n";
		respond(fd, "404 Not Found", "text/plain", m, sizeof m - 1,
			head);
		return;
	}
	char *text = NULL;
	size_t tlen = 0;
	int rc = fn(&text, &tlen, udata);
	if (rc != 0) {
		char m[600];
		int n = snprintf(m, sizeof m, "cannot read the metrics: %s\n",
				 bus_error_last()->message);
		respond(fd, "503 Service Unavailable", "text/plain", m,
			(size_t)n < sizeof m ? (size_t)n : sizeof m - 1, head);
		free(text);
		return;
	}
	respond(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text,
		tlen, head);
	free(text);
}

int http_serve(struct http_server *s, int stop_fd, http_render_fn fn,
	       void *udata)
{
	for (;;) {
		struct pollfd p[2] = {{s->fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return cli_error(CLI_FAILED, "poll: %s",
					 strerror(errno));
		}
		if (p[1].revents)
			return 0;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		answer(fd, fn, udata);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
}

void http_close(struct http_server *s)
{
	if (s == NULL)
		return;
	close(s->fd);
	free(s);
}
