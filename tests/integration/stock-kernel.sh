#!/bin/sh
# Boot a stock Debian kernel under kite with an initramfs from
# tools/mkinitramfs and check how far it gets.
#
#   tests/integration/stock-kernel.sh KITE KERNEL INITRD
#
# On a PVM host (/sys/module/kvm_pvm exists) guest user space cannot run,
# so the test passes when the serial console shows the kernel's own
# "Run /init as init process" and kite's diagnosis follows it (a line
# starting "kite: the guest's init").  On hardware KVM it passes when the
# init reports "KITE-VERDICT: PASS" for its scripts, none FAIL, and the
# guest's poweroff ends kite with status 0.
#
# Slow on a PVM host: kernel mode is emulated, and the cloud kernel took
# 13.5 minutes to reach /init with one vCPU and 14 with two on a host whose
# two cores were shared with other work, so the default timeout is 30
# minutes.
#
# The guest console and kite's stderr go, interleaved in order, to
# build/stock-kernel/KERNEL.log (carriage returns removed).
# Prints "ok N - ..." / "not ok N - ..." lines and "P passed, F failed";
# exits 1 if anything failed, 2 on bad arguments.
#
# Environment: KITE_TEST_TIMEOUT (seconds, default 1800), KITE_TEST_MEMORY
# (default 256M), KITE_TEST_CPUS (vCPUs, default 1), KITE_TEST_PARAMS (extra kernel parameters),
# KITE_LOG_DIR (default build/stock-kernel), KITE_HOST (pvm or kvm:
# overrides the host detection).
#
# The VM also gets an entropy device (virtio-pci modern) and a transitional
# console device: the stock kernel's own PCI enumeration must list both
# with their virtio IDs (its virtio drivers are modules, which need user
# space, so binding is tested with the test kernel's agent instead).

set -u

if [ $# -ne 3 ]; then
	echo "usage: $0 KITE KERNEL INITRD" >&2
	exit 2
fi
KITE=$1
KERNEL=$2
INITRD=$3
TIMEOUT=${KITE_TEST_TIMEOUT:-1800}
MEMORY=${KITE_TEST_MEMORY:-256M}
CPUS=${KITE_TEST_CPUS:-1}
LOG_DIR=${KITE_LOG_DIR:-build/stock-kernel}

case $TIMEOUT in ''|*[!0-9]*) echo "$0: KITE_TEST_TIMEOUT '$TIMEOUT' is not a number of seconds" >&2; exit 2 ;; esac
case $CPUS in ''|*[!0-9]*) echo "$0: KITE_TEST_CPUS '$CPUS' is not a number" >&2; exit 2 ;; esac
for f in "$KITE" "$KERNEL" "$INITRD"; do
	[ -r "$f" ] || { echo "$0: '$f': no such readable file" >&2; exit 2; }
done
[ -x "$KITE" ] || { echo "$0: '$KITE' is not executable" >&2; exit 2; }

case ${KITE_HOST:-} in
pvm|kvm) host=$KITE_HOST ;;
'') if [ -d /sys/module/kvm_pvm ]; then host=pvm; else host=kvm; fi ;;
*) echo "$0: KITE_HOST must be pvm or kvm" >&2; exit 2 ;;
esac

mkdir -p "$LOG_DIR" || exit 2
name=$(basename "$KERNEL")
log=$LOG_DIR/$name.log
raw=$LOG_DIR/$name.raw

# loglevel=7: the "Run /init" line is KERN_INFO, which "quiet" would hide.
params="console=ttyS0 loglevel=7 ${KITE_TEST_PARAMS:-}"

. "$(dirname "$0")/tap.sh"
show_tail() {
	echo "#   last lines of $log:"
	tail -n 25 "$log" | sed 's/^/#     /'
}

echo "# booting $KERNEL on a $host host (timeout ${TIMEOUT}s, log $log)"
devices="--device rng,transport=pci --device console,transport=pci-transitional"
echo "# $KITE run -v -m $MEMORY -c $CPUS $devices -k $KERNEL -i $INITRD -p \"$params\""
start=$(date +%s)
# One file for both streams, so the order of console lines and kite's
# messages is kept.
# shellcheck disable=SC2086 # $devices is a list of options
timeout --kill-after=10 "$TIMEOUT" "$KITE" run -v -m "$MEMORY" -c "$CPUS" $devices \
	-k "$KERNEL" -i "$INITRD" -p "$params" <"/dev/null" >"$raw" 2>&1
