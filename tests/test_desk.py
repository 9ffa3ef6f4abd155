"""The agent desk through Flask's test client, a real Redis and real stream entries: log-in, CSRF,
lockout, nothing shown without logging in, the board and its cards, claim races, close, live updates."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import stat
import threading
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from voicebot.desk.accounts import Accounts
from voicebot.desk.events import board_events
from voicebot.handoff.contract import handoff_record
from voicebot.handoff.jobs import publish_record, stream_key
from voicebot.web import create_app

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
PASSWORD = "correct horse battery"
SUMMARY = "De beller wil een storing melden aan de Dorpsstraat."


def a_record(queue: str, **extra) -> dict:
    """A transfer as the worker delivers it (valid against docs/handoff.schema.json)."""
    context = {
        "call_id": "CA" + secrets.token_hex(16), "caller": "+31612345678", "called": "+31201234567",
        "started_at": "2026-03-02T10:15:00", "language": "nl", "flow": "mini", "queue": queue,
        "reason": "explicit_request", "after_hours": False,
        "intent": {"name": "storing", "label": "een storing melden", "confidence": 0.82},
        "slots": {"postcode": "1234", "huisnummer": "12"}, "partial_slots": ["postcode"], "keypad_only": False,
        "secrets_provided": ["geboortedatum"],
        "identity": {"verified": True, "level": "verified", "method": "birth_date",
                     "customer": {"number": "1234567", "name": "J. de Vries"},
                     "attempts": [{"method": "birth_date", "outcome": "passed"}]},
        "step": "menu", "turns": 3, "failures": [], "sources": [], "summary": SUMMARY,
        "transcript": [
            {"who": "bot", "step": "menu", "text": "Waarmee kan ik u helpen?"},
            {"who": "caller", "step": "menu", "text": "storing melden", "confidence": 0.93},
            {"who": "caller", "step": "menu", "text": "dorpstraat twaalf", "confidence": 0.41},
            {"who": "caller", "step": "menu", "digits": "12"},
        ],
        "earlier_call": None,
        **extra,
    }
    return handoff_record(context, waited_seconds=42.0)


@pytest.fixture
def desk(settings, tmp_path, redis_url):
    """An app whose desk reads one queue of its own (a group of its own), with two agents."""
    queue = "q" + secrets.token_hex(4)
    accounts = tmp_path / "agents.sqlite3"
    settings = dataclasses.replace(
        settings, flows_dir=DATA, default_flow="mini",
        telephony=dataclasses.replace(settings.telephony, auth_token="tok", public_url="https://bot.example.com"),
        desk=dataclasses.replace(settings.desk, accounts=accounts, secret="s" * 40, queues=(queue,),
                                 group="g" + secrets.token_hex(4), lockout_attempts=3,
                                 lockout_attempts_per_address=5, max_event_streams=1, heartbeat_seconds=1))
    book = Accounts(accounts)
    book.add("alice", PASSWORD)
    book.add("bob", PASSWORD)
    app = create_app(settings)
    connection = redis.Redis.from_url(redis_url)
    yield dataclasses.make_dataclass("Desk", ["app", "queue", "redis", "settings"])(app, queue, connection, settings)
    connection.close()


def csrf_of(client, path="/agent/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def logged_in(app, name="alice", address="10.0.0.1"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    response = client.post("/agent/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 303 and response.headers["Location"].endswith("/agent"), response.get_data()
    client.csrf = csrf_of(client, "/agent")
    return client


def deliver(desk, **extra) -> dict:
    record = a_record(desk.queue, **extra)
    assert not list(Draft202012Validator(json.loads((REPO / "docs" / "handoff.schema.json").read_text()))
                    .iter_errors(record))
    assert publish_record(desk.redis, record) is not None
    return record


# -- nothing without logging in --------------------------------------------------------------------

def test_a_visitor_not_logged_in_gets_nothing_of_a_caller(desk):
    record = deliver(desk)
    visitor = desk.app.test_client()
    page = visitor.get("/agent")
    assert page.status_code == 302 and page.headers["Location"].endswith("/agent/login")
    for path in ("/agent/api/transfers", "/agent/events"):
        response = visitor.get(path)
        assert response.status_code == 401, path
        assert record["call_id"] not in response.get_data(as_text=True)
    token = csrf_of(visitor)                     # a visitor's session has a token: the POST still needs a log-in
    claim = visitor.post(f"/agent/transfers/{record['call_id']}/claim", data={"csrf_token": token})
    assert claim.status_code == 401
    login = visitor.get("/agent/login").get_data(as_text=True)
    assert SUMMARY not in login and record["call_id"] not in login


def test_log_in_gives_a_hardened_cookie_and_the_board(desk):
    deliver(desk)
    client = desk.app.test_client()
    response = client.post("/agent/login", data={"name": "Alice", "password": PASSWORD,
                                                 "csrf_token": csrf_of(client)})
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert re.search(r"Path=/(;|$)", cookie)      # the desk and /ops share the log-in
    page = client.get("/agent")
    assert page.status_code == 200 and SUMMARY in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_the_cookie_is_not_secure_behind_plain_http(desk):
    settings = dataclasses.replace(desk.settings, telephony=dataclasses.replace(desk.settings.telephony,
                                                                                public_url="http://127.0.0.1:5000"))
    client = create_app(settings).test_client()
    response = client.post("/agent/login", data={"name": "alice", "password": PASSWORD,
                                                 "csrf_token": csrf_of(client)})
    assert response.status_code == 303 and "Secure" not in response.headers["Set-Cookie"]


def test_every_post_needs_the_sessions_csrf_token(desk):
    record = deliver(desk)
    client = desk.app.test_client()
    csrf_of(client)
    assert client.post("/agent/login", data={"name": "alice", "password": PASSWORD}).status_code == 403
    assert client.post("/agent/login", data={"name": "alice", "password": PASSWORD,
                                             "csrf_token": "x" * 43}).status_code == 403
    alice = logged_in(desk.app)
    claim = f"/agent/transfers/{record['call_id']}/claim"
    assert alice.post(claim).status_code == 403
    assert alice.post(claim, data={"csrf_token": csrf_of(client)}).status_code == 403   # another session's token
    assert alice.post("/agent/logout").status_code == 403
    assert alice.get("/agent/api/transfers").get_json()["transfers"][0]["claimed_by"] is None
    assert alice.post(claim, headers={"X-CSRF-Token": alice.csrf, "Accept": "application/json"}).status_code == 200


def test_wrong_passwords_lock_the_account(desk):
    client = desk.app.test_client()
    token = csrf_of(client)
    for _ in range(3):
        response = client.post("/agent/login", data={"name": "alice", "password": "wrong password!",
                                                     "csrf_token": token})
        assert response.status_code in (401, 429)
    locked = client.post("/agent/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token})
    assert locked.status_code == 429 and "Too many wrong passwords" in locked.get_data(as_text=True)
    other = desk.app.test_client()               # another address: the account is still locked
    other.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    assert other.post("/agent/login", data={"name": "alice", "password": PASSWORD,
                                            "csrf_token": csrf_of(other)}).status_code == 429
    logged_in(desk.app, "bob")                   # bob is not locked


def test_wrong_passwords_from_one_address_lock_the_address(desk):
    client = desk.app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.6.6.6"
    token = csrf_of(client)
    for name in ("carol", "dave", "erin", "frank", "gina"):          # five names, none locked on its own
        client.post("/agent/login", data={"name": name, "password": "guess guess guess", "csrf_token": token})
    refused = client.post("/agent/login", data={"name": "bob", "password": PASSWORD, "csrf_token": token})
    assert refused.status_code == 429
    logged_in(desk.app, "bob", address="10.7.7.7")


def test_a_lockout_ends_when_its_window_has_passed(tmp_path):
    now = [1000.0]
    accounts = Accounts(tmp_path / "a.sqlite3", attempts=2, address_attempts=100, window_seconds=60,
                        clock=lambda: now[0])
    accounts.add("alice", PASSWORD)
    assert not accounts.log_in("alice", "nope nope nope", "1.1.1.1").ok
    assert accounts.log_in("alice", "nope nope nope", "1.1.1.1").locked_for == 60
    now[0] += 30
    assert accounts.log_in("alice", PASSWORD, "1.1.1.1").locked_for == 30
    now[0] += 31
    assert accounts.log_in("alice", PASSWORD, "1.1.1.1").agent == "alice"


# -- the board ------------------------------------------------------------------------------------------

def test_the_card_shows_what_the_agent_needs(desk):
    record = deliver(desk)
    alice = logged_in(desk.app)
    body = alice.get("/agent/api/transfers").get_json()
    [transfer] = body["transfers"]
    assert transfer["call_id"] == record["call_id"] and transfer["record"] == record
    assert transfer["claimed_by"] is None and transfer["waited_seconds"] >= 42.0
    assert transfer["waiting_since_ms"] == transfer["delivered_at_ms"] - 42000
    html = body["html"]
    assert SUMMARY in html and "Asked for a person" in html
    assert "Verified" in html and "J. de Vries" in html and "1234567" in html
    assert "een storing melden" in html and "82 %" in html
    assert "huisnummer" in html and "only in part" in html and "geboortedatum" in html and "provided" in html
    low = re.findall(r'<li class="turn caller low".*?</li>', html, re.S)
    assert len(low) == 1 and "dorpstraat twaalf" in low[0] and "41 %" in low[0] and "low confidence" in low[0]
    assert "storing melden</span>" in html and html.count("turn caller low") == 1
    assert f'data-since-ms="{transfer["waiting_since_ms"]}"' in html


def test_the_record_is_escaped_not_run(desk):
    deliver(desk, summary='<script>alert("x")</script><img src=x onerror=alert(1)>')
    html = logged_in(desk.app).get("/agent").get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html and "&lt;script&gt;" in html


def test_an_unreadable_record_still_shows_a_card(desk):
    call_id = "CA" + secrets.token_hex(8)
    desk.redis.xadd(stream_key(desk.queue), {"call_id": call_id, "context": "{not json"})
    html = logged_in(desk.app).get("/agent").get_data(as_text=True)
    assert "cannot be read" in html and call_id in html


def test_two_agents_claiming_at_once_one_wins(desk):
    record = deliver(desk)
    clients = [logged_in(desk.app, name, address=f"10.0.0.{i}") for i, name in
               enumerate(["alice", "bob"] * 4, start=1)]
    barrier = threading.Barrier(len(clients))
    results = [None] * len(clients)

    def claim(i):
        barrier.wait()
        response = clients[i].post(f"/agent/transfers/{record['call_id']}/claim",
                                   headers={"X-CSRF-Token": clients[i].csrf, "Accept": "application/json"})
        results[i] = (response.status_code, response.get_json()["message"])

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    codes = [code for code, _ in results]
    assert codes.count(200) == 1 and codes.count(409) == len(clients) - 1, results
    winner = ["alice", "bob"][codes.index(200) % 2]
    assert all(message == f"Already taken by {winner}." for code, message in results if code == 409)
    [transfer] = clients[0].get("/agent/api/transfers").get_json()["transfers"]
    assert transfer["claimed_by"] == winner and transfer["claimed_at_ms"] >= transfer["delivered_at_ms"]


def test_only_the_claimer_closes_with_an_outcome_from_the_list(desk):
    record = deliver(desk)
    alice, bob = logged_in(desk.app), logged_in(desk.app, "bob")
    path = f"/agent/transfers/{record['call_id']}"
    json_headers = {"Accept": "application/json"}
    assert alice.post(path + "/close", data={"csrf_token": alice.csrf, "outcome": "resolved"},
                      headers=json_headers).status_code == 409                    # not taken yet
    assert alice.post(path + "/claim", data={"csrf_token": alice.csrf}, headers=json_headers).status_code == 200
    assert bob.post(path + "/close", data={"csrf_token": bob.csrf, "outcome": "resolved"},
                    headers=json_headers).status_code == 409
    assert alice.post(path + "/close", data={"csrf_token": alice.csrf, "outcome": "lunch"},
                      headers=json_headers).status_code == 400
    done = alice.post(path + "/close", data={"csrf_token": alice.csrf, "outcome": "resolved"}, headers=json_headers)
    assert done.status_code == 200 and done.get_json()["board"]["transfers"] == []
    group = desk.settings.desk.group
    assert desk.redis.xpending(stream_key(desk.queue), group)["pending"] == 0          # acknowledged
    state = desk.redis.hgetall(f"voicebot:desk:{group}:call:{record['call_id']}")
    assert state[b"agent"] == b"alice" and state[b"outcome"] == b"resolved"
    assert 0 < desk.redis.ttl(f"voicebot:desk:{group}:call:{record['call_id']}") <= desk.settings.call_ttl_seconds
    assert alice.post(path + "/claim", data={"csrf_token": alice.csrf}, headers=json_headers).status_code == 404
    assert bob.get("/agent/api/transfers").get_json()["transfers"] == []


def test_a_plain_form_claims_and_comes_back_to_the_board(desk):
    record = deliver(desk)
    alice = logged_in(desk.app)
    response = alice.post(f"/agent/transfers/{record['call_id']}/claim", data={"csrf_token": alice.csrf})
    assert response.status_code == 303 and response.headers["Location"].endswith("/agent")
    page = alice.get("/agent").get_data(as_text=True)
    assert "You took this transfer." in page and "Taken by you" in page and 'name="outcome"' in page


def test_an_entry_trimmed_from_the_stream_leaves_the_board(desk):
    record = deliver(desk)
    alice = logged_in(desk.app)
    [entry] = alice.get("/agent/api/transfers").get_json()["transfers"][0]["entry_ids"]
    desk.redis.xdel(stream_key(desk.queue), entry)
    assert alice.get("/agent/api/transfers").get_json()["transfers"] == []
    assert desk.redis.xpending(stream_key(desk.queue), desk.settings.desk.group)["pending"] == 0
    assert record["call_id"] not in alice.get("/agent").get_data(as_text=True)


def test_one_call_in_two_queues_is_one_card_and_closing_acknowledges_both(desk):
    second = desk.queue + "-late"
    settings = dataclasses.replace(desk.settings, desk=dataclasses.replace(desk.settings.desk,
                                                                           queues=(desk.queue, second)))
    app = create_app(settings)
    record = deliver(desk)
    desk.redis.xadd(stream_key(second), {"call_id": record["call_id"], "context": json.dumps(record)})
    alice = logged_in(app)
    [transfer] = alice.get("/agent/api/transfers").get_json()["transfers"]
    assert len(transfer["entry_ids"]) == 2
    path = f"/agent/transfers/{record['call_id']}"
    for action, data in (("claim", {}), ("close", {"outcome": "passed_on"})):
        response = alice.post(f"{path}/{action}", data={"csrf_token": alice.csrf, **data},
                              headers={"Accept": "application/json"})
        assert response.status_code == 200, response.get_json()
    group = settings.desk.group
    assert [desk.redis.xpending(stream_key(q), group)["pending"] for q in (desk.queue, second)] == [0, 0]


def test_the_board_lives_in_redis_not_in_one_process(desk):
    record = deliver(desk)
    other = create_app(desk.settings)                         # a second web process, or another node
    alice, bob = logged_in(desk.app), logged_in(other, "bob")
    assert alice.post(f"/agent/transfers/{record['call_id']}/claim", data={"csrf_token": alice.csrf},
                      headers={"Accept": "application/json"}).status_code == 200
    [transfer] = bob.get("/agent/api/transfers").get_json()["transfers"]
    assert transfer["claimed_by"] == "alice"


# -- sessions --------------------------------------------------------------------------------------------

def test_logging_out_ends_every_copy_of_the_session(desk):
    alice = logged_in(desk.app)
    copy = desk.app.test_client()
    cookie = alice.get_cookie("voicebot_desk", path="/")
    copy.set_cookie("voicebot_desk", cookie.value, path="/")
    assert copy.get("/agent/api/transfers").status_code == 200
    assert alice.post("/agent/logout", data={"csrf_token": alice.csrf}).status_code == 303
    assert copy.get("/agent/api/transfers").status_code == 401
    assert alice.get("/agent").status_code == 302


def test_a_new_password_or_a_removed_account_ends_the_session(desk):
    alice = logged_in(desk.app)
    Accounts(desk.settings.desk.accounts).set_password("alice", "another long password")
    assert alice.get("/agent/api/transfers").status_code == 401
    bob = logged_in(desk.app, "bob")
    Accounts(desk.settings.desk.accounts).remove("bob")
    assert bob.get("/agent/api/transfers").status_code == 401


def test_without_a_secret_the_desk_is_off_and_calls_are_not(desk):
    settings = dataclasses.replace(desk.settings, desk=dataclasses.replace(desk.settings.desk, secret=""))
    client = create_app(settings).test_client()
    response = client.get("/agent")
    assert response.status_code == 503 and "VOICEBOT_DESK_SECRET" in response.get_data(as_text=True)
    assert client.get("/agent/login").status_code == 503
    assert client.get("/healthz").status_code in (200, 503)            # the rest of the app is there


def test_with_redis_down_the_desk_says_so_and_logging_in_still_works(desk):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    alice = logged_in(create_app(dataclasses.replace(desk.settings, redis_url=dead)))
    page = alice.get("/agent")
    assert page.status_code == 503 and "Redis does not answer" in page.get_data(as_text=True)
    assert alice.get("/agent/api/transfers").status_code == 503
    claim = alice.post("/agent/transfers/CA1/claim", data={"csrf_token": alice.csrf},
                       headers={"Accept": "application/json"})
    assert claim.status_code == 503


# -- live updates ----------------------------------------------------------------------------------------

def events_of(response):
    """The stream's events as (name, data) pairs, read as they come."""
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            name = re.search(r"^event: (.*)$", block, re.M)
            data = re.search(r"^data: (.*)$", block, re.M)
            yield (name.group(1) if name else block.strip()), (json.loads(data.group(1)) if data else None)


