#!/bin/sh
# Boot the real-mode BIOS payload(s) through `kite run --boot bios` and check
# what they say and how they end (tests/guest/bios-services.S).
#
#   tests/integration/bios.sh KITE PAYLOAD_DIR
#
# Verdicts as for the other payloads: PASS = debug-exit 0x10 (status 33),
# FAIL = 0x11 (status 35).  Prints "ok N - name" / "not ok N - name: why",
# then "P passed, F failed"; exits 1 if anything failed.
# KITE_TEST_TIMEOUT (seconds, default 60) bounds every boot.

set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 KITE PAYLOAD_DIR" >&2
	exit 2
fi
KITE=$1
PAYLOAD_DIR=$2
TIMEOUT=${KITE_TEST_TIMEOUT:-60}
STATUS_PASS=33

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kite-bios.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT

. "$(dirname "$0")/tap.sh"

# After a failure: what the run printed.
tap_diagnose() {
	for f in out err; do
		[ -s "$WORK/run.$f" ] || continue
		echo "#   std$f:"
		tail -n 15 "$WORK/run.$f" | sed 's/^/#     /'
	done
}

expect_line() {
	if grep -Eq -- "^($2)\$" "$WORK/run.out"; then
		ok "$1"
	else
		not_ok "$1" "no line matching /^$2\$/ in the guest output"
	fi
}

timeout --kill-after=5 "$TIMEOUT" "$KITE" run --boot bios -m 64M \
	-p bios-test -k "$PAYLOAD_DIR/bios-services.bin" \
	</dev/null >"$WORK/run.raw" 2>"$WORK/run.err"
status=$?
tr -d '\r' <"$WORK/run.raw" >"$WORK/run.out"

if [ "$status" -eq "$STATUS_PASS" ]; then
	ok "bios-services: exits PASS (status $STATUS_PASS)"
elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
	not_ok "bios-services: exits PASS" "timed out after ${TIMEOUT}s"
else
	not_ok "bios-services: exits PASS" "exit status $status"
fi
expect_line "bios-services: real-mode entry state" \
	"entry: cs=9020 ds=es=ss=9000 sp=E000"
expect_line "bios-services: INT 10h teletype reaches COM1" \
	"bios-services: real-mode setup entered"
expect_line "bios-services: E820 lists RAM from 0" \
	"e820: 0000000000000000 [0-9A-F]{16} 00000001"
expect_line "bios-services: E820 lists RAM from 1 MiB" \
	"e820: 0000000000100000 [0-9A-F]{16} 00000001"
expect_line "bios-services: memory services" \
	"int15: e820 ok, e801 15360\\+768, 88h 64512"
expect_line "bios-services: prints PASS" "PASS"

# --boot bios is for bzImages only.
timeout 10 "$KITE" run --boot bios -k "$PAYLOAD_DIR/bios-services.elf" \
	</dev/null >"$WORK/run.out" 2>"$WORK/run.err"
status=$?
if [ "$status" -ne 0 ] && grep -Fq -- "needs a bzImage" "$WORK/run.err"; then
	ok "--boot bios refuses a non-bzImage"
else
	not_ok "--boot bios refuses a non-bzImage" "status $status"
fi

tap_summary
