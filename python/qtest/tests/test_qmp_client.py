# SPDX-License-Identifier: GPL-2.0-or-later
# Unit tests of the QMP client against a scripted peer: greeting, ids, errors as
# exceptions with class and desc, events queued around replies, bad JSON.

import json

import pytest

from fakeserver import FakeServer
from qtest.errors import EmulatorTimeout, ProtocolError, QMPError
from qtest.qmp import QMPClient

GREETING = json.dumps({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0},
                                           "package": ""}, "capabilities": []}})


def reply(ret):
    def handler(line):
        req = json.loads(line)
        out = ret(req) if callable(ret) else ret
        if isinstance(out, list):
            return out
        out = dict(out)
        out["id"] = req.get("id")
        return [json.dumps(out)]
    return handler


def session(handler, greeting=()):
    srv = FakeServer(handler, greeting)
    q = QMPClient(srv.channel())
    return srv, q


def test_handshake_and_command():
    srv, q = session(reply({"return": {}}), greeting=(GREETING,))
    assert q.handshake()["QMP"]["version"]["qemu"]["major"] == 7
    assert q.command("query-status") == {}
    reqs = [json.loads(r) for r in srv.received]
    assert [r["execute"] for r in reqs] == ["qmp_capabilities", "query-status"]
    assert reqs[0]["id"] != reqs[1]["id"]
    srv.close()


def test_bad_greeting():
    srv, q = session(reply({"return": {}}), greeting=('{"hello": 1}',))
    with pytest.raises(ProtocolError, match="greeting"):
        q.handshake()
    srv.close()


def test_error_reply_carries_class_and_desc():
    srv, q = session(reply({"error": {"class": "CommandNotFound",
                                      "desc": "The command nope has not been found"}}))
    with pytest.raises(QMPError) as e:
        q.command("nope")
    assert e.value.error_class == "CommandNotFound"
    assert "has not been found" in e.value.desc
    srv.close()


def test_arguments_from_keywords_use_dashes():
    srv, q = session(reply({"return": []}))
    q.command("qom-list", path="/machine", some_arg=1)
    req = json.loads(srv.received[0])
    assert req["arguments"] == {"path": "/machine", "some-arg": 1}
    srv.close()


def test_events_before_reply_are_queued():
    ev = json.dumps({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}})

    def handler(line):
        req = json.loads(line)
        return [ev, json.dumps({"return": {}, "id": req["id"]})]

    srv, q = session(handler)
    q.command("stop")
    assert q.wait_event("STOP", timeout=0.1)["event"] == "STOP"
    srv.close()


def test_wait_event_with_match_and_timeout():
    srv, q = session(reply({"return": {}}))
    srv.server.sendall(json.dumps({"event": "SHUTDOWN", "data": {"guest": True}}).encode() + b"\n")
    with pytest.raises(EmulatorTimeout, match="no SHUTDOWN event"):
        q.wait_event("SHUTDOWN", timeout=0.3, match={"guest": False})
    assert q.wait_event("SHUTDOWN", timeout=0.3, match={"guest": True})
    srv.close()


def test_mismatched_id():
    srv, q = session(lambda line: [json.dumps({"return": {}, "id": 999})])
    with pytest.raises(ProtocolError, match="does not match"):
        q.command("query-status")
    srv.close()


def test_invalid_json_from_server():
    srv, q = session(lambda line: ["{not json"])
    with pytest.raises(ProtocolError, match="invalid JSON"):
        q.command("query-status")
    srv.close()


def test_reply_without_return_or_error():
    srv, q = session(reply({"something": 1}))
    with pytest.raises(ProtocolError, match="neither return nor error"):
        q.command("query-status")
    srv.close()
