#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what is
# missing, builds with warnings as errors, runs every test, and ends with the
# line "N passed, N failed". Exit status non-zero on any failure.
#
# usage: scripts/test.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

packages=(build-essential autoconf automake libtool pkg-config check
	libcjson-dev libbsd-dev libmd-dev libmariadb-dev libpq-dev valgrind)

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
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
}

[ "${1:-}" = --no-install ] || install_missing

echo "== build"
./autogen.sh >/dev/null
./configure --enable-werror >/dev/null
make -j2 >/dev/null

echo "== test"
status=0
make -j2 check >/dev/null 2>&1 || status=$?
# Show what failed, with the log of each failing test.
for trs in $(find tests -name '*.trs' | sort); do
	if ! grep -q '^:test-result: PASS\|^:test-result: SKIP' "$trs"; then
		echo "---- ${trs%.trs}.log"
		tail -n 40 "${trs%.trs}.log"
	fi
done
find tests -name '*.trs' | sort | while read -r trs; do
	printf '%s: %s\n' "$(sed -n 's/^:test-result: //p' "$trs")" "${trs%.trs}"
done
scripts/summary.sh "$top" || status=1
exit $status
