# The tests of the `bus` tool that run against any store (sourced after
# cli_lib.sh by cli_memory.sh, cli_mysql.sh, cli_postgres.sh).
#
# Each scenario runs as one `bus batch`, so that it also works on memory:
# (whose jobs live as long as the process). use_store NAME points BUS_URL at
# a fresh store for the scenario: memory:, or for a SQL store its own table
# prefix, so job ids start at 1 and scenarios cannot see each other's jobs.
# The caller sets STORE_URL ("memory:" or the server's URL) and RUN_ID.

use_store() {
	case $STORE_URL in
	memory:*) BUS_URL=memory: ;;
	*\?*) BUS_URL="$STORE_URL&table-prefix=t${RUN_ID}$1_" ;;
	*) BUS_URL="$STORE_URL?table-prefix=t${RUN_ID}$1_" ;;
	esac
	export BUS_URL
}

# --- every admin subcommand, text and --json -------------------------------
scenario_admin() {
	use_store adm
	batch "migrate
migrate --check
migrate --check --json
enqueue mail.send '{\"to\":\"ada\"}' --queue mail --priority 5 --max-attempts 4 --tags '[\"t1\"]' --meta '{\"k\":\"v\"}'
enqueue mail.send '{\"to\":\"bob\"}' --queue mail --run-in 1h --timeout 90s
enqueue report '{\"month\":11}' --unique-by payload
enqueue report '{\"month\":11}' --unique-by payload --json
jobs list
jobs list --state scheduled --json
jobs list --queue mail --kind mail.send --limit 1 --json
jobs show 1
jobs show 2 --json
queues
queues pause mail
queues --json
stats
stats --json
queues resume mail --json
queues --json"
	expect_status 0 "admin batch"
	expect_out '^the schema is current$' "migrate"
	expect_out '^\{"current":true\}$' "migrate --check --json"
	expect_out '^job 1 inserted$' "enqueue prints id and status"
	expect_out '^\{"id":3,"status":"duplicate"\}$' "unique enqueue: duplicate"
	expect_out '^1 +available +mail +mail.send +0/4 +5 ' "jobs list: a row"
	expect_out '^3 +available +default +report ' "jobs list: the unique job"
	expect_out '^\[\{"id":2,.*"state":"scheduled".*"timeout_ms":90000' \
		"jobs list --state scheduled --json"
	expect_out '^\[\{"id":1,"kind":"mail.send".*\}\]$' \
		"jobs list --queue --kind --limit 1 --json"
	expect_no_out '^\[\{"id":1,"kind":"mail.send".*\},\{"id":' \
		"jobs list --limit 1: one job"
	expect_out '^state +available$' "jobs show: state by name"
	expect_out '^attempt +0 of 4$' "jobs show: attempts"
	expect_out '^payload +\{"to":"ada"\}$' "jobs show: payload"
	expect_out '^tags +\["t1"\]$' "jobs show: tags"
	expect_out '^errors +0$' "jobs show: errors"
	expect_out '"meta":\{[^}]*"k":"v"' "jobs show --json: meta"
	expect_out '^\{"id":2,.*"unique_key":null' "jobs show --json: all columns"
	expect_out '^mail +no +1 +1 +0 +0 +0 +0 +0$' "queues: counts per state"
	expect_out '^queue mail paused$' "queues pause"
	expect_out '^\[\{"queue":"default","paused":false.*\{"queue":"mail","paused":true,"counts":\{"available":1,"scheduled":1' \
		"queues --json: paused flag"
	expect_out '^available +2$' "stats: available"
	expect_out '^paused queues +1$' "stats: paused queues"
	expect_out '^\{"states":\{"available":2,"scheduled":1,.*"total":3,"queues":2,"paused_queues":1\}$' \
		"stats --json"
	expect_out '^\{"resumed":\["mail"\]\}$' "queues resume --json"
	expect_out '^\[.*\{"queue":"mail","paused":false' "resumed queue"

	use_store unq
	batch "migrate
enqueue u '{\"a\":1,\"b\":2,\"c\":3}' --unique-by payload.a,payload.b
enqueue u '{\"a\":1,\"b\":2,\"c\":9}' --unique-by payload.a,payload.b
enqueue u '{\"a\":1,\"b\":3,\"c\":3}' --unique-by payload.a,payload.b
enqueue u '{\"a\":1}' --unique-by queue --unique-for 1h --unique-states available,scheduled,executing,retryable,completed
enqueue u '{\"a\":2}' --unique-by queue --unique-for 1h --unique-states available,scheduled,executing,retryable,completed"
	expect_status 0 "unique batch"
	expect_out '^job 1 inserted$' "unique by two payload keys: first"
	expect_out '^job 1 duplicate$' "same keys, another payload: duplicate"
	# Ids after a duplicate differ by store (MySQL spends one on it).
	sed -n 4,6p "$TMP/out" >"$TMP/unq"
	if awk 'NR == 1 { ok = $3 == "inserted" && $2 != 1 }
		NR == 2 { id = $2; ok = ok && $3 == "inserted" }
		NR == 3 { ok = ok && $3 == "duplicate" && $2 == id }
		END { exit !(ok && NR == 3) }' "$TMP/unq"; then
		ok "another key value: a new job; unique by queue for 1h: a duplicate"
	else
		fail "unique by another key, and by queue for 1h: $(cat "$TMP/unq")"
	fi

	use_store act
	batch "migrate
enqueue a '{}'
enqueue a '{}'
enqueue a '{}'
jobs cancel 1
jobs show 1 --json
jobs retry 1
jobs show 1 --json
jobs cancel 2 3
jobs delete 2
jobs list --json
jobs retry --all --state cancelled --json
jobs cancel --all --state available
jobs delete --all --state cancelled --kind a
stats --json"
	expect_status 0 "cancel/retry/delete batch"
	expect_out '^job 1 cancelled$' "jobs cancel"
	expect_out '^\{"id":1,.*"state":"cancelled".*"finished_at":"20' \
		"cancelled: finished_at set"
	expect_out '^job 1 retried$' "jobs retry"
	expect_out '^\{"id":1,.*"state":"available".*"finished_at":null' \
		"retried: available again"
	expect_out '^job 3 cancelled$' "jobs cancel ID ID"
	expect_out '^job 2 deleted$' "jobs delete"
	expect_out '^\[\{"id":1,.*\},\{"id":3,' "deleted job gone"
	expect_no_out '"id":2,' "job 2 is not listed"
	expect_out '^\{"retried":1,"skipped":0\}$' "jobs retry --all --state cancelled"
	expect_out '^2 jobs cancelled$' "jobs cancel --all --state available"
	expect_out '^2 jobs deleted$' "jobs delete --all --state cancelled --kind a"
	expect_out '"total":0,' "all deleted"

	use_store prn
	batch "migrate
enqueue p '{}'
enqueue p '{}'
jobs cancel 1
prune --older-than 7d
prune --older-than 0s --json
jobs list --json"
	expect_status 0 "prune batch"
	expect_out '^0 finished jobs deleted$' "prune --older-than 7d keeps a fresh job"
	expect_out '^\{"deleted":1\}$' "prune --older-than 0s deletes it"
	expect_out '^\[\{"id":2,' "the unfinished job stays"
	expect_no_out '^\[\{"id":2,.*\},\{"id":' "only the unfinished job stays"
}

