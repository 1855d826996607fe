#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# hide-libs.py LIBDIR CMD...: runs CMD with the system's copy of every library in LIBDIR
# hidden (/dev/null bind-mounted over it in a private mount namespace; needs root), as
# in OSS-Fuzz's runner image, which has none of the build image's packages.
import ctypes
import os
import sys

CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x20000, 0x1000, 0x4000, 0x40000
SYSTEM_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")


def fail(what):
    sys.exit("hide-libs: %s: %s" % (what, os.strerror(ctypes.get_errno())))


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: hide-libs.py LIBDIR CMD...")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        fail("unshare")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        fail("making / private")
    hidden = set()
    for name in os.listdir(sys.argv[1]):
        for d in SYSTEM_DIRS:
            real = os.path.realpath(os.path.join(d, name))
            if os.path.isfile(real) and real not in hidden:
                if libc.mount(b"/dev/null", real.encode(), None, MS_BIND, None) != 0:
                    fail("hiding " + real)
                hidden.add(real)
    print("hide-libs: %d system libraries hidden" % len(hidden), file=sys.stderr)
    os.execvp(sys.argv[2], sys.argv[2:])


main()
