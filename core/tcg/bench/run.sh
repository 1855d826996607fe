#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# TCG benchmark (not a test): the same CPU-bound guest on qemu-slim and on
# qemu-system-riscv64 (-M virt -bios none), 1 and 2 harts, median of 5 runs each of wall
# time and of CPU time (user + system: robust when the host is shared); guest MIPS from
# the instructions qemu-slim counts (the program is the same on both).  With
# QS_TCG_PROFILE_BUILD set to a build configured with -Dc_args=-DQS_TCG_PROFILE, also
# counts the interpreter's dispatches per guest instruction and the busiest handlers.
# Writes the `tcg` section of docs/benchmarks.md.
# usage: [QS_TCG_PROFILE_BUILD=DIR] core/tcg/bench/run.sh [BUILD_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$src/build}
slim=$build/core/qemu-slim
guest=$src/core/tcg/guest
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
runs=${QS_TCG_BENCH_RUNS:-5}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run1() {   # prints "wall cpu" seconds for one run of "$@", output to $tmp/out
  /usr/bin/time -f '%e %U %S' -o "$tmp/time" "$@" >"$tmp/out" 2>&1
  awk '{printf "%.3f %.3f\n", $1, $2 + $3}' "$tmp/time"
}

table="| harts | guest insns | qemu-slim wall s | QEMU wall s | qemu-slim CPU s | QEMU CPU s | qemu-slim MIPS (CPU) | QEMU MIPS (CPU) | ours/theirs wall | ours/theirs CPU |
|---|---|---|---|---|---|---|---|---|---|"
for n in 1 2; do
  riscv64-linux-gnu-gcc -march=rv64ima_zicsr_zifencei -mabi=lp64 -mcmodel=medany -mno-relax \
    -O2 -ffreestanding -fno-pic -nostdlib -nostartfiles -static -Wl,--build-id=none \
    -Wl,--no-warn-rwx-segments -T "$guest/link.ld" -I "$guest" -DNHARTS=$n \
    -o "$tmp/bench$n.elf" "$src/core/tcg/bench/bench.c" "$guest/crt.S" "$guest/lib.c"
  ow=(); oc=(); tw=(); tc=()
  for i in $(seq $runs); do
    read -r w c < <(run1 "$slim" -M virt -smp $n -kernel "$tmp/bench$n.elf" -nographic)
    ow+=("$w"); oc+=("$c")
    insns=$(awk '/^insns/ {print $2}' "$tmp/out"); sum_ours=$(grep checksum "$tmp/out")
    read -r w c < <(run1 qemu-system-riscv64 -M virt -bios none -smp $n -kernel "$tmp/bench$n.elf" -nographic)
    tw+=("$w"); tc+=("$c")
    sum_theirs=$(grep checksum "$tmp/out")
    [ "$sum_ours" = "$sum_theirs" ] || { echo "checksums differ: $sum_ours / $sum_theirs" >&2; exit 1; }
  done
  mow=$(printf '%s\n' "${ow[@]}" | median); moc=$(printf '%s\n' "${oc[@]}" | median)
  mtw=$(printf '%s\n' "${tw[@]}" | median); mtc=$(printf '%s\n' "${tc[@]}" | median)
  table+=$'\n'"$(awk -v n=$n -v i="$insns" -v ow="$mow" -v oc="$moc" -v tw="$mtw" -v tc="$mtc" 'BEGIN {
    printf "| %d | %d | %.3f | %.3f | %.3f | %.3f | %.0f | %.0f | %.2f | %.2f |", n, i, ow, tw, oc, tc,
      i / oc / 1e6, i / tc / 1e6, tw / ow, tc / oc }')"
  echo "harts=$n insns=$insns ours wall=${ow[*]} cpu=${oc[*]}; theirs wall=${tw[*]} cpu=${tc[*]}" >&2
done

profile="(Set QS_TCG_PROFILE_BUILD to a build with -Dc_args=-DQS_TCG_PROFILE for the
interpreter's dispatch counts.)"
if [ -n "${QS_TCG_PROFILE_BUILD:-}" ]; then
  QS_TCG_PROFILE="$tmp/prof" "$QS_TCG_PROFILE_BUILD/core/qemu-slim" -M virt -smp 1 \
    -kernel "$tmp/bench1.elf" -nographic >"$tmp/out"
  pinsns=$(awk '/^insns/ {print $2}' "$tmp/out")
  total=$(awk '$1 == "op" { t += $3 } END { print t }' "$tmp/prof")
  top=$(awk '$1 == "op" { print $3, $2 }' "$tmp/prof" | sort -nr | head -12 |
        awk -v t="$total" '{ printf "%s%s %.1f%%", (NR > 1 ? ", " : ""), $2, 100 * $1 / t }')
  profile=$(awk -v t="$total" -v i="$pinsns" -v top="$top" 'BEGIN {
    printf "Interpreter profile (1 hart, profile build): %d dispatches for %d guest instructions = %.2f per instruction; busiest handlers (share of dispatches): %s.", t, i, t / i, top }')
fi

# Where the time goes, by handler group, if perf can sample here (software clock).
perfline="(perf record -e cpu-clock is not usable here: no per-handler time breakdown.)"
if perf record -q -e cpu-clock -o "$tmp/perf.data" true >/dev/null 2>&1; then
  perf record -q -e cpu-clock -o "$tmp/perf.data" "$slim" -M virt -smp 1 \
    -kernel "$tmp/bench1.elf" -nographic >/dev/null 2>&1
  inter=$(perf report -i "$tmp/perf.data" --stdio --sort symbol 2>/dev/null |
          awk '$NF == "tcg_interp_exec" || $3 == "tcg_interp_exec" { print $1; exit }')
  groups=$(perf report -i "$tmp/perf.data" --stdio --sort srcline 2>/dev/null |
           python3 "$src/core/tcg/bench/perf-groups.py" "$src/core/tcg/interp.c")
  perfline="CPU time by \`perf record -e cpu-clock\` (1 hart): ${inter:-?} in the interpreter loop; by handler group: $groups."
fi

section="Command: \`core/tcg/bench/run.sh BUILD\` ($(date -u +%Y-%m-%d), $(nproc) host cores, shared;
load average $(cut -d' ' -f1-3 /proc/loadavg) when it finished).
Guest: core/tcg/bench/bench.c (FNV hash, quicksort, 48x48 matrix multiply, bitwise CRC-32;
each hart on its own data), same ELF on both, checksums compared. Times per run include
start-up; medians of $runs runs. CPU = user + system time of the whole process (what the
harts really got when the host is busy); MIPS = guest instructions (counted by
qemu-slim) / CPU seconds. Ratios > 1 mean qemu-slim is faster.

$table

$perfline

$profile

qemu-slim is an interpreter (threaded code, chained blocks, direct RAM access); QEMU 7.2
compiles to host code. Where the time goes: see core/tcg/README.md (Performance)."
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
