"""The README and docs/ show commands and files a reader runs as written from a fresh clone.

A fresh clone has only `.venv` (from `make run` or `make test`) and the Korean test model, so a
command in a shell example must name `.venv/bin/...`, a file shown as "the file" must be that
file, and the settings a shown call needs must exist and point where it says.
"""

import re
import shutil
from pathlib import Path

import pytest

from voicebot.config import load_settings
from voicebot.emulator import load_scenario
from voicebot.flow import load_flow, load_flows
from voicebot.simulator import load_scenarios, run_scenario

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
KO_SERVER = REPO / "tests" / "data" / "ko_server" / "config.yaml"
KO_CALL = REPO / "tests" / "data" / "calls" / "ko_call.yaml"


def _blocks(page: Path, language: str) -> list[str]:
    """The fenced code blocks of ``page`` in ``language`` ("" for the shell examples)."""
    return re.findall(rf"^```{language}\n(.*?)^```$", page.read_text(encoding="utf-8"), re.S | re.M)


def _commands(page: Path) -> list[str]:
    """The shell lines of ``page``: its unlabelled blocks, without comments, and inline calls of a
    program (`.venv/bin/...`, or a script run by `python`: prose names commands as `voicebot nlu`)."""
    lines = [line.split("  #")[0].strip() for block in _blocks(page, "") for line in block.splitlines()]
    inline = re.findall(r"`((?:\.venv/bin/|python3? )[^`]+)`", page.read_text(encoding="utf-8"))
    return [line for line in lines + inline if line]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_shell_examples_use_the_projects_environment(page):
    """`voicebot` and the project's Python exist only in .venv until a reader activates it."""
    commands = _commands(page)
    assert commands
    for command in commands:
        for part in re.split(r"\||&&|;", command):
            program = re.sub(r"^(\w+=\S+\s+)+", "", part.strip()).split(" ")[0]
            assert program not in {"voicebot", "python", "python3", "pytest", "honcho"}, (
                f"{page.name}: `{command}` runs `{program}` from PATH, which a fresh clone does not have")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_files_named_in_shell_examples_exist(page):
    for command in _commands(page):
        for path in re.findall(r"(?<![\w/.])((?:flows|tests|benchmarks)/[\w/.-]+\.(?:yaml|py))", command):
            assert (REPO / path).is_file(), f"{page.name}: `{command}` names {path}, which is not in the repository"


def test_the_readme_scenario_example_passes_where_it_says_it_lives(tmp_path):
    """The README's scenario block, saved beside the flow as `flows/scenarios/` files are, passes."""
    (block,) = [b for b in _blocks(REPO / "README.md", "yaml") if b.startswith("flow: ../energie.yaml")]
    shutil.copy(REPO / "flows" / "energie.yaml", tmp_path / "energie.yaml")
    (tmp_path / "scenarios").mkdir()
    file = tmp_path / "scenarios" / "readme.yaml"
    file.write_text(block, encoding="utf-8")
    defaults, scenarios = load_scenarios(file)
    flow = load_flow(defaults["flow"])
    assert len(scenarios) == 2
    for scenario in scenarios:
        result = run_scenario(flow, scenario, caller=defaults["caller"], at=defaults["at"])
        assert result.passed, "\n".join(result.failures + result.transcript)


def test_the_readme_shows_the_korean_call_file_as_it_is():
    shown = [b for b in _blocks(REPO / "README.md", "yaml") if 'caller: "+821012345678"' in b]
    assert shown == [KO_CALL.read_text(encoding="utf-8")]


def test_the_korean_server_settings_serve_the_call_the_readme_places():
    """`VOICEBOT_CONFIG=tests/data/ko_server/config.yaml make run`: the Korean flow, a number to dial."""
    settings = load_settings(KO_SERVER, environ={})
    assert settings.flows_dir.resolve() == REPO / "tests" / "data"
    flows = load_flows(settings.flows_dir, settings.transfer_words)
    assert flows[settings.default_flow].language == "ko"
    assert settings.telephony.agent_number.startswith("+")
    # Shared with the default config, so the prompts rendered and models installed there are used.
    assert settings.prompts.cache_dir.resolve() == REPO / "audio" / "cache"
    assert settings.speech.models_dir.resolve() == REPO / "models"
    assert load_scenario(KO_CALL)["expect"]["transfer"] == "number"
