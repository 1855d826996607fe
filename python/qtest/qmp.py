# SPDX-License-Identifier: GPL-2.0-or-later
# QMP client: reads the greeting, negotiates capabilities, runs commands (errors become
# QMPError with QEMU's class and desc) and queues asynchronous events for the caller.

import collections
import json
import time

from .errors import EmulatorTimeout, ProtocolError, QMPError


class QMPClient:
    """One QMP session over a LineChannel.  Not thread-safe: one command at a time."""

    def __init__(self, channel):
        self.chan = channel
        self.greeting = None
        self.events = collections.deque()
        self._next_id = 1

    # -- wire -------------------------------------------------------------------------
    def _read_message(self, timeout=None):
        line = self.chan.readline(timeout)
        try:
            msg = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ProtocolError("QMP: the emulator sent invalid JSON %r: %s"
                                % (line[:200], e)) from None
        if not isinstance(msg, dict):
            raise ProtocolError("QMP: expected a JSON object, got %r" % (line[:200],))
        return msg

    def send_raw(self, data):
        """Send bytes as they are (for testing how the server treats bad input)."""
        self.chan.send(data if isinstance(data, bytes) else data.encode())

    def read_reply(self, timeout=None):
        """The next message that is not an event (events are queued)."""
        while True:
            msg = self._read_message(timeout)
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    # -- session ----------------------------------------------------------------------
    def handshake(self, timeout=None):
        """Read the greeting and send qmp_capabilities; returns the greeting."""
        msg = self.read_greeting(timeout)
        self.command("qmp_capabilities", timeout=timeout)
        return msg

    def read_greeting(self, timeout=None):
        """Read and check the greeting {"QMP": {"version", "capabilities"}}."""
        msg = self._read_message(timeout)
        qmp = msg.get("QMP")
        if not isinstance(qmp, dict) or not isinstance(qmp.get("version"), dict) \
                or not isinstance(qmp.get("capabilities"), list):
            raise ProtocolError("QMP: expected the greeting {\"QMP\": {\"version\", "
                                "\"capabilities\"}}, got %r" % (msg,))
        self.greeting = msg
        return msg

    def command(self, name, args=None, timeout=None, **kwargs):
        """Run ``name`` with ``args`` (a dict) or keyword arguments; returns "return".
        Keyword names use '_' for '-' (QMP argument names use dashes)."""
        if args is None:
            args = {k.replace("_", "-"): v for k, v in kwargs.items()}
        req = {"execute": name, "id": self._next_id}
        self._next_id += 1
        if args:
            req["arguments"] = args
        self.send_raw(json.dumps(req).encode() + b"\n")
        reply = self.read_reply(timeout)
        if reply.get("id") != req["id"]:
            raise ProtocolError("QMP %s: reply id %r does not match request id %r: %r"
                                % (name, reply.get("id"), req["id"], reply))
        return self.check_reply(name, reply)

    @staticmethod
    def check_reply(name, reply):
        """The "return" of a reply, or QMPError for an "error" reply."""
        if "error" in reply:
            err = reply["error"]
            if not isinstance(err, dict):
                raise ProtocolError("QMP %s: malformed error %r" % (name, err))
            raise QMPError(name, err.get("class"), err.get("desc"))
        if "return" not in reply:
            raise ProtocolError("QMP %s: reply has neither return nor error: %r"
                                % (name, reply))
        return reply["return"]

    # -- events -----------------------------------------------------------------------
    def wait_event(self, name=None, timeout=10.0, match=None):
        """Remove and return the first queued or arriving event called ``name`` (any
        event if None) whose data contains ``match``'s items."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in list(self.events):
                if self._matches(ev, name, match):
                    self.events.remove(ev)
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.chan.poll(remaining):
                raise EmulatorTimeout("QMP: no %s event%s within %.1f s (queued: %s)"
                                      % (name or "", " with %r" % match if match else "",
                                         timeout, [e.get("event") for e in self.events]))
            msg = self._read_message()
            if "event" not in msg:
                raise ProtocolError("QMP: unexpected reply %r while waiting for event %s"
                                    % (msg, name))
            self.events.append(msg)

    @staticmethod
    def _matches(ev, name, match):
        if name is not None and ev.get("event") != name:
            return False
        data = ev.get("data", {})
        return all(data.get(k) == v for k, v in (match or {}).items())

    def get_events(self, timeout=0.0):
        """Every event queued or arriving within ``timeout``; the queue is emptied."""
        if timeout > 0:
            while self.chan.poll(timeout):
                msg = self._read_message()
                if "event" not in msg:
                    raise ProtocolError("QMP: unexpected reply %r" % (msg,))
                self.events.append(msg)
                timeout = 0.05
        out = list(self.events)
        self.events.clear()
        return out

    def close(self):
        self.chan.close()
