"""Identity checks: each method's rule, the lockout across calls in a real Redis, failing closed,
no number or secret in Redis keys, logs or metrics, and ``settle`` in the runners."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import json
import re
import secrets
import socket
import time
from pathlib import Path

import pytest
import redis

from identity_fakes import ANNA, BRAM, CheckingEngine, FakeDirectory, unavailable_directory
from voicebot.dialog.actions import CheckIdentity, Say, Transfer
from voicebot.dialog.events import IdentityChecked, SystemFailure
from voicebot.identity import DirectoryUnavailable
from voicebot.identity.lockout import MemoryLockout
from voicebot.identity.methods import check, e164
from voicebot.identity.service import MAX_SETTLE_ROUNDS, IdentityService, settle
from voicebot.redis_clients import redis_client
from voicebot.telephony.metrics import Metrics

ATTEMPTS = 5
SECRETS = ("1980-05-17", "4321", "1234AB", "1234 ab", "0000", "1999-09-09", "9999XX")
NUMBERS = ("100234", "100567", "+31612345678", "0612345678", "612345678", "+31611111111", "+31622222222")


def dob(number="100234", birth="1980-05-17", caller="+31611111111"):
    return CheckIdentity("customer_dob", {"customer_number": number, "birth_date": birth}, caller)


def pin(number="100234", value="4321", caller="+31611111111"):
    return CheckIdentity("pin", {"customer_number": number, "pin": value}, caller)


def address(postcode="1234AB", house="12", caller="+31611111111"):
    return CheckIdentity("postcode_house", {"postcode": postcode, "house_number": house}, caller)


@pytest.fixture
def db(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def service(redis_url):
    """A service with its own salt, so its counters are its own in the shared test Redis."""
    metrics = Metrics()
    svc = IdentityService(FakeDirectory(), redis_client(redis_url, "store"), secrets.token_hex(8), ATTEMPTS, 30,
                          metrics=metrics)
    yield svc
    svc.lockout.client.close()


def outcomes(svc, actions):
    return [svc.check(a).outcome for a in actions]


def count(svc, method, outcome):
    return svc.metrics.verifications.labels(method=method, outcome=outcome)._value.get()


# -- the rules of each method ----------------------------------------------------------------------

@pytest.mark.parametrize("caller", ["+31612345678", "0612345678", "+31 6 1234 5678", "0031612345678"])
def test_caller_id_matches_one_customer_by_the_calling_number_in_any_usual_writing(caller):
    assert check("caller_id", {}, caller, FakeDirectory()) == ANNA


def test_caller_id_needs_exactly_one_customer_and_a_real_number():
    directory = FakeDirectory()
    assert check("caller_id", {}, "+31699999999", directory) is None        # two customers share it
    assert check("caller_id", {}, "+31600000000", directory) is None        # nobody's
    before = len(directory.lookups)
    for withheld in ("", "anonymous", "client:anna", "+123", "+" + "1" * 40):
        assert check("caller_id", {}, withheld, directory) is None
    assert len(directory.lookups) == before                                 # not even looked up
    assert e164("+31612345678") == "+31612345678" and e164("anonymous") is None


def test_customer_number_and_birth_date():
    directory = FakeDirectory()
    assert check("customer_dob", {"customer_number": "100234", "birth_date": "1980-05-17"}, "", directory) == ANNA
    assert check("customer_dob", {"customer_number": "100 234", "birth_date": "1980-05-17"}, "", directory) == ANNA
    assert check("customer_dob", {"customer_number": "100234", "birth_date": "1980-05-18"}, "", directory) is None
    assert check("customer_dob", {"customer_number": "100567", "birth_date": "1980-05-17"}, "", directory) is None
    assert check("customer_dob", {"customer_number": "999999", "birth_date": "1980-05-17"}, "", directory) is None
    assert check("customer_dob", {"customer_number": "100234", "birth_date": "1980-05-17é"}, "", directory) is None


def test_postcode_and_house_number_need_exactly_one_customer():
    directory = FakeDirectory()
    assert check("postcode_house", {"postcode": "1234 ab", "house_number": "12"}, "", directory) == ANNA
    assert check("postcode_house", {"postcode": "1234AB", "house_number": "13"}, "", directory) is None
    # Two customers live there: neither is told apart.
    assert check("postcode_house", {"postcode": "9999ZZ", "house_number": "1"}, "", directory) is None


def test_pin_is_checked_by_the_directory():
    directory = FakeDirectory()
    assert check("pin", {"customer_number": "100234", "pin": "4321"}, "", directory) == ANNA
    assert check("pin", {"customer_number": "100234", "pin": "4322"}, "", directory) is None
    assert check("pin", {"customer_number": "100567", "pin": "4321"}, "", directory) is None      # no PIN set
    assert directory.lookups.count("pin_matches") == 3


@pytest.mark.parametrize("values", [
    {}, {"customer_number": "100234"}, {"birth_date": "1980-05-17"},
    {"customer_number": "", "birth_date": "1980-05-17"},
    {"customer_number": "100234", "birth_date": None}, {"customer_number": "1" * 65, "birth_date": "1980-05-17"},
])
def test_missing_or_implausible_values_never_match_and_are_not_looked_up(values):
    directory = FakeDirectory()
    assert check("customer_dob", values, "", directory) is None
    assert check("pin", {k.replace("birth_date", "pin"): v for k, v in values.items()}, "", directory) is None
    assert directory.lookups == []


def test_an_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown verification method 'voice_print'"):
        check("voice_print", {}, "", FakeDirectory())


def test_a_directory_that_cannot_answer_is_not_a_no_match():
    with pytest.raises(DirectoryUnavailable):
        check("customer_dob", {"customer_number": "100234", "birth_date": "1980-05-17"}, "", unavailable_directory())


# -- the service: outcomes and the lockout across calls --------------------------------------------

def test_each_method_through_the_service(service):
    answer = service.check(dob())
    assert answer == IdentityChecked("customer_dob", "match", {"number": "100234", "name": "Anna de Vries"})
    assert service.check(pin()).outcome == "match"
    assert service.check(address()).outcome == "match"
    assert service.check(CheckIdentity("caller_id", caller="+31687654321")).customer == BRAM.public()
    assert outcomes(service, [dob(birth="1980-01-01"), pin(value="0000"), address(house="99"),
                              CheckIdentity("caller_id", caller="+31600000000")]) == ["no_match"] * 4
    assert count(service, "customer_dob", "match") == 1 and count(service, "caller_id", "no_match") == 1


def test_guessing_one_customer_over_many_calls_from_many_numbers_is_locked(service):
    # Each guess from another phone: only the customer's counter stops them.
    for n in range(ATTEMPTS):
        assert service.check(dob(birth=f"1980-01-0{n + 1}", caller=f"+3161000000{n}")).outcome == "no_match"
    service.directory.lookups.clear()
    assert service.check(dob(caller="+31619999999")).outcome == "locked"          # even the right date
    assert service.check(pin(caller="+31618888888")).outcome == "locked"          # and another method
    assert service.directory.lookups == []                                        # nothing was compared
    assert service.check(dob(number="100567", birth="1975-01-02", caller="+31619999999")).outcome == "match"
    assert count(service, "customer_dob", "locked") == 1 and count(service, "pin", "locked") == 1


def test_guessing_from_one_number_over_many_calls_is_locked(service):
    caller = "+31622222222"
    guesses = [dob(number=f"20000{n}", caller=caller) for n in range(3)] + [pin(value="1111", caller=caller),
                                                                           address(house="77", caller=caller)]
    assert outcomes(service, guesses) == ["no_match"] * ATTEMPTS
    assert service.check(dob(caller=caller)).outcome == "locked"
    assert service.check(CheckIdentity("caller_id", caller=caller)).outcome == "locked"
    assert service.check(dob(caller="+31633333333")).outcome == "match"            # another phone may


def test_caller_id_misses_are_not_guesses(service):
    for _ in range(ATTEMPTS * 2):
        assert service.check(CheckIdentity("caller_id", caller="+31600000000")).outcome == "no_match"
    assert service.check(dob(caller="+31600000000")).outcome == "match"


def test_withheld_numbers_share_one_counter(service):
    for n, caller in enumerate(["", "anonymous", "client:x", "+12", "anonymous"]):
        assert service.check(dob(number=f"30000{n}", caller=caller)).outcome == "no_match"
    assert service.check(dob(caller="")).outcome == "locked"


def test_a_match_clears_the_customers_failures_but_not_the_callers(service, db):
    caller = "+31644444444"
    outcomes(service, [dob(birth="1980-01-01", caller=caller)] * (ATTEMPTS - 1))
    customer_key, caller_key = service.key("customer", "100234"), service.key("caller", caller)
    assert int(db.get(customer_key)) == ATTEMPTS - 1
    assert service.check(dob(caller=caller)).outcome == "match"
    assert db.get(customer_key) is None
    assert int(db.get(caller_key)) == ATTEMPTS - 1                 # the match itself does not count
    assert service.check(pin(value="0000", caller=caller)).outcome == "no_match"
    assert service.check(dob(caller=caller)).outcome == "locked"


def test_a_weak_match_does_not_reset_someone_guessing_a_pin(service, db):
    outcomes(service, [pin(value=f"000{n}", caller=f"+3165555555{n}") for n in range(ATTEMPTS - 1)])
    assert service.check(address(caller="+31656666666")).outcome == "match"
    assert service.check(CheckIdentity("caller_id", caller="+31612345678")).outcome == "match"
    assert int(db.get(service.key("customer", "100234"))) == ATTEMPTS - 1
    assert service.check(pin(value="0009", caller="+31657777777")).outcome == "no_match"
    assert service.check(pin(caller="+31658888888")).outcome == "locked"


def test_the_lock_expires_after_its_window_and_locked_calls_do_not_extend_it(service, db):
    outcomes(service, [dob(birth="1980-01-01", caller=f"+3167000000{n}") for n in range(ATTEMPTS)])
    key = service.key("customer", "100234")
    assert 0 < db.ttl(key) <= 30 * 60                              # lockout_minutes
    db.expire(key, 100)
    assert service.check(dob(caller="+31670000009")).outcome == "locked"
    assert db.ttl(key) <= 100                                      # a locked attempt restarts nothing
    db.pexpire(key, 1)                                             # the window ends
    deadline = time.monotonic() + 5
    while db.exists(key):
        assert time.monotonic() < deadline, "Redis did not expire the key"
        time.sleep(0.01)
    assert service.check(dob(caller="+31670000009")).outcome == "match"


def test_counter_keys_and_values_hold_no_number_or_secret(service, db):
    outcomes(service, [dob(birth="1999-09-09", caller="0612345678"), pin(value="0000", caller="+31612345678"),
                       address(postcode="9999XX", caller="+31611111111"), dob(number="100567")])
    keys = [k.decode() for k in db.scan_iter(match="voicebot:lockout:*", count=1000)]
    mine = {service.key("customer", n) for n in ("100234", "100567")} | \
        {service.key("caller", c) for c in ("+31612345678", "+31611111111")}
    assert mine <= set(keys)
    # Every lockout key is a kind and a 64-digit hex HMAC: no room for a number, a date or a postcode.
    assert all(re.fullmatch(r"voicebot:lockout:(customer|caller):[0-9a-f]{64}", k) for k in keys)
    assert all(re.fullmatch(rb"\d+", db.get(k) or b"0") for k in keys)         # values are counts
    # Keyed with the salt: not a plain hash anyone could compute from a list of phone numbers.
    plain = {hashlib.sha256(n.encode()).hexdigest() for n in ("100234", "100567", "+31612345678", "+31611111111")}
    assert not any(k.rsplit(":", 1)[1] in plain for k in mine)


# -- failing closed, and saying nothing while doing so ---------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_down_fails_closed_without_comparing(caplog):
    directory = FakeDirectory()
    client = redis_client(f"redis://127.0.0.1:{_closed_port()}/0", "store")
    svc = IdentityService(directory, client, "salt", ATTEMPTS, 30, metrics=Metrics())
    with caplog.at_level(logging.INFO, logger="voicebot.identity"):
        answers = [svc.check(a) for a in (dob(), pin(), address(), CheckIdentity("caller_id", caller="+31612345678"))]
    assert [a.outcome for a in answers] == ["unavailable"] * 4 and all(a.customer is None for a in answers)
    assert directory.lookups == []
    assert "lockout counters unreachable" in caplog.text and len(caplog.records) == 4
    for text in SECRETS + NUMBERS:
        assert text not in caplog.text
    assert count(svc, "pin", "unavailable") == 1


def test_no_redis_client_at_all_fails_closed():
    assert IdentityService(FakeDirectory(), None, "salt", ATTEMPTS, 30).check(dob()).outcome == "unavailable"


def test_directory_down_fails_closed_and_costs_the_caller_no_attempt(service, db, caplog):
    service.directory = unavailable_directory()
    with caplog.at_level(logging.INFO, logger="voicebot.identity"):
        assert outcomes(service, [dob()] * (ATTEMPTS + 2)) == ["unavailable"] * (ATTEMPTS + 2)
    assert "customer directory unavailable (DirectoryUnavailable)" in caplog.text and "crm down" not in caplog.text
    assert not db.get(service.key("customer", "100234")) or int(db.get(service.key("customer", "100234"))) == 0
    service.directory = FakeDirectory()
    assert service.check(dob()).outcome == "match"


def test_a_broken_directory_fails_closed_without_its_message(service, caplog):
    service.directory = FakeDirectory(fail=RuntimeError("row 100234 has birth date 1980-05-17"))
    with caplog.at_level(logging.INFO, logger="voicebot.identity"):
        assert service.check(dob()).outcome == "unavailable"
    assert "RuntimeError" in caplog.text
    for text in SECRETS + NUMBERS:
        assert text not in caplog.text


def test_metrics_carry_method_and_outcome_only(service):
    outcomes(service, [dob(), pin(value="0000"), CheckIdentity("voice_print", {"x": "100234"}, "+31612345678")])
    text = service.metrics.render().decode()
    assert 'voicebot_verifications_total{method="customer_dob",outcome="match"} 1.0' in text
    assert 'voicebot_verifications_total{method="unknown",outcome="unavailable"} 1.0' in text
    for value in SECRETS + NUMBERS:
        assert value not in text


def test_checks_leave_no_value_in_any_log_line(service, caplog):
    with caplog.at_level(logging.DEBUG):
        outcomes(service, [dob(birth="1999-09-09", caller="0612345678")] * (ATTEMPTS + 1)
                 + [pin(value="0000"), address(postcode="9999XX"), dob()])
    assert "refused: too many failed attempts" in caplog.text
    for text in SECRETS + NUMBERS:
        assert text not in caplog.text


def test_in_process_counters_lock_and_expire():
    now = [0.0]
    lockout = MemoryLockout(2, 60, max_keys=3, clock=lambda: now[0])
    svc = IdentityService(FakeDirectory(), None, "salt", 2, 1, lockout=lockout)
    guesses = [dob(birth="1980-01-01"), dob(birth="1980-01-02"), dob()]
    assert outcomes(svc, guesses) == ["no_match", "no_match", "locked"]
    now[0] = 59.9
    assert svc.check(dob()).outcome == "locked"
    now[0] = 60.0
    assert svc.check(dob()).outcome == "match"
    for n in range(10):
        lockout.take([f"k{n}"])
    assert len(lockout._counts) <= 3                                   # bounded


# -- settle: the runners answer every check at once ------------------------------------------------

class FakeEngine:
    """Asks for a check when told to; says what it heard."""

    def __init__(self, ask_again: int = 0):
        self.ask_again = ask_again
        self.events = []

    def handle(self, state, event):
        self.events.append(event)
        if isinstance(event, SystemFailure):
            return [Transfer(queue="algemeen", reason="error", context={}), CheckIdentity("pin")]
        if self.ask_again:
            self.ask_again -= 1
            return [Say(f"again {event.outcome}"), dob()]
        return [Say(f"heard {event.outcome}")]


def test_settle_answers_the_check_and_keeps_what_came_before(service):
    engine = FakeEngine()
    actions = settle(engine, object(), [Say("Een moment."), dob()], service)
    assert [a.text for a in actions] == ["Een moment.", "heard match"]
    assert engine.events == [IdentityChecked("customer_dob", "match", ANNA.public())]
    assert settle(engine, object(), [Say("Hallo.")], service) == [Say("Hallo.")]
    assert len(engine.events) == 1


def test_settle_follows_a_few_checks_in_a_row(service):
    engine = FakeEngine(ask_again=2)
    actions = settle(engine, object(), [dob(birth="1980-01-01")], service)
    assert [a.text for a in actions] == ["again no_match", "again match", "heard match"]


def test_settle_stops_an_engine_that_keeps_asking(service):
    engine = FakeEngine(ask_again=100)
    actions = settle(engine, object(), [dob()], service)
    assert isinstance(engine.events[-1], SystemFailure) and len(engine.events) == MAX_SETTLE_ROUNDS + 1
    assert isinstance(actions[-1], Transfer) and not any(isinstance(a, CheckIdentity) for a in actions)


def test_settle_without_a_service_fails_closed():
    engine = FakeEngine()
    assert settle(engine, object(), [dob()], None) == [Say("heard unavailable")]


# -- the runners -------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


def test_the_text_simulator_settles_the_opening_and_every_turn(monkeypatch):
    from voicebot import simulator
    from voicebot.flow import load_flow

    real = simulator.DialogEngine
    engines = []

    def checking(flow, **kwargs):
        engines.append(CheckingEngine(real(flow, **kwargs)))
        return engines[-1]

    monkeypatch.setattr(simulator, "DialogEngine", checking)
    svc = IdentityService(FakeDirectory(), None, "salt", ATTEMPTS, 30, lockout=MemoryLockout(ATTEMPTS, 60))
    sim = simulator.Simulation(load_flow(DATA / "mini.yaml"), caller="+31612345678", identity=svc)
    assert not any(isinstance(a, CheckIdentity) for a in sim.opening)
    sim.keys("1")
    assert [(a.outcome, a.customer) for a in engines[0].answers] == [("match", ANNA.public())] * 2


def test_phone_calls_settle_at_the_start_and_after_every_turn(settings, tmp_path):
    from test_call_session import Line
    from voicebot.config import SpeechSettings
    from voicebot.flow import load_flows
    from voicebot.speech.recognizer import SpeechModels
    from voicebot.telephony.runtime import Runtime

    settings = dataclasses.replace(settings, flows_dir=DATA, default_flow="ko_test",
                                   prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path))
    no_models = SpeechModels(SpeechSettings(models_dir=tmp_path, models={"ko": str(tmp_path / "none")}))
    flows = load_flows(DATA)
    assert Runtime(settings, flows=flows, models=no_models).identity is None     # no verify step, no directory
    korean_caller = dataclasses.replace(ANNA, phones=("+821012345678",))
    rt = Runtime(settings, flows=flows, models=no_models, directory=FakeDirectory(customers=(korean_caller,)))
    engine = rt.engines["ko_test"] = CheckingEngine(rt.engines["ko_test"])
    line = Line(rt, "CA-identity")
    assert [a.outcome for a in engine.answers] == ["match"]
    line.echo_marks()
    line.dtmf("1")
    assert [a.outcome for a in engine.answers] == ["match", "match"]
    assert rt.metrics.verifications.labels(method="caller_id", outcome="match")._value.get() == 2


def test_chat_counts_in_redis_when_it_answers_else_in_its_own_process(monkeypatch, settings, redis_url):
    import sys
    import types

    from voicebot.commands.context import chat_identity
    from voicebot.flow import load_flow
    from voicebot.identity.lockout import RedisLockout

    monkeypatch.setitem(sys.modules, "voicebot.identity.directory",
                        types.SimpleNamespace(open_directory=lambda section: FakeDirectory()))
    flow = load_flow(DATA / "mini.yaml")
    assert chat_identity(settings, flow) is None              # no verify step: no directory
    monkeypatch.setattr("voicebot.identity.service.uses_verification", lambda flows: True)
    notes: list[str] = []
    shared = chat_identity(settings, flow, note=notes.append)
    assert isinstance(shared.lockout, RedisLockout) and notes == []
    scripted = chat_identity(settings, flow, shared=False, note=notes.append)
    assert isinstance(scripted.lockout, MemoryLockout) and notes == []         # a scenario run: its own counters
    down = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    alone = chat_identity(down, flow, note=notes.append)
    assert isinstance(alone.lockout, MemoryLockout)
    assert len(notes) == 1 and "failed identity checks count in this chat only" in notes[0]
    assert outcomes(alone, [dob(birth="1980-01-01")] * ATTEMPTS + [dob()]) == ["no_match"] * ATTEMPTS + ["locked"]
    shared.lockout.client.close()


def test_only_flows_with_a_verify_step_use_verification():
    from types import SimpleNamespace

    from voicebot.identity.service import uses_verification

    def flow(*types):
        return SimpleNamespace(spec=SimpleNamespace(steps={t: SimpleNamespace(type=t) for t in types}))

    assert not uses_verification([flow("say", "route"), flow("ask")])
    assert uses_verification([flow("say"), flow("route", "verify")])


def test_redis_down_during_verification_hands_the_caller_over_unverified():
    """A whole call on the verify test flow with the lockout's Redis gone: the caller answers both
    questions, nothing is compared, and a person takes over with reason verification_failed."""
    from voicebot import simulator
    from voicebot.dialog.actions import Transfer
    from voicebot.flow import load_flow

    directory = FakeDirectory()
    client = redis_client(f"redis://127.0.0.1:{_closed_port()}/0", "store")
    svc = IdentityService(directory, client, "salt", ATTEMPTS, 30)
    sim = simulator.Simulation(load_flow(DATA / "verify" / "verify.yaml"), caller="", identity=svc,
                               at="2026-11-23T10:00:00")
    sim.say("ik wil mijn meterstand doorgeven")
    sim.keys("100234")
    actions = sim.keys("17051980")
    transfer = next(a for a in actions if isinstance(a, Transfer))
    assert transfer.reason == "verification_failed"
    assert transfer.context["identity"]["verified"] is False
    assert transfer.context["identity"]["attempts"] == [{"method": "customer_dob", "outcome": "unavailable"}]
    assert directory.lookups == []
    assert "17051980" not in json.dumps(transfer.context) and "1980-05-17" not in json.dumps(transfer.context)
