# Helpers for the tests of the `bus` tool (sourced, POSIX sh).
#
# Every check prints "ok - what" or "FAIL - what" with the evidence; the
# script's exit status is 1 when any check failed (cli_done).
#
# Set by the caller: BUS (the tool), PROMCHECK (the checker), TMP (a
# scratch directory of its own). Outputs of the last `run` are in
# $TMP/out and $TMP/err, its status in $status.

failures=0
checks=0
secrets=""

ok() { checks=$((checks + 1)); echo "ok - $*"; }
fail() {
	checks=$((checks + 1))
	failures=$((failures + 1))
	echo "FAIL - $*"
	if [ -f "$TMP/out" ]; then
		echo "  stdout:"
		sed 's/^/    /' "$TMP/out" | tail -n 20
	fi
	if [ -f "$TMP/err" ]; then
		echo "  stderr:"
		sed 's/^/    /' "$TMP/err" | tail -n 20
	fi
}

# Strings that must never be printed (a password, raw and URL-encoded).
add_secret() { secrets="$secrets
$1"; }

# Fails when a secret is in the last run's output.
check_secrets() {
	printf '%s\n' "$secrets" | while IFS= read -r s; do
		[ -z "$s" ] && continue
		if grep -qF -- "$s" "$TMP/out" "$TMP/err"; then
			echo "FAIL - a password was printed by: $1"
			exit 1
		fi
	done || { failures=$((failures + 1)); return 1; }
}

# run CMD...: runs it, keeps its output and status.
run() {
	"$@" >"$TMP/out" 2>"$TMP/err"
	status=$?
	check_secrets "$*"
	cat "$TMP/out" "$TMP/err" >>"$TMP/all.log"
}

# batch LINES: runs the lines (one command each) in one `bus batch`.
batch() {
	printf '%s\n' "$1" >"$TMP/batch.in"
	"$BUS" batch --keep-going <"$TMP/batch.in" >"$TMP/out" 2>"$TMP/err"
	status=$?
	check_secrets "batch: $1"
	cat "$TMP/out" "$TMP/err" >>"$TMP/all.log"
}

expect_status() { # N what
	if [ "$status" -eq "$1" ]; then ok "$2 (exit $1)"; else
		fail "$2: exit status $status, expected $1"; fi
}
expect_out() { # PATTERN what  (grep -E on stdout)
	if grep -qE -- "$1" "$TMP/out"; then ok "$2"; else
		fail "$2: stdout lacks /$1/"; fi
}
expect_no_out() {
	if grep -qE -- "$1" "$TMP/out"; then fail "$2: stdout has /$1/"; else
		ok "$2"; fi
}
expect_err() {
	if grep -qE -- "$1" "$TMP/err"; then ok "$2"; else
		fail "$2: stderr lacks /$1/"; fi
}
# The last run printed exactly one line on stderr.
expect_one_err_line() {
	n=$(wc -l <"$TMP/err")
	if [ "$n" -eq 1 ]; then ok "$1: one line on stderr"; else
		fail "$1: $n lines on stderr, expected one"; fi
}

# The id of the job that the last enqueue printed ("job N inserted").
last_id() { sed -n 's/^job \([0-9][0-9]*\) [a-z]*$/\1/p' "$TMP/out" | tail -n 1; }

# wait_for FILE [SECONDS]: polls until the file exists (a liveness bound,
# not a timing assertion).
wait_for() {
	n=0
	limit=$((${2:-30} * 10))
	while [ ! -e "$1" ] && [ $n -lt $limit ]; do
		sleep 0.1
		n=$((n + 1))
	done
	[ -e "$1" ]
}

cli_done() {
	echo "$checks checks, $failures failed"
	[ "$failures" -eq 0 ]
}
