#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-or-later
# OSS-Fuzz / ClusterFuzzLite build script: the same targets as `make fuzz`, built with the
# infrastructure's $CC/$CFLAGS/$LIB_FUZZING_ENGINE into $OUT, with seed corpora
# (fuzz-FORMAT_seed_corpus.zip), dictionaries and .options files next to them.
here=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${JOBS:-$(nproc)} bash "$here/scripts/build-fuzzers.sh" ossfuzz "$OUT" "$WORK/qemu-slim-build"
# GLib, json-glib and the rest come from the build image's packages: shipped in $OUT/lib
bash "$here/oss-fuzz/bundle-libs.sh" "$OUT"
