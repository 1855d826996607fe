#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-or-later
# ClusterFuzzLite/OSS-Fuzz entry point: builds every block-fuzz target into $OUT with the
# engine and sanitizer the infrastructure chose ($CC, $CFLAGS, $LIB_FUZZING_ENGINE).
exec bash "$SRC/qemu-slim/modules/block-fuzz/oss-fuzz/build.sh"
