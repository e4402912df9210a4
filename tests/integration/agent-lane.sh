#!/bin/sh
# The test kernel's lane of `make check-guest`: boots Kite's test kernel
# (tests/guest-kernel/, built by tools/build-guest-kernel) once per virtio
# transport with every device attached, runs every case of the in-kernel
# agent in that boot, and checks the host side of each case after the VM
# exits.
#
#   tests/integration/agent-lane.sh KITE [BZIMAGE]
#
# BZIMAGE defaults to what `make guest-kernel` builds (built here if
# missing).  Per transport it prepares raw, qcow2 and read-only disk
# images with host-written patterns (the qcow2 disk's thread busy-polls:
# poll=50; on mmio the raw and qcow2 disks are opened cache=none,
# O_DIRECT, so the guest's I/O goes straight to the files) and two
# virtio-console ports whose
# host peers (tests/guest-kernel/host.py) exchange patterns with the
# guest; passes every expectation on the kernel command line
# (kite_agent.*, see tests/guest-kernel/README.md); parses the agent's TAP
# from the serial log; then verifies the images (guest-written pattern,
# discard, write-zeroes, read-only untouched, `qemu-img check`).
#
# Prints TAP-like "ok/not ok" lines, the time each boot took to reach the
# agent and in total, and "N passed, N failed"; exits nonzero on any
# failure.  Logs and images under $KITE_AGENT_LANE_DIR (default
# build/agent-lane/TRANSPORT/); build/agent-lane/times.tsv keeps the
# timings for `make bench`.
#
# Environment: KITE_AGENT_TRANSPORTS (default "pci pci-legacy mmio"; also
# mmio-legacy, pci-transitional, and pci-transitional-legacy: transitional
# devices with virtio_pci.force_legacy=1), KITE_TEST_TIMEOUT (seconds per
# boot, default 1500), KITE_AGENT_PARAMS (extra kernel parameters).

set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 KITE [BZIMAGE]" >&2
	exit 2
fi
KITE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
HOST="$ROOT/tests/guest-kernel/host.py"
OUT=${KITE_AGENT_LANE_DIR:-$ROOT/build/agent-lane}
TRANSPORTS=${KITE_AGENT_TRANSPORTS:-pci pci-legacy mmio}
TIMEOUT=${KITE_TEST_TIMEOUT:-1500}
CPUS=2