# --- errors: one clear line, a distinct status ------------------------------
scenario_errors() {
	use_store err
	batch "migrate
jobs show 99"
	expect_status 6 "jobs show of an unknown id"
	expect_err '^bus: no job with id 99$' "unknown id message"
	expect_one_err_line "unknown id"
	for verb in retry cancel delete; do
		batch "migrate
jobs $verb 42"
		expect_status 6 "jobs $verb of an unknown id"
	done
	batch "migrate
enqueue k '{\"a\":'"
	expect_status 7 "bad JSON payload"
	expect_err '^bus: the payload is not valid JSON \(at byte [0-9]+\)$' \
		"bad JSON message"
	expect_one_err_line "bad JSON"
	batch "enqueue k '{}' --meta '[1'"
	expect_status 7 "bad JSON in --meta"
	batch "migrate
enqueue k '{}'
jobs cancel 1
jobs cancel 1"
	expect_status 8 "cancel a finished job"
	expect_err 'cannot cancel job 1' "state message"
	batch "frobnicate"
	expect_status 2 "unknown command in a batch"
	run "$BUS" frobnicate
	expect_status 2 "unknown command"
	expect_err "^bus: unknown command 'frobnicate'" "unknown command message"
	expect_one_err_line "unknown command"
	run "$BUS" jobs list --colour
	expect_status 2 "unknown option"
	expect_err "^bus: unknown option '--colour' for 'bus jobs list'" \
		"unknown option message"
	expect_one_err_line "unknown option"
	run "$BUS" jobs frob
	expect_status 2 "unknown jobs subcommand"
	run "$BUS" prune --older-than 7 days
	expect_status 2 "prune: stray argument"
	run "$BUS" prune --older-than soon
	expect_status 2 "prune: bad duration"
	expect_err "not a duration" "bad duration message"
	run "$BUS" jobs retry --all
	expect_status 2 "--all without --state"
	run "$BUS" jobs list --state sleeping
	expect_status 2 "unknown state"
	run "$BUS" work
	expect_status 2 "work without --exec"
	run "$BUS" enqueue k '{}' --unique-by payload,bogus
	expect_status 2 "unknown --unique-by field"
	expect_err "^bus: --unique-by: 'bogus' is not one of" "unknown field named"
	run "$BUS" enqueue k '{}' --priority 99999
	expect_status 2 "priority out of range"
	run "$BUS" --url 'nosuchstore://u:s3cr3t@127.0.0.1/x' stats
	expect_status 3 "URL of an unknown store"
	expect_err "^bus: cannot open the store: no store for URL scheme 'nosuchstore'" \
		"unknown store message"
	expect_one_err_line "unknown store"
	run "$BUS" --url 'no-scheme-here' stats
	expect_status 3 "URL without a scheme"
	run "$BUS" 'nosuchstore://u:s3cr3t@127.0.0.1/x' stats
	expect_status 2 "a URL given as the command"
	expect_err "nosuchstore://u:\*\*\*@127.0.0.1/x" "the URL is shown without its password"
	# The stores end the user part at the LAST '@' (an unencoded '@' in a
	# password works), so no piece of such a password may show either.
	run "$BUS" 'nosuchstore://u:pa@Zq9secret@127.0.0.1/x' stats
	expect_status 2 "a URL with an '@' in its password given as the command"
	if grep -qF "Zq9secret" "$TMP/err"; then
		fail "a piece of a password with an '@' was printed"
	else ok "no piece of a password with an '@' is printed"; fi
	expect_err "nosuchstore://u:\*\*\*@127.0.0.1/x" "the URL with an '@' in its password is masked"
	run "$BUS" --bogus='postgres://h/db?password=Zq9secret&x=1' stats
	expect_status 2 "an unknown option holding a password= option"
	if grep -qF "Zq9secret" "$TMP/err"; then
		fail "a password= option value was printed"
	else ok "a password= option value is not printed"; fi
}

