# SPDX-License-Identifier: GPL-2.0-or-later
# A scripted peer for the protocol unit tests: answers each received line with the
# lines a handler returns, over a socketpair, from a thread.

import socket
import threading

from qtest.channel import LineChannel


class FakeServer:
    """``handler(line: str) -> list[str] | None`` gives the reply lines (None: close)."""

    def __init__(self, handler, greeting=()):
        self.client, self.server = socket.socketpair()
        self.handler = handler
        self.received = []
        for g in greeting:
            self.server.sendall(g.encode() + b"\n")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        buf = b""
        try:
            while True:
                chunk = self.server.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode()
                    self.received.append(text)
                    out = self.handler(text)
                    if out is None:
                        self.server.close()
                        return
                    for o in out:
                        self.server.sendall(o.encode() + b"\n")
        except OSError:
            return

    def channel(self, name="test", timeout=2.0, post_mortem=None):
        return LineChannel(self.client, name, post_mortem, timeout)

    def close(self):
        self.client.close()
        try:
            self.server.close()
        except OSError:
            pass
        self.thread.join(2)
