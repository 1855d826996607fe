#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Turn a raw binary into a C file defining qs_tcg_payload_start[] / _end[].
set -e
in=$1; out=$2
{
  echo "/* generated from $(basename "$in") by bin2c.sh */"
  echo "#include <stdint.h>"
  echo "const uint8_t qs_tcg_payload_start[] = {"
  od -An -v -tx1 "$in" | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'
  echo "};"
  echo "const uint8_t *const qs_tcg_payload_end_ptr = qs_tcg_payload_start + sizeof(qs_tcg_payload_start);"
} > "$out"
