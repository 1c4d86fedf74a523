# How `bus work --exec` stops a command (sourced after cli_cases.sh, run by
# cli_memory.sh, cli_mysql.sh and cli_postgres.sh): SIGTERM to its process
# group first, SIGKILL --kill-after later (at once for 0), and what a
# command leaves in its group is killed when it ends.

# ms: the monotonic-enough wall clock in milliseconds (GNU date).
ms() { date +%s%3N; }

# A command that, on SIGTERM, writes the marker $1 and exits; until then it
# waits (its sleeps die with the group's SIGTERM, the shell runs the trap).
term_marker_cmd() {
	echo "trap 'echo term >$1; exit 0' TERM; touch $1.started; while :; do sleep 0.05; done"
}

scenario_stop_signals() {
	out="$TMP/stop"
	rm -rf "$out"
	mkdir -p "$out"

	# At the timeout the command gets SIGTERM, and it has the time to act
	# on it: the marker is written before any SIGKILL could come.
	use_store kat
	batch "migrate
enqueue t '{}' --timeout 500ms --max-attempts 1
work --drain --exec \"$(term_marker_cmd "$out/tmo")\"
jobs show 1 --json"
	expect_status 0 "timeout with a SIGTERM trap: batch"
	if [ "$(cat "$out/tmo" 2>/dev/null)" = term ]; then
		ok "at the timeout the command gets SIGTERM before any SIGKILL"
	else
		fail "at the timeout the command's SIGTERM trap did not run"
	fi
	expect_out '^\{"id":1,.*"state":"discarded",.*"error":"timeout after 0.5s: stopped the command.s process group \(SIGTERM\)' \
		"the timeout's error says SIGTERM stopped it"

	# --kill-after 0: SIGKILL at once, the trap never runs.
	use_store ka0
	batch "migrate
enqueue t '{}' --timeout 300ms --max-attempts 1
work --drain --kill-after 0 --exec \"$(term_marker_cmd "$out/ka0")\"
jobs show 1 --json"
	expect_status 0 "--kill-after 0: batch"
	if [ -e "$out/ka0.started" ] && [ ! -e "$out/ka0" ]; then
		ok "--kill-after 0: SIGKILL at once, no SIGTERM"
	else
		fail "--kill-after 0: started '$(ls "$out")', the SIGTERM trap ran or the command never started"
	fi
	expect_out '^\{"id":1,.*"state":"discarded",.*"error":"timeout after 0.3s: stopped the command.s process group \(SIGKILL\)' \
		"--kill-after 0: the error says SIGKILL"

	# A command that survives SIGTERM (it traps it and carries on) is
	# killed --kill-after later, not before and not never.
	use_store kai
	t0=$(ms)
	batch "migrate
enqueue t '{}' --timeout 300ms --max-attempts 1
work --drain --kill-after 1500ms --exec 'trap \"touch $out/ign.term\" TERM; echo \$\$ >$out/ign.pid; while :; do sleep 0.05; done'
jobs show 1 --json"
	elapsed=$(($(ms) - t0))
	expect_status 0 "a command that ignores SIGTERM: batch"
	if [ -e "$out/ign.term" ]; then ok "the command that carries on got SIGTERM"
	else fail "the command that carries on got no SIGTERM"; fi
	# 300 ms timeout + 1500 ms kill-after; the upper bound is liveness.
	if [ "$elapsed" -ge 1800 ] && [ "$elapsed" -lt 30000 ]; then
		ok "it was killed after --kill-after (${elapsed} ms in all)"
	else
		fail "a command that ignores SIGTERM ended after ${elapsed} ms, expected 1800..30000"
	fi
	expect_out '^\{"id":1,.*"state":"discarded",.*"error":"timeout after 0.3s: stopped the command.s process group \(SIGTERM, then SIGKILL after 1.5s\)' \
		"the error says SIGKILL followed SIGTERM"
	pid=$(cat "$out/ign.pid" 2>/dev/null)
	if [ -n "$pid" ] && ! alive "$pid"; then ok "the command that ignored SIGTERM is gone"
	else
		fail "the command that ignored SIGTERM ('$pid') still runs"
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	fi

	# At shutdown, past the grace, SIGTERM comes first too; the job is
	# given back.
	use_store kas
	printf '%s\n' "migrate" "enqueue slow '{}'" \
		"work --grace 200ms --exec \"$(term_marker_cmd "$out/sd")\"" \
		"jobs show 1 --json" >"$TMP/stop.in"
	"$BUS" batch <"$TMP/stop.in" >"$TMP/out" 2>"$TMP/err" &
	pid=$!
	wait_for "$out/sd.started" 60
	kill -TERM $pid
	wait $pid
	status=$?
	expect_status 0 "shutdown with a SIGTERM trap"
	if [ "$(cat "$out/sd" 2>/dev/null)" = term ]; then
		ok "past the grace the command gets SIGTERM before any SIGKILL"
	else
		fail "past the grace the command's SIGTERM trap did not run"
	fi
	expect_out '^\{"id":1,.*"state":"available",.*"attempt":0,' \
		"past the grace: the job is given back"

	# What a command leaves running in its group ends with it.
	use_store kal
	batch "migrate
enqueue t '{}'
work --drain --exec 'sleep 300 & echo \$! >$out/left.pid; exit 0'
jobs show 1 --json"
	expect_status 0 "a command that leaves a process behind: batch"
	expect_out '^\{"id":1,.*"state":"completed"' "its job is completed"
	pid=$(cat "$out/left.pid" 2>/dev/null)
	n=0
	while [ -n "$pid" ] && alive "$pid" && [ $n -lt 50 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	if [ -n "$pid" ] && ! alive "$pid"; then
		ok "a process left in the command's group is killed when it ends"
	else
		fail "the process '$pid' the command left behind still runs"
		[ -n "$pid" ] && kill "$pid" 2>/dev/null
	fi

	# --kill-after is a duration of at most a day (--drain: a tool that
	# took the value would end rather than serve for ever).
	run "$BUS" work --drain --exec true --kill-after 2d
	expect_status 2 "--kill-after of more than a day"
	expect_err "^bus: --kill-after: '2d' is more than a day" \
		"--kill-after of more than a day: the message"
	expect_one_err_line "--kill-after 2d"
	run "$BUS" work --drain --exec true --kill-after soon
	expect_status 2 "--kill-after that is not a duration"
	expect_err "^bus: --kill-after: 'soon' is not a duration" \
		"--kill-after soon: the message"
	use_store kad
	batch "migrate
work --drain --exec true --kill-after 1d"
	expect_status 0 "--kill-after of exactly a day is accepted"
}
