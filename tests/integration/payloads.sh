#!/bin/sh
# Boot each test payload under kite and check what it says and how it ends.
#
#   tests/integration/payloads.sh KITE PAYLOAD_DIR
#
# Payloads report on COM1 (kite's stdout) and end the VM through the
# debug-exit port: value v gives kite exit status (v << 1) | 1, PASS = 0x10
# (status 33), FAIL = 0x11 (status 35); see tests/guest/README.md.  Also
# checks kite's own errors for a missing kernel, a non-kernel file, an
# unknown option and unusable disks (corrupt, a FIFO, one image twice).
#
# Prints "ok N - name" or "not ok N - name: why" per check, then
# "P passed, F failed"; exits 1 if anything failed.
# KITE_TEST_TIMEOUT (seconds, default 60) bounds every boot.

set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 KITE PAYLOAD_DIR" >&2
	exit 2
fi
KITE=$1
PAYLOAD_DIR=$2
TIMEOUT=${KITE_TEST_TIMEOUT:-60}

STATUS_PASS=33   # (0x10 << 1) | 1
STATUS_FAIL=35   # (0x11 << 1) | 1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kite-payloads.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT

. "$(dirname "$0")/tap.sh"

# After a failure: what the run printed, as TAP-style comments, once per
# run.
tap_diagnose() {
	if [ -n "${run_log:-}" ] && [ "$run_log" != "${shown_log:-}" ]; then
		shown_log=$run_log
		for f in out err; do
			[ -s "$WORK/$run_log.$f" ] || continue
			echo "#   std$f of: $run_cmd"
			tail -n 15 "$WORK/$run_log.$f" | sed 's/^/#     /'
		done
	fi
}

# run NAME [kite run arguments...]: boots under a timeout, leaves the guest
# output in $WORK/NAME.out (carriage returns removed), kite's stderr in
# $WORK/NAME.err and the exit status in $status.
run() {
	run_log=$1
	shift
	run_cmd="$KITE run $*"
	timeout --kill-after=5 "$TIMEOUT" "$KITE" run "$@" \
		<"/dev/null" >"$WORK/$run_log.raw" 2>"$WORK/$run_log.err"
	status=$?
	tr -d '\r' <"$WORK/$run_log.raw" >"$WORK/$run_log.out"
}

# run_input NAME INPUT [kite run arguments...]: like run, with INPUT
# (printf format) on kite's stdin a second after the start (a payload resets
# its UART's receive FIFO first), kept open a little so kite reads it.
run_input() {
	run_log=$1
	input=$2
	shift 2
	run_cmd="printf '$input' | $KITE run $*"
	{ sleep 1; printf "$input"; sleep 3; } | timeout --kill-after=5 "$TIMEOUT" \
		"$KITE" run "$@" >"$WORK/$run_log.raw" 2>"$WORK/$run_log.err"
	status=$?
	tr -d '\r' <"$WORK/$run_log.raw" >"$WORK/$run_log.out"
}

# expect_stderr_count NAME TEXT MIN: kite's stderr has TEXT at least MIN times.
expect_stderr_count() {
	count=$(grep -Fc -- "$2" "$WORK/$run_log.err")
	if [ "$count" -ge "$3" ]; then
		ok "$1"
	else
		not_ok "$1" "stderr mentions '$2' $count times, wanted at least $3"
	fi
}

# expect_status NAME WANT: one check on the status of the last run.
expect_status() {
	if [ "$status" -eq "$2" ]; then
		ok "$1"
	elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
		not_ok "$1" "timed out after ${TIMEOUT}s (wanted exit status $2)"
	else
		not_ok "$1" "exit status $status, wanted $2"
	fi
}

# expect_line NAME REGEX: the last run's guest output has a whole line
# matching the extended regular expression.
expect_line() {
	if grep -Eq -- "^($2)\$" "$WORK/$run_log.out"; then
		ok "$1"
	else
		not_ok "$1" "no line matching /^$2\$/ in the guest output"
	fi
}

# expect_stderr NAME TEXT: kite's stderr mentions TEXT.
expect_stderr() {
	if grep -Fq -- "$2" "$WORK/$run_log.err"; then
		ok "$1"
	else
		not_ok "$1" "stderr does not mention '$2'"
	fi
}

if [ ! -x "$KITE" ]; then
	echo "not ok 1 - kite binary: '$KITE' is not executable"
	echo "0 passed, 1 failed"
	exit 1
fi

# ---- hello: load, serial, command line, memory info, debug exit ----------
run hello -k "$PAYLOAD_DIR/hello.elf" -m 64M -p "foo=bar baz"
expect_status "hello: exits PASS (status $STATUS_PASS)" $STATUS_PASS
expect_line "hello: greets on COM1" "Hello from a Kite guest"
# A loader may put the image name first, as GRUB does.
expect_line "hello: sees the command line" "cmdline: (.* )?foo=bar baz"
expect_line "hello: mem_upper is 63 MiB for -m 64M" "mem: lower=[0-9]+K upper=64512K"
expect_line "hello: memory map has RAM" "mmap: [0-9]+ entries, [1-9][0-9]* KiB of RAM"
expect_line "hello: prints PASS" "PASS"