# alive PID: the process exists and is not a zombie waiting to be reaped
# (a killed child of a killed shell is reparented and reaped later).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ "$state" != Z ]
}

# --- work --exec: success, failure, timeout ---------------------------------
scenario_exec() {
	use_store exe
	out="$TMP/exec"
	rm -rf "$out"
	mkdir -p "$out"
	batch "migrate
enqueue greet '{\"name\":\"Ada\"}' --queue q1 --max-attempts 2
enqueue greet '{\"name\":\"\"}' --queue q1 --max-attempts 2
work --queue q1:2 --exec 'cat >$out/payload.\$BUS_JOB_ID; env | grep ^BUS_JOB_ | sort >$out/env.\$BUS_JOB_ID; grep -q Ada $out/payload.\$BUS_JOB_ID || { echo first line >&2; echo \"no name in job \$BUS_JOB_ID attempt \$BUS_JOB_ATTEMPT\" >&2; exit 3; }' --drain
jobs show 1 --json
jobs show 2 --json
jobs retry 2
work --queue q1 --exec 'echo \"still no name\" >&2; exit 5' --drain
jobs show 2 --json
jobs retry --all --state discarded"
	expect_status 0 "exec batch"
	if [ "$(cat "$out/payload.1" 2>/dev/null)" = '{"name":"Ada"}' ]; then
		ok "the payload is on stdin"
	else
		fail "the payload is on stdin: got '$(cat "$out/payload.1" 2>/dev/null)'"
	fi
	for v in BUS_JOB_ID=1 BUS_JOB_KIND=greet BUS_JOB_HANDLER=greet \
		BUS_JOB_QUEUE=q1 BUS_JOB_ATTEMPT=1 BUS_JOB_MAX_ATTEMPTS=2; do
		if grep -qx "$v" "$out/env.1" 2>/dev/null; then ok "environment has $v"
		else fail "environment has $v: $(cat "$out/env.1" 2>/dev/null)"; fi
	done
	expect_out '^\{"id":1,.*"state":"completed",.*"attempt":1,' \
		"exit 0 completes the job"
	expect_out '^\{"id":2,.*"state":"retryable",.*"errors":\[\{"attempt":1,"at":"20[^"]*","error":"exit status 3: first line\\nno name in job 2 attempt 1"\}\]' \
		"non-zero exit: retryable, stderr's tail as the error"
	expect_out '^\{"id":2,.*"state":"discarded",.*"attempt":2,.*"error":"exit status 5: still no name"\}\]' \
		"out of attempts: discarded"
	expect_out '^1 jobs retried$' "jobs retry --all --state discarded"
	expect_err 'job 2 greet failed \(attempt 1 of 2\) in [0-9.]+s: exit status 3' \
		"the worker logs the failure"

	# Past its timeout the command's whole process group is killed.
	use_store tmo
	rm -f "$out/child.pid"
	batch "migrate
enqueue hang '{}' --timeout 1s --max-attempts 2
enqueue hang2 '{}' --max-attempts 1
work --exec 'sleep 300 & echo \$! >$out/child.pid.\$BUS_JOB_ID; echo hanging >&2; wait' --drain --timeout 2s
jobs show 1 --json
jobs show 2 --json"
	expect_status 0 "timeout batch"
	expect_out '^\{"id":1,.*"state":"retryable",.*"error":"timeout after 1s: stopped the command.s process group \(SIGTERM\): hanging"' \
		"the job's own timeout kills it: retryable"
	expect_out '^\{"id":2,.*"state":"discarded",.*"error":"timeout after 2s: stopped' \
		"work --timeout for a job without one: discarded after its one attempt"
	for id in 1 2; do
		pid=$(cat "$out/child.pid.$id" 2>/dev/null)
		if [ -n "$pid" ] && ! alive "$pid"; then
			ok "job $id: the command's background child was killed too"
		else
			fail "job $id: background child '$pid' survived the timeout"
			[ -n "$pid" ] && kill "$pid" 2>/dev/null
		fi
	done
}

