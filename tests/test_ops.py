"""The operations pages through Flask's test client: roles (a visitor gets the log-in, an agent 403,
an operator the pages), CSRF, the figures page and its database problems, marking sentences
without JavaScript; and the roles on the accounts and `voicebot agents`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from review_records import a_call, records_url, write_calls
from voicebot.desk.accounts import AccountError, Accounts
from voicebot.records import render, review, stats
from voicebot.records.schema import calls, reviews
from voicebot.web import create_app

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
PASSWORD = "correct horse battery"
SENTENCE = "mijn lampen doen het niet meer"
MARKUP = "<b>dikgedrukt</b> & zo"


class FakeReport:
    def __init__(self, calls: int):
        self.calls = calls


@pytest.fixture
def figures(monkeypatch):
    """stats.compute and render.page_body as simple stand-ins: the page's part is to call them."""
    asked = []

    def compute(engine, *, flow, since, until, timezone):
        with engine.connect() as conn:                     # reads the database, as the real one does
            count = conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one()
        asked.append({"flow": flow, "since": since, "until": until, "timezone": timezone})
        return FakeReport(count)

    monkeypatch.setattr(stats, "compute", compute)
    monkeypatch.setattr(render, "page_body", lambda report: f'<section id="calls">{report.calls} calls</section>')
    return asked


def make_site(settings, tmp_path, *, with_records: bool = True):
    accounts = tmp_path / "agents.sqlite3"
    book = Accounts(accounts)
    book.add("olga", PASSWORD, role="operator")
    book.add("alice", PASSWORD)
    url = records_url(tmp_path)
    settings = dataclasses.replace(
        settings, flows_dir=DATA, default_flow="mini",
        telephony=dataclasses.replace(settings.telephony, auth_token="tok", public_url="https://bot.example.com"),
        desk=dataclasses.replace(settings.desk, accounts=accounts, secret="s" * 40, lockout_attempts=50,
                                 lockout_attempts_per_address=50),
        records=dataclasses.replace(settings.records, url=url))
    engine = None
    records = []
    if with_records:
        records = [a_call("mini", [("menu", SENTENCE, "not_understood", "storing", 0.28),
                                   ("menu", "storing melden", "accepted", "storing", 0.9),
                                   ("geboortedatum", "[verborgen]", "not_understood", "geboortedatum", None)],
                          started=dt.datetime(2026, 3, 2, 9, 0)),
                   a_call("mini", [("menu", MARKUP, "out_of_scope", None, 0.1)], started=dt.datetime(2026, 3, 1, 9))]
        engine = write_calls(url, records)
    return create_app(settings), engine, records, book


@pytest.fixture
def site(settings, tmp_path):
    return make_site(settings, tmp_path)


