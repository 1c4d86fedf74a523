#!/bin/sh
# `make install DESTDIR=...` puts every file where the README, libbus.pc
# and the BUS_ESCHEMA message say: the library and headers, libbus.pc with
# pkglibdir and migrationdir, the store plug-ins in $(pkglibdir), the
# schema in $(pkgdatadir)/migration (mysql.sql, postgres.sql and their
# NNN_*.sql steps, the same bytes as the source tree's), the examples in $(docdir)/examples.
set -eu
: "${top_srcdir:?}" "${top_builddir:?}"
dest=$(mktemp -d "${TMPDIR:-/tmp}/libbus-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

if ! make -s -C "$top_builddir" install DESTDIR="$dest" >"$dest/install.log" 2>&1; then
	echo "FAIL: make install DESTDIR=$dest"
	tail -n 30 "$dest/install.log"
	exit 1
fi
eval "$(make -s --no-print-directory -C "$top_builddir" print-install-dirs | grep '^[a-z]*=')"
: "${libdir:?}" "${pkglibdir:?}" "${pkgdatadir:?}" "${docdir:?}" "${includedir:?}"

# The tool and the man pages, with an alias page for each function that a
# grouped page documents.
: "${bindir:?}" "${mandir:?}"
for f in "$bindir/bus" "$mandir/man1/bus.1" "$mandir/man3/libbus.3" \
	"$mandir/man3/bus_job_get.3" "$mandir/man3/bus_metrics_render.3"; do
	[ -f "$dest$f" ] || bad "$f is not installed"
done
if [ "$(cat "$dest$mandir/man3/bus_job_retry.3" 2>/dev/null)" != ".so man3/bus_job_get.3" ]; then
	bad "$mandir/man3/bus_job_retry.3 is not an alias of bus_job_get.3"
fi

for f in "$libdir/libbus.so" "$includedir/bus/bus.h" \
	"$includedir/bus/worker.h" "$libdir/pkgconfig/libbus.pc" \
	"$docdir/examples/quickstart.c" "$pkgdatadir/migration/mysql.sql" \
	"$pkgdatadir/migration/postgres.sql"; do
	[ -f "$dest$f" ] || bad "$f is not installed"
done

# Every schema file of the source tree, installed under the same name.
for src in "$top_srcdir"/migration/*.sql "$top_srcdir"/migration/*/*.sql; do
	[ -f "$src" ] || continue
	rel=${src#"$top_srcdir"/migration/}
	inst=$dest$pkgdatadir/migration/$rel
	if [ ! -f "$inst" ]; then
		bad "migration/$rel is not installed as $pkgdatadir/migration/$rel"
	elif ! cmp -s "$src" "$inst"; then
		bad "$pkgdatadir/migration/$rel differs from migration/$rel"
	fi
done
[ -f "$dest$pkgdatadir/migration/mysql/001_init.sql" ] ||
	bad "the steps are not in $pkgdatadir/migration/mysql/"
[ -f "$dest$pkgdatadir/migration/postgres/001_init.sql" ] ||
	bad "the steps are not in $pkgdatadir/migration/postgres/"

pc=$dest$libdir/pkgconfig/libbus.pc
if [ -f "$pc" ]; then
	# The .pc names the real prefix, not DESTDIR.
	got=$(pkg-config --variable=pkglibdir "$pc")
	[ "$got" = "$pkglibdir" ] || bad "libbus.pc pkglibdir is '$got', expected '$pkglibdir'"
	got=$(pkg-config --variable=migrationdir "$pc")
	[ "$got" = "$pkgdatadir/migration" ] ||
		bad "libbus.pc migrationdir is '$got', expected '$pkgdatadir/migration'"
fi

# The MySQL plug-in, when built, is where bus_open loads it from, and its
# BUS_ESCHEMA message names the installed schema.
if [ -f "$top_builddir/backends/mysql/.libs/mysql.so" ]; then
	so=$dest$pkglibdir/mysql.so
	if [ ! -f "$so" ]; then
		bad "mysql.so is not installed in $pkglibdir"
	elif ! grep -q -F "$pkgdatadir/migration/mysql.sql" "$so"; then
		bad "mysql.so's BUS_ESCHEMA message does not name $pkgdatadir/migration/mysql.sql"
	fi
fi

# The same for the PostgreSQL plug-in.
if [ -f "$top_builddir/backends/postgres/.libs/postgres.so" ]; then
	so=$dest$pkglibdir/postgres.so
	if [ ! -f "$so" ]; then
		bad "postgres.so is not installed in $pkglibdir"
	elif ! grep -q -F "$pkgdatadir/migration/postgres.sql" "$so"; then
		bad "postgres.so's BUS_ESCHEMA message does not name $pkgdatadir/migration/postgres.sql"
	fi
fi

if [ $fail -eq 0 ]; then
	echo "PASS: make install DESTDIR=... installed:"
	(cd "$dest" && find . -type f -not -name install.log | sort | sed 's/^\.//')
fi
exit $fail
