#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# TCG benchmark (not a test): the same CPU-bound guest on qemu-slim and on
# qemu-system-riscv64 (-M virt -bios none), 1 and 2 harts, median of 5 wall-clock runs
# each; guest MIPS from the instructions qemu-slim counts (the program is the same on
# both).  Writes the `tcg` section of docs/benchmarks.md.
# usage: core/tcg/bench/run.sh [BUILD_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$src/build}
slim=$build/core/qemu-slim
guest=$src/core/tcg/guest
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
runs=5

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wall() {   # prints seconds for one run of "$@", output to $tmp/out
  local t0 t1
  t0=$(date +%s.%N); "$@" >"$tmp/out" 2>&1; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f\n", b - a}' 
}

table="| harts | guest insns | qemu-slim s | qemu-system-riscv64 s | qemu-slim MIPS | QEMU MIPS | ours/theirs |
|---|---|---|---|---|---|---|"
for n in 1 2; do
  riscv64-linux-gnu-gcc -march=rv64ima_zicsr_zifencei -mabi=lp64 -mcmodel=medany -mno-relax \
    -O2 -ffreestanding -fno-pic -nostdlib -nostartfiles -static -Wl,--build-id=none \
    -Wl,--no-warn-rwx-segments -T "$guest/link.ld" -I "$guest" -DNHARTS=$n \
    -o "$tmp/bench$n.elf" "$src/core/tcg/bench/bench.c" "$guest/crt.S" "$guest/lib.c"
  ours=(); theirs=()
  for i in $(seq $runs); do
    ours+=("$(wall "$slim" -M virt -smp $n -kernel "$tmp/bench$n.elf" -nographic)")
    insns=$(awk '/^insns/ {print $2}' "$tmp/out"); sum_ours=$(grep checksum "$tmp/out")
    theirs+=("$(wall qemu-system-riscv64 -M virt -bios none -smp $n -kernel "$tmp/bench$n.elf" -nographic)")
    sum_theirs=$(grep checksum "$tmp/out")
    [ "$sum_ours" = "$sum_theirs" ] || { echo "checksums differ: $sum_ours / $sum_theirs" >&2; exit 1; }
  done
  mo=$(printf '%s\n' "${ours[@]}" | median); mt=$(printf '%s\n' "${theirs[@]}" | median)
  mips_o=$(awk -v i="$insns" -v t="$mo" 'BEGIN {print i / t / 1e6}')
  mips_t=$(awk -v i="$insns" -v t="$mt" 'BEGIN {print i / t / 1e6}')
  ratio=$(awk -v a="$mt" -v b="$mo" 'BEGIN {print a / b}')
  table+=$'\n'"$(printf '| %d | %d | %.3f | %.3f | %.0f | %.0f | %.2f |' $n "$insns" "$mo" "$mt" "$mips_o" "$mips_t" "$ratio")"
  echo "harts=$n insns=$insns ours=${ours[*]} theirs=${theirs[*]}" >&2
done

section="Command: \`core/tcg/bench/run.sh BUILD\` ($(date -u +%Y-%m-%d), $(nproc) host cores, shared).
Guest: core/tcg/bench/bench.c (FNV hash, quicksort, 48x48 matrix multiply, bitwise CRC-32;
each hart on its own data), same ELF on both, checksums compared. Wall time per run
includes start-up; median of $runs runs. MIPS = guest instructions (counted by qemu-slim) /
wall time. Ratio > 1 means qemu-slim is faster.

$table

qemu-slim is an interpreter (threaded code, chained blocks, direct RAM access); QEMU 7.2
compiles to host code.  Where our time goes: one indirect dispatch per IR op (not
measured per op yet), and the exit/lookup for every indirect jump
(\`jalr\`, i.e. every function return) that misses the per-hart jump cache."
python3 - "$src/docs/benchmarks.md" "$section" <<'PY'
import sys, re
path, body = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = "<!-- BEGIN tcg -->", "<!-- END tcg -->"
if begin not in text:
    text = text.rstrip("\n") + "\n\n## TCG: guest MIPS vs QEMU\n" + begin + "\n" + end + "\n"
pre, rest = text.split(begin, 1)
_, post = rest.split(end, 1)
open(path, "w").write(pre + begin + "\n" + body + "\n" + end + post)
PY
echo "$table"
