#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Prints the kernel release of the installed linux-headers-amd64 (e.g. 6.1.0-56-amd64),
# or of a kernel build tree given as $1 (its include/config/kernel.release).
set -eu
if [ $# -gt 0 ] && [ -n "$1" ]; then
  cat "$1/include/config/kernel.release"
  exit 0
fi
deps=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 2>/dev/null) || {
  echo "linux-headers-amd64 is not installed (bash scripts/deps.sh)" >&2; exit 1; }
echo "$deps" | sed -n 's/.*linux-headers-\([0-9][^ ,(]*-amd64\).*/\1/p' | head -n 1
