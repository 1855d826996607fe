# SPDX-License-Identifier: GPL-2.0-or-later
# qemu-slim's module command line, end to end: a module compiled out of tree with cc
# against core/include, found through QS_MODULE_DIR or loaded by path; -plugin help,
# -plugin NAME,help, -device help, and the one-line errors with exit status 1.

import os
import subprocess

import pytest

from conftest import SRC, require

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def run(binary, *args, env=None, timeout=30):
    e = dict(os.environ)
    e.pop("QS_MODULE_DIR", None)
    e.update(env or {})
    return subprocess.run([binary, *args], capture_output=True, text=True, env=e,
                          timeout=timeout)


@pytest.fixture(scope="module")
def oot_module(tmp_path_factory):
    """Path of oot-probe.so built with cc -shared -fPIC and pkg-config's GLib flags."""
    cc = require("/usr/bin/cc", "C compiler")
    require("/usr/bin/pkg-config", "pkg-config")
    d = tmp_path_factory.mktemp("oot")
    flags = subprocess.run(["pkg-config", "--cflags", "glib-2.0", "gmodule-2.0"],
                           capture_output=True, text=True, check=True).stdout.split()
    so = d / "oot-probe.so"
    subprocess.run([cc, "-shared", "-fPIC", "-Wall", "-Werror",
                    "-I", os.path.join(SRC, "core", "include"), *flags,
                    "-o", str(so), os.path.join(DATA, "oot-probe.c")], check=True)
    return str(so)


def test_plugin_help_lists_module_from_qs_module_dir(slim_binary, oot_module):
    r = run(slim_binary, "-plugin", "help", env={"QS_MODULE_DIR": os.path.dirname(oot_module)})
    assert r.returncode == 0, r.stderr
    assert os.path.dirname(oot_module) in r.stdout.splitlines()[0]
    line = next(l for l in r.stdout.splitlines() if "oot-probe" in l)
    assert "2.5" in line and "GPL-2.0-or-later" in line and "ABI 1." in line
    assert "device:oot-probe-dev" in r.stdout
    assert oot_module in r.stdout


def test_plugin_name_help_lists_options(slim_binary, oot_module):
    env = {"QS_MODULE_DIR": os.path.dirname(oot_module)}
    r = run(slim_binary, "-plugin", "oot-probe,help", env=env)
    assert r.returncode == 0, r.stderr
    assert "tag" in r.stdout and "text printed by init" in r.stdout
    assert "fail" in r.stdout


def test_load_by_path_runs_init_and_registers_device(slim_binary, oot_module):
    r = run(slim_binary, "-plugin", oot_module + ",tag=xyz", "-device", "help")
    assert r.returncode == 0, r.stderr
    assert "oot-probe init, tag=xyz" in r.stdout
    assert 'name "oot-probe-dev"' in r.stdout
    r = run(slim_binary, "-plugin", oot_module, "-device", "oot-probe-dev,help")
    assert r.returncode == 0, r.stderr
    assert "oot-probe-dev options" in r.stdout


def test_device_help_without_module_lacks_its_device(slim_binary):
    r = run(slim_binary, "-device", "help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Devices:")
    assert "oot-probe-dev" not in r.stdout


def test_unknown_device_is_one_line_error(slim_binary):
    r = run(slim_binary, "-device", "no-such-dev,help")
    assert r.returncode == 1
    assert r.stderr.strip() == ("qemu-slim: -device no-such-dev,help: 'no-such-dev' is not "
                                "a valid device model name")


def _one_line_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qemu-slim: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_unknown_module_lists_available(slim_binary, oot_module):
    r = run(slim_binary, "-plugin", "no-such-module", "-machine", "help",
            env={"QS_MODULE_DIR": os.path.dirname(oot_module)})
    _one_line_error(r, "no-such-module", "not found", "oot-probe")


def test_not_a_module(slim_binary, tmp_path):
    f = tmp_path / "junk.so"
    f.write_bytes(b"this is not an ELF file\n")
    _one_line_error(run(slim_binary, "-plugin", str(f), "-machine", "help"),
                    str(f), "not a loadable module")


def test_undeclared_option(slim_binary, oot_module):
    _one_line_error(run(slim_binary, "-plugin", oot_module + ",colour=red", "-machine", "help"),
                    "oot-probe", "colour")


def test_bad_option_value(slim_binary, oot_module):
    _one_line_error(run(slim_binary, "-plugin", oot_module + ",fail=maybe", "-machine", "help"),
                    "fail", "maybe")


def test_init_failure_is_reported(slim_binary, oot_module):
    _one_line_error(run(slim_binary, "-plugin", oot_module + ",fail=on", "-machine", "help"),
                    "failing on request")


def test_duplicate_load(slim_binary, oot_module):
    r = run(slim_binary, "-plugin", oot_module, "-plugin", oot_module, "-machine", "help")
    _one_line_error(r, "oot-probe", "already loaded")
