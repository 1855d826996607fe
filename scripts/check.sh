#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs meson test on the normal build (all suites) and the sanitizer build (unit and
# functional suites), then prints one line "N passed, N failed, N skipped" summed over
# both summaries.  Exits non-zero if anything failed, or if anything was skipped while
# QS_REQUIRE_ALL=1.
set -uo pipefail
build=${1:-build}
asan=${2:-}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

status=0
meson test -C "$build" --print-errorlogs --num-processes 2 2>&1 | tee -a "$log" || status=1
if [ -n "$asan" ]; then
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C "$asan" --suite unit --suite functional --print-errorlogs --num-processes 2 \
    2>&1 | tee -a "$log" || status=1
fi

sum() { awk -v k="$1" -F: '$1 == k { gsub(/ /, "", $2); n += $2 } END { print n + 0 }' "$log"; }
ok=$(sum "Ok"); xfail=$(sum "Expected Fail")
fail=$(sum "Fail"); xpass=$(sum "Unexpected Pass"); timeout=$(sum "Timeout")
skip=$(sum "Skipped")
passed=$((ok + xfail))
failed=$((fail + xpass + timeout))

if [ "${QS_REQUIRE_ALL:-0}" = 1 ] && [ "$skip" -gt 0 ]; then
  echo "check: $skip test(s) skipped while QS_REQUIRE_ALL=1; every suite is required" >&2
  status=1
fi
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed, $skip skipped"
exit $status
