#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Executions per CPU-second of a libFuzzer target fuzzing small valid images
# (docs/fuzzing.md, "Speed").
# small-images.sh BINDIR FORMAT RUNS: libFuzzer executions per CPU-second starting from
# small valid images (qs-imggen --valid, files up to 64 KiB; vhdx: packed inputs up to 128 KiB;
# the first ten by name).  BENCH_SEED=N: libFuzzer's -seed (default 1).  Runs drift by
# tens of percent on a shared machine: compare several seeds, old and new alternating.
bins=$1 fmt=$2 runs=${3:-20000}
gen=${QS_IMGGEN:-build/modules/block-fuzz/qs-imggen}
d=$(mktemp -d /dev/shm/qs-small-XXXXXX); mkdir $d/all $d/c
sb=$(mktemp -d /dev/shm/qs-small-XXXXXX)
$gen $fmt --valid --seed 3 --count 40 --out $d/all > /dev/null 2>&1
lim=65536; [ $fmt = vhdx ] && lim=131072
find $d/all -type f -size -$((lim + 1))c | sort | head -10 | xargs -r cp -t $d/c
n=$(ls $d/c | wc -l); sz=$(du -b $d/c | cut -f1)
BF_SANDBOX_BASE=$sb /usr/bin/time -f "%U %S" -o $d/time $bins/libfuzzer/fuzz-$fmt -runs=$runs -seed=${BENCH_SEED:-1} -max_len=$lim -close_fd_mask=3 $d/c > $d/log 2>&1
cpu=$(awk '{print $1+$2}' $d/time)
cov=$(grep -a -o 'cov: [0-9]*' $d/log | tail -1 | cut -d' ' -f2)
echo "$fmt: $n seeds ($sz bytes), $runs runs in $cpu CPU-s = $(awk -v r=$runs -v c=$cpu 'BEGIN{printf "%d", r/c}') per CPU-s, cov $cov"
rm -rf $d $sb
