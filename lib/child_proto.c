/* The wire format between a parent and its isolated child: framing,
 * encoding and decoding of jobs and outcomes, and the socket I/O that carries
 * them (see child_proto.h for the layout). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "child_proto.h"
#include "error.h"

void bus__proto_buf_fini(struct bus__proto_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
	buf->oom = 0;
}

/* Makes room for `n` more bytes; a failure marks the frame incomplete. */
static int reserve(struct bus__proto_buf *buf, size_t n)
{
	if (buf->oom)
		return -1;
	if (n <= buf->cap - buf->len)
		return 0;
	size_t cap = buf->cap ? buf->cap : 256;
	while (cap - buf->len < n)
		cap *= 2;
	char *data = realloc(buf->data, cap);
	if (data == NULL) {
		buf->oom = 1;
		return -1;
	}
	buf->data = data;
	buf->cap = cap;
	return 0;
}

static void put(struct bus__proto_buf *buf, const void *p, size_t n)
{
	if (reserve(buf, n) != 0)
		return;
	memcpy(buf->data + buf->len, p, n);
	buf->len += n;
}

static void put_i32(struct bus__proto_buf *buf, int32_t v)
{
	put(buf, &v, sizeof v);
}

static void put_u32(struct bus__proto_buf *buf, uint32_t v)
{
	put(buf, &v, sizeof v);
}

static void put_i64(struct bus__proto_buf *buf, int64_t v)
{
	put(buf, &v, sizeof v);
}

/* `n` fits in a u32: the frame limits checked by the callers see to it. */
static void put_str_n(struct bus__proto_buf *buf, const char *s, size_t n)
{
	if (s == NULL) {
		put_u32(buf, BUS__PROTO_NULL);
		return;
	}
	put_u32(buf, (uint32_t)n);
	put(buf, s, n);
}

static void put_str(struct bus__proto_buf *buf, const char *s)
{
	put_str_n(buf, s, s ? strlen(s) : 0);
}

/* Starts a frame with a length prefix that frame_end fills in. */
static void frame_begin(struct bus__proto_buf *buf, size_t body_len)
{
	buf->len = 0;
	reserve(buf, BUS__PROTO_HEAD + body_len);
	put_u32(buf, 0);
}

static int frame_end(struct bus__proto_buf *buf)
{
	if (buf->oom)
		return bus__error_oom();
	uint32_t body = (uint32_t)(buf->len - BUS__PROTO_HEAD);
	memcpy(buf->data, &body, sizeof body);
	return 0;
}

static size_t str_size(const char *s)
{
	return 4 + (s ? strlen(s) : 0);
}

/* The body size of a job frame, to allocate it once (payloads are big):
 * eight 64-bit and five 32-bit integers, and nine strings. */
static size_t job_size(const bus_job *job)
{
	return 8 * 8 + 4 * 5 + str_size(job->kind) + str_size(job->handler) +
	       str_size(job->queue) + str_size(job->payload) +
	       str_size(job->meta) + str_size(job->tags) +
	       str_size(job->attempted_by) + str_size(job->errors) +
	       str_size(job->unique_key);
}

int bus__proto_encode_job(struct bus__proto_buf *buf, const bus_job *job,
			  int64_t deadline_ns)
{
	size_t size = job_size(job);
	if (size > BUS__PROTO_JOB_MAX)
		return bus__error_set(BUS_EINVAL,
				      "job %lld is too large to hand to a "
				      "child process: %zu bytes (payload, "
				      "meta, tags and errors), limit %zu",
				      (long long)job->id, size,
				      BUS__PROTO_JOB_MAX);
	frame_begin(buf, size);
	put_i64(buf, deadline_ns);
	put_i64(buf, job->id);
	put_str(buf, job->kind);
	put_str(buf, job->handler);
	put_str(buf, job->queue);
	put_i32(buf, job->priority);
	put_str(buf, job->payload);
	put_str(buf, job->meta);
	put_str(buf, job->tags);
	put_i32(buf, (int32_t)job->state);
	put_i32(buf, job->attempt);
	put_i32(buf, job->max_attempts);
	put_i64(buf, job->timeout_ms);
	put_i64(buf, job->scheduled_at);
	put_i64(buf, job->inserted_at);
	put_i64(buf, job->attempted_at);
	put_i64(buf, job->lease_until);
	put_i64(buf, job->finished_at);
	put_str(buf, job->attempted_by);
	put_str(buf, job->errors);
	put_str(buf, job->unique_key);
	put_u32(buf, job->unique_states);
	return frame_end(buf);
}