# ---- exit-verdict: the value written reaches kite's exit status -----------
run verdict-default -k "$PAYLOAD_DIR/exit-verdict.elf"
expect_status "exit-verdict: default 0x2a gives status 85" 85
expect_line "exit-verdict: says what it writes" "exit-verdict: writing 42 to port 0xf4"
run verdict-5 -k "$PAYLOAD_DIR/exit-verdict.elf" -p "verdict=5"
expect_status "exit-verdict: verdict=5 gives status 11" 11
run verdict-0 -k "$PAYLOAD_DIR/exit-verdict.elf" -p "verdict=0"
expect_status "exit-verdict: verdict=0 gives status 1" 1
run verdict-7f -k "$PAYLOAD_DIR/exit-verdict.elf" -p "quiet verdict=0x7f"
expect_status "exit-verdict: verdict=0x7f gives status 255" 255

# ---- usermode: 50M rounds at CPL3, back to ring 0 by #GP ---------------------
run usermode -k "$PAYLOAD_DIR/usermode.elf"
expect_status "usermode: exits PASS" $STATUS_PASS
expect_line "usermode: ran at CPL3" "user: ran with CS=0x33 \\(CPL3\\)"
expect_line "usermode: checksum of 50M rounds" "user: 50000000 iterations, checksum 0x3b53c061"
expect_line "usermode: privileged instruction faulted" "user: mov from cr0 raised #GP, as it must at CPL3"
# KITE_PROFILE: the guest's RIP sampled while it runs, counted at exit
# (a multiboot payload has no kernel symbols: one unnamed bucket).
KITE_PROFILE=$WORK/usermode.profile
export KITE_PROFILE
run usermode-profile -k "$PAYLOAD_DIR/usermode.elf"
unset KITE_PROFILE
expect_status "usermode: exits PASS with KITE_PROFILE set" $STATUS_PASS
if head -n 1 "$WORK/usermode.profile" 2>/dev/null | grep -Eq '^samples [1-9][0-9]*$' &&
   grep -Eq '^ +[1-9][0-9]* +[0-9.]+% \[user or unknown\]$' "$WORK/usermode.profile"; then
	ok "usermode: KITE_PROFILE file counts the samples"
else
	not_ok "usermode: KITE_PROFILE file counts the samples" \
		"$(head -n 3 "$WORK/usermode.profile" 2>&1 | tr '\n' ' ')"
fi
# The FAIL path: a payload's failure reaches kite's exit status.
run usermode-fail -k "$PAYLOAD_DIR/usermode.elf" -p "iterations=junk"
expect_status "usermode: a bad argument exits FAIL (status $STATUS_FAIL)" $STATUS_FAIL
expect_line "usermode: says why it failed" "FAIL: bad iterations 'junk' on the command line"

# ---- smp: INIT-SIPI-SIPI brings up vCPU 1 ----------------------------------
run smp -k "$PAYLOAD_DIR/smp.elf" -c 2
expect_status "smp: exits PASS with -c 2" $STATUS_PASS
expect_line "smp: AP reached protected mode" "AP: in protected mode, APIC id 1"
expect_line "smp: BSP saw the AP check in" "BSP: AP checked in, count 1, APIC id 1"
# With one vCPU there is nobody to answer: the payload must say FAIL.
run smp-1cpu -k "$PAYLOAD_DIR/smp.elf" -c 1 -p "wait=200"
expect_status "smp: exits FAIL with -c 1" $STATUS_FAIL
expect_line "smp: no AP with -c 1" "FAIL: AP \\(APIC id 1\\) did not check in"

# ---- pvm-quirks: instructions KVM's PVM emulator refuses, completed by kite --
run pvm-quirks -k "$PAYLOAD_DIR/pvm-quirks.elf"
expect_status "pvm-quirks: exits PASS" $STATUS_PASS
expect_line "pvm-quirks: int3 traps with EIP after it" "int3: ok"
expect_line "pvm-quirks: int \$0x80 reaches its gate" "int 0x80: ok"
expect_line "pvm-quirks: fwait and fences continue" "fwait, fences: ok"
expect_line "pvm-quirks: ldmxcsr/stmxcsr round-trip" "ldmxcsr/stmxcsr: ok"

