#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs one fuzzing campaign on this machine (make fuzz FORMAT=vmdk SECONDS=600
# [ENGINE=libfuzzer|afl]): builds the targets if needed, seeds from the regression corpus
# (and the structure-aware generator when built), runs niced, and prints a summary.
#
#   fuzz.sh FORMAT SECONDS [ENGINE]
#
# Environment: BF_BIN_DIR (targets, default /tmp/qs-fuzz-bin/ENGINE), BF_WORK_DIR,
# BF_NO_BUILD=1 (use the targets as they are, e.g. a frozen copy for a long campaign),
# BF_MAX_LEN, BF_IMGGEN (qs-imggen binary: adds generated seeds), BF_CPU_SECONDS (also
# stop once the engine has used this much CPU: SECONDS is then only an upper bound),
# BF_NICE (default 19).
# Findings stay in /tmp/qs-fuzz-FORMAT-ENGINE/ (artifacts/ for libFuzzer, out/default/
# crashes and hangs for AFL++); minimise them and add them to corpus/FORMAT/.
set -euo pipefail

fmt=${1:?usage: fuzz.sh FORMAT SECONDS [ENGINE]}
secs=${2:-600}
engine=${3:-libfuzzer}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bins=${BF_BIN_DIR:-/tmp/qs-fuzz-bin}
work=${BF_WORK_DIR:-/tmp/qs-fuzz-$fmt-$engine}
max_len=${BF_MAX_LEN:-65536}
[ "$fmt" = vhdx ] && max_len=${BF_MAX_LEN:-131072}   # packed input (harnesses/packed.h)

if [ ! -f "$here/harnesses/fuzz-$fmt.c" ]; then
  echo "fuzz.sh: no target for format '$fmt' (have: $(cd "$here/harnesses" && ls fuzz-*.c |
        sed 's/^fuzz-//; s/\.c$//' | tr '\n' ' '))" >&2
  exit 2
fi
build() {   # build ENGINE unless its binary is newer than every source (BF_NO_BUILD=1: never)
  local b="$bins/$1/fuzz-$fmt"
  [ -n "${BF_NO_BUILD:-}" ] && [ -x "$b" ] && return 0
  if [ ! -x "$b" ] || [ -n "$(find "$here"/harnesses "$here"/../../core -name '*.[ch]' -newer "$b" | head -1)" ]; then
    nice -n 19 bash "$here/scripts/build-fuzzers.sh" "$1" "$bins/$1"
  fi
}

mkdir -p "$work/corpus" "$work/artifacts"
cp -n "$here/corpus/$fmt/"* "$work/corpus/" 2>/dev/null || true
for z in "$work/corpus/"*.gz; do   # compressed seeds: the engines want them inflated
  [ -f "$z" ] && gzip -dc "$z" > "${z%.gz}" && rm -f "$z"
done
gen=${BF_IMGGEN:-}
if [ -n "$gen" ] && [ -x "$gen" ] && [ "$fmt" != raw ]; then
  "$gen" "$fmt" --seed 1 --count 32 --out "$work/corpus" >/dev/null || true
