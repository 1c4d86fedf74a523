#!/bin/sh
# The contract suite against PostgreSQL, when the test command started a
# server (BUS_TEST_POSTGRES_URL). Without one, the suite is skipped; in CI it
# must run, so there a missing URL is a failure.
if [ -z "${BUS_TEST_POSTGRES_URL:-}" ]; then
	if [ "${CI:-}" = true ]; then
		echo "CI: BUS_TEST_POSTGRES_URL is not set: the PostgreSQL contract suite must run"
		exit 1
	fi
	echo "BUS_TEST_POSTGRES_URL is not set: skipping the PostgreSQL contract suite"
	exit 77
fi
if [ ! -f "$BUS_POSTGRES_BACKEND_DIR/postgres.so" ]; then
	echo "no postgres.so in $BUS_POSTGRES_BACKEND_DIR, but a server to test it on:"
	echo "configure did not find libpq (install libpq-dev)"
	exit 1
fi
# The cases tagged "process" run under AddressSanitizer too, as on MariaDB
# (contract_mysql.sh).
BUS_CONTRACT_URL=$BUS_TEST_POSTGRES_URL BUS_BACKEND_DIR=$BUS_POSTGRES_BACKEND_DIR \
	exec ./contract/check_contract
