#!/bin/sh
# The fault suite against PostgreSQL, when the test command started a
# server (BUS_TEST_POSTGRES_URL). Without one, the suite is skipped; in CI it
# must run, so there a missing URL is a failure.
if [ -z "${BUS_TEST_POSTGRES_URL:-}" ]; then
	if [ "${CI:-}" = true ]; then
		echo "CI: BUS_TEST_POSTGRES_URL is not set: the PostgreSQL fault suite must run"
		exit 1
	fi
	echo "BUS_TEST_POSTGRES_URL is not set: skipping the PostgreSQL fault suite"
	exit 77
fi
if [ ! -f "$BUS_POSTGRES_BACKEND_DIR/postgres.so" ]; then
	echo "no postgres.so in $BUS_POSTGRES_BACKEND_DIR, but a server to test it on:"
	echo "configure did not find libpq (install libpq-dev)"
	exit 1
fi
# Tables of its own, so that it may run beside the contract suite (each
# test empties the store it works in).
case $BUS_TEST_POSTGRES_URL in
*\?*) url="$BUS_TEST_POSTGRES_URL&table-prefix=faults_" ;;
*) url="$BUS_TEST_POSTGRES_URL?table-prefix=faults_" ;;
esac
BUS_CONTRACT_URL=$url BUS_BACKEND_DIR=$BUS_POSTGRES_BACKEND_DIR \
	exec ./check_faults
