#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-or-later
# bundle-libs.sh OUT: copies the shared libraries the targets in OUT load (GLib, json-glib,
# zstd, libdeflate and what they pull in) into OUT/lib.  OSS-Fuzz and ClusterFuzzLite run
# the targets in their runner image, which has the C library but none of the build image's
# packages; the targets are linked with RPATH $ORIGIN/lib (build-fuzzers.sh ossfuzz), so
# the loader finds the copies there first, for the libraries' own dependencies too.
out=${1:?usage: bundle-libs.sh OUT}
mkdir -p "$out/lib"
n=0
for t in "$out"/fuzz-*; do
  case "$t" in *.zip|*.dict|*.options) continue ;; esac
  [ -x "$t" ] || continue
  # "name => /path (addr)": the C library's own objects are in every runner image
  while read -r name path; do
    case "$name" in
      libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libresolv.so.*|ld-linux*) continue ;;
    esac
    if [ ! -f "$path" ]; then
      echo "bundle-libs: $t needs $name, which the loader cannot find" >&2
      exit 1
    fi
    [ -f "$out/lib/$name" ] || { cp -L "$path" "$out/lib/$name"; n=$((n + 1)); }
  done < <(LD_LIBRARY_PATH= ldd "$t" | awk '$2 == "=>" { print $1, $3 }')
done
echo "bundle-libs: $n libraries in $out/lib"