def csrf_of(client, path="/agent/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def logged_in(app, name="olga", then="/ops/review"):
    client = app.test_client()
    response = client.post("/agent/login", data={"name": name, "password": PASSWORD, "next": then,
                                                 "csrf_token": csrf_of(client)})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == then
    client.csrf = csrf_of(client, "/agent")
    return client


def reviewed(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(sa.select(reviews.c.turn_seq, reviews.c.label, reviews.c.intent, reviews.c.reviewer)
                            .order_by(reviews.c.id)).all()


# -- who gets in -----------------------------------------------------------------------------------------

def test_a_visitor_is_sent_to_the_log_in_and_back(site):
    app, engine, records, _ = site
    visitor = app.test_client()
    for path in ("/ops", "/ops/review", "/ops/review?flow=mini"):
        page = visitor.get(path)
        assert page.status_code == 302
        assert page.headers["Location"].startswith("/agent/login?next=")
        assert SENTENCE not in page.get_data(as_text=True)
    form = visitor.get("/agent/login?next=/ops/review").get_data(as_text=True)
    assert 'name="next" value="/ops/review"' in form and "<h1>Operations</h1>" in form
    token = csrf_of(visitor)
    call_id = records[0]["call"]["call_id"]
    refused = visitor.post("/ops/review/mark", data={"csrf_token": token, "call_id": call_id, "seq": "1",
                                                     "label": "noise"})
    assert refused.status_code == 401 and reviewed(engine) == []
    assert visitor.get("/ops/static/ops.css").status_code == 200          # the style sheet holds nothing of a caller


@pytest.mark.parametrize("then", ["https://evil.example/ops", "//evil.example/ops", "/twilio/voice", "/ops\\x"])
def test_the_log_in_goes_back_only_to_the_desk_or_ops(site, then):
    app, *_ = site
    client = app.test_client()
    response = client.post("/agent/login", data={"name": "olga", "password": PASSWORD, "next": then,
                                                 "csrf_token": csrf_of(client)})
    assert response.status_code == 303 and response.headers["Location"] == "/agent"


def test_an_agent_gets_403_and_an_operator_the_pages_the_role_counting_at_once(site, figures):
    app, engine, records, book = site
    alice = logged_in(app, "alice", then="/agent")
    for path in ("/ops", "/ops/review"):
        page = alice.get(path)
        assert page.status_code == 403, path
        text = page.get_data(as_text=True)
        assert "voicebot agents role alice operator" in text and SENTENCE not in text
    mark = alice.post("/ops/review/mark", data={"csrf_token": alice.csrf, "call_id": records[0]["call"]["call_id"],
                                                "seq": "1", "label": "noise"})
    assert mark.status_code == 403 and reviewed(engine) == []
    desk = alice.get("/agent")
    assert desk.status_code == 200 and 'class="ops-link"' not in desk.get_data(as_text=True)   # the desk stays hers
    book.set_role("alice", "operator")
    assert alice.get("/ops/review").status_code == 200
    assert 'href="/ops" class="ops-link"' in alice.get("/agent").get_data(as_text=True)
    book.set_role("alice", "agent")
    assert alice.get("/ops/review").status_code == 403
    assert figures == []                                                   # no figures were computed for an agent


def test_every_post_needs_the_csrf_token(site):
    app, engine, records, _ = site
    olga = logged_in(app)
    data = {"call_id": records[0]["call"]["call_id"], "seq": "1", "label": "noise"}
    assert olga.post("/ops/review/mark", data=data).status_code == 403
    assert olga.post("/ops/review/mark", data={**data, "csrf_token": "x" * 43}).status_code == 403
    assert reviewed(engine) == []
    assert olga.post("/ops/review/mark", data={**data, "csrf_token": olga.csrf}).status_code == 303
    assert reviewed(engine) == [(1, "noise", None, "olga")]


# -- the figures ------------------------------------------------------------------------------------------

def test_the_figures_page_asks_for_the_chosen_flow_and_period(site, figures):
    app, *_ = site
    olga = logged_in(app, then="/ops")
    page = olga.get("/ops")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert '<section id="calls">2 calls</section>' in text
    assert figures[-1]["flow"] is None and figures[-1]["until"] - figures[-1]["since"] == dt.timedelta(days=7)
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe-inline" not in csp
    assert 'href="/ops/report.css"' in text
    sheet = olga.get("/ops/report.css")
    assert sheet.status_code == 200 and sheet.mimetype == "text/css" and ".vb-report" in sheet.get_data(as_text=True)
    assert "frame-ancestors 'none'" in csp
    page = olga.get("/ops?flow=mini&from=2026-03-01&until=2026-03-02")
    assert page.status_code == 200
    asked = figures[-1]
    assert asked["flow"] == "mini" and asked["timezone"] == "Europe/Amsterdam"
    assert asked["since"] == dt.datetime(2026, 2, 28, 23, 0, tzinfo=dt.timezone.utc)     # local midnight
    assert asked["until"] == dt.datetime(2026, 3, 2, 23, 0, tzinfo=dt.timezone.utc)
    assert 'value="2026-03-01"' in page.get_data(as_text=True)
    olga.get("/ops?flow=nosuchflow&period=24h")
    assert figures[-1]["flow"] is None and figures[-1]["until"] - figures[-1]["since"] == dt.timedelta(hours=24)
    odd = olga.get("/ops?from=2026-03-05&until=2026-03-01").get_data(as_text=True)
    assert "The last day is before the first" in odd


def test_the_pages_say_so_when_there_are_no_records(settings, tmp_path, figures):
    app, _, _, _ = make_site(settings, tmp_path, with_records=False)
    olga = logged_in(app)
    for path in ("/ops", "/ops/review"):
        page = olga.get(path)
        assert page.status_code == 503
        assert "No call records yet" in page.get_data(as_text=True)
    assert not (tmp_path / "records.sqlite3").exists()                     # looking made no database
    assert figures == []


def test_the_pages_say_so_when_the_records_cannot_be_read(settings, tmp_path, figures):
    app, _, _, _ = make_site(settings, tmp_path, with_records=False)
    (tmp_path / "records.sqlite3").write_bytes(b"this is not a database" * 100)
    olga = logged_in(app)
    for path in ("/ops", "/ops/review"):
        page = olga.get(path)
        assert page.status_code == 503, path
        assert "The call records database" in page.get_data(as_text=True) and "cannot be opened" in page.get_data(as_text=True)


# -- the review queue ------------------------------------------------------------------------------------

def test_the_queue_shows_misunderstood_sentences_and_hides_secrets(site):
    app, _, records, _ = site
    olga = logged_in(app)
    page = olga.get("/ops/review")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert SENTENCE in text and "storing melden</td>" not in text            # accepted turns are not listed
    assert "[verborgen]" not in text                                         # the place of a secret, not a sentence
    assert "<b>dikgedrukt</b>" not in text and "&lt;b&gt;dikgedrukt&lt;/b&gt; &amp; zo" in text
    assert "2 sentences waiting" in text and "28 %" in text and "not understood, asked again" in text
    row = text[text.index(f'id="turn-{records[0]["call"]["call_id"]}-1"'):]
    row = row[:row.index("</tr>")]
    assert '<option value="storing" selected>' in row                      # the guess chosen already
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]


def test_marking_without_javascript_posts_and_comes_back(site):
    app, engine, records, _ = site
    olga = logged_in(app)
    first, second = records[0]["call"]["call_id"], records[1]["call"]["call_id"]
    done = olga.post("/ops/review/mark", data={"csrf_token": olga.csrf, "call_id": first, "seq": "1",
                                               "label": "intent", "intent": "storing", "back_flow": "mini"})
    assert done.status_code == 303 and done.headers["Location"] == "/ops/review?flow=mini"
    page = olga.get("/ops/review?flow=mini").get_data(as_text=True)
    assert "Marked as an example of storing." in page
    assert f'id="turn-{first}-1"' not in page and "1 sentence waiting" in page
    assert "Marked lately" in page and "Take back" in page
    assert reviewed(engine) == [(1, "intent", "storing", "olga")]
    wrong = olga.post("/ops/review/mark", data={"csrf_token": olga.csrf, "call_id": second, "seq": "1",
                                                "label": "intent", "intent": "pizza"})
    assert wrong.status_code == 303 and "has no intent" in olga.get("/ops/review").get_data(as_text=True)
    missing = olga.post("/ops/review/mark", data={"csrf_token": olga.csrf, "call_id": "CA-none", "seq": "1",
                                                  "label": "noise"}, headers={"Accept": "application/json"})
    assert missing.status_code == 400 and "no such turn" in missing.get_json()["message"]
    script = olga.post("/ops/review/mark", data={"call_id": second, "seq": "1", "label": "out_of_scope"},
                       headers={"Accept": "application/json", "X-CSRF-Token": olga.csrf})
    assert script.status_code == 200 and script.get_json()["message"] == "Marked as out of scope."
    assert reviewed(engine) == [(1, "intent", "storing", "olga"), (1, "out_of_scope", None, "olga")]
    back = olga.post("/ops/review/unmark", data={"csrf_token": olga.csrf, "call_id": first, "seq": "1"})
    assert back.status_code == 303
    assert f'id="turn-{first}-1"' in olga.get("/ops/review").get_data(as_text=True)
    review.mark_exported(engine, [v.id for v in review.pending_examples(engine, "mini")])
    late = olga.post("/ops/review/mark", data={"call_id": second, "seq": "1", "label": "noise"},
                     headers={"Accept": "application/json", "X-CSRF-Token": olga.csrf})
    assert late.status_code == 409 and "exported" in late.get_json()["message"]


# -- roles on the accounts --------------------------------------------------------------------------------

def test_an_accounts_file_from_before_roles_makes_everyone_an_agent(tmp_path):
    path = tmp_path / "agents.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE agents (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, "
                 "epoch INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL)")
    conn.execute("INSERT INTO agents VALUES ('alice', 'x', 3, 0)")
    conn.commit()
    conn.close()
    book = Accounts(path)
    assert book.roles() == [("alice", "agent")]
    assert book.account("alice").epoch == 3 and not book.account("alice").operator
    book.set_role("alice", "operator")
    assert Accounts(path).account("alice").operator
    with pytest.raises(AccountError, match="a role is one of"):
        book.set_role("alice", "admin")
    with pytest.raises(AccountError, match="no agent bob"):
        book.set_role("bob", "agent")


def test_agents_commands_give_and_show_roles(tmp_path):
    from voicebot.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(f"desk: {{accounts: {tmp_path / 'agents.sqlite3'}}}\n")
    runner = CliRunner()

    def run(*args, **kw):
        return runner.invoke(main, ["--config", str(config), "agents", *args], **kw)

    made = run("add", "olga", "--role", "operator", "--password-stdin", input=PASSWORD + "\n")
    assert made.exit_code == 0 and "log in at /agent and /ops" in made.output
    assert run("add", "bob", "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    assert run("list").output.split("\n")[:2] == ["bob   agent", "olga  operator"]
    assert run("role", "bob", "operator").output.strip() == "bob is now an operator."
    assert run("role", "olga", "agent").exit_code == 0
    assert run("list").output.split() == ["bob", "operator", "olga", "agent"]
    wrong = run("role", "bob", "admin")
    assert wrong.exit_code == 2 and "admin" in wrong.output
    assert run("role", "nobody", "agent").exit_code == 1
