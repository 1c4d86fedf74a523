#!/bin/sh
# Checks that libbus.so exports exactly the functions its public headers
# declare with BUS_EXTERN (nothing more, nothing missing), and only names
# that start with "bus_".
#
# Run by `make check` with top_srcdir and top_builddir set (see Makefile.am);
# by hand:  top_srcdir=. top_builddir=. sh tests/exports.sh
set -u

top_srcdir=${top_srcdir:-..}
top_builddir=${top_builddir:-..}
lib=$top_builddir/lib/.libs/libbus.so
headers=$(ls "$top_srcdir"/include/bus/*.h 2>/dev/null)

if [ -z "$headers" ]; then
	echo "exports: no headers in $top_srcdir/include/bus" >&2
	exit 99 # hard error: the test itself is broken
fi
if [ ! -f "$lib" ]; then
	echo "exports: $lib not found (shared library not built?): skipped"
	exit 77
fi
if ! command -v nm >/dev/null 2>&1; then
	echo "exports: nm not found: skipped"
	exit 77
fi

tmp=${TMPDIR:-/tmp}/bus-exports.$$
mkdir "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

# Declared: drop preprocessor lines (the BUS_EXTERN definition itself), join
# the rest into one line, strip comments, split into declarations at ';' and
# keep the name right before the first '(' of each BUS_EXTERN one.
for h in $headers; do
	grep -v '^[[:space:]]*#' "$h"
done | tr '\n' ' ' |
	sed 's:/\*[^*]*\*\**\([^/*][^*]*\*\**\)*/: :g' |
	tr ';' '\n' |
	sed -n 's/.*BUS_EXTERN\([^(]*\)(.*/\1/p' |
	sed 's/.*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\)[[:space:]]*$/\1/' |
	sort -u >"$tmp/declared"

# Exported: every defined dynamic symbol, of any type.
if ! nm -D --defined-only "$lib" >"$tmp/nm"; then
	echo "exports: nm -D --defined-only $lib failed" >&2
	exit 99
fi
awk 'NF >= 2 { print $NF }' "$tmp/nm" | sed 's/@.*//' | sort -u >"$tmp/exported"

ndeclared=$(wc -l <"$tmp/declared")
nexported=$(wc -l <"$tmp/exported")
echo "exports: $ndeclared functions declared with BUS_EXTERN, $nexported symbols exported by $lib"

status=0
if [ "$ndeclared" -eq 0 ]; then
	echo "FAIL: found no BUS_EXTERN declarations in $headers" >&2
	status=1
fi

extra=$(comm -13 "$tmp/declared" "$tmp/exported")
if [ -n "$extra" ]; then
	echo "FAIL: exported but not declared with BUS_EXTERN in include/bus/*.h:" >&2
	printf '  %s\n' $extra >&2
	status=1
fi

missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -n "$missing" ]; then
	echo "FAIL: declared with BUS_EXTERN but not exported (not defined, or hidden):" >&2
	printf '  %s\n' $missing >&2
	status=1
fi

badprefix=$(grep -v '^bus_' "$tmp/exported")
internal=$(grep '^bus__' "$tmp/exported")
if [ -n "$badprefix" ]; then
	echo "FAIL: exported symbols that do not start with bus_:" >&2
	printf '  %s\n' $badprefix >&2
	status=1
fi
if [ -n "$internal" ]; then
	echo "FAIL: internal (bus__) symbols are exported:" >&2
	printf '  %s\n' $internal >&2
	status=1
fi

[ $status -eq 0 ] && echo "exports: OK"
exit $status
