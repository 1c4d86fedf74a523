/*
 * The wire format between a parent and its isolated child (child.c).
 *
 * Over a stream socket, each message is a frame: a 4-byte body length in host
 * order (both ends are one process image on one machine) and the body. The
 * parent sends a job frame, the child answers with an outcome frame:
 *
 *   job:     i64 deadline_ns (CLOCK_MONOTONIC, 0: none), then every bus_job
 *            field in declaration order
 *   outcome: i32 rc, i64 snooze_s, str error
 *
 * Integers are fixed-width, host order. A string is a u32 length and that
 * many bytes; the length BUS__PROTO_NULL stands for NULL, so NULL and ""
 * stay apart.
 */
#ifndef BUS_LIB_CHILD_PROTO_H
#define BUS_LIB_CHILD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "child.h"

#define BUS__PROTO_NULL UINT32_MAX
#define BUS__PROTO_HEAD 4 /* the length prefix */

/* The largest job frame: a 16 MiB payload and as much meta, with ample room
 * for the error history (up to 1000 attempts of the longest error). A larger
 * job is refused before it is sent. */
#define BUS__PROTO_JOB_MAX ((size_t)256 << 20)
/* A child cuts longer error messages down to this many bytes. */
#define BUS__PROTO_ERROR_MAX ((size_t)64 << 10)
/* The largest outcome frame: rc, snooze_s and the longest error. */
#define BUS__PROTO_OUTCOME_MAX (4 + 8 + 4 + BUS__PROTO_ERROR_MAX)

/* A frame being built: the length prefix, then the body. `data` is owned;
 * bus__proto_buf_fini frees it and leaves the buffer empty and reusable. */
struct bus__proto_buf {
	char *data;
	size_t len, cap;
	int oom; /* an append failed: the frame is incomplete */
};

void bus__proto_buf_fini(struct bus__proto_buf *buf);

/* Encodes `job` with its deadline into a frame in `buf` (which starts
 * zeroed). BUS_EINVAL when the job is larger than BUS__PROTO_JOB_MAX. */
int bus__proto_encode_job(struct bus__proto_buf *buf, const bus_job *job,
			  int64_t deadline_ns);
/* Decodes a job frame's body into `job` (zeroed first; its strings are
 * owned by the caller, who frees them even on failure). Returns 0,
 * BUS_EINVAL when the body is malformed, or BUS_ENOMEM. */
int bus__proto_decode_job(bus_job *job, int64_t *deadline_ns,
			  const char *body, size_t len);

/* Encodes an outcome, cutting `error` (may be NULL) to
 * BUS__PROTO_ERROR_MAX bytes on a UTF-8 character boundary. */
int bus__proto_encode_outcome(struct bus__proto_buf *buf, int rc,
			      int64_t snooze_s, const char *error);
/* Decodes an outcome frame's body into `out` (out->error owned by the
 * caller). BUS_EINVAL when malformed, rc not 0 or negative included. */
int bus__proto_decode_outcome(struct bus_outcome *out, const char *body,
			      size_t len);

/*
 * Blocking I/O, for the child. Both retry on EINTR and finish partial
 * transfers. bus__proto_write_all returns 0 or -1 with errno (EPIPE when the
 * peer is gone; it never raises SIGPIPE). bus__proto_read_frame returns 1
 * with a malloc'd body the caller frees, 0 at end of stream between frames,
 * or -1 with errno (EPROTO: the stream ended inside a frame; EMSGSIZE: the
 * frame is longer than `max`).
 */
int bus__proto_write_all(int fd, const char *data, size_t len);
int bus__proto_read_frame(int fd, size_t max, char **body, size_t *len);

/*
 * Non-blocking reading, for the parent, which must watch a clock and a
 * cancel flag while the frame trickles in. Zero it to start; `body` is owned
 * until taken (set to NULL) or freed with bus__proto_reader_fini.
 */
struct bus__proto_reader {
	unsigned char head[BUS__PROTO_HEAD];
	size_t got; /* bytes of head, then of body, read so far */
	char *body;
	size_t len; /* the body's length, once the head is complete */
	int in_body;
};

enum {
	BUS__PROTO_MORE = 0, /* nothing more to read right now */
	BUS__PROTO_DONE = 1, /* r->body holds r->len bytes */
	BUS__PROTO_EOF = -1, /* the peer closed the stream */
	BUS__PROTO_FAIL = -2, /* errno says why (EMSGSIZE: over `max`) */
};

/* Reads what `fd` has without waiting; returns a BUS__PROTO_* value. */
int bus__proto_reader_feed(struct bus__proto_reader *r, int fd, size_t max);
void bus__proto_reader_fini(struct bus__proto_reader *r);

#endif