status=$?
end=$(date +%s)
tr -d '\r' <"$raw" >"$log"
rm -f "$raw"
elapsed=$((end - start))
timed_out=no
if [ $status -eq 124 ] || [ $status -eq 137 ]; then
	timed_out=yes
	echo "# kite was stopped by the timeout after ${elapsed}s"
else
	echo "# kite exited with status $status after ${elapsed}s"
fi
grep -E '^kite: (guest reached /init|boot marker|exits:)' "$log" | sed 's/^/# /'

# Line number of the first line matching the extended regex $1, or empty.
first_line() {
	grep -n -E -- "$1" "$log" | head -n 1 | cut -d: -f1
}

# Linux init/main.c: "Run %s as init process" (after a printk time stamp
# if any).
run_init=$(first_line '(^|[] ])Run [^ ]+ as init process')
if [ -n "$run_init" ]; then
	ok "$name: the kernel ran /init (\"Run /init as init process\" on the console)"
else
	not_ok "$name: the kernel ran /init" "no \"Run ... as init process\" line on the console"
fi

# The kernel's PCI enumeration (drivers/pci/probe.c prints each function
# as "[vendor:device] type 00 class ...").  1af4:1044 is a modern entropy
# device (0x1040 + type 4), 1af4:1003 a transitional console (virtio 1.2
# §4.1.2.1); 1b36:0008 is Kite's host bridge at 00:00.0.
if grep -q 'PCI: Fatal: No config space access function found' "$log"; then
	not_ok "$name: the kernel can access PCI configuration space" \
		"\"PCI: Fatal: No config space access function found\""
else
	ok "$name: the kernel can access PCI configuration space"
fi
for want in "00:00.0: \[1b36:0008\] type 00 class 0x060000:host bridge" \
	    "00:01.0: \[1af4:1044\] type 00 class 0x00ff00:entropy device (modern)" \
	    "00:02.0: \[1af4:1003\] type 00 class 0x078000:console device (transitional)"; do
	pattern=${want%:*}
	what=${want##*:}
	if grep -q -E "pci 0000:$pattern" "$log"; then
		ok "$name: the kernel lists the $what"
	else
		not_ok "$name: the kernel lists the $what" "no \"pci 0000:$pattern\" line"
	fi
done

if [ $host = pvm ]; then
	# kite's message may follow console output that ended mid-line.
	diag=$(first_line "kite: the guest's init")
	if [ -z "$diag" ]; then
		not_ok "$name: kite diagnosed the init's death on this PVM host" \
			"no line starting \"kite: the guest's init\""
	elif [ -n "$run_init" ] && [ "$diag" -lt "$run_init" ]; then
		not_ok "$name: kite diagnosed the init's death on this PVM host" \
			"the diagnosis (line $diag) comes before \"Run /init\" (line $run_init)"
	else
		ok "$name: kite diagnosed the init's death on this PVM host"
	fi
else
	if grep -q '^KITE-VERDICT: PASS ' "$log"; then
		ok "$name: the init's scripts report PASS"
	else
		not_ok "$name: the init's scripts report PASS" "no \"KITE-VERDICT: PASS\" line"
	fi
	if grep -q '^KITE-VERDICT: FAIL' "$log"; then
		not_ok "$name: no init script reports FAIL" \
			"$(grep '^KITE-VERDICT: FAIL' "$log" | head -n 3 | tr '\n' ' ')"
	else
		ok "$name: no init script reports FAIL"
	fi
	if [ $status -eq 0 ]; then
		ok "$name: the guest's poweroff ends kite with status 0"
	elif [ $timed_out = yes ]; then
		not_ok "$name: the guest's poweroff ends kite with status 0" "timed out after ${TIMEOUT}s"
	else
		not_ok "$name: the guest's poweroff ends kite with status 0" "exit status $status"
	fi
fi

[ $failed -eq 0 ] || show_tail
tap_summary
