"""Flows reloaded in a live `voicebot serve` (gunicorn, a real redis-server, the real Korean model, the
emulator placing calls): by its watcher, by SIGHUP to the server process and by `voicebot flows reload`.

The server serves a copy of tests/data/ko.yaml that the tests change. Its watcher looks every half
second; to show that SIGHUP and `voicebot flows reload` reload by themselves, those tests put the new
text in place with the old file's size and time (as a copy that keeps times can), which the watcher
does not look into and an explicit reload does. Which version a server serves is read from its
/metrics (``voicebot_flow_version_info``).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time

import pytest

from servers import ACCOUNT, REPO, TOKEN, Server, Stream, signed_post, voice_params
from voicebot.emulator import place_call
from voicebot.flow import flow_version
from voicebot.telephony.store import CallStore

KO = REPO / "tests" / "data" / "ko.yaml"
SIZE = len(KO.read_bytes()) + 600
"""Every version of the flow file is padded to this size with a trailing comment."""
WAIT = 180.0
OLD_NUMBER_PROMPT = "번호를 눌러 주세요"
NEW_NUMBER_PROMPT = "번호를 입력해 주세요"


def version_of(text: str, *, refund: bool = False, number_prompt: str = OLD_NUMBER_PROMPT,
               broken: bool = False) -> str:
    """The Korean test flow, changed: ``refund`` adds a third choice (환불, key 3) at the booking step;
    ``number_prompt`` is what the number step says; ``broken`` sends the check step nowhere. A caller
    has a minute to answer (in audio time), so that a call can wait through a reload."""
    text = text.replace("start: welcome\n", "start: welcome\ndefaults: {no_input_timeout: 60}\n")
    if refund:
        text = text.replace("      cancel: [취소]\n", "      cancel: [취소]\n      refund: [환불]\n")
    text = text.replace(f"    say: {OLD_NUMBER_PROMPT}\n", f"    say: {number_prompt}\n")
    if broken:
        text = text.replace('      "no": agent\n', '      "no": nowhere\n')
    padding = SIZE - len(text.encode()) - 2
    assert padding >= 0
    return text + "#" + " " * padding + "\n"


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reload-flows")
    (folder / "ko.yaml").write_text(version_of(KO.read_text(encoding="utf-8")), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, flows):
    srv = Server(tmp_path_factory.mktemp("reload"), redis_url, "reload", flows=flows, watch_seconds=0.5)
    yield srv
    srv.stop()


def served(server: Server) -> str | None:
    """The version of ko_test that new calls on ``server`` get."""
    import urllib.request

    metrics = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
    found = re.search(r'voicebot_flow_version_info\{flow="ko_test",version="(\w+)"\} 1\.0', metrics)
    return found.group(1) if found else None


def wait_until(condition, what: str, server: Server, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}:\n{server.output()[-3000:]}")
        time.sleep(0.1)


def talk(line: Stream, condition, what: str, server: Server, timeout: float = WAIT) -> None:
    """Go on with the call in real time (silence, marks echoed) until ``condition``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if line.closed or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} (closed: {line.closed}):\n{server.output()[-3000:]}")
        line.pump(0.2)


def hold(line: Stream, seconds: float, until=None, what: str = "", server: Server | None = None) -> None:
    """Keep the call on the line for ``seconds`` (or until ``until``) without letting its time run: a
    frame of silence every half second (the socket is closed after 5 s without a message; the
    caller's time to answer is counted in audio)."""
    deadline = time.monotonic() + seconds
    while not (until is not None and until()):
        if time.monotonic() > deadline:
            assert until is None, f"gave up waiting for {what}:\n{server.output()[-3000:] if server else ''}"
            break
        line.media()
        line.drain()
        time.sleep(0.5)
    assert not line.closed


def write(flows, text: str) -> None:
    (flows / "ko.yaml").write_text(text, encoding="utf-8")


