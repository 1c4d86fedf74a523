/*
 * The fault tests' handle on tests/faultproxy/faultproxy: a proxy of the
 * test's own between the store and the test server, both on 127.0.0.1,
 * which breaks connections where the test says (see faultproxy.c for the
 * commands).
 */
#ifndef BUS_TESTS_MYSQL_FAULT_PROXY_H
#define BUS_TESTS_MYSQL_FAULT_PROXY_H

#include <stdio.h>
#include <sys/types.h>

#include "fault.h"

struct fault_proxy {
	pid_t pid;
	FILE *to, *from; /* its stdin and stdout */
	unsigned port;	 /* where it listens on 127.0.0.1 */
};

/* Starts a proxy to the test server (the program from $BUS_FAULTPROXY,
 * which make check sets); fault_fail kills it with the other children. */
void fault_proxy_start(struct fault_proxy *p, const struct fault_env *e);

/* Sends one command and returns its "ok ..." reply (static storage);
 * an "error" reply fails the test. */
const char *fault_proxy_cmd(struct fault_proxy *p, const char *fmt, ...)
	BUS_PRINTF(2, 3);

/* A value from the "stats" reply: "accepted", "open" or "fired". */
long fault_proxy_stat(struct fault_proxy *p, const char *name);

/* The run's bus URL (mysql:// or postgres://) through the proxy, without
 * TLS (the proxy reads the protocol), with `options` ("a=1&b=2" or "")
 * added; malloc'd. */
char *fault_proxy_url(const struct fault_env *e, const struct fault_proxy *p,
		      const char *options);

/* Opens a bus on that URL (fails the test when it cannot). */
bus *fault_proxy_bus(const struct fault_env *e, const struct fault_proxy *p,
		     const char *options);

void fault_proxy_stop(struct fault_proxy *p);

#endif
