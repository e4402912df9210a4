# TAP-style results for the integration scripts; sourced, not run.
#
#   ok DESCRIPTION           a pass: "ok N - DESCRIPTION"
#   not_ok DESCRIPTION [WHY] a failure: "not ok N - DESCRIPTION: WHY", then
#                            tap_diagnose if the script defined it (to show,
#                            as "#" comments, what the failed run printed)
#   tap_summary              "P passed, F failed"; false if any failed
#
# $passed and $failed are the counts so far.

n=0
passed=0
failed=0

ok() {
	n=$((n + 1))
	passed=$((passed + 1))
	echo "ok $n - $1"
}

not_ok() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1${2:+: $2}"
	if command -v tap_diagnose >/dev/null 2>&1; then
		tap_diagnose
	fi
}

tap_summary() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}
