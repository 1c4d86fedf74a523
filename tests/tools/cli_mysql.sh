#!/bin/sh
# The `bus` tool on MariaDB (the server the test command started): the
# scenarios of cli_memory.sh, then what needs a shared store: commands in
# separate processes, `bus metrics --listen`, and the errors of a server
# (unreachable, wrong password, no schema), none of them printing the
# password.
if [ -z "${BUS_TEST_MYSQL_URL:-}" ]; then
	if [ "${CI:-}" = true ]; then
		echo "CI: BUS_TEST_MYSQL_URL is not set: the MySQL tool tests must run"
		exit 1
	fi
	echo "BUS_TEST_MYSQL_URL is not set: skipping the MySQL tool tests"
	exit 77
fi
. "${top_srcdir:-..}/tests/tools/cli_setup.sh"
export BUS_BACKEND_DIR=$BUS_MYSQL_BACKEND_DIR
STORE_URL=$BUS_TEST_MYSQL_URL
sql_store_cases

# A cancel from another process stops a running command: the request is
# recorded, the worker kills the command's process group, the job ends
# cancelled.
rm -f "$TMP/cancel.started"
run "$BUS" enqueue sep.long '{}' --queue sepc
id=$(last_id)
"$BUS" work --queue sepc --exec "echo \$\$ >$TMP/cancel.pid; touch $TMP/cancel.started; exec sleep 300" \
	>"$TMP/cw.out" 2>"$TMP/cw.err" &
wpid=$!
wait_for "$TMP/cancel.started" 60
run "$BUS" jobs cancel "$id"
expect_status 0 "cancel a running job"
expect_out "^job $id: cancel requested" "the cancel of a running job is a request"
n=0
while [ $n -lt 300 ]; do
	"$BUS" --json jobs show "$id" 2>/dev/null | grep -q '"state":"cancelled"' && break
	sleep 0.1
	n=$((n + 1))
done
run "$BUS" --json jobs show "$id"
expect_out '"state":"cancelled".*"error":"cancelled by bus_job_cancel while it was running"' \
	"the running job ends cancelled, saying why"
kill -TERM $wpid
wait $wpid
status=$?
expect_status 0 "the worker stops after the cancel"
pid=$(cat "$TMP/cancel.pid" 2>/dev/null)
if [ -n "$pid" ] && ! alive "$pid"; then
	ok "the cancelled command was killed"
else
	fail "the cancelled command '$pid' still runs"
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
fi

sql_server_errors "Access denied" "cannot connect" "bad URL: unknown option 'nosuchoption'"
cli_done
