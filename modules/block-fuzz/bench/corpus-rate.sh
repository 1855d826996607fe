#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Executions per CPU-second of a libFuzzer target over the committed corpus
# (docs/fuzzing.md, "Speed").
# corpus-rate.sh BINDIR FORMAT [ROUNDS]: executes the committed corpus ROUNDS times with
# the libFuzzer binary (-runs=0 loads and runs every input once); prints inputs per
# CPU-second (user+sys of the whole process, engine included).
bins=$1 fmt=$2 rounds=${3:-3}
src=$(cd "$(dirname "$0")/.." && pwd)/corpus/$fmt
d=$(mktemp -d /tmp/qs-rate-XXXXXX); mkdir $d/c
sb=$(mktemp -d /dev/shm/qs-rate-XXXXXX)   # the images on tmpfs, as fuzz.sh puts them
cp $src/* $d/c/; for z in $d/c/*.gz; do [ -f "$z" ] && gzip -dc "$z" > "${z%.gz}" && rm -f "$z"; done
n=$(ls $d/c | wc -l); ml=65536; [ $fmt = vhdx ] && ml=131072
tot=0
for r in $(seq $rounds); do
  BF_SANDBOX_BASE=$sb /usr/bin/time -f "%U %S" -o $d/time $bins/libfuzzer/fuzz-$fmt -runs=0 -max_len=$ml -close_fd_mask=3 $d/c > $d/log 2>&1
  tot=$(awk -v t=$tot '{print t+$1+$2}' $d/time)
done
echo "$fmt $(basename $bins): $n inputs x $rounds in $tot CPU-s = $(awk -v n=$n -v r=$rounds -v t=$tot 'BEGIN{printf "%d", n*r/t}') inputs per CPU-s"
rm -rf $d $sb
