# SPDX-License-Identifier: GPL-2.0-or-later
# A line-oriented socket reader shared by the QMP and qtest clients: every read has a
# deadline, and end-of-file or a timeout becomes an error that says what the emulator did.

import socket
import time

from .errors import EmulatorExited, EmulatorTimeout, ProtocolError

# A line longer than this is not a protocol reply: refuse it rather than grow forever.
MAX_LINE = 64 << 20


class LineChannel:
    """Reads newline-terminated lines from a connected stream socket.

    ``name`` names the channel in errors ("QMP", "qtest"); ``post_mortem`` is called
    on EOF or timeout and returns (exitcode, stderr_tail) of the emulator, or
    (None, "") when unknown."""

    def __init__(self, sock, name, post_mortem=None, timeout=30.0):
        self.sock = sock
        self.name = name
        self.timeout = timeout
        self._buf = bytearray()
        self._post_mortem = post_mortem or (lambda wait: (None, ""))
        self.closed = False

    def send(self, data):
        if self.closed:
            raise EmulatorExited("%s: the connection is closed" % self.name)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            code, err = self._post_mortem(False)
            raise EmulatorTimeout("%s: the emulator did not take %d bytes within %.1f s"
                                  % (self.name, len(data), self.timeout), code, err) from None
        except (BrokenPipeError, ConnectionResetError) as e:
            code, err = self._post_mortem(True)
            raise EmulatorExited("%s: sending failed (%s): the emulator went away"
                                 % (self.name, e.strerror), code, err) from None

    def readline(self, timeout=None):
        """The next line without its terminator (CR LF or LF), as bytes."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) > MAX_LINE:
                raise ProtocolError("%s: a line longer than %d bytes arrived"
                                    % (self.name, MAX_LINE))
            self._fill(deadline, timeout)

    def has_line(self):
        return b"\n" in self._buf

    def poll(self, timeout):
        """Read whatever arrives within ``timeout`` seconds; True if a line is buffered.
        EOF is an error as in readline()."""
        deadline = time.monotonic() + timeout
        while not self.has_line():
            try:
                self._fill(deadline, timeout)
            except EmulatorTimeout:
                return False
        return True

    def _fill(self, deadline, timeout):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            code, err = self._post_mortem(False)
            raise EmulatorTimeout("%s: no reply within %.1f s" % (self.name, timeout),
                                  code, err)
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            code, err = self._post_mortem(False)
            raise EmulatorTimeout("%s: no reply within %.1f s" % (self.name, timeout),
                                  code, err) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            code, err = self._post_mortem(True)
            raise EmulatorExited("%s: the emulator closed the connection" % self.name,
                                 code, err)
        self._buf += chunk

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
