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
pw=$(url_password "$STORE_URL")
[ -n "$pw" ] && add_secret "$pw"
add_secret "$(printf '%s\n' "$STORE_URL" | sed -n 's|^[a-z0-9]*://[^:/@]*:\([^@]*\)@.*|\1|p')"
add_secret "Wr0ngPassw0rd"

scenario_admin
scenario_errors
scenario_exec
scenario_sigterm
scenario_metrics
scenario_metrics_listen

# Separate processes share the store: the usual way to use the tool.
use_store sep
run "$BUS" migrate --check
expect_status 5 "migrate --check on a store without the schema"
expect_err "schema is missing.*run 'bus migrate'" "the schema message says what to run"
expect_one_err_line "schema missing"
run "$BUS" jobs list
expect_status 5 "jobs list without the schema"
run "$BUS" migrate
expect_status 0 "migrate"
run "$BUS" migrate --check
expect_status 0 "migrate --check after migrate"
run "$BUS" enqueue sep.job '{"n":1}' --queue sep
expect_status 0 "enqueue"
id=$(last_id)
run "$BUS" --json jobs show "$id"
expect_out '"state":"available"' "another process sees the job"
run "$BUS" work --queue sep --exec 'cat >/dev/null' --drain
expect_status 0 "work --drain in its own process"
run "$BUS" jobs show "$id"
expect_out '^state +completed$' "the job was completed by the worker process"

# Server errors: a distinct status, one line, no password.
base=$(printf '%s\n' "$STORE_URL" | sed 's|^\([a-z0-9]*://[^:/@]*\):[^@]*@|\1:Wr0ngPassw0rd@|')
run "$BUS" --url "$base" stats
expect_status 4 "wrong password"
expect_one_err_line "wrong password"
unreachable=$(printf '%s\n' "$STORE_URL" | sed 's|@[^/]*/|@127.0.0.1:1/|')
run "$BUS" --url "$unreachable" stats
expect_status 4 "unreachable server"
expect_one_err_line "unreachable server"
BUS_URL=$unreachable run "$BUS" jobs list
expect_status 4 "unreachable server through BUS_URL"
case $STORE_URL in *\?*) bad="$STORE_URL&nosuchoption=1" ;; *) bad="$STORE_URL?nosuchoption=1" ;; esac
run "$BUS" --url "$bad" stats
expect_status 3 "URL with an unknown option"
expect_one_err_line "bad URL"
run "$BUS" "$STORE_URL" stats
expect_status 2 "the URL given as a command"
expect_err ":\*\*\*@" "the password is masked"
cli_done
