#!/bin/sh
# Benchmark figure: the test kernel's boot time to Kite's in-kernel agent,
# per virtio transport, from the last run of the agent lane (`make
# check-guest`, tests/integration/agent-lane.sh), which records it in
# build/agent-lane/times.tsv.  A boot costs minutes on a PVM host, so
# `make bench` reports the lane's figures instead of booting again.
# Prints figures; asserts nothing.
#
#   tests/bench/agent-boot.sh [TIMES_TSV]
set -eu
times=${1:-build/agent-lane/times.tsv}
echo "== test kernel: boot to the in-kernel agent (from the last agent lane) =="
if [ ! -r "$times" ]; then
	echo "  no figures: $times missing (run make check-guest)"
	exit 0
fi
echo "  recorded $(date -u -r "$times" '+%Y-%m-%d %H:%M UTC')"
printf '  %-18s %14s %14s %16s\n' transport "to agent (s)" "boot total (s)" "guest clock (s)"
tail -n +2 "$times" | while IFS="$(printf '\t')" read -r t agent total guest; do
	printf '  %-18s %14s %14s %16s\n' "$t" "$agent" "$total" "$guest"
done
