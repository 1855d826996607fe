#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs qemu-slim into a temporary prefix (by tag), builds a module out of tree with
# the installed headers and qemu-slim-module.pc, and loads it into the installed binary.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
die() { echo "FAIL: $*" >&2; exit 1; }

meson install -C "$build" --no-rebuild --destdir "$tmp/root" --tags runtime,devel >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; die "meson install --tags runtime,devel failed"; }

bin=$(find "$tmp/root" -path '*/bin/qemu-slim' -type f | head -n 1)
pc=$(find "$tmp/root" -name qemu-slim-module.pc | head -n 1)
[ -x "$bin" ] || die "runtime tag did not install bin/qemu-slim"
[ -f "$pc" ] || die "devel tag did not install qemu-slim-module.pc"
find "$tmp/root" -path '*/qemu-slim/qs/module.h' | grep -q . || die "devel tag did not install qs/module.h"
if find "$tmp/root" -name '*.so' | grep -q .; then
  die "runtime,devel tags installed module files: $(find "$tmp/root" -name '*.so')"
fi

# The install went to a DESTDIR: relocate the .pc's prefix there, as a packager would.
prefix=$(sed -n 's/^prefix=//p' "$pc")
mkdir -p "$tmp/pc"
sed "s|^prefix=.*|prefix=$tmp/root$prefix|" "$pc" >"$tmp/pc/qemu-slim-module.pc"
export PKG_CONFIG_PATH=$tmp/pc
cflags=$(pkg-config --cflags qemu-slim-module) || die "pkg-config --cflags qemu-slim-module failed"
moddir=$(pkg-config --variable=moduledir qemu-slim-module)
case "$moddir" in "$tmp/root"/*) ;; *) die "moduledir '$moddir' is not inside the install";; esac
mkdir -p "$moddir"
cc -shared -fPIC -Wall -Werror $cflags -o "$moddir/hello.so" "$src/hello.c" || die "out-of-tree build failed"

export QS_MODULE_DIR=$moddir
"$bin" -plugin help >"$tmp/help.txt" || die "-plugin help failed"
abi="$(pkg-config --variable=abi_major qemu-slim-module).$(pkg-config --variable=abi_minor qemu-slim-module)"
grep -q "^  hello 0.1 (ABI $abi, GPL-2.0-or-later)" "$tmp/help.txt" || { cat "$tmp/help.txt"; die "-plugin help does not list hello"; }
grep -q "provides: device:hello-dev" "$tmp/help.txt" || die "-plugin help lacks what hello provides"

# Loading runs init; -machine help then exits before starting a machine.
out=$("$bin" -plugin hello,who=tester -machine help) || die "loading hello failed"
grep -q "hello, tester, from module hello" <<<"$out" || die "hello's init did not run: $out"
"$bin" -plugin hello -device help | grep -q 'name "hello-dev"' || die "hello-dev not in -device help"

if "$bin" -plugin hello,whom=x -machine help 2>"$tmp/err.txt"; then die "bad option accepted"; fi
grep -q "module 'hello': unknown option 'whom'" "$tmp/err.txt" || die "unexpected error: $(cat "$tmp/err.txt")"

# Each in-tree module installs under its own tag into <libdir>/qemu-slim/modules, with
# no other module (a module may bring its own tools, e.g. evloop-prof's qemu-evtop).
for so in "$build"/modules/*/*.so; do
  [ -f "$so" ] || continue
  name=$(basename "$so" .so)
  rm -rf "$tmp/one"
  meson install -C "$build" --no-rebuild --destdir "$tmp/one" --tags "module-$name" >/dev/null 2>&1 \
    || die "meson install --tags module-$name failed"
  got=$(cd "$tmp/one" && find . -type f | sort)
  grep -q "/qemu-slim/modules/$name.so\$" <<<"$got" || die "--tags module-$name did not install $name.so: $got"
  others=$(grep '/qemu-slim/modules/' <<<"$got" | grep -v "/$name.so\$" || true)
  [ -z "$others" ] || die "--tags module-$name also installed other modules: $others"
done
echo "ok: installed, built out of tree, loaded"
