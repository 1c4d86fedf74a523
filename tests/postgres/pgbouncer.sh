#!/bin/sh
# The producer side of the PostgreSQL store through PgBouncer in
# transaction mode (Debian's pgbouncer): starts a pooler in front of the
# test server, with fewer server connections than clients so that
# transactions of one client land on different server connections, and
# runs via_pooler through it with ?prepare=off (PgBouncer before 1.21
# keeps no prepared statements in transaction mode). Workers' listeners
# need a direct connection (LISTEN is session state) and are not run here.
#
# Skipped without the test server or without pgbouncer, failed so in CI.
skip() {
	if [ "${CI:-}" = true ]; then
		echo "CI: $1"
		exit 1
	fi
	echo "$1: skipping the PgBouncer test"
	exit 77
}
[ -n "${BUS_TEST_POSTGRES_URL:-}" ] || skip "BUS_TEST_POSTGRES_URL is not set"
bouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$bouncer" ] || skip "pgbouncer is not installed"
pg_port=${BUS_TEST_POSTGRES_PORT:-5433}
port=${BUS_TEST_PGBOUNCER_PORT:-$((pg_port + 1000))}
dir=$(mktemp -d /tmp/libbus-pgbouncer.XXXXXX)
owner=${BUS_PG_USER:-postgres}
[ "$(id -u)" -eq 0 ] && chown "$owner" "$dir"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
bus_test = host=127.0.0.1 port=$pg_port dbname=bus_test

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
logfile = $dir/log
pidfile = $dir/pid
INI
printf '"bus" "p@ss:word"\n' >"$dir/userlist.txt"
chmod 644 "$dir"/*
run() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}
stop() {
	[ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null
	sleep 0.2
	rm -rf "$dir"
}
trap stop EXIT
run "$bouncer" -d "$dir/pgbouncer.ini" || { cat "$dir/log"; exit 1; }
for _ in $(seq 1 50); do
	[ -f "$dir/pid" ] && break
	sleep 0.1
done
# The test URL with the pooler's port, its own tables, no named prepared
# statements.
base=${BUS_TEST_POSTGRES_URL%%\?*}
url=$(printf '%s' "$base" | sed "s/:$pg_port\//:$port\//")
case "$url" in *":$port/"*) ;; *) echo "FAIL: cannot point $base at the pooler"; exit 1 ;; esac
BUS_BACKEND_DIR=${BUS_BACKEND_DIR:-$BUS_POSTGRES_BACKEND_DIR} \
	./postgres/via_pooler "$url?${BUS_TEST_POOLER_OPTS:-prepare=off}&table-prefix=pooler_" 6
rc=$?
[ $rc -eq 0 ] || tail -n 20 "$dir/log"
exit $rc