# ---- serial-echo: console input reaches COM1 and raises IRQ 4 --------------
run_input serial-echo 'kite\n' -k "$PAYLOAD_DIR/serial-echo.elf"
expect_status "serial-echo: exits PASS" $STATUS_PASS
expect_line "serial-echo: IIR reports received data, IRQ 4 at the PIC" "iir: 0xc4, pic irr: 0x10"
expect_line "serial-echo: the line typed on stdin arrives" "got: kite"
run_input serial-echo-irq 'kite\n' -k "$PAYLOAD_DIR/serial-echo.elf" -p deliver=1
expect_status "serial-echo: the IRQ 4 handler receives the line" $STATUS_PASS
expect_line "serial-echo: the handler's line is echoed" "got: kite"
# Ctrl-A x quits before the guest sees anything.
run_input ctrl-a-x '\001x' -k "$PAYLOAD_DIR/serial-echo.elf"
expect_status "console: Ctrl-A x ends kite with status 0" 0

# ---- reset: each reset path ends the VM with its status --------------------
run reset-i8042 -k "$PAYLOAD_DIR/reset.elf" -p how=i8042
expect_status "reset: i8042 0xFE exits 0" 0
expect_stderr "reset: i8042 reset is reported" "guest reset (i8042 reset pulse)"
run reset-cf9 -k "$PAYLOAD_DIR/reset.elf" -p how=cf9
expect_status "reset: 0xCF9 exits 0" 0
expect_stderr "reset: 0xCF9 reset is reported" "reset control register 0xCF9"
run reset-triple -k "$PAYLOAD_DIR/reset.elf" -p how=triple
expect_status "reset: triple fault exits 6" 6
expect_stderr "reset: triple fault is reported" "triple fault"
# --reboot=restart boots the VM again after each reset.
saved_timeout=$TIMEOUT
TIMEOUT=8
run reset-restart -k "$PAYLOAD_DIR/reset.elf" -p how=i8042 --reboot=restart
TIMEOUT=$saved_timeout
expect_stderr_count "reset: --reboot=restart boots again" "guest reset (i8042 reset pulse)" 2

# ---- kite's own errors -------------------------------------------------------
missing="$WORK/no-such-kernel.elf"
run missing-kernel -k "$missing"
expect_status "kite: missing kernel file exits 2" 2
expect_stderr "kite: missing kernel file is named" "$missing"

notkernel="$WORK/not-a-kernel.txt"
echo "this is not a kernel" >"$notkernel"
run not-a-kernel -k "$notkernel"
expect_status "kite: a file that is no kernel exits 2" 2
expect_stderr "kite: a file that is no kernel is named" "$notkernel"

run unknown-option -k "$PAYLOAD_DIR/hello.elf" --no-such-option
expect_status "kite: unknown option exits 2" 2
expect_stderr "kite: unknown option is named" "no-such-option"

# A disk image that is no qcow2 image although it says so: refused at start.
badimg="$WORK/bad.qcow2"
printf 'QFI\373\000\000\000\011garbage' >"$badimg"
run bad-disk -k "$PAYLOAD_DIR/hello.elf" -d "$badimg"
expect_status "kite: a corrupt disk image exits 2" 2
expect_stderr "kite: a corrupt disk image is named" "disk '$badimg'"

# A FIFO as a disk: refused by its type, at once (a read-only open of it
# would wait for a writer for ever).
fifo="$WORK/disk.fifo"
mkfifo "$fifo"
saved_timeout=$TIMEOUT
TIMEOUT=10
run fifo-disk -k "$PAYLOAD_DIR/hello.elf" -d "$fifo"
expect_status "kite: a FIFO as disk exits 2 promptly" 2
expect_stderr "kite: a FIFO as disk is named, with the reason" "disk '$fifo': is a FIFO"
run fifo-disk-ro -k "$PAYLOAD_DIR/hello.elf" -d "$fifo,ro"
expect_status "kite: a FIFO as read-only disk exits 2 promptly" 2
expect_stderr "kite: a FIFO as read-only disk is named, with the reason" "disk '$fifo': is a FIFO"
TIMEOUT=$saved_timeout

# One image twice in a VM: said so, not "another process".
twice="$WORK/twice.img"
: >"$twice"
truncate -s 1M "$twice"
run same-disk-twice -k "$PAYLOAD_DIR/hello.elf" -d "$twice" -d "$twice"
expect_status "kite: the same image twice exits 2" 2
expect_stderr "kite: the same image twice is said so" "disk '$twice': the same image as disk '$twice'"

# KVM itself missing or unusable: KITE_KVM_DEVICE stands in for /dev/kvm.
export KITE_KVM_DEVICE="$WORK/no-such-kvm"
run kvm-missing -k "$PAYLOAD_DIR/hello.elf"
expect_status "kite: a missing KVM device exits 4" 4
expect_stderr "kite: a missing KVM device is named, with the reason" "$WORK/no-such-kvm: not found"
export KITE_KVM_DEVICE=/dev/null
run kvm-not-kvm -k "$PAYLOAD_DIR/hello.elf"
expect_status "kite: a device that is not KVM exits 4" 4
expect_stderr "kite: a device that is not KVM is named, with the reason" "/dev/null: not a KVM device"
unset KITE_KVM_DEVICE

run_log=
tap_summary
