# SPDX-License-Identifier: GPL-2.0-or-later
# Launches an emulator the way libqtest does: listen on two unix sockets, start it with
# -qtest unix:A -qmp unix:B (client mode), accept both, greet QMP; then shut it down.

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .channel import LineChannel
from .errors import EmulatorError, EmulatorExited, EmulatorTimeout, QtestOSError
from .memory import GuestAllocator, Memory
from .pci import PciBus
from .profiles import FINISHER_FAIL, FINISHER_PASS, make_profile
from .protocol import QtestClient
from .qmp import QMPClient

DEFAULT_BINARY_ENV = "QTEST_QEMU_BINARY"


def default_binary():
    b = os.environ.get(DEFAULT_BINARY_ENV)
    if not b:
        raise EmulatorError("set %s to the emulator to test (qemu-slim or "
                            "qemu-system-*)" % DEFAULT_BINARY_ENV)
    return b


class Machine:
    """One emulator process with a QMP and (optionally) a qtest session.

    ``binary``: path (default $QTEST_QEMU_BINARY); ``machine``: profile name (default
    $QTEST_MACHINE or the binary's default); ``devices``: -device arguments ("edu" is
    given the profile's properties); ``args``: extra arguments; ``env``: extra
    environment; ``timeout``: seconds any single reply may take; ``negotiate``: send
    qmp_capabilities after the greeting (False leaves the session in negotiation mode)."""

    def __init__(self, binary=None, machine=None, devices=(), args=(), env=None,
                 qtest=True, qmp=True, timeout=30.0, start_timeout=30.0, negotiate=True):
        self.binary = binary or default_binary()
        self.profile = make_profile(self.binary, machine)
        self.devices = list(devices)
        self.extra_args = list(args)
        self.env = env
        self.want_qtest = qtest
        self.want_qmp = qmp
        self.negotiate = negotiate
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.proc = None
        self.qmp = None
        self.qtest = None
        self.workdir = None
        self.cmdline = None
        self._exitcode = None
        self._memory = None
        self._alloc = None
        self._pci = None

    @property
    def kind(self):
        return self.profile.kind

    # -- launch ---------------------------------------------------------------------
    def command_line(self):
        a = [self.binary] + self.profile.args(self.workdir, self.want_qtest)
        for d in self.devices:
            a += ["-device", self.profile.device_args(d)]
        if self.want_qtest:
            a += ["-qtest", "unix:" + self._path("qtest.sock")]
        if self.want_qmp:
            a += ["-qmp", "unix:" + self._path("qmp.sock")]
        return a + self.extra_args

    def _path(self, name):
        return os.path.join(self.workdir, name)

    def launch(self):
        """Start the emulator and set up the sessions; on any failure the process is
        killed and EmulatorError says why."""
        if self.proc:
            raise QtestOSError("this Machine was already launched")
        # Short path: sun_path holds 108 bytes.
        self.workdir = tempfile.mkdtemp(prefix="qtos-", dir="/tmp")
        listeners = {}
        try:
            for name, wanted in (("qtest", self.want_qtest), ("qmp", self.want_qmp)):
                if wanted:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.bind(self._path(name + ".sock"))
                    s.listen(1)
                    listeners[name] = s
            self.cmdline = self.command_line()
            env = dict(os.environ)
            env.update(self.env or {})
            self._stdout = open(self._path("stdout"), "wb")
            self._stderr = open(self._path("stderr"), "wb")
            try:
                self.proc = subprocess.Popen(self.cmdline, stdin=subprocess.DEVNULL,
                                             stdout=self._stdout, stderr=self._stderr,
                                             env=env, start_new_session=True)
            except OSError as e:
                raise EmulatorError("cannot run %s: %s" % (self.binary, e.strerror)) from None
            conns = self._accept(listeners)
            if "qmp" in conns:
                self.qmp = QMPClient(LineChannel(conns["qmp"], "QMP", self._post_mortem,
                                                 self.timeout))
                if self.negotiate:
                    self.qmp.handshake()
                else:
                    self.qmp.read_greeting()
            if "qtest" in conns:
                self.qtest = QtestClient(LineChannel(conns["qtest"], "qtest",
                                                     self._post_mortem, self.timeout))
            if self.negotiate:
                self.profile.prepare(self)
        except BaseException:
            self.kill()
            self.remove_workdir()
            raise
        finally:
            for s in listeners.values():
                s.close()
        return self

    def _accept(self, listeners):
        deadline = time.monotonic() + self.start_timeout
        pending = dict(listeners)
        conns = {}
        while pending:
            if self.proc.poll() is not None:
                raise EmulatorExited("%s exited before connecting to %s"
                                     % (os.path.basename(self.binary), " and ".join(pending)),
                                     self.proc.returncode, self.stderr_tail())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmulatorTimeout("%s did not connect to %s within %.0f s"
                                      % (os.path.basename(self.binary),
                                         " and ".join(pending), self.start_timeout),
                                      None, self.stderr_tail())
            ready, _, _ = select.select(list(pending.values()), [], [], min(remaining, 0.05))
            for s in ready:
                name = next(n for n, l in pending.items() if l is s)
                conns[name], _ = s.accept()
                del pending[name]
        return conns

    # -- helpers built on the sessions --------------------------------------------------
    @property
    def memory(self):
        if self._memory is None:
            self._memory = Memory(self.qtest)
        return self._memory

    @property
    def alloc(self):
        """The guest-RAM allocator for test buffers (profile's reserved range)."""
        if self._alloc is None:
            p = self.profile
            self._alloc = GuestAllocator(p.ram_base + p.alloc_start, p.alloc_size)
        return self._alloc

    @property
    def pci(self):
        if self._pci is None:
            self._pci = PciBus(self)
        return self._pci

    def wait_until(self, predicate, what, timeout=10.0, step_ns=1000000):
        """Poll ``predicate`` until true.  Where qtest drives the virtual clock, each
        poll advances it by ``step_ns``; elsewhere (a QEMU whose CPU runs) it waits in
        real time.  ``timeout`` is real seconds; ``what`` names the wait in the error."""
        deadline = time.monotonic() + timeout
        stepping = self.qtest is not None and self.qtest.has_virtual_clock()
        while True:
            if predicate():
                return
            if time.monotonic() > deadline:
                raise EmulatorTimeout("%s: not done within %.1f s" % (what, timeout),
                                      self.proc.poll(), self.stderr_tail())
            if stepping:
                self.qtest.clock_step(step_ns)
            else:
                time.sleep(0.002)

    def finish(self, code=0, timeout=10.0):
        """Write the sifive_test finisher (pass for 0, fail with ``code`` otherwise) and
        return the emulator's exit status."""
        p = self.profile
        if p.finisher is None:
            raise QtestOSError("machine %s has no test finisher" % p.name)
        if not 0 <= code <= 0xffff:
            raise ValueError("finisher exit code must be 0..65535, got %d" % code)
        value = FINISHER_PASS if code == 0 else FINISHER_FAIL | code << 16
        try:
            self.qtest.writel(p.finisher, value)
        except EmulatorExited:
            pass    # the emulator may exit before it answers the write
        return self.wait(timeout)

    # -- state ------------------------------------------------------------------------
    def stderr_tail(self, limit=4000):
        try:
            with open(self._path("stderr"), "rb") as f:
                data = f.read()
        except (OSError, TypeError):
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def stdout_text(self):
        try:
            with open(self._path("stdout"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def _post_mortem(self, wait):
        """(exit status, stderr tail) for error messages; waits briefly if asked."""
        if self.proc is None:
            return None, ""
        if wait:
            try:
                self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.poll(), self.stderr_tail()

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout=10.0):
        """Wait for the emulator to exit by itself; returns its exit status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise EmulatorTimeout("%s still running after %.1f s"
                                  % (os.path.basename(self.binary), timeout),
                                  None, self.stderr_tail()) from None
        self._close_sessions()
        return code

    # -- shutdown ---------------------------------------------------------------------
    def _close_sessions(self):
        for c in (self.qtest, self.qmp):
            if c:
                c.close()

    def shutdown(self, timeout=10.0):
        """Quit over QMP (or SIGTERM), wait, and clean up; returns the exit status.
        Never hangs: falls back to SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.qmp and not self.qmp.chan.closed:
            try:
                self.qmp.command("quit", timeout=timeout)
            except QtestOSError:
                pass   # the reply may be lost when the process exits first
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(3.0)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        return self._cleanup()

    def kill(self):
        """Kill the emulator at once (if started) and clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        return self._cleanup()

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _cleanup(self):
        self._close_sessions()
        for f in (getattr(self, "_stdout", None), getattr(self, "_stderr", None)):
            if f:
                f.close()
        if self.proc is not None:
            self._exitcode = self.proc.returncode
        return self._exitcode

    def remove_workdir(self):
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    @property
    def exitcode(self):
        return self.proc.poll() if self.proc else None

    def __enter__(self):
        if self.proc is None:
            self.launch()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.remove_workdir()
        return False
