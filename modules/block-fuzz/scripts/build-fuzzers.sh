#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds the block-fuzz targets with a fuzzing engine: the core library is compiled with
# the engine's instrumentation by Meson, then each harness is linked against it.
#
#   build-fuzzers.sh ENGINE OUTDIR [BUILDDIR]
#
# ENGINE: libfuzzer   clang -fsanitize=fuzzer,address,undefined
#         afl         afl-clang-fast, persistent mode + deferred fork server, ASan+UBSan
#         afl-cmplog  afl-clang-fast with AFL_LLVM_CMPLOG=1 (no sanitizers), for afl-fuzz -c
#         ossfuzz     $CC/$CFLAGS/$LIB_FUZZING_ENGINE/$OUT as OSS-Fuzz and ClusterFuzzLite
#                     set them; also writes seed corpora, dictionaries and .options files
# OUTDIR gets fuzz-<format> binaries; BUILDDIR defaults to /tmp/qs-fuzz-build-ENGINE.
set -euo pipefail

engine=${1:?usage: build-fuzzers.sh ENGINE OUTDIR [BUILDDIR]}
out=${2:?usage: build-fuzzers.sh ENGINE OUTDIR [BUILDDIR]}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$(cd "$here/../.." && pwd)
build=${3:-/tmp/qs-fuzz-build-$engine}
jobs=${JOBS:-2}
py=/usr/bin/python3
[ -x "$py" ] || py=python3

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
main=()
case "$engine" in
  libfuzzer)
    export CC=clang
    # no trace-cmp: its callbacks were 40% of the qcow2 target (loops over tables); the
    # dictionaries (and AFL++'s CmpLog binary) solve comparisons (60 s, same seeds: qcow2
    # 3.4x the executions and the same coverage, vmdk no change)
    cflags="-O1 -g $san -fsanitize=fuzzer-no-link -fno-sanitize-coverage=trace-cmp"
    link="-fsanitize=fuzzer $san"
    mlink="$san"
    ;;
  afl|afl-cmplog)
    export CC=afl-clang-fast
    export AFL_QUIET=1
    if [ "$engine" = afl-cmplog ]; then
      export AFL_LLVM_CMPLOG=1
      cflags="-O2 -g"
      link=""; mlink=""
    else
      cflags="-O2 -g $san"
      link="$san"; mlink="$san"
    fi
    main=("$here/harnesses/main-afl.c")
    ;;
  ossfuzz)
    : "${CC:?ossfuzz needs CC}" "${LIB_FUZZING_ENGINE:?ossfuzz needs LIB_FUZZING_ENGINE}"
    cflags="${CFLAGS:-}"
    # the runner image lacks the build image's libraries: oss-fuzz/bundle-libs.sh copies
    # them next to the targets; an RPATH (not a RUNPATH) also serves their own dependencies
    link="${CFLAGS:-} $LIB_FUZZING_ENGINE -Wl,--disable-new-dtags,-rpath,\$ORIGIN/lib"
    mlink="${CFLAGS:-}"
    ;;
  *) echo "build-fuzzers.sh: unknown engine '$engine' (libfuzzer, afl, afl-cmplog, ossfuzz)" >&2
     exit 2 ;;
esac

mkdir -p "$out"
# Only the core library is built here: everything else is switched off to keep the
# configure short, and warnings are not errors (another compiler than CI's).
if [ ! -f "$build/build.ninja" ]; then
  off=()
  for m in block-fuzz evloop-prof usb-mtp amd-iommu mttcg-barriers postcopy-recover \
           qemu-img vsockmon wireshark-plugin; do
    grep -q "option('$m'" "$src/meson_options.txt" && off+=("-D$m=disabled")
  done
  meson setup "$build" "$src" --buildtype=plain -Dwerror=false -Db_lundef=false \
      -Dc_args="$cflags" -Dc_link_args="$mlink" "${off[@]}" > "$build.log" 2>&1 ||
    { tail -n 20 "$build.log"; grep -m5 -i error "$build/meson-logs/meson-log.txt" || true
      rm -rf "$build"; exit 1; }
fi
ninja -C "$build" -j"$jobs" core/libqscore.a > "$build.log" 2>&1 || { tail -n 30 "$build.log"; exit 1; }

# Link flags of every dependency the core was configured with.
deplibs=$(meson introspect --dependencies "$build" | "$py" -c '
import json, sys
seen = []
for d in json.load(sys.stdin):
    for a in d.get("link_args", []):
        if a not in seen:
            seen.append(a)
print(" ".join(seen))')
inc="-I$src/core/include $(pkg-config --cflags glib-2.0 json-glib-1.0)"
formats=$(cd "$here/harnesses" && ls fuzz-*.c | sed 's/^fuzz-//; s/\.c$//')
obj="$build/block-fuzz-obj"
mkdir -p "$obj"
# shellcheck disable=SC2086
$CC $cflags $inc -c "$here/harnesses/harness.c" -o "$obj/harness.o"
# shellcheck disable=SC2086
$CC $cflags $inc -c "$here/harnesses/packed.c" -o "$obj/packed.o"
extra=()
if [ ${#main[@]} -gt 0 ]; then
  # shellcheck disable=SC2086
  $CC $cflags $inc -c "${main[0]}" -o "$obj/main.o"
  extra=("$obj/main.o")
fi
linker=$CC
[ "$engine" = ossfuzz ] && linker=${CXX:-$CC}
for f in $formats; do
  # shellcheck disable=SC2086
  $CC $cflags $inc -c "$here/harnesses/fuzz-$f.c" -o "$obj/fuzz-$f.o"
  # shellcheck disable=SC2086
  $linker $link "$obj/fuzz-$f.o" "$obj/harness.o" "$obj/packed.o" "${extra[@]}" \
      -Wl,--whole-archive "$build/core/libqscore.a" -Wl,--no-whole-archive \
      $deplibs -lm -ldl -pthread -o "$out/fuzz-$f"
  if [ "$engine" = ossfuzz ]; then
    [ -f "$here/dictionaries/$f.dict" ] && cp "$here/dictionaries/$f.dict" "$out/fuzz-$f.dict"
    printf '[libfuzzer]\nmax_len = 1048576\n' > "$out/fuzz-$f.options"
    [ -f "$here/dictionaries/$f.dict" ] && printf 'dict = fuzz-%s.dict\n' "$f" >> "$out/fuzz-$f.options"
    if [ -d "$here/corpus/$f" ]; then
      # seeds as the target takes them: the large ones are stored gzip-compressed
      seeds=$(mktemp -d)
      cp "$here/corpus/$f"/* "$seeds/"
      rm -f "$seeds/README.md"
      find "$seeds" -name '*.gz' -exec gunzip -f {} +
      (cd "$seeds" && zip -q -r "$out/fuzz-${f}_seed_corpus.zip" .)
      rm -rf "$seeds"
    fi
  fi
done
echo "build-fuzzers: $engine targets in $out: $(echo $formats)"
