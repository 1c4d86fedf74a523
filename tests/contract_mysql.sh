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
# Under AddressSanitizer (BUS_SANITIZED, set by scripts/test.sh) the cases
# tagged "process" are left out here: GCC 12's libasan does not lock its
# allocator around fork(), and a process-isolation child forked while
# another thread (the MySQL store's calls allocate a lot) held an allocator
# lock was once seen to hang. They run under the sanitizers on memory:, and
# on MariaDB in the main build.
if [ -n "${BUS_SANITIZED:-}" ]; then
	CK_EXCLUDE_TAGS=process
	export CK_EXCLUDE_TAGS
fi
BUS_CONTRACT_URL=$BUS_TEST_MYSQL_URL BUS_BACKEND_DIR=$BUS_MYSQL_BACKEND_DIR \
	exec ./contract/check_contract
