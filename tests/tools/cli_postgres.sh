#!/bin/sh
# The `bus` tool on PostgreSQL (the server the test command started): the
# scenarios of cli_memory.sh, then what needs a shared store: commands in
# separate processes, `bus metrics --listen`, and the errors of a server
# (unreachable, wrong password, no schema), none of them printing the
# password.
# It assumes the store takes a table-prefix=... URL option as MySQL's does
# (each scenario uses a fresh prefix). Skipped while the test command sets
# no BUS_TEST_POSTGRES_URL (the PostgreSQL store is not in CI yet).
if [ -z "${BUS_TEST_POSTGRES_URL:-}" ]; then
	echo "BUS_TEST_POSTGRES_URL is not set: skipping the PostgreSQL tool tests"
	exit 77
fi
. "${top_srcdir:-..}/tests/tools/cli_setup.sh"
export BUS_BACKEND_DIR=$BUS_POSTGRES_BACKEND_DIR
STORE_URL=$BUS_TEST_POSTGRES_URL
sql_store_cases
sql_server_errors "" "" ""
cli_done
