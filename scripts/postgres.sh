#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, without systemd.
#
#   scripts/postgres.sh start DIR [PORT]   prints the test URL on stdout
#   scripts/postgres.sh stop DIR
#   scripts/postgres.sh restart DIR [PORT] (the fault tests restart it)
#
# PostgreSQL refuses to run as root: run as root, the server runs as the
# user "postgres" (which the Debian package creates; set BUS_PG_USER for
# another). The server listens on 127.0.0.1 only, with its socket in DIR.
# It creates database bus_test and a user whose password needs
# percent-encoding, so the URL parser is tested on every run. fsync stays
# on, as in production.
set -euo pipefail

cmd=${1:?usage: postgres.sh start|stop|restart DIR [PORT]}
dir=${2:?usage: postgres.sh start|stop|restart DIR [PORT]}
port=${3:-5433}
bin=${BUS_PG_BIN:-/usr/lib/postgresql/15/bin}
user=bus
password='p@ss:word'
url_password='p%40ss%3Aword'

# Runs a command as the server's owner.
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "${BUS_PG_USER:-postgres}" -- "$@"
	else
		"$@"
	fi
}

pgctl() { as_owner "$bin/pg_ctl" -D "$dir/data" "$@"; }

run_server() {
	pgctl -w -t 30 -l "$dir/log" \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null ||
		{
			echo "postgres.sh: the server in $dir did not come up; its log:" >&2
			tail -n 30 "$dir/log" >&2 || true
			return 1
		}
}

stop_server() {
	[ -f "$dir/data/postmaster.pid" ] || return 0
	pgctl -w -t 30 -m fast stop >/dev/null 2>&1 ||
		pgctl -m immediate stop >/dev/null 2>&1 || true
}

case "$cmd" in
start)
	mkdir -p "$dir"
	if [ "$(id -u)" -eq 0 ]; then chown "${BUS_PG_USER:-postgres}" "$dir"; fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_owner "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 \
			--locale=C --auth-local=trust --auth-host=scram-sha-256 \
			>"$dir/initdb.log" 2>&1 || {
			cat "$dir/initdb.log" >&2
			exit 1
		}
		cat >>"$dir/data/postgresql.conf" <<CONF
max_connections = 300
shared_buffers = 128MB
unix_socket_directories = '$dir'
CONF
	fi
	run_server >&2
	as_owner "$bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres \
		-v ON_ERROR_STOP=1 >&2 <<SQL
SELECT 'CREATE ROLE $user LOGIN' WHERE NOT EXISTS
	(SELECT 1 FROM pg_roles WHERE rolname = '$user') \gexec
ALTER ROLE $user PASSWORD '$password';
SELECT 'CREATE DATABASE bus_test OWNER $user' WHERE NOT EXISTS
	(SELECT 1 FROM pg_database WHERE datname = 'bus_test') \gexec
SQL
	echo "postgres://$user:$url_password@127.0.0.1:$port/bus_test"
	;;
stop)
	stop_server
	;;
restart)
	stop_server
	run_server >&2
	;;
*)
	echo "postgres.sh: unknown command '$cmd'" >&2
	exit 2
	;;
esac
