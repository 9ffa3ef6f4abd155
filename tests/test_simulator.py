"""`voicebot chat`: the text call's transcript, typed in a terminal or piped in."""

import io
from pathlib import Path

from click.testing import CliRunner

from voicebot.cli import main
from voicebot.flow import load_flow
from voicebot.simulator import chat

MINI_PATH = Path(__file__).parent / "data" / "mini.yaml"
WEEKDAY = "2026-11-23T10:00:00"


def test_piped_input_shows_each_caller_line_where_it_was_said():
    lines = "meterstand doorgeven\n#1234567\n\nja\n"
    result = CliRunner().invoke(main, ["chat", "--flow", str(MINI_PATH), "--at", WEEKDAY], input=lines)
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    said = [line for line in out if line.startswith("you>")]
    assert said == ["you> meterstand doorgeven", "you> #1234567", "you> (silence)", "you> ja"]
    # each caller line sits between the bot's question and its answer to it
    assert out.index("you> meterstand doorgeven") < out.index("bot> Wat is uw klantnummer?")
    assert out.index("bot> Wat is uw klantnummer?") < out.index("you> #1234567")
    assert out.index("you> (silence)") < out.index("bot> Ik hoorde niets. Ik noteer 1 2 3 4 5 6 7, klopt dat?")
    assert out.index("you> ja") < out.index("bot> Wat is uw geboortedatum?")
    assert out[-1] == "     [caller hung up]"


def test_a_terminal_shows_what_is_typed_itself_so_nothing_is_echoed():
    prompts: list[str] = []
    lines = iter(["meterstand doorgeven"])

    def typed(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    chat(load_flow(MINI_PATH), caller="+31612345678", at=WEEKDAY, read=typed, out=out, echo=False)
    assert prompts == ["you> ", "you> "] and "meterstand doorgeven" not in out.getvalue()
