#!/usr/bin/env bash
# Totals the results of `make check` over every test: Check suites count each
# of their checks (automake keeps Check's summary line in the test's .log),
# any other test counts once. Prints "N passed, N failed[, N skipped]" and
# exits non-zero when anything failed or nothing ran.
#
# usage: scripts/summary.sh DIR...   (build directories holding tests/)
set -u
passed=0 failed=0 skipped=0 ran=0
for dir in "$@"; do
	while IFS= read -r trs; do
		log=${trs%.trs}.log
		result=$(sed -n 's/^:test-result: //p' "$trs" | head -n1)
		ran=$((ran + 1))
		line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" 2>/dev/null | tail -n1)
		if [ -n "$line" ]; then
			n=$(sed -E 's/.*Checks: ([0-9]+),.*/\1/' <<<"$line")
			f=$(sed -E 's/.*Failures: ([0-9]+),.*/\1/' <<<"$line")
			e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
			passed=$((passed + n - f - e))
			failed=$((failed + f + e))
			# The suite said all passed but the program still failed
			# (a leak report, a crash at exit): that is a failure too.
			if [ "$result" != PASS ] && [ $((f + e)) -eq 0 ]; then
				failed=$((failed + 1))
				echo "FAIL: ${trs%.trs} exited with failure after its checks passed" >&2
			fi
			continue
		fi
		case "$result" in
		PASS | XFAIL) passed=$((passed + 1)) ;;
		SKIP) skipped=$((skipped + 1)) ;;
		*) failed=$((failed + 1)) ;;
		esac
	done < <(find "$dir" -name '*.trs' -not -path '*/libbus-[0-9]*/*' | sort)
done
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$ran" -gt 0 ] && [ "$failed" -eq 0 ]
