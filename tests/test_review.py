"""The review loop without a browser: the queue and its verdicts in a real SQLite records database,
sentences added to flow files byte for byte, `voicebot review export` and `voicebot nlu --eval`."""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from review_records import a_call, records_url, write_calls
from voicebot.cli import main
from voicebot.flow import load_flow, parse_flow
from voicebot.flow.additions import AdditionError, add_examples
from voicebot.records import review
from voicebot.records.schema import reviews

REPO = Path(__file__).resolve().parent.parent
MINI = REPO / "tests" / "data" / "mini.yaml"
ENERGIE = REPO / "flows" / "energie.yaml"
NOT_UNDERSTOOD = "mijn lampen doen het niet meer"


@pytest.fixture
def calls(tmp_path):
    """Two calls of mini and one of another flow, each with turns of every kind."""
    old = a_call("mini", [("menu", "ik wil een pizza bestellen", "out_of_scope", None, 0.2),
                          ("menu", "storing melden", "accepted", "storing", 0.9)],
                 started=dt.datetime(2026, 3, 1, 9, 0))
    new = a_call("mini", [("menu", NOT_UNDERSTOOD, "not_understood", "storing", 0.28),
                          ("menu", "meterstand", "denied", "meterstand", 0.5),
                          ("geboortedatum", "[verborgen]", "not_understood", "geboortedatum", None),
                          ("menu", "", "not_understood", None, None),
                          ("menu", "ja", "confirmed", "meterstand", 0.5)],
                 started=dt.datetime(2026, 3, 2, 9, 0))
    other = a_call("ko_test", [("menu", "모르겠어요", "low_confidence", "storing", 0.3)],
                   started=dt.datetime(2026, 3, 1, 12, 0), language="ko")
    url = records_url(tmp_path)
    engine = write_calls(url, [old, new, other])
    return engine, url, old, new, other


def test_the_queue_lists_what_was_not_understood_newest_first(calls):
    engine, _, old, new, other = calls
    items = review.queue(engine, hidden_texts={"[verborgen]"})
    assert [(i.call_id, i.seq) for i in items] == [(new["call"]["call_id"], 1), (new["call"]["call_id"], 2),
                                                   (other["call"]["call_id"], 1), (old["call"]["call_id"], 1)]
    first = items[0]
    assert (first.flow, first.step, first.text, first.intent, first.confidence, first.result) == (
        "mini", "menu", NOT_UNDERSTOOD, "storing", 0.28, "not_understood")
    assert first.started_at == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
    assert review.waiting_count(engine, hidden_texts={"[verborgen]"}) == 4
    # the redaction text stands for a secret: listed only when nobody says it is one
    assert "[verborgen]" in [i.text for i in review.queue(engine)]
    assert [i.flow for i in review.queue(engine, flow="ko_test")] == ["ko_test"]
    assert len(review.queue(engine, limit=1)) == 1


def test_a_verdict_takes_the_sentence_out_of_the_queue_until_taken_back(calls):
    engine, _, old, new, _ = calls
    call_id = new["call"]["call_id"]
    verdict = review.mark(engine, call_id, 1, "intent", "storing", "carol", intents=["storing", "meterstand"])
    assert (verdict.label, verdict.intent, verdict.text, verdict.flow) == ("intent", "storing", NOT_UNDERSTOOD, "mini")
    assert (call_id, 1) not in [(i.call_id, i.seq) for i in review.queue(engine)]
    again = review.mark(engine, call_id, 1, "noise", "storing", "dave")          # a verdict changed: one row
    assert again.id == verdict.id and again.intent is None
    with engine.connect() as conn:
        assert conn.execute(sa.select(reviews.c.label, reviews.c.reviewer)).all() == [("noise", "dave")]
    assert [v.reviewer for v in review.recent(engine)] == ["dave"]
    assert review.unmark(engine, call_id, 1)
    assert (call_id, 1) in [(i.call_id, i.seq) for i in review.queue(engine)]
    assert not review.unmark(engine, call_id, 1)


@pytest.mark.parametrize("label, intent, why", [
    ("intent", None, "choose the intent"),
    ("intent", "pizza", "no intent 'pizza'"),
    ("maybe", None, "a verdict is one of"),
])
def test_a_verdict_that_is_not_one_is_refused(calls, label, intent, why):
    engine, _, _, new, _ = calls
    with pytest.raises(review.ReviewError, match=why):
        review.mark(engine, new["call"]["call_id"], 1, label, intent, "carol", intents=["storing"])
    with pytest.raises(review.ReviewError, match="no such turn"):
        review.mark(engine, "CAnothere", 1, "noise", None, "carol")
    assert review.recent(engine) == []


