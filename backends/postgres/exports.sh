#!/bin/sh
# A test: postgres.so exports bus_backend_entry and no other symbol (the
# core finds it by that name; anything else could clash with the
# application's or another plug-in's symbols).
set -u
so=.libs/postgres.so
if [ ! -f "$so" ]; then
	echo "exports: $so not built" >&2
	exit 99
fi
if ! command -v nm >/dev/null 2>&1; then
	echo "exports: nm not found: skipped"
	exit 77
fi
got=$(nm -D --defined-only "$so" | awk 'NF >= 2 { print $NF }' | sed 's/@.*//' | sort -u)
if [ "$got" = bus_backend_entry ]; then
	echo "exports: postgres.so exports only bus_backend_entry"
	exit 0
fi
echo "FAIL: postgres.so exports:" >&2
printf '  %s\n' $got >&2
exit 1
