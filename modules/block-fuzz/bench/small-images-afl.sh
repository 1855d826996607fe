#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Executions per CPU-second of the AFL++ persistent-mode target (with its CmpLog
# companion, as fuzz.sh runs it) fuzzing the small valid images small-images.sh uses
# (docs/fuzzing.md, "Speed").  CPU is afl-fuzz's and the targets' user + sys time.
#
#   small-images-afl.sh BINDIR FORMAT SECONDS      (BINDIR holds afl/ and afl-cmplog/)
bins=$1 fmt=$2 secs=${3:-60}
gen=${QS_IMGGEN:-build/modules/block-fuzz/qs-imggen}
d=$(mktemp -d /dev/shm/qs-small-afl-XXXXXX); mkdir $d/all $d/in
sb=$(mktemp -d /dev/shm/qs-small-afl-XXXXXX)
$gen $fmt --valid --seed 3 --count 40 --out $d/all > /dev/null 2>&1
lim=65536; [ $fmt = vhdx ] && lim=131072
find $d/all -type f -size -$((lim + 1))c | sort | head -10 | xargs -r cp -t $d/in
n=$(ls $d/in | wc -l); sz=$(du -b $d/in | cut -f1)
dict=$(dirname "$0")/../dictionaries/$fmt.dict
BF_SANDBOX_BASE=$sb AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_QUIET=1 \
  AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
  /usr/bin/time -f "%U %S" -o $d/time afl-fuzz -V "$secs" -i $d/in -o $d/out -m none -t 2000 \
  -c $bins/afl-cmplog/fuzz-$fmt -x "$dict" -- $bins/afl/fuzz-$fmt > $d/log 2>&1
# afl-fuzz can leave its CmpLog fork server behind, stopped: end what runs in our sandbox
for p in $(pgrep -f "/fuzz-$fmt\$" || true); do
  grep -qxz "BF_SANDBOX_BASE=$sb" /proc/$p/environ 2>/dev/null && kill -9 $p
done
cpu=$(awk '{print $1+$2}' $d/time)
st=$d/out/default/fuzzer_stats
execs=$(grep '^execs_done ' $st | sed 's/.*: //')
edges=$(grep '^edges_found ' $st | sed 's/.*: //')
echo "$fmt: $n seeds ($sz bytes), $execs execs in $cpu CPU-s = $(awk -v r=$execs -v c=$cpu 'BEGIN{printf "%d", r/c}') per CPU-s, edges $edges"
rm -rf $d $sb
