#!/bin/sh
# Benchmark: time from kite's exec to the guest's /init for the installed
# stock Debian kernels (generic /boot/vmlinuz-*-amd64 and cloud
# /boot/vmlinuz-*-cloud-amd64), with the exits kite counted on the way.
# Prints figures; asserts nothing about them.
#
#   tests/bench/boot-linux.sh KITE
#
# SLOW: on a PVM host each boot takes 10+ minutes (the cloud kernel about
# 12, the generic one longer: guest kernel mode is emulated at about 1 us
# per instruction), so this runs for half an hour or more.  Boots run one
# after the other, never in parallel.
#
# Figures come from kite -v's own lines:
#   "kite: guest reached /init after N.NNN s (cpu N.N s; exits so far:
#    pio=N mmio=N emulated=N)"                  (the console's "Run /init";
#                                                the exits on the way there)
#   "kite: boot marker 1 at N.NNN s after exec" (the init's port 0x440
#                                                write; hardware KVM only)
# "cpu" is kite's user+system CPU time to /init: on a busy host the wall
# time grows with the load, the CPU time much less.  "emulated" counts the
# emulation-failure exits kite completed (PVM hosts).  A figure kite did
# not print shows as "-".  Logs: build/bench-linux/.
#
# Environment: KITE_BENCH_TIMEOUT (seconds per boot, default 1800),
# KITE_TEST_MEMORY (default 256M), KITE_BENCH_KERNELS (which kernels:
# "generic cloud" by default; either word, or /boot/vmlinuz-* paths),
# KITE_BENCH_CPUS (vCPUs, default 1), KITE_BENCH_PARAMS (extra kernel
# parameters), KITE_PROFILE (a file: kite's guest profile of each boot
# goes to FILE.KVER).

set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 KITE" >&2
	exit 2
fi
KITE=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TIMEOUT=${KITE_BENCH_TIMEOUT:-1800}
MEMORY=${KITE_TEST_MEMORY:-256M}
CPUS=${KITE_BENCH_CPUS:-1}
EXTRA=${KITE_BENCH_PARAMS:-}
PROFILE=${KITE_PROFILE:-}
unset KITE_PROFILE
OUT=build/bench-linux
mkdir -p "$OUT" || exit 1

newest_kernel() {
	ls -1 $1 2>/dev/null | sort -V | tail -n 1
}

# field LOG SED_EXPR: the first value the sed expression prints, or "-".
field() {
	v=$(sed -n "$2" "$1" | head -n 1)
	echo "${v:--}"
}

# The generic glob also matches the cloud kernel: keep only the generic.
generic=$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | grep -v -- '-cloud-amd64$' | sort -V | tail -n 1)
cloud=$(newest_kernel '/boot/vmlinuz-*-cloud-amd64')
kernels=
for k in ${KITE_BENCH_KERNELS:-generic cloud}; do
	case $k in
	generic) kernels="$kernels $generic" ;;
	cloud) kernels="$kernels $cloud" ;;
	*) kernels="$kernels $k" ;;
	esac
done

# On a PVM host the guest would inflate a gzip archive in emulated kernel
# mode (minutes); uncompressed, it is only copied.
compress=gzip
[ ! -d /sys/module/kvm_pvm ] || compress=none

echo "== kite: stock Linux kernels, exec to /init, $CPUS vCPU(s) (PVM host: 10+ min per boot) =="
printf '%-24s %9s %8s %9s %8s %7s %8s  %s\n' kernel "/init(s)" "cpu(s)" "marker(s)" pio mmio emulated end
for kernel in $kernels; do
	[ -r "$kernel" ] || continue
	kver=${kernel##*/vmlinuz-}
	initrd=$OUT/initramfs-$kver.img
	log=$OUT/$kver.log
	if ! "$ROOT/tools/mkinitramfs" -k "$kver" -c $compress -o "$initrd" >"$OUT/mkinitramfs-$kver.log" 2>&1; then
		printf '%-32s mkinitramfs failed (%s)\n' "$kver" "$OUT/mkinitramfs-$kver.log"
		continue
	fi
	# kite.shell=0: with no scripts the init would otherwise wait in a
	# shell; this way it powers off at once (hardware KVM).
	KITE_PROFILE=${PROFILE:+$PROFILE.$kver} \
	timeout --kill-after=10 "$TIMEOUT" "$KITE" run -v -m "$MEMORY" -c "$CPUS" \
		-k "$kernel" -i "$initrd" -p "console=ttyS0 loglevel=7 kite.shell=0 $EXTRA" \
		</dev/null >"$log.raw" 2>&1
	status=$?
	tr -d '\r' <"$log.raw" >"$log"
	rm -f "$log.raw"
	case $status in
	124|137) end="timeout ${TIMEOUT}s" ;;
	*) end="status $status" ;;
	esac
	init_line='kite: guest reached \/init after'
	to_init=$(field "$log" "s/.*$init_line \\([0-9.]*\\) s.*/\\1/p")
	cpu=$(field "$log" "s/.*$init_line .*(cpu \\([0-9.]*\\) s.*/\\1/p")
	marker=$(field "$log" 's/.*kite: boot marker 1 at \([0-9.]*\) s.*/\1/p')
	pio=$(field "$log" "s/.*$init_line .* pio=\\([0-9]*\\).*/\\1/p")
	mmio=$(field "$log" "s/.*$init_line .* mmio=\\([0-9]*\\).*/\\1/p")
	emulated=$(field "$log" "s/.*$init_line .* emulated=\\([0-9]*\\).*/\\1/p")
	printf '%-24s %9s %8s %9s %8s %7s %8s  %s\n' "$kver" "$to_init" "$cpu" "$marker" \
		"$pio" "$mmio" "$emulated" "$end"
done
[ -n "$kernels" ] || echo "no stock kernel in /boot (install linux-image-amd64 and linux-image-cloud-amd64)"
