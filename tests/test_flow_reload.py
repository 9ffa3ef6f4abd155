"""Flows reloaded in a running process, without a server: the runtime's reload, what it keeps for calls
in progress, the watcher thread and `voicebot flows reload` over a real Redis.

The runtime here has no speech model (its calls would go by keypad) and renders prompts with the
real espeak-ng; the flow is a copy of tests/data/mini.yaml that each test changes on disk.
tests/test_flow_reload_server.py does the same through a live `voicebot serve`.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from voicebot.cli import main
from voicebot.config import SpeechSettings
from voicebot.dialog.events import CallStarted, Utterance
from voicebot.flow import flow_version
from voicebot.speech.recognizer import SpeechModels
from voicebot.telephony.flow_reload import EngineVersions
from voicebot.telephony.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
MINI = REPO / "tests" / "data" / "mini.yaml"
NEW_EXAMPLE = "de verwarming blijft koud"
"""Not understood by mini.yaml as written (no intent reaches its confidence floor)."""
WAIT = 120.0


def with_example(text: str, intent: str, example: str) -> str:
    """``text`` (a flow) with one more example for ``intent``, in the flow's own inline list."""
    head, sep, tail = text.partition(f"  {intent}:\n")
    line_start = tail.index("examples: [") + len("examples: [")
    return head + sep + tail[:line_start] + f"{example}, " + tail[line_start:]


def wait_until(condition, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


@pytest.fixture
def flows(tmp_path):
    folder = tmp_path / "flows"
    folder.mkdir()
    shutil.copy(MINI, folder / "mini.yaml")
    return folder


@pytest.fixture
def runtime(settings, flows, tmp_path):
    no_models = SpeechModels(SpeechSettings(models_dir=tmp_path, models={"nl": str(tmp_path / "none")}))
    settings = dataclasses.replace(settings, flows_dir=flows, default_flow="mini", flows_watch_seconds=0.1,
                                   prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path / "cache"))
    rt = Runtime(settings, models=no_models)
    yield rt
    rt.close()


def understood(engine, text: str) -> str | None:
    """The intent a fresh call on ``engine`` that says ``text`` at the menu is taken to want (taken,
    or asked to confirm), None when it is asked again."""
    state, _ = engine.start(CallStarted(call_id="CA-reload", caller="+31612345678", called="+31850000000",
                                        at="2026-03-02T10:00:00"))
    engine.handle(state, Utterance(text=text, confidence=0.9))
    pending = state.to_dict().get("pending") or {}
    return state.intent or pending.get("intent")


def version_served(rt: Runtime, flow_id: str) -> str:
    return rt.flows[flow_id].version


def test_a_changed_flow_is_served_to_new_calls_and_understands_its_new_example(runtime, flows):
    path = flows / "mini.yaml"
    before = runtime.engine_for("mini")
    assert before.flow.classifier.classify(NEW_EXAMPLE).intent is None
    assert understood(before, NEW_EXAMPLE) is None

    text = with_example(path.read_text(encoding="utf-8"), "storing", NEW_EXAMPLE)
    path.write_text(text, encoding="utf-8")
    result = runtime.reload_flows("test")

    assert result.loaded == {"mini": (before.flow.version, flow_version(text))} and not result.problems
    after = runtime.engine_for("mini")
    assert after is not before and after.flow.version == flow_version(text) == version_served(runtime, "mini")
    assert after.flow.classifier.classify(NEW_EXAMPLE).intent == "storing"
    assert understood(after, NEW_EXAMPLE) == "storing"
    assert understood(before, NEW_EXAMPLE) is None            # a call that started before: as it was
    assert runtime.prompts.is_cached(after.flow.prompt_text("menu"), "nl")   # rendered before it is served
    metrics = runtime.metrics.render().decode()
    assert f'voicebot_flow_version_info{{flow="mini",version="{flow_version(text)}"}} 1.0' in metrics
    assert f'version="{before.flow.version}"' not in metrics
    assert 'voicebot_flow_reloads_total{result="loaded"} 1.0' in metrics


def test_the_prompts_of_a_new_version_are_rendered_before_it_is_served(runtime, flows):
    path = flows / "mini.yaml"
    new_prompt = "Waarmee kan ik u vandaag van dienst zijn?"
    assert not runtime.prompts.is_cached(new_prompt, "nl")
    path.write_text(path.read_text(encoding="utf-8").replace("Waarmee kan ik u helpen?", new_prompt),
                    encoding="utf-8")
    runtime.reload_flows("test")
    assert runtime.flows["mini"].prompt_text("menu") == new_prompt
    assert runtime.prompts.is_cached(new_prompt, "nl")


