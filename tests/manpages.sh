#!/bin/sh
# Checks that every function libbus.so exports is named in the NAME section
# of a man3 page under doc/ (grouped pages name several), that every name
# there is an exported function, and that every page is installed (listed
# in the top Makefile.am). Also used by `make install` to make the alias
# pages: `manpages.sh --aliases` prints "NAME PAGE" for each name that is
# not its page's own.
#
# Run by `make check` with top_srcdir and top_builddir set; by hand:
#   top_srcdir=. top_builddir=. sh tests/manpages.sh
set -u
top_srcdir=${top_srcdir:-..}
top_builddir=${top_builddir:-..}
pages=$(ls "$top_srcdir"/doc/*.3 "$top_srcdir"/doc/man3/*.3 2>/dev/null)
if [ -z "$pages" ]; then
	echo "manpages: no man3 pages in $top_srcdir/doc" >&2
	exit 99
fi

# The names of a page: the text between ".SH NAME" and " \-", split at
# commas.
names_of() {
	awk '/^\.SH /{ in_name = ($2 == "NAME"); next }
	     in_name { line = line " " $0 }
	     END { sub(/ \\-.*/, "", line); gsub(/,/, " ", line); print line }' "$1" |
		tr ' ' '\n' | sed '/^$/d'
}

if [ "${1:-}" = --aliases ]; then
	for p in $pages; do
		page=$(basename "$p" .3)
		for n in $(names_of "$p"); do
			[ "$n" != "$page" ] && echo "$n $page"
		done
	done
	exit 0
fi

lib=$top_builddir/lib/.libs/libbus.so
if [ ! -f "$lib" ]; then
	echo "manpages: $lib not found (shared library not built?): skipped"
	exit 77
fi
tmp=${TMPDIR:-/tmp}/bus-manpages.$$
mkdir "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

for p in $pages; do
	names_of "$p"
done | sort -u >"$tmp/named"
nm -D --defined-only "$lib" | awk 'NF >= 2 { print $NF }' | sed 's/@.*//' |
	grep '^bus_' | sort -u >"$tmp/exported"

status=0
missing=$(comm -23 "$tmp/exported" "$tmp/named")
for s in $missing; do
	echo "FAIL: exported function $s is named in no man3 page's NAME section (doc/man3/*.3)" >&2
	status=1
done
stale=$(comm -13 "$tmp/exported" "$tmp/named" | grep -v '^libbus$')
for s in $stale; do
	echo "FAIL: a man3 page names $s, which libbus.so does not export" >&2
	status=1
done
for p in $pages; do
	rel=${p#"$top_srcdir"/}
	if ! grep -q "$rel" "$top_srcdir/Makefile.am"; then
		echo "FAIL: $rel is not installed (add it to dist_man3_MANS in Makefile.am)" >&2
		status=1
	fi
done
n=$(wc -l <"$tmp/exported")
[ $status -eq 0 ] && echo "manpages: all $n exported functions are documented: OK"
exit $status