. "$HERE/tap.sh"
notok() { not_ok "$*"; }
# "ok" or "not ok" from a command's status; its output becomes diagnostics.
check() {
	what=$1; shift
	if out=$("$@" 2>&1); then
		ok "$what"
	else
		notok "$what"
		[ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/#   /'
	fi
}

finish() {
	echo "# agent lane: $passed passed, $failed failed"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}

mkdir -p "$OUT"
kernel=${2:-}
if [ -z "$kernel" ]; then
	# Cached; a first build takes 13+ minutes here (see its log).
	echo "# test kernel: tools/build-guest-kernel (log: $OUT/build-guest-kernel.log)"
	start=$(date +%s)
	if "$ROOT/tools/build-guest-kernel" > "$OUT/build-guest-kernel.log" 2>&1; then
		kernel=$(tail -n 1 "$OUT/build-guest-kernel.log")
		echo "# test kernel: $kernel ($(( $(date +%s) - start )) s)"
	else
		tail -n 20 "$OUT/build-guest-kernel.log" | sed 's/^/#   /'
		notok "test kernel: tools/build-guest-kernel failed"
		finish
	fi
fi
for tool in python3 qemu-img sha256sum timeout; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		notok "host tool '$tool' missing (python3, qemu-utils, coreutils)"
		finish
	fi
done
mkdir -p "$OUT"
times="$OUT/times.tsv"
printf 'transport\tto_agent_s\ttotal_s\tguest_agent_s\n' > "$times.tmp"

# ---- the plan: what the host writes, what the guest is told ----------------
# Sectors of 512 bytes.  Every disk has a distinct size; each region is
# 256 sectors (128 KiB, a multiple of qcow2's 64 KiB clusters).
RAW_SIZE=32M;   RAW_SECTORS=65536
QCOW_SIZE=48M;  QCOW_SECTORS=98304
RO_SIZE=8M;     RO_SECTORS=16384
READ=2048; WRITE=4096; DISCARD=8192; ZEROES=12288; N=256
RO_READ=128
SEED_READ=0x1111abcd; SEED_WRITE=0x2222beef; SEED_DISCARD=0x3333cafe
SEED_ZEROES=0x4444f00d; SEED_OLD=0x5555d00d; SEED_RO=0x6666feed
QSEED_READ=0x7777abcd; QSEED_WRITE=0x8888beef
# Console ports 1 and 2: in (host -> guest) and out (guest -> host).  Port
# 1 sends more than Kite stages before the guest opens the port (4 KiB).
P1_IN=6000;  P1_IN_SEED=0x0badf00d; P1_OUT=9000; P1_OUT_SEED=0x0c0ffee0
P2_IN=500;   P2_IN_SEED=0x13572468; P2_OUT=700;  P2_OUT_SEED=0x24681357

blk_entry() { # SERIAL SECTORS SEED_READ SEED_WRITE
	echo "$1/size=$2/ro=0/read=$READ+$N:$3/write=$WRITE+$N:$4/discard=$DISCARD+$N/zeroes=$ZEROES+$N"
}
BLK="$(blk_entry kite-raw $RAW_SECTORS $SEED_READ $SEED_WRITE),$(blk_entry kite-qcow2 $QCOW_SECTORS $QSEED_READ $QSEED_WRITE),kite-ro/size=$RO_SECTORS/ro=1/read=$RO_READ+64:$SEED_RO"
PORTS="1/in=$P1_IN:$P1_IN_SEED/out=$P1_OUT:$P1_OUT_SEED,2/in=$P2_IN:$P2_IN_SEED/out=$P2_OUT:$P2_OUT_SEED"

# Virtio devices in command-line order: entropy, console, three disks.
virtio_expect() { # VIA MODERN
	e=
	for t in 4:virtio_rng 3:virtio_console 2:virtio_blk 2:virtio_blk 2:virtio_blk; do
		e="$e,${t%%:*}/via=$1/modern=$2/drv=${t#*:}"
	done
	echo "${e#,}"
}
# PCI functions (virtio 1.2 §4.1.2): modern 0x1040 + type with subsystem
# >= 0x40 (Kite: 0x40 + type); transitional/legacy 0x1000-based IDs with
# subsystem = type.  Classes are Kite's choice (virtio/pci.c).  MSI-X: one
# vector per queue plus one for configuration changes (kite-run(1)): the
# console has 2 queues per port (port 0 and the 2 socket ports) and 2
# control queues, so 9.
pci_expect() { # MODERN(1|0)
	e=
	slot=1
	for t in 4:1005:00ff00:2 3:1003:078000:9 2:1001:010000:2 2:1001:010000:2 2:1001:010000:2; do
		type=${t%%:*}; rest=${t#*:}; legacy_id=${rest%%:*}; rest=${rest#*:}
		class=${rest%%:*}; msix=${rest#*:}
		if [ "$1" = 1 ]; then
			id=$(printf '%04x' $((0x1040 + type))); sub=$(printf '%04x' $((0x40 + type)))
		else
			id=$legacy_id; sub=$(printf '%04x' "$type")
		fi
		e="$e,1af4:$id/at=00:0$slot.0/class=$class/subsys=1af4:$sub/msix=$msix/drv=virtio-pci"
		slot=$((slot + 1))
	done
	echo "${e#,}"
}

prepare_images() { # DIR
	d=$1
	rm -f "$d/raw.img" "$d/qcow2.img" "$d/qcow2-src.raw" "$d/ro.img"
	truncate -s $RAW_SIZE "$d/raw.img" &&
	python3 "$HOST" fill "$d/raw.img" $READ $N $SEED_READ &&
	python3 "$HOST" fill "$d/raw.img" $WRITE $N $SEED_OLD &&
	python3 "$HOST" fill "$d/raw.img" $DISCARD $N $SEED_DISCARD &&
	python3 "$HOST" fill "$d/raw.img" $ZEROES $N $SEED_ZEROES &&
	truncate -s $QCOW_SIZE "$d/qcow2-src.raw" &&
	python3 "$HOST" fill "$d/qcow2-src.raw" $READ $N $QSEED_READ &&
	python3 "$HOST" fill "$d/qcow2-src.raw" $WRITE $N $SEED_OLD &&
	python3 "$HOST" fill "$d/qcow2-src.raw" $DISCARD $N $SEED_DISCARD &&
	python3 "$HOST" fill "$d/qcow2-src.raw" $ZEROES $N $SEED_ZEROES &&
	qemu-img convert -q -f raw -O qcow2 "$d/qcow2-src.raw" "$d/qcow2.img" &&
	rm -f "$d/qcow2-src.raw" &&
	truncate -s $RO_SIZE "$d/ro.img" &&
	python3 "$HOST" fill "$d/ro.img" $RO_READ 64 $SEED_RO
}

# After the VM: the guest's writes, discards and zeroes are in the images.
check_images() { # DIR TRANSPORT
	d=$1; t=$2
	check "$t: raw: guest pattern at sectors $WRITE+$N" \
		python3 "$HOST" check "$d/raw.img" $WRITE $N $SEED_WRITE
	check "$t: raw: host pattern at sectors $READ+$N untouched" \
		python3 "$HOST" check "$d/raw.img" $READ $N $SEED_READ
	check "$t: raw: discarded sectors $DISCARD+$N read as zeroes" \
		python3 "$HOST" check "$d/raw.img" $DISCARD $N zero
	check "$t: raw: discarded sectors $DISCARD+$N are a hole" \
		python3 "$HOST" hole "$d/raw.img" $DISCARD $N
	check "$t: raw: write-zeroes sectors $ZEROES+$N read as zeroes" \
		python3 "$HOST" check "$d/raw.img" $ZEROES $N zero
	check "$t: qcow2: qemu-img check finds no error" \
		qemu-img check -q "$d/qcow2.img"
	if qemu-img convert -q -f qcow2 -O raw "$d/qcow2.img" "$d/qcow2-out.raw" 2>"$d/convert.err"; then
		check "$t: qcow2: guest pattern at sectors $WRITE+$N" \
			python3 "$HOST" check "$d/qcow2-out.raw" $WRITE $N $QSEED_WRITE
		check "$t: qcow2: host pattern at sectors $READ+$N untouched" \
			python3 "$HOST" check "$d/qcow2-out.raw" $READ $N $QSEED_READ
		check "$t: qcow2: discarded sectors $DISCARD+$N read as zeroes" \
			python3 "$HOST" check "$d/qcow2-out.raw" $DISCARD $N zero
		check "$t: qcow2: write-zeroes sectors $ZEROES+$N read as zeroes" \
			python3 "$HOST" check "$d/qcow2-out.raw" $ZEROES $N zero
		rm -f "$d/qcow2-out.raw"
	else
		notok "$t: qcow2: qemu-img convert failed: $(cat "$d/convert.err")"
	fi
	check "$t: read-only disk unchanged (sha256)" \
		sh -c "test \"\$(sha256sum < '$d/ro.img')\" = '$ro_sum'"
}

# Wall time from kite's start until the agent's TAP header appears.
watch_for_agent() { # LOG PID START -> prints seconds or "-"
	while kill -0 "$2" 2>/dev/null; do
		if grep -q 'TAP version 13' "$1" 2>/dev/null; then
			echo $(( $(date +%s) - $3 ))
			return
		fi
		sleep 1
	done
	if grep -q 'TAP version 13' "$1" 2>/dev/null; then
		echo $(( $(date +%s) - $3 ))
	else
		echo -
	fi
}

# ---- one boot per transport ---------------------------------------------
for t in $TRANSPORTS; do
	# Kite's --transport, and what the drivers must have bound to.
	extra=
	cache=
	case $t in
	pci) kt=pci; via=virtio-pci; modern=1; pci=$(pci_expect 1) ;;
	# pci=nomsi: the legacy drivers then run on INTx, so this boot also
	# proves the level-triggered INTx path (irqfd + resample, ISR read).
	pci-legacy) kt=pci-legacy; via=virtio-pci; modern=0; pci=$(pci_expect 0)
		extra=" pci=nomsi" ;;
	mmio) kt=mmio; via=virtio-mmio; modern=1; pci=none; cache=",cache=none" ;;
	mmio-legacy) kt=mmio-legacy; via=virtio-mmio; modern=0; pci=none ;;
	# Transitional devices, driven by Linux's modern or legacy interface.
	pci-transitional) kt=pci-transitional; via=virtio-pci; modern=1; pci=$(pci_expect 0) ;;
	pci-transitional-legacy)
		kt=pci-transitional; via=virtio-pci; modern=0; pci=$(pci_expect 0)
		extra=" virtio_pci.force_legacy=1" ;;
	*) notok "transport '$t': unknown"; continue ;;
	esac
	echo "# == test kernel, --transport $t =="
	d="$OUT/$t"
	rm -rf "$d"
	mkdir -p "$d"
	if ! prepare_images "$d" > "$d/prepare.log" 2>&1; then
		sed 's/^/#   /' "$d/prepare.log"
		notok "$t: preparing the disk images"
		continue
	fi
	ro_sum=$(sha256sum < "$d/ro.img")

	# The console peers wait for Kite's sockets, then exchange patterns.
	python3 "$HOST" console-peer "$d/port1.sock" $P1_IN $P1_IN_SEED $P1_OUT $P1_OUT_SEED \
		"$d/port1.result" "$TIMEOUT" 2>"$d/port1.err" &
	peer1=$!
	python3 "$HOST" console-peer "$d/port2.sock" $P2_IN $P2_IN_SEED $P2_OUT $P2_OUT_SEED \
		"$d/port2.result" "$TIMEOUT" 2>"$d/port2.err" &
	peer2=$!

	params="console=ttyS0 panic=-1 kite_agent.tests=all kite_agent.cpus=$CPUS"
	params="$params kite_agent.host_time=$(date +%s) kite_agent.pci=$pci"
	params="$params kite_agent.virtio=$(virtio_expect $via $modern) kite_agent.rng=1"
	params="$params kite_agent.console_ports=$PORTS kite_agent.blk=$BLK$extra"
	[ -z "${KITE_AGENT_PARAMS:-}" ] || params="$params $KITE_AGENT_PARAMS"
	echo "$KITE run -k $kernel -m 256M -c $CPUS --transport $kt ... -p \"$params\"" > "$d/command"
	start=$(date +%s)
	timeout "$TIMEOUT" "$KITE" run -k "$kernel" -m 256M -c "$CPUS" --transport "$kt" \
		--device rng \
		--device "console,port=kite.port1:$d/port1.sock,port=kite.port2:$d/port2.sock" \
		-d "$d/raw.img,format=raw,serial=kite-raw$cache" \
		-d "$d/qcow2.img,format=qcow2,serial=kite-qcow2,poll=50$cache" \
		-d "$d/ro.img,ro,format=raw,serial=kite-ro" \
		-p "$params" < /dev/null > "$d/serial.log" 2>&1 &
	vm=$!
	to_agent=$(watch_for_agent "$d/serial.log" $vm "$start")
	wait $vm
	status=$?
	total=$(( $(date +%s) - start ))
	# Kite closed the sockets; the peers finish (or are stopped).
	for p in $peer1 $peer2; do
		( sleep 10; kill "$p" 2>/dev/null ) &
		stopper=$!
		wait "$p" 2>/dev/null
		kill "$stopper" 2>/dev/null
	done
	tr -d '\r' < "$d/serial.log" > "$d/serial.txt"
	guest_agent=$(sed -n 's/.*kite_agent: started \([0-9.]*\) s after the kernel did.*/\1/p' "$d/serial.txt" | head -n 1)
	echo "# $t: agent reached after ${to_agent} s (guest clock: ${guest_agent:--} s); boot total ${total} s; kite exit status $status"
	printf '%s\t%s\t%s\t%s\n' "$t" "$to_agent" "$total" "${guest_agent:--}" >> "$times.tmp"

	# The agent's TAP: each case becomes one line here.
	plan=$(sed -n 's/^.*\(1\.\.[0-9][0-9]*\)$/\1/p' "$d/serial.txt" | head -n 1)
	lines=$(grep -cE '^(not )?ok [0-9]+ - ' "$d/serial.txt")
	if [ -z "$plan" ]; then
		notok "$t: the agent printed no TAP plan (log: $d/serial.txt)"
		tail -n 15 "$d/serial.txt" | sed 's/^/#   /'
	elif [ "${plan#1..}" != "$lines" ]; then
		notok "$t: the agent planned ${plan#1..} cases but reported $lines (log: $d/serial.txt)"
		tail -n 15 "$d/serial.txt" | sed 's/^/#   /'
	fi
	grep -E '^(not )?ok [0-9]+ - |^# (pci|virtio|blk) present' "$d/serial.txt" > "$d/tap.txt"
	while IFS= read -r line; do
		case $line in
		"# "*) echo "#   $t: ${line#\# }" ;;
		"ok "*"# SKIP"*) notok "$t: ${line#ok * - } (unexpected SKIP)" ;;
		"ok "*) ok "$t: ${line#ok * - }" ;;
		"not ok "*) notok "$t: ${line#not ok * - }" ;;
		esac
	done < "$d/tap.txt"
	# Kite's exit status is (failures << 1) | 1 when the agent ends the VM.
	if [ "$status" -eq 1 ]; then
		ok "$t: kite exit status 1 (the agent reported no failure)"
	else
		notok "$t: kite exit status $status (1 = agent reported no failure; 124 = timeout after $TIMEOUT s)"
	fi

	for p in 1 2; do
		if [ -s "$d/port$p.result" ]; then
			res=$(cat "$d/port$p.result")
			case $res in
			"ok - "*) ok "$t: console port $p host peer: ${res#ok - }" ;;
			*) notok "$t: console port $p host peer: ${res#not ok - }" ;;
			esac
		else
			notok "$t: console port $p host peer reported nothing ($(cat "$d/port$p.err"))"
		fi
	done
	check_images "$d" "$t"
done

mv "$times.tmp" "$times"
finish