def test_a_broken_file_keeps_the_running_version_and_logs_every_problem_with_its_line(runtime, flows, caplog):
    path = flows / "mini.yaml"
    running = version_served(runtime, "mini")
    text = path.read_text(encoding="utf-8")
    broken = text.replace("routes: {meterstand: klantnummer,", "routes: {meterstand: nergens,").replace(
        "    next: geboortedatum\n", "    next: nog_verder\n")
    lines = broken.splitlines()
    first = next(i for i, line in enumerate(lines, 1) if "nergens" in line)
    second = next(i for i, line in enumerate(lines, 1) if "nog_verder" in line)
    path.write_text(broken, encoding="utf-8")
    with caplog.at_level("INFO", logger="voicebot.runtime"):
        result = runtime.reload_flows("test")
    assert version_served(runtime, "mini") == running and not result.loaded
    assert result.kept == [str(path)]
    logged = caplog.text
    assert f"{path}:{first}:" in logged and f"{path}:{second}:" in logged
    assert "kept their running version" in logged
    assert "nergens" in str(result.problems) and "nog_verder" in str(result.problems)
    assert 'voicebot_flow_reloads_total{result="rejected"} 1.0' in runtime.metrics.render().decode()
    assert understood(runtime.engine_for("mini"), "ik heb een storing") == "storing"   # calls go on

    caplog.clear()
    with caplog.at_level("INFO", logger="voicebot.runtime"):
        again = runtime.reload_flows("watch", force=False)       # the watcher says it once, not every look
    assert not again.problems and "nergens" not in caplog.text

    fixed = with_example(text, "storing", NEW_EXAMPLE)
    path.write_text(fixed, encoding="utf-8")
    assert runtime.reload_flows("test").loaded == {"mini": (running, flow_version(fixed))}


def test_a_call_keeps_the_version_it_recorded_and_old_versions_are_kept_bounded(runtime, flows):
    path = flows / "mini.yaml"
    first = runtime.engine_for("mini")
    text = path.read_text(encoding="utf-8")
    path.write_text(with_example(text, "storing", NEW_EXAMPLE), encoding="utf-8")
    runtime.reload_flows("test")
    second = runtime.engine_for("mini")
    assert runtime.engine_for("mini", first.flow.version) is first       # after-stream of an earlier call
    assert runtime.call_flow({"flow": "mini", "flow_version": first.flow.version}) is first.flow
    assert runtime.engine_for("mini", "0123456789ab") is second             # unknown: the current one
    assert runtime.engine_for("mini", None) is second

    first_version, first = first.flow.version, None
    for n in range(3):                                    # three more versions: the first falls out
        path.write_text(with_example(text, "storing", f"de verwarming blijft koud nummer {n}"), encoding="utf-8")
        runtime.reload_flows("test")
    gc.collect()
    assert runtime.engine_for("mini", first_version).flow.version == version_served(runtime, "mini")
    assert runtime.engine_for("mini", second.flow.version) is second       # a live call holds it: kept


def test_engine_versions_keep_the_last_few_of_each_flow_and_any_still_in_use():
    class Engine:
        def __init__(self, flow_id, version):
            self.flow = type("F", (), {"id": flow_id, "version": version})()

    versions = EngineVersions(keep=2)
    held = Engine("a", "v0")
    versions.retire(held)
    for n in range(1, 5):
        versions.retire(Engine("a", f"v{n}"))
    versions.retire(Engine("b", "w0"))
    gc.collect()
    assert versions.get("a", "v0") is held                          # still in use somewhere
    assert versions.get("a", "v1") is None and versions.get("a", "v2") is None
    assert versions.get("a", "v3") is not None and versions.get("a", "v4") is not None
    assert versions.get("b", "w0") is not None                      # another flow's are its own


def test_new_removed_and_clashing_files(runtime, flows, caplog):
    path = flows / "mini.yaml"
    text = path.read_text(encoding="utf-8")
    (flows / "second.yaml").write_text(text.replace("flow: mini", "flow: second"), encoding="utf-8")
    result = runtime.reload_flows("test")
    assert set(result.loaded) == {"second"} and result.loaded["second"][0] == ""
    assert runtime.engine_for("second").flow.id == "second"

    (flows / "clash.yaml").write_text(text, encoding="utf-8")                # a second file for 'mini'
    result = runtime.reload_flows("test")
    assert not result.loaded and result.kept == [str(flows / "clash.yaml")]
    assert f"{flows / 'clash.yaml'}:1: flow id 'mini' is also used by {path}" in str(result.problems[0])
    (flows / "clash.yaml").unlink()

    (flows / "second.yaml").unlink()
    with caplog.at_level("WARNING", logger="voicebot.runtime"):
        result = runtime.reload_flows("test")
    assert result.orphaned == ["second"] and "second" in runtime.flows      # still served until a restart
    assert "no flow file defines second any more" in caplog.text
    assert runtime.reload_flows("test").orphaned == []                     # said once


def test_the_watcher_loads_a_changed_file_by_itself(runtime, flows):
    path = flows / "mini.yaml"
    runtime.ready.set()                          # no start-up work in this runtime
    reloader = runtime.watch_flows()
    text = with_example(path.read_text(encoding="utf-8"), "storing", NEW_EXAMPLE)
    path.write_text(text, encoding="utf-8")
    wait_until(lambda: version_served(runtime, "mini") == flow_version(text), "the watcher to load the change")
    assert runtime.engine_for("mini").flow.classifier.classify(NEW_EXAMPLE).intent == "storing"
    reloader.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("voicebot-flows")]