def test_pending_examples_leave_noise_out_and_exported_ones_stay_exported(calls):
    engine, _, old, new, _ = calls
    review.mark(engine, new["call"]["call_id"], 1, "intent", "storing", "carol")
    review.mark(engine, new["call"]["call_id"], 2, "noise", None, "carol")
    review.mark(engine, old["call"]["call_id"], 1, "out_of_scope", None, "carol")
    waiting = review.pending_examples(engine, "mini")
    assert [(v.label, v.text) for v in waiting] == [("intent", NOT_UNDERSTOOD),
                                                    ("out_of_scope", "ik wil een pizza bestellen")]
    assert review.pending_examples(engine, "ko_test") == []
    assert review.mark_exported(engine, [v.id for v in waiting]) == 2
    assert review.pending_examples(engine, "mini") == []
    with pytest.raises(review.ReviewError, match="exported"):
        review.mark(engine, new["call"]["call_id"], 1, "noise", None, "carol")
    assert not review.unmark(engine, new["call"]["call_id"], 1)


# -- sentences into a flow file ------------------------------------------------------------------------

def only_insertions(before: str, after: str) -> list[str]:
    """The lines ``after`` has beyond ``before``; fails when any line of ``before`` changed or moved."""
    added = []
    for line in difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)):
        assert not line.startswith("- "), f"a line changed: {line!r}"
        if line.startswith("+ "):
            added.append(line[2:])
    return added


def test_examples_go_under_their_intent_and_out_of_scope_keeping_every_other_byte():
    text = ENERGIE.read_text(encoding="utf-8")
    result = add_examples(text, [("storing_melden", NOT_UNDERSTOOD), ("out_of_scope", "wat kost een warmtepomp"),
                                 ("storing_melden", "Storing  melden"), ("out_of_scope", "storing melden"),
                                 ("nothing", "x")])
    assert result.added == [("storing_melden", NOT_UNDERSTOOD), ("out_of_scope", "wat kost een warmtepomp")]
    assert result.present == [("storing_melden", "Storing melden")]
    assert [why for *_, why in result.skipped] == ["it is an example of storing_melden in the flow",
                                                   "the flow has no intent nothing"]
    assert only_insertions(text, result.text) == [f"      - {NOT_UNDERSTOOD}\n", "  - wat kost een warmtepomp\n"]
    flow = parse_flow(result.text, "energie.yaml")
    assert flow.spec.intents["storing_melden"].examples[-1] == NOT_UNDERSTOOD
    assert flow.spec.out_of_scope[-1] == "wat kost een warmtepomp"


def test_flow_style_lists_crlf_files_and_sentences_yaml_would_misread():
    text = MINI.read_text(encoding="utf-8").replace("\n", "\r\n")
    tricky = ["no", "wat kost: een #warmtepomp, zeg", "[nee]", "'quote", "ja \"echt\""]
    result = add_examples(text, [("storing", s) for s in tricky] + [("out_of_scope", "hoi: daar")])
    assert "\n" not in result.text.replace("\r\n", "")                  # the file's own line endings
    flow = parse_flow(result.text, "mini.yaml")
    assert flow.spec.intents["storing"].examples[-len(tricky):] == tricky
    assert flow.spec.out_of_scope[-1] == "hoi: daar"
    before, after = text.split("\r\n"), result.text.split("\r\n")
    assert len(before) == len(after)                                     # appended inside the [...] lines
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert len(changed) == 2 and all(a.startswith(b[:-1]) for b, a in changed)


def test_a_flow_without_out_of_scope_gets_the_list_at_its_end():
    text = MINI.read_text(encoding="utf-8")
    text = re.sub(r"^out_of_scope:.*\n", "", text, flags=re.M).rstrip("\n")     # no list, no last newline
    result = add_examples(text, [("out_of_scope", "wat kost een warmtepomp")])
    assert result.text.startswith(text)
    assert result.text[len(text):] == "\nout_of_scope:\n  - wat kost een warmtepomp\n"
    assert parse_flow(result.text, "mini.yaml").spec.out_of_scope == ["wat kost een warmtepomp"]


def test_a_list_that_is_not_a_list_is_refused():
    text = MINI.read_text(encoding="utf-8")
    text = re.sub(r"^out_of_scope:.*$", "out_of_scope:", text, flags=re.M)
    with pytest.raises(AdditionError, match="out_of_scope is not a list"):
        add_examples(text, [("out_of_scope", "wat kost een warmtepomp")])


# -- the commands -----------------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path, calls, monkeypatch):
    """A config.yaml with a flows folder holding a copy of mini and the records of ``calls``."""
    monkeypatch.delenv("VOICEBOT_RECORDS_URL")          # the config file names the records
    engine, url, old, new, _ = calls
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(MINI, flows / "mini.yaml")
    os.chmod(flows / "mini.yaml", 0o640)
    config = tmp_path / "config.yaml"
    config.write_text(f"flows: {{dir: {flows}, default: mini}}\nrecords: {{url: '{url}'}}\n")
    return config, flows / "mini.yaml", engine, old, new


