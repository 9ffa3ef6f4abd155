"""`voicebot report`: the figures in the terminal and as one HTML file, on the flow's clock."""

from __future__ import annotations

import re
import stat

import pytest
from click.testing import CliRunner

from records_rows import records_database, two_days
from voicebot.cli import main

PERIOD = ["--since", "2026-11-02", "--until", "2026-11-03"]


@pytest.fixture
def records_engine(request, tmp_path):
    yield from records_database(request, tmp_path)


@pytest.fixture
def config(tmp_path, records_engine, monkeypatch):
    """config.yaml whose records are ``records_engine``'s and whose flows directory holds two flow
    headers: energie on Amsterdam's clock (the default flow) and kiosk on Seoul's."""
    monkeypatch.delenv("VOICEBOT_RECORDS_URL")          # the config file names the records
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "energie.yaml").write_text("flow: energie\nlanguage: nl\nhours:\n  timezone: Europe/Amsterdam\n"
                                        "  weekly: {mon: '08:00-17:00'}\n")
    (flows / "kiosk-flow.yaml").write_text("flow: kiosk\nlanguage: ko\nhours:\n  timezone: Asia/Seoul\n"
                                           "  weekly: {mon: '08:00-17:00'}\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"flows: {{dir: {flows}, default: energie}}\n"
                    f"records: {{url: '{records_engine.url.render_as_string(hide_password=False)}'}}\n")
    return str(path)


def _run(config, *args):
    return CliRunner().invoke(main, ["--config", config, "report", *args])


def test_text_report_for_a_flow(config, records_engine):
    two_days(records_engine)
    result = _run(config, "--flow", "energie", *PERIOD)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Flow energie, 2026-11-02 00:00 to 2026-11-04 00:00 (Europe/Amsterdam)\n")
    assert "Calls 8, answered 7, containment 57.1 %" in result.output
    assert re.search(r"^explicit_request\s+1\s+50\.0 %$", result.output, flags=re.M)
    assert re.search(r"^  09\s+1\s+#+$", result.output, flags=re.M)        # c1 at 08:10 UTC


def test_every_flow_on_the_default_flows_clock(config, records_engine):
    two_days(records_engine)
    result = _run(config, *PERIOD)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("All flows, 2026-11-02 00:00 to 2026-11-04 00:00 (Europe/Amsterdam)")
    assert "Calls 9, answered 8" in result.output


def test_a_flows_own_time_zone(config, records_engine, tmp_path):
    """kiosk's hours are on Seoul's clock (UTC+9): its days and hours are too, whether the flow is
    named by id or by file."""
    from records_rows import record, write

    write(records_engine, record("k1", "2026-11-02T09:00:00", flow="kiosk", visited=("start",)))
    for flow in ("kiosk", str(tmp_path / "flows" / "kiosk-flow.yaml")):
        result = _run(config, "--flow", flow, *PERIOD)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Flow kiosk, 2026-11-02 00:00 to 2026-11-04 00:00 (Asia/Seoul)")
        assert re.search(r"^  18\s+1\s+#+$", result.output, flags=re.M)


def test_html_file(config, records_engine, tmp_path):
    two_days(records_engine)
    out = tmp_path / "report.html"
    result = _run(config, "--flow", "energie", *PERIOD, "--html", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (8 calls)" in result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>voicebot report: energie</title>" in page
    assert page.count("<svg") == 7 and "http" not in page
    assert stat.S_IMODE(out.stat().st_mode) == 0o600          # callers' comments are in it
    printed = _run(config, "--flow", "energie", *PERIOD, "--html", "-")
    assert printed.exit_code == 0 and printed.output.startswith("<!DOCTYPE html>")


def test_wrong_periods_and_missing_records(config, tmp_path):
    bad = _run(config, "--since", "last tuesday")
    assert bad.exit_code == 2 and "not a period" in bad.output
    backwards = _run(config, "--since", "2026-11-05", "--until", "2026-11-01")
    assert backwards.exit_code == 2 and "ends before it starts" in backwards.output
    missing = tmp_path / "elsewhere.yaml"
    missing.write_text(f"records: {{url: 'sqlite:///{tmp_path / 'none' / 'records.sqlite3'}'}}\n")
    result = CliRunner().invoke(main, ["--config", str(missing), "report"])
    assert result.exit_code == 1 and "no call records yet" in result.output
    assert not (tmp_path / "none").exists()