def test_the_event_stream_pushes_new_transfers_and_is_bounded(desk):
    alice = logged_in(desk.app)
    response = alice.get("/agent/events", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = events_of(response)
    assert next(events)[0].startswith("retry:")
    name, data = next(events)
    assert name == "board" and data["transfers"] == []
    bob = logged_in(desk.app, "bob")
    refused = bob.get("/agent/events")                        # desk.max_event_streams is 1 here
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    record = deliver(desk)
    for name, data in events:
        if name == "board":
            break
    assert [t["call_id"] for t in data["transfers"]] == [record["call_id"]] and SUMMARY in data["html"]
    response.close()                                          # the browser went away: its slot is free again
    again = bob.get("/agent/events", buffered=False)
    assert again.status_code == 200
    again.close()


def test_a_quiet_stream_sends_heartbeats_and_ends_in_time(redis_url):
    client = redis.Redis.from_url(redis_url)
    looks = []

    def look():
        looks.append(1)
        return "same", {"transfers": []}

    events = list(board_events(client, ["voicebot:desk:quiet-" + secrets.token_hex(4)], look,
                               heartbeat_seconds=0.2, max_seconds=1.0))
    assert events[0].startswith("retry:") and events[1].startswith("event: board")
    assert ": heartbeat\n\n" in events and events[-1].startswith("event: bye")
    assert sum(e.startswith("event: board") for e in events) == 1      # the board did not change: sent once
    assert len(looks) >= 2                                             # but it was looked at again
    client.close()


# -- the command line ------------------------------------------------------------------------------------

def test_agents_commands_make_and_remove_accounts(tmp_path):
    from voicebot.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(f"desk: {{accounts: {tmp_path / 'agents.sqlite3'}}}\n")
    runner = CliRunner()
    made = runner.invoke(main, ["--config", str(config), "agents", "add", "Alice", "--password-stdin"],
                         input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    assert "Alice" not in made.output and PASSWORD not in made.output
    mode = stat.S_IMODE(os.stat(tmp_path / "agents.sqlite3").st_mode)
    assert mode == 0o600
    assert PASSWORD.encode() not in (tmp_path / "agents.sqlite3").read_bytes()
    again = runner.invoke(main, ["--config", str(config), "agents", "add", "alice", "--password-stdin"],
                          input=PASSWORD + "\n")
    assert again.exit_code == 1 and "exists already" in again.output
    short = runner.invoke(main, ["--config", str(config), "agents", "add", "bob", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    typed = runner.invoke(main, ["--config", str(config), "agents", "add", "carol"],
                          input="a long password\na long password\n")
    assert typed.exit_code == 0 and "a long password" not in typed.output
    assert runner.invoke(main, ["--config", str(config), "agents", "list"]).output.split() == ["alice", "agent", "carol",
                                                                                           "agent"]
    assert Accounts(tmp_path / "agents.sqlite3").log_in("carol", "a long password", "x").ok
    assert runner.invoke(main, ["--config", str(config), "agents", "remove", "carol"]).exit_code == 0
    assert runner.invoke(main, ["--config", str(config), "agents", "remove", "carol"]).exit_code == 1


def test_doctor_says_when_nobody_can_log_in_to_the_desk(tmp_path):
    from voicebot.commands.models import _desk_checks
    from voicebot.config import load_settings

    config = tmp_path / "config.yaml"
    config.write_text(f"desk: {{accounts: {tmp_path / 'agents.sqlite3'}}}\n")
    [agents, secret] = _desk_checks(load_settings(config, environ={}), live=False)
    assert not agents.ok and "voicebot agents add NAME" in agents.detail and not agents.required
    assert not secret.ok and "VOICEBOT_DESK_SECRET" in secret.detail
    assert not (tmp_path / "agents.sqlite3").exists()                 # looking made no file
    Accounts(tmp_path / "agents.sqlite3").add("alice", PASSWORD)
    [agents, secret] = _desk_checks(load_settings(config, environ={"VOICEBOT_DESK_SECRET": "k" * 40}), live=True)
    assert agents.ok and "1 account" in agents.detail and secret.ok


def test_the_development_mode_keeps_a_desk_secret(tmp_path):
    from voicebot.config import load_settings
    from voicebot.telephony.devmode import apply_dev_mode

    (tmp_path / "config.yaml").write_text("{}\n")
    settings = load_settings(tmp_path / "config.yaml", environ={})
    first, _ = apply_dev_mode(settings, 5000)
    second, _ = apply_dev_mode(settings, 5000)
    assert len(first.desk.secret) >= 32 and first.desk.secret == second.desk.secret
    assert stat.S_IMODE(os.stat(tmp_path / ".run" / "desk-secret").st_mode) == 0o600
    given = load_settings(tmp_path / "config.yaml", environ={"VOICEBOT_DESK_SECRET": "m" * 40})
    assert apply_dev_mode(given, 5000)[0].desk.secret == "m" * 40


def test_a_call_back_asked_for_after_nobody_answered_shows_on_the_calls_card(desk):
    record = deliver(desk)
    callback = {**record, "reason": "callback_requested"}
    desk.redis.xadd(stream_key(desk.queue), {"call_id": record["call_id"], "context": json.dumps(callback)})
    alice = logged_in(desk.app)
    [transfer] = alice.get("/agent/api/transfers").get_json()["transfers"]
    assert len(transfer["entry_ids"]) == 2
    assert "Call back requested" in alice.get("/agent").get_data(as_text=True)


def test_only_the_taker_gives_a_transfer_back_and_then_anyone_may_take_it(desk):
    record = deliver(desk)
    alice, bob = logged_in(desk.app), logged_in(desk.app, "bob")
    path = f"/agent/transfers/{record['call_id']}"
    json_headers = {"Accept": "application/json"}
    assert alice.post(path + "/claim", data={"csrf_token": alice.csrf}, headers=json_headers).status_code == 200
    assert "Give back" in alice.get("/agent").get_data(as_text=True)
    assert bob.post(path + "/release", data={"csrf_token": bob.csrf}, headers=json_headers).status_code == 409
    assert bob.post(path + "/release", headers=json_headers).status_code in (400, 403)          # no CSRF token
    back = alice.post(path + "/release", data={"csrf_token": alice.csrf}, headers=json_headers)
    assert back.status_code == 200
    [transfer] = back.get_json()["board"]["transfers"]
    assert transfer["claimed_by"] is None
    assert bob.post(path + "/claim", data={"csrf_token": bob.csrf}, headers=json_headers).status_code == 200
    assert bob.post(path + "/close", data={"csrf_token": bob.csrf, "outcome": "resolved"},
                    headers=json_headers).status_code == 200
    assert bob.post(path + "/release", data={"csrf_token": bob.csrf}, headers=json_headers).status_code == 404
