#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two builds of a libFuzzer target compared on the same inputs (docs/fuzzing.md, "Speed").
# compare-replay.sh OLDBINDIR NEWBINDIR FORMAT [ROUNDS]: grows a corpus from the small
# valid images of small-images.sh with the old target (60000 runs, -seed=5: the inputs a
# fuzzing run keeps, the expensive ones), then replays it (-runs=0) with old and new in
# turn, ROUNDS times each; prints inputs per CPU-second of each round.  A fuzzing run's
# own rate depends on where its mutations wander, a replay's only on the code.
old=$1 new=$2 fmt=$3 rounds=${4:-3}
gen=${QS_IMGGEN:-build/modules/block-fuzz/qs-imggen}
d=$(mktemp -d /dev/shm/qs-cmp-XXXXXX); mkdir $d/all $d/c
sb=$(mktemp -d /dev/shm/qs-cmp-XXXXXX)
lim=65536; [ $fmt = vhdx ] && lim=131072
$gen $fmt --valid --seed 3 --count 40 --out $d/all > /dev/null 2>&1
find $d/all -type f -size -$((lim + 1))c | sort | head -10 | xargs -r cp -t $d/c
BF_SANDBOX_BASE=$sb $old/libfuzzer/fuzz-$fmt -runs=60000 -seed=5 -max_len=$lim -close_fd_mask=3 \
    $d/c > $d/log 2>&1
n=$(ls $d/c | wc -l)
echo "$fmt: $n inputs grown by $(basename $old)"
for r in $(seq $rounds); do
  for b in $old $new; do
    BF_SANDBOX_BASE=$sb /usr/bin/time -f "%U %S" -o $d/time $b/libfuzzer/fuzz-$fmt -runs=0 \
        -max_len=$lim -close_fd_mask=3 $d/c > /dev/null 2>&1
    echo "  $(basename $b): $(awk -v n=$n '{printf "%d per CPU-s (%.2f CPU-s)", n / ($1 + $2), $1 + $2}' $d/time)"
  done
done
rm -rf $d $sb
