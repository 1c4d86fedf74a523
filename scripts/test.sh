#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what is
# missing, builds with warnings as errors, starts throwaway MariaDB and
# PostgreSQL servers on 127.0.0.1, runs every test against memory: and the
# real servers, stops the servers (also when tests fail), and ends with the
# line "N passed, N failed".
# Exit status non-zero on any failure.
#
# usage: scripts/test.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

packages=(build-essential autoconf automake libtool pkg-config check
	libcjson-dev libbsd-dev libmd-dev libmariadb-dev libpq-dev
	mariadb-server mariadb-client curl postgresql-15 postgresql-client-15
	pgbouncer)

install_missing() {
	local missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "== installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

[ "${1:-}" = --no-install ] || install_missing

echo "== build"
./autogen.sh >/dev/null
./configure --enable-werror >/dev/null
make -j2 >/dev/null

# Throwaway MariaDB and PostgreSQL servers for the SQL stores' tests. CI must have it; on a
# developer's machine without the server, the MySQL suites skip.
db_dir=$(mktemp -d /tmp/libbus-mariadb.XXXXXX)
db_port=${BUS_TEST_MYSQL_PORT:-3307}
pg_dir=$(mktemp -d /tmp/libbus-postgres.XXXXXX)
pg_port=${BUS_TEST_POSTGRES_PORT:-5433}
stop_db() {
	scripts/mariadb.sh stop "$db_dir" || true
	scripts/postgres.sh stop "$pg_dir" || true
	rm -rf "$db_dir" "$pg_dir"
}
trap stop_db EXIT
if command -v mariadbd >/dev/null 2>&1; then
	echo "== starting MariaDB on 127.0.0.1:$db_port"
	if url=$(scripts/mariadb.sh start "$db_dir" "$db_port"); then
		export BUS_TEST_MYSQL_URL="$url" BUS_TEST_MYSQL_DIR="$db_dir" \
			BUS_TEST_MYSQL_PORT="$db_port"
	elif [ "${CI:-}" = true ]; then
		echo "CI: the MariaDB server did not start" >&2
		exit 1
	fi
elif [ "${CI:-}" = true ]; then
	echo "CI: mariadbd is not installed" >&2
	exit 1
fi

# PostgreSQL runs as the user "postgres" (see scripts/postgres.sh).
if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
	echo "== starting PostgreSQL on 127.0.0.1:$pg_port"
	if url=$(scripts/postgres.sh start "$pg_dir" "$pg_port"); then
		export BUS_TEST_POSTGRES_URL="$url" BUS_TEST_POSTGRES_DIR="$pg_dir" \
			BUS_TEST_POSTGRES_PORT="$pg_port"
	elif [ "${CI:-}" = true ]; then
		echo "CI: the PostgreSQL server did not start" >&2
		exit 1
	fi
elif [ "${CI:-}" = true ]; then
	echo "CI: postgresql-15 is not installed" >&2
	exit 1
fi

echo "== test"
status=0
make -j2 check >/dev/null 2>&1 || status=$?

# The same suites again, built with AddressSanitizer and UBSan, from the
# distribution tree (so that it also checks nothing is missing from it), on
# memory:, MariaDB and PostgreSQL: every suite, the contract cases that
# fork process-isolation children on the SQL stores included (they once
# hung under GCC 12's ASan, which does not lock its allocator around fork;
# the children now come from a single-threaded fork server, lib/zygote.h),
# and the fault tests through the fault proxy.
echo "== test (AddressSanitizer and UBSan build)"
asan_dir=$top/build-asan
dist=libbus-$(sed -n 's/^PACKAGE_VERSION = //p' Makefile)
rm -rf "$asan_dir" "$dist"
mkdir -p "$asan_dir"
make distdir >/dev/null
mv "$dist" "$asan_dir/src"
(
	cd "$asan_dir/src"
	./configure --enable-werror --enable-sanitizers >/dev/null
	make -j2 >/dev/null
	env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		make -j2 check >/dev/null 2>&1
) || status=1
# Show what failed, with the end of each failing test's log.
for trs in $(find . -name '*.trs' -not -path './libbus-[0-9]*' | sort); do
	if ! grep -q '^:test-result: \(PASS\|SKIP\)' "$trs"; then
		echo "---- ${trs%.trs}.log"
		tail -n 40 "${trs%.trs}.log"
	fi
done
find . -name '*.trs' -not -path './libbus-[0-9]*' | sort | while read -r trs; do
	printf '%s: %s\n' "$(sed -n 's/^:test-result: //p' "$trs")" "${trs%.trs}"
done
scripts/summary.sh "$top" || status=1
exit $status
