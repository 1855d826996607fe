#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Differential run of one guest program: qemu-slim and the real qemu-system-riscv64
# (-M virt -bios none) must print the same UART output and exit with the same status,
# and that status must be 0 (the program checks its own results).
# usage: run-guest.sh [--ignore PREFIX] [--slim-only REASON] QEMU_SLIM PROG.elf SMP [qemu-slim args...]
#   --ignore PREFIX     output lines starting with PREFIX (e.g. histograms that vary from
#                       run to run) are printed but not compared
#   --slim-only REASON  run on qemu-slim only (REASON says why QEMU cannot run it)
set -u
ignore=; slim_only=
while [ $# -gt 0 ]; do
  case $1 in
    --ignore) ignore=$2; shift 2 ;;
    --slim-only) slim_only=$2; shift 2 ;;
    *) break ;;
  esac
done
slim=$1; elf=$2; smp=$3; shift 3
name=$(basename "$elf" .elf)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the output to compare: without the ignored lines
compared() {
  if [ -n "$ignore" ]; then awk -v p="$ignore" 'index($0, p) != 1' "$1"; else cat "$1"; fi
}

timeout 60 "$slim" -M virt -smp "$smp" -kernel "$elf" -nographic "$@" >"$tmp/ours" 2>"$tmp/ours.err"
ours=$?
echo "qemu-slim $*: exit $ours"
cat "$tmp/ours"
[ -s "$tmp/ours.err" ] && { echo "qemu-slim stderr:"; cat "$tmp/ours.err"; }
if [ -n "$slim_only" ]; then
  echo "qemu-system-riscv64 not run: $slim_only"
  [ "$ours" = 0 ] || { echo "FAIL $name: qemu-slim exit status $ours (want 0)"; exit 1; }
  exit 0
fi

if ! command -v qemu-system-riscv64 >/dev/null; then
  echo "SKIP: qemu-system-riscv64 not installed (scripts/deps.sh installs qemu-system-misc)"
  exit 77
fi
timeout 60 qemu-system-riscv64 -M virt -bios none -smp "$smp" -kernel "$elf" -nographic \
  -monitor none >"$tmp/theirs" 2>"$tmp/theirs.err"
theirs=$?
echo "qemu-system-riscv64: exit $theirs"
[ -n "$ignore" ] && awk -v p="$ignore" 'index($0, p) == 1' "$tmp/theirs"

status=0
if [ "$ours" != 0 ]; then echo "FAIL $name: qemu-slim exit status $ours (want 0)"; status=1; fi
if [ "$ours" != "$theirs" ]; then
  echo "FAIL $name: exit status differs: qemu-slim $ours, qemu-system-riscv64 $theirs"; status=1
fi
if ! cmp -s <(compared "$tmp/ours") <(compared "$tmp/theirs"); then
  echo "FAIL $name: UART output differs (- qemu-slim, + qemu-system-riscv64):"
  diff -u <(compared "$tmp/ours") <(compared "$tmp/theirs")
  status=1
fi
exit $status
