#!/bin/sh
# `make check-guest`: boots of real Linux kernels under kite (slow lane).
#
#   tests/integration/check-guest.sh KITE
#
# Stock-kernel lane: builds an initramfs (tools/mkinitramfs, with the
# guest-side checks of tools/initramfs/scripts/basics) for the installed
# Debian cloud kernel -- or the generic one when there is no cloud kernel --
# and boots it once through tests/integration/stock-kernel.sh, with one
# vCPU by default (KITE_TEST_CPUS=2 boots it with two, the secondary started
# by the guest's INIT/SIPI: on a PVM host both then stay busy, which slows
# the agent lane running beside it; the agent lane's boots have two vCPUs
# and check that both come online).  One boot per run: on a PVM host each
# costs 10+ minutes.
#
# Test-kernel lane: tests/integration/agent-lane.sh boots Kite's test kernel
# with its in-kernel agent once per virtio transport.
#
# Order, for a 2-core host: the test kernel is built first (both cores);
# then the stock-kernel boot (one busy vCPU, 10+ minutes) runs in the
# background while the agent lane's short boots run in the foreground.
# The stock lane's output is printed, whole, after the agent lane's.
#
# Outputs under build/check-guest/ (initramfs, the stock lane's output),
# build/stock-kernel/ (serial logs) and build/agent-lane/ (test-kernel logs
# and images).  Exits nonzero if any lane failed.
#
# Environment: KITE_STOCK_KERNEL (a /boot/vmlinuz-* to use instead),
# KITE_CHECK_GUEST_DIR (default build/check-guest), and
# what stock-kernel.sh reads (KITE_TEST_TIMEOUT, ...).

set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 KITE" >&2
	exit 2
fi
KITE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${KITE_CHECK_GUEST_DIR:-build/check-guest}
failed_lanes=

# The newest installed kernel matching a glob, by version order.
newest_kernel() {
	ls -1 $1 2>/dev/null | sort -V | tail -n 1
}

mkdir -p "$OUT" || exit 2

# ---- the test kernel, built before any boot -----------------------------------
echo "# == building the test kernel (tools/build-guest-kernel) =="
build_start=$(date +%s)
if "$ROOT/tools/build-guest-kernel" >"$OUT/build-guest-kernel.log" 2>&1; then
	echo "# test kernel ready after $(( $(date +%s) - build_start )) s: $(tail -n 1 "$OUT/build-guest-kernel.log")"
else
	# agent-lane.sh reports the failure as a test and shows the log.
	echo "# tools/build-guest-kernel failed (log: $OUT/build-guest-kernel.log)"
fi

# ---- lane 1: a stock Debian kernel (in the background) --------------------------
stock_lane() {
echo "# == stock kernel =="
kernel=${KITE_STOCK_KERNEL:-}
if [ -z "$kernel" ]; then
	kernel=$(newest_kernel '/boot/vmlinuz-*-cloud-amd64')
	[ -n "$kernel" ] || kernel=$(newest_kernel '/boot/vmlinuz-*-amd64')
fi
if [ -z "$kernel" ] || [ ! -r "$kernel" ]; then
	echo "not ok 1 - stock kernel: none readable in /boot (install linux-image-cloud-amd64)"
	echo "0 passed, 1 failed"
	failed_lanes="$failed_lanes stock-kernel"
else
	kver=${kernel##*/vmlinuz-}
	# On a PVM host the guest would inflate a gzip archive in emulated
	# kernel mode (minutes); uncompressed, it is only copied.
	compress=gzip
	[ ! -d /sys/module/kvm_pvm ] || compress=none
	initrd=$OUT/initramfs-$kver.img
	mkdir -p "$OUT"
	if ! "$ROOT/tools/mkinitramfs" -k "$kver" -c $compress -o "$initrd" \
		-s "$ROOT/tools/initramfs/scripts/basics" >"$OUT/mkinitramfs.log" 2>&1; then
		sed 's/^/# /' "$OUT/mkinitramfs.log"
		echo "not ok 1 - stock kernel: tools/mkinitramfs -k $kver failed"
		echo "0 passed, 1 failed"
		failed_lanes="$failed_lanes stock-kernel"
	elif ! KITE_TEST_CPUS=${KITE_TEST_CPUS:-1} \
		"$HERE/stock-kernel.sh" "$KITE" "$kernel" "$initrd"; then
		failed_lanes="$failed_lanes stock-kernel"
	fi
fi
[ -z "$failed_lanes" ]
}
stock_out=$OUT/stock-lane.out
stock_lane >"$stock_out" 2>&1 &
stock_pid=$!
echo "# stock-kernel lane started in the background (output: $stock_out)"

# ---- lane 2: the test kernel with Kite's in-kernel agent -----------------------
# tests/integration/agent-lane.sh: builds the test kernel if needed
# (tools/build-guest-kernel), then one boot per transport (pci, pci-legacy,
# mmio) with every device and every agent case; several minutes per boot.
echo "# == test kernel with the in-kernel agent =="
if ! "$HERE/agent-lane.sh" "$KITE"; then
	failed_lanes="$failed_lanes test-kernel"
fi

echo "# waiting for the stock-kernel lane"
if ! wait "$stock_pid"; then
	failed_lanes="$failed_lanes stock-kernel"
fi
cat "$stock_out"

if [ -n "$failed_lanes" ]; then
	echo "# check-guest: FAILED:$failed_lanes"
	exit 1
fi
echo "# check-guest: all lanes passed"
