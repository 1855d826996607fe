# SPDX-License-Identifier: GPL-2.0-or-later
# QMP wire behaviour, checked on qemu-slim and on the real QEMU with the same tests:
# greeting, negotiation, query-*, stop/cont events, quit, and malformed input answered
# with an error while the connection stays usable.

import json

import pytest

import qtest
from conftest import targets

TARGETS = targets("qmp", "qtest")

CORE_COMMANDS = ["qmp_capabilities", "query-version", "query-status", "query-commands",
                 "stop", "cont", "quit", "system_reset"]


@pytest.fixture(params=TARGETS)
def target(request):
    return request.param


def test_greeting_version_status(launch, target):
    m = launch(target, qtest=False)
    g = m.qmp.greeting["QMP"]
    assert set(g["version"]["qemu"]) == {"major", "minor", "micro"}
    assert isinstance(g["version"]["package"], str)
    assert isinstance(g["capabilities"], list)
    ver = m.qmp.command("query-version")
    assert ver["qemu"] == g["version"]["qemu"]
    assert ver["package"] == g["version"]["package"]
    st = m.qmp.command("query-status")
    assert isinstance(st["running"], bool) and st["status"] in ("running", "prelaunch", "paused")


def test_commands_before_negotiation_are_refused(launch, target):
    m = launch(target, qtest=False, negotiate=False)
    with pytest.raises(qtest.QMPError) as e:
        m.qmp.command("query-status")
    assert e.value.error_class == "CommandNotFound"
    assert "qmp_capabilities" in e.value.desc
    assert m.qmp.command("qmp_capabilities") == {}
    assert "status" in m.qmp.command("query-status")


def test_query_commands_lists_core(launch, target):
    m = launch(target, qtest=False)
    names = {c["name"] for c in m.qmp.command("query-commands")}
    missing = [c for c in CORE_COMMANDS if c not in names]
    assert not missing, missing


def test_stop_cont_events(launch, target):
    m = launch(target)
    assert m.qmp.command("query-status")["running"] is True
    assert m.qmp.command("stop") == {}
    ev = m.qmp.wait_event("STOP", timeout=5)
    assert set(ev["timestamp"]) == {"seconds", "microseconds"}
    st = m.qmp.command("query-status")
    assert (st["status"], st["running"]) == ("paused", False)
    assert m.qmp.command("cont") == {}
    m.qmp.wait_event("RESUME", timeout=5)
    st = m.qmp.command("query-status")
    assert (st["status"], st["running"]) == ("running", True)


def test_system_reset(launch, target):
    m = launch(target)
    assert m.qmp.command("system_reset") == {}
    assert m.qmp.command("query-status")["running"] is True


def test_quit(launch, target):
    m = launch(target, qtest=False)
    assert m.qmp.command("quit") == {}
    ev = m.qmp.wait_event("SHUTDOWN", timeout=10)
    assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert m.wait(10) == 0


BAD_INPUT = [
    # (raw line, substring of the error's desc)
    (b'{"execute": }', "JSON parse error"),
    (b'[1, 2]', "must be a JSON object"),
    (b'{"execute": 5}', "'execute' must be a string"),
    (b'{"foo": 1}', "'foo' is unexpected"),
    (b'{"execute": "query-status", "arguments": [1]}', "'arguments' must be an object"),
    (b'{"execute": "query-status", "arguments": {"x": 1}}', "'x' is unexpected"),
]


@pytest.mark.parametrize("raw,desc", BAD_INPUT, ids=[d for _, d in BAD_INPUT])
def test_malformed_input_gets_error_and_connection_survives(launch, target, raw, desc):
    m = launch(target, qtest=False)
    m.qmp.send_raw(raw + b"\n")
    reply = m.qmp.read_reply(timeout=10)
    assert reply["error"]["class"] == "GenericError", reply
    assert desc in reply["error"]["desc"], reply
    assert m.qmp.command("query-status")["running"] in (True, False)


def test_unknown_command_and_id_echo(launch, target):
    m = launch(target, qtest=False)
    m.qmp.send_raw(json.dumps({"execute": "no-such-cmd", "id": "abc"}).encode() + b"\n")
    reply = m.qmp.read_reply(timeout=10)
    assert reply["id"] == "abc"
    assert reply["error"]["class"] == "CommandNotFound"
    assert "no-such-cmd" in reply["error"]["desc"]
