#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Differential run of one guest program: qemu-slim and the real qemu-system-riscv64
# (-M virt -bios none) must print the same UART output and exit with the same status,
# and that status must be 0 (the program checks its own results).
# usage: run-guest.sh QEMU_SLIM PROG.elf SMP [extra qemu-slim args...]
set -u
slim=$1; elf=$2; smp=$3; shift 3
name=$(basename "$elf" .elf)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

timeout 60 "$slim" -M virt -smp "$smp" -kernel "$elf" -nographic "$@" >"$tmp/ours" 2>"$tmp/ours.err"
ours=$?
echo "qemu-slim: exit $ours"
cat "$tmp/ours"
[ -s "$tmp/ours.err" ] && { echo "qemu-slim stderr:"; cat "$tmp/ours.err"; }

if ! command -v qemu-system-riscv64 >/dev/null; then
  echo "SKIP: qemu-system-riscv64 not installed (scripts/deps.sh installs qemu-system-misc)"
  exit 77
fi
timeout 60 qemu-system-riscv64 -M virt -bios none -smp "$smp" -kernel "$elf" -nographic \
  -monitor none >"$tmp/theirs" 2>"$tmp/theirs.err"
theirs=$?
echo "qemu-system-riscv64: exit $theirs"

status=0
if [ "$ours" != 0 ]; then echo "FAIL $name: qemu-slim exit status $ours (want 0)"; status=1; fi
if [ "$ours" != "$theirs" ]; then
  echo "FAIL $name: exit status differs: qemu-slim $ours, qemu-system-riscv64 $theirs"; status=1
fi
if ! cmp -s "$tmp/ours" "$tmp/theirs"; then
  echo "FAIL $name: UART output differs (- qemu-slim, + qemu-system-riscv64):"
  diff -u "$tmp/ours" "$tmp/theirs"
  status=1
fi
exit $status