def write_unseen(flows, text: str) -> None:
    """Put ``text`` in place with the current file's size and modification time (renamed into place,
    so that no look at the file ever sees another size or time)."""
    path = flows / "ko.yaml"
    before = path.stat()
    assert len(text.encode()) == before.st_size
    spare = flows / "ko.yaml.new"
    spare.write_text(text, encoding="utf-8")
    os.utime(spare, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(spare, path)


def serve(server: Server, flows, text: str) -> str:
    """Write ``text``, marked in its padding as this write's own, and wait until the watcher serves it
    (so the watcher has seen the file as it is now)."""
    mark = secrets.token_hex(8)
    text = text[:-len(mark) - 1] + mark + "\n"
    write(flows, text)
    wait_until(lambda: served(server) == flow_version(text), f"version {flow_version(text)}", server)
    return flow_version(text)


def call(server: Server, turns: list[dict]):
    report = place_call(server.url, turns, auth_token=TOKEN, account_sid=ACCOUNT, voice="ko", max_seconds=90,
                        redis_url=server.redis_url)
    assert not report.timed_out, (report.events, server.output()[-3000:])
    return report


def slots(server: Server, call_sid: str) -> dict:
    return (CallStore(server.redis_url, 60).get(call_sid) or {}).get("state", {}).get("slots", {})


def base() -> str:
    return KO.read_text(encoding="utf-8")


def test_the_watcher_serves_a_changed_file_and_a_new_call_understands_its_new_choice(server, flows):
    first = served(server)
    assert first == flow_version(version_of(base()))              # 환불 is no choice of the running version
    changed = serve(server, flows, version_of(base(), refund=True))   # no restart, no signal: the file changed
    report = call(server, [{"say": "환불"}, {"hangup": True}])
    assert slots(server, report.call_sid).get("booking") == "refund", (report.bot_prompts, server.output()[-2000:])
    assert OLD_NUMBER_PROMPT in report.bot_prompts                   # and it went on to the next step
    assert f"flow reload (watch): ko_test {first} -> {changed}" in server.output()


def test_a_broken_file_logs_file_and_line_and_calls_go_on(server, flows):
    running = serve(server, flows, version_of(base(), refund=True))
    broken = version_of(base(), refund=True, broken=True)
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "nowhere" in text)
    write(flows, broken)
    where = f"{flows / 'ko.yaml'}:{line}:"
    wait_until(lambda: where in server.output(), f"the problem at {where} in the log", server)
    assert "nowhere" in server.output().split(where, 1)[1].splitlines()[0]
    assert served(server) == running
    report = call(server, [{"say": "환불"}, {"hangup": True}])       # served by the running version
    assert slots(server, report.call_sid).get("booking") == "refund"


def test_sighup_reloads_in_the_worker_and_a_call_in_progress_keeps_its_version(server, flows):
    old = serve(server, flows, version_of(base(), refund=True))
    worker = server.worker_pid()
    call_sid = "CA" + secrets.token_hex(16)
    store = CallStore(server.redis_url, 60)
    line = Stream(server, signed_post(server, server.public_url + "/twilio/voice", voice_params(call_sid)), call_sid)
    line.open()
    talk(line, lambda: len(line.marks) >= 2, "the opening and the booking question", server)

    new_text = version_of(base(), number_prompt=NEW_NUMBER_PROMPT)     # no refund, another number prompt
    write_unseen(flows, new_text)
    hold(line, 2.0)                                                 # four looks of the watcher
    assert served(server) == old                                    # the watcher does not see this change
    os.kill(server.proc.pid, signal.SIGHUP)                         # to `voicebot serve`, as systemd's reload does
    hold(line, WAIT, until=lambda: served(server) == flow_version(new_text), what="the reload after SIGHUP",
         server=server)
    assert server.worker_pid() == worker                            # gunicorn did not replace its worker
    assert "flow reload (SIGHUP)" in server.output()

    line.dtmf("3")                                                  # the old version's third choice
    talk(line, lambda: (store.get(call_sid) or {}).get("state", {}).get("step") == "number",
         "the number question", server)
    assert not line.closed                                          # the call went on through the reload
    state = store.get(call_sid)["state"]
    assert state["slots"].get("booking") == "refund"
    said = [entry["text"] for entry in state["transcript"] if entry["who"] == "bot"]
    assert said[-1] == OLD_NUMBER_PROMPT and NEW_NUMBER_PROMPT not in said
    line.close()

    report = call(server, [{"dtmf": "1"}, {"hangup": True}])       # a new call: the new version
    assert NEW_NUMBER_PROMPT in report.bot_prompts and OLD_NUMBER_PROMPT not in report.bot_prompts


def test_voicebot_flows_reload_reaches_the_server_and_prints_what_it_did(server, flows):
    old = serve(server, flows, version_of(base()))
    env = {**os.environ, "VOICEBOT_CONFIG": str(server.config), "REDIS_URL": server.redis_url}
    command = [sys.executable, "-m", "voicebot", "flows", "reload", "--wait", str(WAIT)]

    new_text = version_of(base(), refund=True)
    write_unseen(flows, new_text)
    time.sleep(2.0)
    assert served(server) == old                                    # the watcher does not see this change
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=WAIT + 30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"loaded ko_test {old} -> {flow_version(new_text)}" in done.stdout
    assert served(server) == flow_version(new_text)

    broken = version_of(base(), broken=True)
    write_unseen(flows, broken)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=WAIT + 30)
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "nowhere" in text)
    assert f"{flows / 'ko.yaml'}:{line}:" in done.stderr and "running version" in done.stderr
    assert served(server) == flow_version(new_text)