fi
dict=()
[ -f "$here/dictionaries/$fmt.dict" ] && dict=("$here/dictionaries/$fmt.dict")
# the targets' image files: on tmpfs when there is one (on a disk filesystem every
# input's ftruncate/pwrite/open is journaled I/O: 2.7x the wall time per input)
if [ -z "${BF_SANDBOX_BASE:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    sandbox=$(mktemp -d /dev/shm/qs-fuzz-"$fmt"-XXXXXX)
  else
    sandbox="$work/sandbox"
    mkdir -p "$sandbox"
  fi
  trap 'rm -rf "$sandbox"' EXIT
  export BF_SANDBOX_BASE="$sandbox"
fi
start=$(date +%s)
nice=${BF_NICE:-19}
# runs the engine in the background so that a CPU budget can stop it
run_engine() {   # run_engine LOG CMD...
  local log=$1; shift
  nice -n "$nice" "$@" > "$log" 2>&1 &
  local epid=$!
  [ -n "${BF_CPU_SECONDS:-}" ] && bash "$here/scripts/cpu-budget.sh" "$epid" "$BF_CPU_SECONDS" &
  wait "$epid"
}
# CPU seconds the engine got (children of this shell): on a shared machine wall time
# says little
# (`times` in this shell, not in a $(...) subshell, which has no children of its own)
cpu() { awk 'END { split($1, u, "m"); split($2, s, "m");
        printf "%.1f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$work/times"; }

case "$engine" in
  libfuzzer)
    build libfuzzer
    log="$work/libfuzzer.log"
    set +e
    run_engine "$log" "$bins/libfuzzer/fuzz-$fmt" -max_total_time="$secs" -max_len="$max_len" \
        -timeout=10 -rss_limit_mb=2048 -close_fd_mask=3 -print_final_stats=1 \
        ${dict:+-dict="${dict[0]}"} -artifact_prefix="$work/artifacts/" "$work/corpus"
    rc=$?
    set -e
    times > "$work/times"
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    eps=$(grep 'average_exec_per_sec' "$log" | awk '{print $2}')
    runs=$(grep 'number_of_executed_units' "$log" | awk '{print $2}')
    found=$(ls "$work/artifacts" | wc -l)
    echo "fuzz: $fmt libfuzzer $(( $(date +%s) - start ))s (CPU $(cpu)s): ${runs:-?} execs, ${eps:-?} exec/s," \
         "edges (cov) ${cov:-?}, features ${ft:-?}, corpus $(ls "$work/corpus" | wc -l)," \
         "findings $found (exit $rc; log $log)"
    ;;
  afl)
    build afl
    build afl-cmplog
    in="$work/afl-in"
    rm -rf "$in"
    mkdir -p "$in"
    # AFL wants small seeds: the regression corpus' files up to max_len
    find "$work/corpus" -type f -size -"$((max_len + 1))"c -exec cp {} "$in/" \;
    [ -n "$(ls "$in")" ] || head -c 512 /dev/zero > "$in/zero"
    resume=()
    [ -d "$work/out/default/queue" ] && resume=(-i -) || resume=(-i "$in")
    set +e
    AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    AFL_NO_AFFINITY=1 AFL_QUIET=1 \
    run_engine "$work/afl.log" afl-fuzz -V "$secs" "${resume[@]}" -o "$work/out" -m none \
        -t 2000 -c "$bins/afl-cmplog/fuzz-$fmt" ${dict:+-x "${dict[0]}"} \
        -- "$bins/afl/fuzz-$fmt"
    rc=$?
    set -e
    # afl-fuzz can leave its CmpLog fork server behind, stopped: end what still runs with
    # this run's own sandbox in its environment
    if [ -n "${sandbox:-}" ]; then
      for p in $(pgrep -f "/fuzz-$fmt\$" || true); do
        grep -qxz "BF_SANDBOX_BASE=$sandbox" "/proc/$p/environ" 2>/dev/null && kill -9 "$p"
      done
    fi
    times > "$work/times"
    st="$work/out/default/fuzzer_stats"
    get() { grep "^$1 " "$st" 2>/dev/null | sed 's/.*: //'; }
    echo "fuzz: $fmt afl++ $(( $(date +%s) - start ))s (CPU $(cpu)s): $(get execs_done) execs," \
         "$(get execs_per_sec) exec/s, edges $(get edges_found) (bitmap $(get bitmap_cvg))," \
         "corpus $(get corpus_count), crashes $(get saved_crashes), hangs $(get saved_hangs)" \
         "(exit $rc; log $work/afl.log)"
    ;;
  *) echo "fuzz.sh: unknown engine '$engine' (libfuzzer, afl)" >&2; exit 2 ;;
esac