# --- SIGTERM during a job: it finishes, the worker exits 0 -------------------
scenario_sigterm() {
	use_store sig
	out="$TMP/sig"
	rm -rf "$out"
	mkdir -p "$out"
	printf '%s\n' "migrate" "enqueue slow '{}'" \
		"work --grace 30s --exec 'touch $out/started; sleep 2; touch $out/finished'" \
		"jobs show 1 --json" >"$TMP/sig.in"
	"$BUS" batch <"$TMP/sig.in" >"$TMP/out" 2>"$TMP/err" &
	pid=$!
	if wait_for "$out/started" 60; then ok "the job started"; else
		fail "the job did not start"; fi
	kill -TERM $pid
	wait $pid
	status=$?
	expect_status 0 "SIGTERM: the worker stops cleanly"
	if [ -e "$out/finished" ]; then ok "SIGTERM: the running job finished"
	else fail "SIGTERM: the running job was cut short"; fi
	expect_out '^\{"id":1,.*"state":"completed"' \
		"SIGTERM: the job is completed, not given back"
	expect_err 'SIGTERM: stopping' "SIGTERM: the worker says it stops"

	# A job still running after the grace is stopped and given back.
	use_store grc
	rm -f "$out/started"
	printf '%s\n' "migrate" "enqueue slow '{}'" \
		"work --grace 200ms --exec 'touch $out/started; sleep 60'" \
		"jobs show 1 --json" >"$TMP/sig.in"
	"$BUS" batch <"$TMP/sig.in" >"$TMP/out" 2>"$TMP/err" &
	pid=$!
	wait_for "$out/started" 60
	kill -TERM $pid
	wait $pid
	status=$?
	expect_status 0 "SIGTERM past the grace"
	expect_out '^\{"id":1,.*"state":"available",.*"attempt":0,' \
		"past the grace: given back, attempt not spent"
}

# --- metrics: served over HTTP on 127.0.0.1, valid exposition text ------------
# fetch_metrics PORT FILE: GET /metrics with curl.
fetch_metrics() {
	curl -sS --max-time 10 -o "$2" -w '%{http_code} %{content_type}' \
		"http://127.0.0.1:$1/metrics"
}