def test_flows_reload_asks_every_listening_process_over_redis(runtime, flows, redis_url, tmp_path):
    path = flows / "mini.yaml"
    runtime.settings = dataclasses.replace(runtime.settings, flows_watch_seconds=0)   # only when asked
    runtime.ready.set()
    reloader = runtime.watch_flows()
    wait_until(reloader.listening.is_set, "the subscription to the reload channel")
    old = version_served(runtime, "mini")
    text = with_example(path.read_text(encoding="utf-8"), "storing", NEW_EXAMPLE)
    path.write_text(text, encoding="utf-8")
    config = tmp_path / "cli.yaml"
    config.write_text("redis: {url: '%s'}\n" % redis_url)

    result = CliRunner().invoke(main, ["--config", str(config), "flows", "reload", "--wait", "120"])
    assert result.exit_code == 0, result.output
    assert f": loaded mini {old} -> {flow_version(text)}" in result.output
    assert version_served(runtime, "mini") == flow_version(text)

    path.write_text(text.replace("next: geboortedatum", "next: nergens"), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "flows", "reload", "--wait", "120"])
    assert result.exit_code == 1
    assert f"{path}:" in result.output and "nergens" in result.output and "running version" in result.output
    assert version_served(runtime, "mini") == flow_version(text)
    reloader.stop()


def test_flows_reload_says_when_no_server_listens(redis_url, tmp_path):
    config = tmp_path / "cli.yaml"
    config.write_text("redis: {url: '%s'}\n" % redis_url)
    result = CliRunner().invoke(main, ["--config", str(config), "flows", "reload"])
    assert result.exit_code == 1 and "no running server listens" in result.output


# -- the Korean test flow through the web app: a stream and after-stream use the version a call recorded --

KO = REPO / "tests" / "data" / "ko.yaml"
PUBLIC = "https://bot.example.com"
TOKEN = "reload-auth-token"
OLD_SAY = "상담원에게 연결해 드리겠습니다"
NEW_SAY = "곧 상담원이 받습니다"


@pytest.fixture
def ko_app(settings, tmp_path):
    from voicebot.web import create_app

    folder = tmp_path / "ko-flows"
    folder.mkdir()
    shutil.copy(KO, folder / "ko.yaml")
    no_models = SpeechModels(SpeechSettings(models_dir=tmp_path, models={"ko": str(tmp_path / "none")}))
    settings = dataclasses.replace(
        settings, flows_dir=folder, default_flow="ko_test",
        prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path / "cache"),
        telephony=dataclasses.replace(settings.telephony, auth_token=TOKEN, public_url=PUBLIC, account_sid="",
                                      agent_number="+31201234567"))
    rt = Runtime(settings, models=no_models)
    yield rt, create_app(settings, runtime=rt).test_client(), folder / "ko.yaml"
    rt.close()


def new_transfer_words(path: Path) -> str:
    """The flow file with another announcement for a transfer to a person; returns the new version."""
    text = path.read_text(encoding="utf-8").replace(f"  say: {OLD_SAY}\n", f"  say: {NEW_SAY}\n")
    path.write_text(text, encoding="utf-8")
    return flow_version(text)


def test_a_stream_starts_on_the_version_its_call_was_answered_with(ko_app):
    from test_call_session import Line

    rt, _client, path = ko_app
    answered = rt.flows["ko_test"].version
    rt.store.update("CA-answered-before", flow="ko_test", flow_version=answered)   # as /twilio/voice records it
    new = new_transfer_words(path)
    assert rt.reload_flows("test").loaded == {"ko_test": (answered, new)}

    before = Line(rt, "CA-answered-before")
    after = Line(rt, "CA-answered-after")
    assert before.session.engine.flow.version == answered
    assert after.session.engine.flow.version == new
    for line in (before, after):
        line.echo_marks()
        line.dtmf("0")                                           # a person, please: the transfer's own words
    assert OLD_SAY in before.said() and NEW_SAY not in before.said()
    assert NEW_SAY in after.said()


def test_after_stream_hands_a_broken_call_over_with_the_version_it_ran_on(ko_app):
    import urllib.parse

    from twilio.request_validator import RequestValidator

    rt, client, path = ko_app
    engine = rt.engine_for("ko_test")
    call_sid = "CA-broken-stream"
    state, _ = engine.start(CallStarted(call_id=call_sid, caller="+821012345678", called="+82200000000"))
    rt.store.update(call_sid, flow="ko_test", flow_version=engine.flow.version, caller="+821012345678",
                    state=state.to_dict())                       # the stream broke: no ending stored
    new_transfer_words(path)
    rt.reload_flows("test")

    url, params = PUBLIC + "/twilio/after-stream", {"CallSid": call_sid}
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    response = client.post(urllib.parse.urlsplit(url).path, data=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200
    twiml = response.get_data(as_text=True)
    assert OLD_SAY in twiml and NEW_SAY not in twiml
    assert rt.store.get(call_sid)["ending"]["reason"] == "error"
