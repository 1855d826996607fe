# SPDX-License-Identifier: GPL-2.0-or-later
# The exceptions qtest-os raises: one base class, and one subclass per way a session
# can go wrong, each carrying what the caller needs to report the fault precisely.


class QtestOSError(Exception):
    """Base class of every error raised by qtest-os."""


class EmulatorError(QtestOSError):
    """The emulator could not be started, died, or did not answer in time.

    ``exitcode`` is the process status when known (negative: killed by that signal),
    ``stderr`` the tail of what it printed on standard error."""

    def __init__(self, message, exitcode=None, stderr=""):
        detail = message
        if exitcode is not None:
            detail += " (exit status %d)" % exitcode
        if stderr:
            detail += "; its stderr ends with:\n" + stderr.rstrip()
        super().__init__(detail)
        self.exitcode = exitcode
        self.stderr = stderr


class EmulatorExited(EmulatorError):
    """The emulator exited (or closed a control socket) while we waited for it."""


class EmulatorTimeout(EmulatorError):
    """Nothing arrived within the deadline; the emulator may be wedged."""


class ProtocolError(QtestOSError):
    """A reply that does not follow the wire protocol (QMP or qtest)."""


class QMPError(QtestOSError):
    """A QMP command answered with {"error": {"class": ..., "desc": ...}}."""

    def __init__(self, command, error_class, desc):
        super().__init__("QMP %s failed: %s: %s" % (command, error_class, desc))
        self.command = command
        self.error_class = error_class
        self.desc = desc


class QtestCommandError(QtestOSError):
    """A qtest command answered FAIL (or ERR); ``reply`` is the text after it."""

    def __init__(self, command, reply):
        super().__init__("qtest '%s' failed: %s" % (command, reply))
        self.command = command
        self.reply = reply


class DeviceError(QtestOSError):
    """A device or bus does not behave as its driver expects."""