# port_of FILE: the port a `bus work/metrics` printed it serves on.
port_of() {
	n=0
	while [ $n -lt 300 ]; do
		p=$(sed -n 's|.*serving http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$1")
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.1
		n=$((n + 1))
	done
	return 1
}

scenario_metrics() {
	use_store met
	out="$TMP/met"
	rm -rf "$out"
	mkdir -p "$out"
	printf '%s\n' "migrate" "enqueue m '{}' --queue m" "enqueue m '{}' --queue m" \
		"enqueue m '{}' --queue m" "enqueue m '{}' --queue m \"--run-in\" 1h" \
		'enqueue "odd\"queue" '"'{}'"' --queue "odd\"q\\ue"' \
		"queues pause paused.q" \
		"work --queue m:2 --node metrics-node --metrics 127.0.0.1:0 --exec 'touch $out/ran.\$BUS_JOB_ID'" \
		>"$TMP/met.in"
	"$BUS" batch <"$TMP/met.in" >"$TMP/met.out" 2>"$TMP/met.err" &
	pid=$!
	if port=$(port_of "$TMP/met.err"); then ok "work --metrics listens"; else
		fail "work --metrics did not say where it listens: $(cat "$TMP/met.err")"
	fi
	wait_for "$out/ran.3" 60
	# Poll until the completer wrote the outcomes and counted them (the
	# store shows a job completed a moment before the worker's counter
	# moves; a liveness bound).
	n=0
	while [ $n -lt 100 ]; do
		code=$(fetch_metrics "$port" "$TMP/metrics.txt")
		"$PROMCHECK" "$TMP/metrics.txt" \
			--expect 'bus_jobs{queue="m",state="completed"} 3' \
			--expect 'bus_worker_outcomes_total{node="metrics-node",outcome="completed"} 3' \
			>/dev/null 2>&1 && break
		sleep 0.2
		n=$((n + 1))
	done
	case $code in
	"200 text/plain; version=0.0.4"*) ok "GET /metrics: 200, text format 0.0.4" ;;
	*) fail "GET /metrics answered '$code'" ;;
	esac
	if "$PROMCHECK" "$TMP/metrics.txt" \
		--expect 'bus_jobs{queue="m",state="completed"} 3' \
		--expect 'bus_jobs{queue="m",state="scheduled"} 1' \
		--expect 'bus_jobs{queue="m",state="available"} 0' \
		--expect 'bus_jobs{queue="odd\"q\\ue",state="available"} 1' \
		--expect 'bus_queue_paused{queue="paused.q"} 1' \
		--expect 'bus_queue_paused{queue="m"} 0' \
		--expect 'bus_worker_claimed_total{node="metrics-node"} 3' \
		--expect 'bus_worker_outcomes_total{node="metrics-node",outcome="completed"} 3' \
		--expect 'bus_worker_outcomes_total{node="metrics-node",outcome="retried"} 0' \
		--expect 'bus_worker_running{node="metrics-node"} 0' \
		--has 'bus_worker_claim_duration_seconds_sum{node="metrics-node"}' \
		--has 'bus_worker_claim_duration_seconds_count{node="metrics-node"}' \
		--has 'bus_worker_finish_duration_seconds_sum{node="metrics-node"}' \
		>"$TMP/promcheck.out" 2>&1; then
		ok "the worker's metrics are valid exposition text with the counts"
	else
		fail "worker metrics: $(cat "$TMP/promcheck.out")"
		sed 's/^/    /' "$TMP/metrics.txt"
	fi
	code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/other")
	[ "$code" = 404 ] && ok "another path: 404" || fail "another path: $code"
	code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/metrics")
	[ "$code" = 405 ] && ok "POST: 405" || fail "POST: $code"
	# A client trickling its request a byte every 2 s (each read well
	# within any per-read timeout) for 40 s must not hold the server,
	# which serves one connection at a time: the request has 5 s in all.
	perl -MIO::Socket::INET -e '
		my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ARGV[0]") or exit 1;
		$s->autoflush(1);
		for (1 .. 20) { print $s "G" or exit 0; sleep 2; }' "$port" &
	slow=$!
	sleep 1
	code=$(curl -sS --max-time 25 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")
	[ "$code" = 200 ] && ok "a trickling client does not hold the metrics server" ||
		fail "with a trickling client connected, GET /metrics: '$code'"
	kill $slow 2>/dev/null
	wait $slow 2>/dev/null
	kill -TERM $pid
	wait $pid
	status=$?
	expect_status 0 "work --metrics stops on SIGTERM"
}