def test_review_export_prints_a_diff_and_write_applies_it_once(project, monkeypatch, tmp_path):
    config, flow_file, engine, old, new = project
    monkeypatch.chdir(tmp_path)
    before = flow_file.read_bytes()
    runner = CliRunner()
    nothing = runner.invoke(main, ["--config", str(config), "review", "export", "--flow", "mini"])
    assert nothing.exit_code == 0, (nothing.output, nothing.exception)
    assert nothing.stdout == "" and "No reviewed examples of mini" in nothing.stderr
    review.mark(engine, new["call"]["call_id"], 1, "intent", "storing", "carol")
    review.mark(engine, old["call"]["call_id"], 1, "out_of_scope", None, "carol")      # in the flow already
    review.mark(engine, new["call"]["call_id"], 2, "noise", None, "carol")
    shown = runner.invoke(main, ["--config", str(config), "review", "export", "--flow", "mini"])
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith("--- a/flows/mini.yaml\n+++ b/flows/mini.yaml\n")
    assert f", {NOT_UNDERSTOOD}]" in shown.stdout and "meterstand]" not in shown.stdout
    assert "1 sentence(s) to add" in shown.stderr and "1 already in the file" in shown.stderr
    assert flow_file.read_bytes() == before                                   # only printed
    patched = add_examples(before.decode(), [("storing", NOT_UNDERSTOOD)]).text
    assert shown.stdout == "".join(difflib.unified_diff(before.decode().splitlines(keepends=True),
                                                        patched.splitlines(keepends=True),
                                                        "a/flows/mini.yaml", "b/flows/mini.yaml"))
    written = runner.invoke(main, ["--config", str(config), "review", "export", "--flow", str(flow_file), "--write"])
    assert written.exit_code == 0, written.stderr
    assert flow_file.read_bytes() == patched.encode()
    assert stat.S_IMODE(flow_file.stat().st_mode) == 0o640
    assert NOT_UNDERSTOOD in load_flow(flow_file).spec.intents["storing"].examples
    assert "2 verdict(s) marked exported" in written.stderr
    assert review.pending_examples(engine, "mini") == []
    assert [p.name for p in flow_file.parent.iterdir()] == ["mini.yaml"]       # no temporary file left
    again = runner.invoke(main, ["--config", str(config), "review", "export", "--flow", "mini", "--write"])
    assert again.exit_code == 0 and "No reviewed examples" in again.stderr
    assert flow_file.read_bytes() == patched.encode()


def test_review_export_says_when_there_is_no_records_database(tmp_path, monkeypatch):
    monkeypatch.delenv("VOICEBOT_RECORDS_URL")
    config = tmp_path / "config.yaml"
    config.write_text(f"flows: {{dir: {MINI.parent}, default: mini}}\n"
                      f"records: {{url: 'sqlite:///{tmp_path / 'none.sqlite3'}'}}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "review", "export", "--flow", "mini"])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not (tmp_path / "none.sqlite3").exists()


def test_nlu_eval_shows_the_held_out_sets_now_and_with_the_reviewed_examples(project, tmp_path):
    config, flow_file, engine, old, new = project
    sets = tmp_path / "sets"
    sets.mkdir()
    cases = [{"text": NOT_UNDERSTOOD, "intent": "storing"}, {"text": "ik wil mijn meterstand doorgeven",
                                                           "intent": "meterstand"},
             {"text": "ik wil een pizza bestellen", "intent": None}]
    (sets / "mini_heldout.yaml").write_text(yaml.safe_dump({"flow": "flows/mini.yaml", "cases": cases}))
    (sets / "mini_more.yaml").write_text(yaml.safe_dump({"cases": cases[1:]}))
    (sets / "webshop_heldout.yaml").write_text(yaml.safe_dump({"cases": cases}))
    runner = CliRunner()
    plain = runner.invoke(main, ["--config", str(config), "nlu", "--flow", "mini", "--eval", "--sets", str(sets)])
    assert plain.exit_code == 0, plain.output
    assert "No reviewed examples of mini wait" in plain.output and "with reviews" not in plain.output
    review.mark(engine, new["call"]["call_id"], 1, "intent", "storing", "carol")
    result = runner.invoke(main, ["--config", str(config), "nlu", "--flow", "mini", "--eval", "--sets", str(sets)])
    assert result.exit_code == 0, result.output
    assert "With the 1 reviewed sentence(s)" in result.output
    classifier = load_flow(flow_file).classifier
    now = sum(classifier.classify(c["text"]).intent == c["intent"] for c in cases[:2]) / 2
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.startswith(("mini_", "all"))}
    assert set(rows) == {"mini_heldout.yaml", "mini_more.yaml", "all"}         # the webshop set is not mini's
    assert rows["mini_heldout.yaml"][1:4] == ["2", f"{now:.1%}", "100.0%"]
    assert rows["mini_heldout.yaml"][4] == "1"
    assert rows["all"][1:3] == ["sets", "3"] and rows["all"][5] == "2"
    assert flow_file.read_bytes() == MINI.read_bytes()                          # measuring writes nothing
