#!/bin/sh
# The contract suite against MariaDB/MySQL, when the test command started a
# server (BUS_TEST_MYSQL_URL). Without one, the suite is skipped; in CI it
# must run, so there a missing URL is a failure.
if [ -z "${BUS_TEST_MYSQL_URL:-}" ]; then
	if [ "${CI:-}" = true ]; then
		echo "CI: BUS_TEST_MYSQL_URL is not set: the MySQL contract suite must run"
		exit 1
	fi
	echo "BUS_TEST_MYSQL_URL is not set: skipping the MySQL contract suite"
	exit 77
fi
if [ ! -f "$BUS_MYSQL_BACKEND_DIR/mysql.so" ]; then
	echo "no mysql.so in $BUS_MYSQL_BACKEND_DIR, but a server to test it on:"
	echo "configure did not find libmariadb (install libmariadb-dev)"
	exit 1
fi
# The cases tagged "process" (they fork process-isolation children) run
# under AddressSanitizer too. They used to be left out there: GCC 12's
# libasan does not lock its allocator around fork(), and a child forked by
# an executor thread while another thread held an allocator lock hung in
# its first malloc (seen in defaults' handler_in_child_enqueues case, 2 of
# 3 runs: the child waited for ever in SizeClassAllocator64's region mutex,
# from mysql_optionsv in its handler's bus_enqueue, its parent polling it
# with no timeout). The children now come from a single-threaded fork
# server forked before the worker's threads (lib/zygote.h).
BUS_CONTRACT_URL=$BUS_TEST_MYSQL_URL BUS_BACKEND_DIR=$BUS_MYSQL_BACKEND_DIR \
	exec ./contract/check_contract
