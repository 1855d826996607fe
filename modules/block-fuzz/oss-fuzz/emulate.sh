#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-or-later
# emulate.sh [RUNS]: what OSS-Fuzz and ClusterFuzzLite do with this project, on this
# machine without Docker: build.sh with their libFuzzer+ASan environment, the output moved
# elsewhere (as into the runner's /out), the build image's libraries hidden (as in the
# runner image), then each target run RUNS times (default 2000) over its seed corpus zip
# with its .options.  Needs root (hide-libs.py) and clang.
runs=${1:-2000}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
tmp=$(mktemp -d /tmp/qs-ossfuzz-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src" "$tmp/out" "$tmp/work"
ln -s "$src" "$tmp/src/qemu-slim"
SRC="$tmp/src" OUT="$tmp/out" WORK="$tmp/work" CC=clang CXX=clang++ \
CFLAGS="-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address \
-fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link" \
LIB_FUZZING_ENGINE=-fsanitize=fuzzer bash "$tmp/src/qemu-slim/.clusterfuzzlite/build.sh"
mv "$tmp/out" "$tmp/runner-out"
out="$tmp/runner-out"
fail=0
for t in "$out"/fuzz-*; do
  case "$t" in *.zip|*.dict|*.options) continue ;; esac
  name=$(basename "$t")
  seeds="$tmp/seeds-$name"
  mkdir "$seeds"
  [ -f "${t}_seed_corpus.zip" ] && (cd "$seeds" && unzip -q "${t}_seed_corpus.zip")
  # the .options file's [libfuzzer] keys become -key=value flags, as the runner does
  opts=$(sed -n 's/^\([a-z_]*\) = \(.*\)$/-\1=\2/p' "$t.options" | sed "s#-dict=#-dict=$out/#")
  # shellcheck disable=SC2086
  if "$here/hide-libs.py" "$out/lib" "$t" -runs="$runs" $opts -close_fd_mask=3 "$seeds" \
       > "$tmp/$name.log" 2>&1; then
    echo "emulate: $name: $(grep -a -o 'Done [0-9]* runs in [0-9]* second(s)' "$tmp/$name.log"), $(ls "$seeds" | wc -l) seeds"
  else
    echo "emulate: $name FAILED:"; tail -n 15 "$tmp/$name.log"; fail=1
  fi
done
exit $fail