/* The error text to send: at most BUS__PROTO_ERROR_MAX bytes, never ending
 * inside a UTF-8 sequence. */
static size_t error_len(const char *error)
{
	size_t n = strlen(error);
	if (n <= BUS__PROTO_ERROR_MAX)
		return n;
	n = BUS__PROTO_ERROR_MAX;
	while (n > 0 && ((unsigned char)error[n] & 0xc0) == 0x80)
		n--;
	return n;
}

int bus__proto_encode_outcome(struct bus__proto_buf *buf, int rc,
			      int64_t snooze_s, const char *error)
{
	size_t n = error ? error_len(error) : 0;
	frame_begin(buf, 4 + 8 + 4 + n);
	put_i32(buf, rc);
	put_i64(buf, snooze_s);
	put_str_n(buf, error, n);
	return frame_end(buf);
}

/* A body being decoded. */
struct cursor {
	const char *p;
	size_t left;
	int bad; /* ran past the end or a string length was wrong */
	int oom;
};

static void get(struct cursor *c, void *dst, size_t n)
{
	if (c->bad || c->left < n) {
		c->bad = 1;
		memset(dst, 0, n);
		return;
	}
	memcpy(dst, c->p, n);
	c->p += n;
	c->left -= n;
}

static int32_t get_i32(struct cursor *c)
{
	int32_t v;
	get(c, &v, sizeof v);
	return v;
}

static uint32_t get_u32(struct cursor *c)
{
	uint32_t v;
	get(c, &v, sizeof v);
	return v;
}

static int64_t get_i64(struct cursor *c)
{
	int64_t v;
	get(c, &v, sizeof v);
	return v;
}

/* A NUL-terminated copy (owned by the caller), or NULL. */
static char *get_str(struct cursor *c)
{
	uint32_t n = get_u32(c);
	if (c->bad || c->oom || n == BUS__PROTO_NULL)
		return NULL;
	if (n > c->left) {
		c->bad = 1;
		return NULL;
	}
	char *s = malloc((size_t)n + 1);
	if (s == NULL) {
		c->oom = 1;
		return NULL;
	}
	memcpy(s, c->p, n);
	s[n] = '\0';
	c->p += n;
	c->left -= n;
	return s;
}

/* `what`: "job frame from the parent", ... */
static int cursor_end(const struct cursor *c, const char *what)
{
	if (c->oom)
		return bus__error_oom();
	if (c->bad || c->left != 0)
		return bus__error_set(BUS_EINVAL, "malformed %s process (%s)",
				      what,
				      c->bad ? "truncated" : "trailing bytes");
	return 0;
}

int bus__proto_decode_job(bus_job *job, int64_t *deadline_ns,
			  const char *body, size_t len)
{
	struct cursor c = { body, len, 0, 0 };
	memset(job, 0, sizeof *job);
	*deadline_ns = get_i64(&c);
	job->id = get_i64(&c);
	job->kind = get_str(&c);
	job->handler = get_str(&c);
	job->queue = get_str(&c);
	job->priority = get_i32(&c);
	job->payload = get_str(&c);
	job->meta = get_str(&c);
	job->tags = get_str(&c);
	job->state = (bus_job_state)get_i32(&c);
	job->attempt = get_i32(&c);
	job->max_attempts = get_i32(&c);
	job->timeout_ms = get_i64(&c);
	job->scheduled_at = get_i64(&c);
	job->inserted_at = get_i64(&c);
	job->attempted_at = get_i64(&c);
	job->lease_until = get_i64(&c);
	job->finished_at = get_i64(&c);
	job->attempted_by = get_str(&c);
	job->errors = get_str(&c);
	job->unique_key = get_str(&c);
	job->unique_states = get_u32(&c);
	return cursor_end(&c, "job frame from the parent");
}

