#!/bin/sh
# Runs the `bus` session of README.md, exactly the lines between the
# bus-session markers, against the test MariaDB (a table prefix of its own,
# so the ids are 1 and 2), with the built tool first on PATH, and checks
# what the README says they do.
if [ -z "${BUS_TEST_MYSQL_URL:-}" ]; then
	if [ "${CI:-}" = true ]; then
		echo "CI: BUS_TEST_MYSQL_URL is not set: the README session must run"
		exit 1
	fi
	echo "BUS_TEST_MYSQL_URL is not set: skipping the README session"
	exit 77
fi
. "${top_srcdir:-..}/tests/tools/cli_setup.sh"
export BUS_BACKEND_DIR=$BUS_MYSQL_BACKEND_DIR
STORE_URL=$BUS_TEST_MYSQL_URL
use_store readme
PATH=$top_builddir_abs/tools:$PATH
export PATH

# The lines of the fenced block between the markers, fences dropped.
sed -n '/^<!-- bus-session-begin -->$/,/^<!-- bus-session-end -->$/p' \
	"$top_srcdir_abs/README.md" | sed '1d;$d' | sed '/^```/d' >"$TMP/session.sh"
n=$(wc -l <"$TMP/session.sh")
if [ "$n" -ge 5 ]; then ok "README.md has a session of $n lines"; else
	fail "README.md session markers: found $n lines"; fi
for cmd in 'bus migrate' 'bus enqueue' 'bus work .*--exec' 'bus jobs list' 'bus jobs retry'; do
	if grep -q "^$cmd" "$TMP/session.sh"; then ok "the session runs $cmd"; else
		fail "the session lacks $cmd"; fi
done
sed 's/^/  | /' "$TMP/session.sh"

run sh -e "$TMP/session.sh"
expect_status 0 "the README session runs"
expect_out '^the schema is current$' "bus migrate"
expect_out '^job 1 inserted$' "first enqueue"
expect_out '^job 2 inserted$' "second enqueue"
expect_out '^hello, Ada$' "the command greets Ada"
expect_out '^1 +completed +default +greet +1/3 ' "jobs list: job 1 completed"
expect_out '^2 +retryable +default +greet +1/3 .* exit status 1: I only greet Ada$' \
	"jobs list: job 2 retryable with the command's stderr"
expect_out '^1 jobs retried$' "the failed job is retried"
sed 's/^/  > /' "$TMP/out"
run bus --json jobs show 2
expect_out '"state":"available"' "job 2 is available again"
run bus --json jobs show 1
expect_out '"state":"completed"' "job 1 stays completed"
cli_done
