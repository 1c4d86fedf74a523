#!/usr/bin/env bash
# A throwaway MariaDB server for the test suite, as root, without systemd.
#
#   scripts/mariadb.sh start DIR [PORT]   prints the test URL on stdout
#   scripts/mariadb.sh stop DIR
#   scripts/mariadb.sh restart DIR [PORT] (the fault tests restart it)
#
# The server listens on 127.0.0.1 only. It creates database bus_test and a
# user whose password needs percent-encoding, so the URL parser is tested
# on every run.
set -euo pipefail

cmd=${1:?usage: mariadb.sh start|stop|restart DIR [PORT]}
dir=${2:?usage: mariadb.sh start|stop|restart DIR [PORT]}
port=${3:-3307}
user=bus
password='p@ss:word'
url_password='p%40ss%3Aword'
extra=${BUS_MARIADB_OPTS:-}

admin() { mariadb-admin --no-defaults --socket="$dir/sock" -uroot "$@"; }

wait_ready() {
	for _ in $(seq 1 150); do
		if admin ping >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "mariadb.sh: the server in $dir did not come up; its log:" >&2
	tail -n 30 "$dir/log" >&2 || true
	return 1
}

run_server() {
	# shellcheck disable=SC2086
	mariadbd --no-defaults --user=root --datadir="$dir/data" \
		--socket="$dir/sock" --port="$port" --bind-address=127.0.0.1 \
		--skip-name-resolve --character-set-server=utf8mb4 \
		--collation-server=utf8mb4_general_ci --pid-file="$dir/pid" \
		--log-error="$dir/log" --innodb-buffer-pool-size=256M \
		--max-connections=500 $extra 2>>"$dir/log" &
	wait_ready
}

stop_server() {
	local pid
	pid=$(cat "$dir/pid" 2>/dev/null) || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	admin shutdown >/dev/null 2>&1 || kill "$pid"
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
}

case "$cmd" in
start)
	mkdir -p "$dir"
	if [ ! -d "$dir/data/mysql" ]; then
		mariadb-install-db --no-defaults --user=root --datadir="$dir/data" \
			--auth-root-authentication-method=normal --skip-test-db \
			--skip-name-resolve >"$dir/install.log" 2>&1
	fi
	run_server >&2
	mariadb --no-defaults --socket="$dir/sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS bus_test CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL ON bus_test.* TO '$user'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
	echo "mysql://$user:$url_password@127.0.0.1:$port/bus_test"
	;;
stop)
	stop_server
	;;
restart)
	stop_server
	run_server >&2
	;;
*)
	echo "mariadb.sh: unknown command '$cmd'" >&2
	exit 2
	;;
esac