# bus metrics --listen: the store's counts, standalone (a SQL store only:
# memory: would be empty in a process of its own).
scenario_metrics_listen() {
	use_store mls
	batch "migrate
enqueue x '{}' --queue ml
enqueue x '{}' --queue ml
queues pause ml"
	expect_status 0 "metrics data"
	"$BUS" metrics --listen 127.0.0.1:0 >"$TMP/ml.out" 2>"$TMP/ml.err" &
	pid=$!
	if port=$(port_of "$TMP/ml.err"); then
		code=$(fetch_metrics "$port" "$TMP/metrics2.txt")
		if "$PROMCHECK" "$TMP/metrics2.txt" \
			--expect 'bus_jobs{queue="ml",state="available"} 2' \
			--expect 'bus_queue_paused{queue="ml"} 1' \
			>"$TMP/promcheck.out" 2>&1; then
			ok "bus metrics --listen: valid exposition text ($code)"
		else
			fail "bus metrics --listen: $(cat "$TMP/promcheck.out")"
		fi
	else
		fail "bus metrics did not say where it listens: $(cat "$TMP/ml.err")"
	fi
	kill -TERM $pid
	wait $pid
	status=$?
	expect_status 0 "bus metrics stops on SIGTERM"
	run "$BUS" metrics --print
	expect_status 0 "bus metrics --print"
	if "$PROMCHECK" "$TMP/out" --expect 'bus_jobs{queue="ml",state="available"} 2' \
		>"$TMP/promcheck.out" 2>&1; then ok "bus metrics --print: valid"
	else fail "bus metrics --print: $(cat "$TMP/promcheck.out")"; fi
}

# What every SQL store's tool test runs (cli_mysql.sh, cli_postgres.sh):
# the password among the secrets, the scenarios, then commands in
# separate processes sharing the store.
sql_store_cases() {
	pw=$(url_password "$STORE_URL")
	[ -n "$pw" ] && add_secret "$pw"
	add_secret "$(printf '%s\n' "$STORE_URL" | sed -n 's|^[a-z0-9]*://[^:/@]*:\([^@]*\)@.*|\1|p')"
	add_secret "Wr0ngPassw0rd"
	scenario_admin
	scenario_errors
	scenario_exec
	scenario_sigterm
	scenario_stop_signals
	scenario_metrics
	scenario_metrics_listen

	# Separate processes share the store: the usual way to use the tool.
	use_store sep
	run "$BUS" migrate --check
	expect_status 5 "migrate --check on a store without the schema"
	expect_err "schema is missing.*run 'bus migrate'" "the schema message says what to run"
	expect_one_err_line "schema missing"
	run "$BUS" jobs list
	expect_status 5 "jobs list without the schema"
	run "$BUS" migrate
	expect_status 0 "migrate"
	run "$BUS" migrate --check
	expect_status 0 "migrate --check after migrate"
	run "$BUS" enqueue sep.job '{"n":1}' --queue sep
	expect_status 0 "enqueue"
	id=$(last_id)
	run "$BUS" --json jobs show "$id"
	expect_out '"state":"available"' "another process sees the job"
	run "$BUS" work --queue sep --exec 'cat >/dev/null' --drain
	expect_status 0 "work --drain in its own process"
	run "$BUS" jobs show "$id"
	expect_out '^state +completed$' "the job was completed by the worker process"
}

# Server errors: a distinct status, one line, no password. $1, $2, $3:
# patterns the store's messages for a wrong password, an unreachable server
# and an unknown URL option must match (empty: not checked).
sql_server_errors() {
	base=$(printf '%s\n' "$STORE_URL" | sed 's|^\([a-z0-9]*://[^:/@]*\):[^@]*@|\1:Wr0ngPassw0rd@|')
	run "$BUS" --url "$base" stats
	expect_status 4 "wrong password"
	[ -n "$1" ] && expect_err "$1" "wrong password message"
	expect_one_err_line "wrong password"
	unreachable=$(printf '%s\n' "$STORE_URL" | sed 's|@[^/]*/|@127.0.0.1:1/|')
	run "$BUS" --url "$unreachable" stats
	expect_status 4 "unreachable server"
	[ -n "$2" ] && expect_err "$2" "unreachable server message"
	expect_one_err_line "unreachable server"
	BUS_URL=$unreachable run "$BUS" jobs list
	expect_status 4 "unreachable server through BUS_URL"
	case $STORE_URL in *\?*) bad="$STORE_URL&nosuchoption=1" ;; *) bad="$STORE_URL?nosuchoption=1" ;; esac
	run "$BUS" --url "$bad" stats
	expect_status 3 "URL with an unknown option"
	[ -n "$3" ] && expect_err "$3" "bad URL message"
	expect_one_err_line "bad URL"
	run "$BUS" "$STORE_URL" stats
	expect_status 2 "the URL given as a command"
	expect_err ":\*\*\*@" "the password is masked"
}