int bus__proto_decode_outcome(struct bus_outcome *out, const char *body,
			      size_t len)
{
	struct cursor c = { body, len, 0, 0 };
	out->rc = get_i32(&c);
	out->snooze_s = get_i64(&c);
	out->error = get_str(&c);
	int rc = cursor_end(&c, "outcome frame from the child");
	if (rc == 0 && out->rc > 0)
		rc = bus__error_set(BUS_EINVAL,
				    "malformed outcome frame from the child "
				    "process (rc %d is positive)",
				    out->rc);
	if (rc != 0) {
		free(out->error);
		out->error = NULL;
	}
	return rc;
}

int bus__proto_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly `len` bytes unless the stream ends first; returns how many
 * were read, or -1 with errno. */
static ssize_t read_full(int fd, char *dst, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, dst + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int bus__proto_read_frame(int fd, size_t max, char **body, size_t *len)
{
	*body = NULL;
	*len = 0;
	uint32_t head;
	ssize_t n = read_full(fd, (char *)&head, sizeof head);
	if (n <= 0)
		return (int)n;
	if ((size_t)n < sizeof head) {
		errno = EPROTO;
		return -1;
	}
	if (head > max) {
		errno = EMSGSIZE;
		return -1;
	}
	char *data = malloc(head ? head : 1);
	if (data == NULL) {
		errno = ENOMEM;
		return -1;
	}
	n = read_full(fd, data, head);
	if (n < 0 || (size_t)n < head) {
		free(data);
		if (n >= 0)
			errno = EPROTO;
		return -1;
	}
	*body = data;
	*len = head;
	return 1;
}

/* What one recv says: bytes read (> 0), or a BUS__PROTO_* value. */
static ssize_t recv_some(int fd, void *dst, size_t len)
{
	for (;;) {
		ssize_t n = recv(fd, dst, len, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n == 0)
			return BUS__PROTO_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return BUS__PROTO_MORE;
		/* A peer that died with bytes of ours unread resets. */
		return errno == ECONNRESET ? BUS__PROTO_EOF : BUS__PROTO_FAIL;
	}
}

/* Moves from the length prefix to the body. */
static int start_body(struct bus__proto_reader *r, size_t max)
{
	uint32_t head;
	memcpy(&head, r->head, sizeof head);
	if (head > max) {
		errno = EMSGSIZE;
		return BUS__PROTO_FAIL;
	}
	r->body = malloc(head ? head : 1);
	if (r->body == NULL) {
		errno = ENOMEM;
		return BUS__PROTO_FAIL;
	}
	r->len = head;
	r->got = 0;
	r->in_body = 1;
	return r->len == 0 ? BUS__PROTO_DONE : BUS__PROTO_MORE;
}

int bus__proto_reader_feed(struct bus__proto_reader *r, int fd, size_t max)
{
	for (;;) {
		ssize_t n;
		if (!r->in_body)
			n = recv_some(fd, r->head + r->got,
				      sizeof r->head - r->got);
		else
			n = recv_some(fd, r->body + r->got, r->len - r->got);
		if (n <= 0)
			return (int)n;
		r->got += (size_t)n;
		if (!r->in_body && r->got == sizeof r->head) {
			int rc = start_body(r, max);
			if (rc != BUS__PROTO_MORE)
				return rc;
		} else if (r->in_body && r->got == r->len) {
			return BUS__PROTO_DONE;
		}
	}
}

void bus__proto_reader_fini(struct bus__proto_reader *r)
{
	free(r->body);
	r->body = NULL;
}
