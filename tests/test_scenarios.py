"""Operators' regression scenarios (flows/scenarios/*.yaml) run as tests, like `voicebot chat --script`."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from voicebot.cli import main
from voicebot.commands.context import chat_identity
from voicebot.config import load_settings
from voicebot.flow import load_flow
from voicebot.simulator import load_scenarios, run_scenario

REPO = Path(__file__).resolve().parent.parent
FILES = sorted((REPO / "flows" / "scenarios").glob("*.yaml"))
CASES = [(f, s) for f in FILES for s in load_scenarios(f)[1]]
_FLOWS: dict[str, object] = {}
_IDENTITY: dict[Path, object] = {}


def _flow(path: str):
    if path not in _FLOWS:
        _FLOWS[path] = load_flow(path)
    return _FLOWS[path]


def _identity(file: Path, defaults: dict):
    """The identity checks of one scenario file, set up as `voicebot chat --script` sets them up: the
    file's ``customers`` (else the configured directory), counters in this process, one set for the
    whole file (so a file can show a lockout across its scenarios)."""
    if file not in _IDENTITY:
        _IDENTITY[file] = chat_identity(load_settings(), _flow(defaults["flow"]), shared=False,
                                        customers=defaults.get("customers"))
    return _IDENTITY[file]


def test_there_are_scenarios_for_every_flow():
    flows = {p.stem for p in (REPO / "flows").glob("*.yaml")}
    covered = {Path(load_scenarios(f)[0]["flow"]).stem for f in FILES}
    assert flows and flows <= covered


@pytest.mark.parametrize("file, scenario", CASES, ids=[f"{f.stem}:{s['name']}" for f, s in CASES])
def test_scenario(file, scenario):
    defaults, _ = load_scenarios(file)
    result = run_scenario(_flow(defaults["flow"]), scenario, caller=defaults.get("caller", "+31612345678"),
                          at=defaults.get("at"), identity=_identity(file, defaults))
    assert result.passed, "\n".join(result.failures + ["transcript:"] + result.transcript)


def test_script_command_reports_and_fails(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["chat", "--script", str(FILES[0])])
    assert ok.exit_code == 0, ok.output
    assert "PASS" in ok.output and " 0 failed" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"flow: {REPO / 'flows' / 'energie.yaml'}\nat: '2026-11-23T10:00:00'\n"
                   "scenarios:\n  - name: wrong expectation\n    turns:\n"
                   "      - say: ik wil mijn meterstand doorgeven\n        expect: {intent: storing_melden}\n")
    result = runner.invoke(main, ["chat", "--script", str(bad)])
    assert result.exit_code == 1
    assert "FAIL  wrong expectation" in result.output and "expected 'storing_melden'" in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("scenarios:\n  - name: x\n    turns:\n      - sey: hallo\n")
    result = runner.invoke(main, ["chat", "--script", str(broken)])
    assert result.exit_code == 1 and "unknown keys ['sey']" in result.output


@pytest.mark.parametrize("text, problem", [
    ("scenarios:\n  - name: x\n    turns:\n      - sey: hallo\n", "scenario 'x', turn 1: unknown keys ['sey']"),
    ("scenarios: [{name: x, turns: [{say: a, dtmf: '1'}]}]\n", "scenario 'x', turn 1: one of say/dtmf/"),
    ("scenarios: [{name: x, turns: [{dtmf: 12a}]}]\n", "scenario 'x', turn 1: dtmf '12a': use the keys"),
    ("scenarios: [{name: x, turns: [{hangup: false}]}]\n", "scenario 'x', turn 1: write 'hangup: true'"),
    ("scenarios: [{name: x, turns: [{say: a, expect: {intnet: a}}]}]\n", "turn 1: unknown expectations ['intnet']"),
    ("scenarios: [{name: x, turns: [{expect: {prompt_contains: 3}}]}]\n",
     "expect.prompt_contains must be text or a list of texts, not 3"),
    ("scenarios: [{turns: []}, {name: y}]\n", "scenario 2 needs 'turns' (a list)"),
    ("scenarios: [{name: x, speech: 1, turns: []}]\n", "scenario 'x': 'speech' must be true or false"),
    ("caller: +31612345678\nscenarios: [{turns: []}]\n", "quote the number in 'caller'"),
    ("scenarios: []\n", "'scenarios' must be a non-empty list"),
])
def test_scenario_file_problems_name_the_file_scenario_and_turn(tmp_path, text, problem):
    """The schema `voicebot call --script` shares: its sentences, located in the file."""
    from voicebot.errors import ScenarioError

    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenarios(bad)
    assert str(raised.value).startswith(f"{bad}: ") and problem in str(raised.value)
