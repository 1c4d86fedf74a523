#!/bin/sh
# migration/mysql.sql, applied by hand with the mariadb client (twice),
# gives a schema the library accepts without bus_migrate; a database without the
# schema is refused with a message that says how to migrate.
#
# Needs the server the test command started (root through its socket, to
# make databases of its own); skipped without one, failed without one in CI.
if [ -z "${BUS_TEST_MYSQL_URL:-}" ] || [ -z "${BUS_TEST_MYSQL_DIR:-}" ]; then
	if [ "${CI:-}" = true ]; then
		echo "CI: BUS_TEST_MYSQL_URL/BUS_TEST_MYSQL_DIR are not set"
		exit 1
	fi
	echo "BUS_TEST_MYSQL_URL is not set: skipping the by-hand schema test"
	exit 77
fi
root() { mariadb --no-defaults --socket="$BUS_TEST_MYSQL_DIR/sock" -uroot "$@"; }
root -e "DROP DATABASE IF EXISTS bus_by_hand; DROP DATABASE IF EXISTS bus_empty;
	CREATE DATABASE bus_by_hand CHARACTER SET utf8mb4;
	CREATE DATABASE bus_empty CHARACTER SET utf8mb4;
	GRANT ALL ON bus_by_hand.* TO 'bus'@'127.0.0.1';
	GRANT ALL ON bus_empty.* TO 'bus'@'127.0.0.1';" || exit 1
# Twice: every step may be applied again (mysql.sql says so), e.g. when an
# upgrade applies the whole file to a schema that has its first steps.
for round in 1 2; do
	if ! root bus_by_hand <"$top_srcdir/migration/mysql.sql"; then
		echo "FAIL: the mariadb client could not apply migration/mysql.sql (round $round)"
		exit 1
	fi
done
# The test URL names database bus_test; point it at the two made here.
base=${BUS_TEST_MYSQL_URL%/*}
BUS_BACKEND_DIR=${BUS_BACKEND_DIR:-$BUS_MYSQL_BACKEND_DIR} \
	./mysql/schema_accept "$base/bus_by_hand" "$base/bus_empty"
rc=$?
root -e "DROP DATABASE bus_by_hand; DROP DATABASE bus_empty;" || rc=1
exit $rc
