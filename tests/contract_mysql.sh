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
BUS_CONTRACT_URL=$BUS_TEST_MYSQL_URL BUS_BACKEND_DIR=$BUS_MYSQL_BACKEND_DIR \
	exec ./contract/check_contract
