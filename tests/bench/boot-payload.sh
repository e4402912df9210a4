#!/bin/sh
# Benchmark: exec-to-exit wall time and peak RSS of kite running the hello
# payload.  Prints figures; asserts nothing about them.
# Usage: boot-payload.sh KITE PAYLOAD_DIR EXEC_STATS [RUNS]
set -eu
kite=$1 dir=$2 stats=$3 runs=${4:-20}
echo "== kite: multiboot payloads (exec to exit) =="
"$stats" "hello (1 vCPU, 256M)" "$runs" 33 -- "$kite" run -k "$dir/hello.elf"
"$stats" "hello (1 vCPU, 16M)" "$runs" 33 -- "$kite" run -m 16M -k "$dir/hello.elf"
if [ -f "$dir/smp.elf" ]; then
	"$stats" "smp (2 vCPUs)" "$runs" 33 -- "$kite" run -c 2 -k "$dir/smp.elf"
fi
