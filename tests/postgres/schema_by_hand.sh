#!/bin/sh
# migration/postgres.sql, applied by hand with psql, gives a schema the
# library accepts without bus_migrate; a database without the schema is
# refused with a message that says how to migrate.
#
# Needs the server the test command started (the superuser through its
# socket in $BUS_TEST_POSTGRES_DIR, to make databases of its own); skipped
# without one, failed without one in CI.
if [ -z "${BUS_TEST_POSTGRES_URL:-}" ] || [ -z "${BUS_TEST_POSTGRES_DIR:-}" ]; then
	if [ "${CI:-}" = true ]; then
		echo "CI: BUS_TEST_POSTGRES_URL/BUS_TEST_POSTGRES_DIR are not set"
		exit 1
	fi
	echo "BUS_TEST_POSTGRES_URL is not set: skipping the by-hand schema test"
	exit 77
fi
port=${BUS_TEST_POSTGRES_PORT:-5433}
super() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "${BUS_PG_USER:-postgres}" -- psql -X -q -h "$BUS_TEST_POSTGRES_DIR" \
			-p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
	else
		psql -X -q -h "$BUS_TEST_POSTGRES_DIR" -p "$port" -U postgres \
			-d postgres -v ON_ERROR_STOP=1 "$@"
	fi
}
for db in bus_by_hand bus_empty; do
	super -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db OWNER bus" || exit 1
done
# The test URL names database bus_test; point it at the two made here.
base=${BUS_TEST_POSTGRES_URL%/*}
# As the application's user, with psql (libpq reads the URL itself).
if ! psql -X -q -v ON_ERROR_STOP=1 "$base/bus_by_hand" \
	-f "$top_srcdir/migration/postgres.sql" >/dev/null; then
	echo "FAIL: psql could not apply migration/postgres.sql"
	exit 1
fi
BUS_BACKEND_DIR=${BUS_BACKEND_DIR:-$BUS_POSTGRES_BACKEND_DIR} \
	./mysql/schema_accept "$base/bus_by_hand" "$base/bus_empty" \
	migration/postgres.sql
rc=$?
for db in bus_by_hand bus_empty; do
	super -c "DROP DATABASE $db" || rc=1
done
exit $rc
