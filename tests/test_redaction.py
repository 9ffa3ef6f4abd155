"""The redaction scan: verification calls through a live `voicebot serve`, then everything the system
wrote searched for the secrets the callers gave.

The calls run on the verification test flow (tests/data/verify/verify.yaml) with the caller's
customer number read back before an account change, and its meter path ending as energie.yaml's
does: the reading read back, and a summary by text message. There is no Dutch speech model here,
so the calls run by keypad, as the call of a caller whose speech cannot be understood does. The
customer directory is a SQLite file loaded from the demo CSV with `voicebot customers import`;
Fatima El Amrani's PIN is then set with `voicebot customers set-pin`. The handoff jobs run in a
real RQ worker, and text messages go through the twilio package to a local REST server.

`voicebot serve` has no log-level setting: a ``sitecustomize`` on the server's PYTHONPATH turns its
``logging.basicConfig`` to DEBUG, so the debug lines of voicebot and its libraries are scanned too.

A postcode's letters cannot be keyed, so the postcode-and-house-number method is not reached by
keypad (docs/identity.md); the full postcode is searched for all the same.

Each source has a canary, a value that must be found in it, so that a source that was never read,
or a search that finds nothing, cannot pass; and the search must find the secrets where they are
rightly kept (the CSV, the directory).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import pickle
import secrets
import subprocess
import sys
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import yaml
from rq.job import Job

from fake_twilio import TwilioMessages
from servers import ACCOUNT, TOKEN, Server
from voicebot.dialog.actions import Listen, Transfer
from voicebot.emulator import CallReport, place_call
from voicebot.handoff.queueing import SERIALIZER
from voicebot.flow import parse_flow
from voicebot.simulator import Simulation
from voicebot.speech.cache import cache_key

REPO = Path(__file__).resolve().parent.parent
VERIFY_FLOW = REPO / "tests" / "data" / "verify" / "verify.yaml"
DEMO_CSV = REPO / "flows" / "customers-demo.csv"
SALT = "redaction-" + secrets.token_hex(16)
"""This module's own salt: lockout counters other tests left in Redis are not this server's."""
REDIS_DB = 13
"""A database of the session's redis-server that no other test uses: every key in it is this module's."""
VOICE, RATE = "nl", 165
"""The espeak-ng voice and rate of config.yaml for Dutch: part of a prompt's cache file name."""

JAN = "+31612345678"          # customer 100001, born 14 March 1975, postcode 1012AB
FATIMA = "+31623456789"       # customer 100002
BIRTH_DATE = dt.date(1975, 3, 14)
WRONG_BIRTH_DATES = (dt.date(1975, 3, 15), dt.date(1975, 4, 14), dt.date(1976, 3, 14))
PIN = "5827391"
POSTCODE = "1012AB"
METER_READING = "12345"
MONTHS = ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
          "november", "december")


# -- what is searched for -------------------------------------------------------------------------------


def date_forms(day: dt.date) -> list[str]:
    """A date as people, programs and speech write it."""
    d, m, y = f"{day.day:02d}", f"{day.month:02d}", str(day.year)
    return [d + m + y, f"{y}-{m}-{d}", f"{d}-{m}-{y}", f"{day.day} {MONTHS[day.month - 1]} {y}", f"{d}/{m}/{y}",
            f"{d}.{m}.{y}", y + m + d, f"{day.day}-{day.month}-{y}", " ".join(d + m + y)]


def written_forms(value: str, salt: str) -> list[str]:
    """Hashes of a value are as good as the value (a birth date or PIN is easily guessed): plain
    hashes, and the salted HMAC that secret slots are kept as (which a verify answer must not be)."""
    data = value.encode()
    return [value, hashlib.sha256(data).hexdigest(), hashlib.sha1(data).hexdigest(), hashlib.md5(data).hexdigest(),
            hmac.new(salt.encode(), data, hashlib.sha256).hexdigest()]


@dataclass
class Secrets:
    """Every written form of every secret the callers gave, each with a label that says what it is."""

    forms: dict[str, str] = field(default_factory=dict)

    def add(self, what: str, text: str, salt: str) -> None:
        for form in written_forms(text, salt):
            self.forms[form.lower()] = f"{what} as {text!r}" + ("" if form == text else " (hashed)")

    @classmethod
    def of_the_calls(cls, salt: str) -> Secrets:
        found = cls()
        for day in (BIRTH_DATE, *WRONG_BIRTH_DATES):
            what = "birth date" if day == BIRTH_DATE else "wrong birth date"
            for text in date_forms(day):
                found.add(f"{what} {day}", text, salt)
        for text in (PIN, " ".join(PIN)):
            found.add("PIN", text, salt)
        for text in (POSTCODE, "1012 AB"):
            found.add("postcode", text, salt)
        found.forms[salt.lower()] = "the hash salt"
        return found

    def in_(self, data: bytes | str) -> list[str]:
        """The labels of the secrets ``data`` contains (case-insensitive)."""
        text = (data.decode("utf-8", "replace") if isinstance(data, bytes) else data).lower()
        return sorted({label for form, label in self.forms.items() if form in text})


# -- what the system wrote ------------------------------------------------------------------------------


def unpacked(value: bytes) -> list[bytes]:
    """``value`` and what it holds: RQ keeps job data as zlib-compressed pickles, whose dates are
    objects rather than text, so a pickle is also shown as JSON (dates as ISO text)."""
    out = [value]
    try:
        value = zlib.decompress(value)
        out.append(value)
    except zlib.error:
        pass
    if value[:1] == b"\x80":
        try:
            out.append(json.dumps(pickle.loads(value), default=str).encode())  # noqa: S301 - our own Redis
        except Exception:  # noqa: BLE001 - not a pickle after all
            pass
    return out


def redis_dump(client: redis.Redis) -> list[tuple[str, bytes]]:
    """Every key of the database and every value under it, of every type Redis has."""
    dumped: list[tuple[str, bytes]] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [part for _, entry in client.xrange(key) for pair in entry.items() for part in pair]
        elif kind == "none":          # expired between SCAN and TYPE
            continue
        else:
            raise AssertionError(f"Redis key {key!r} is a {kind}, which the scan does not read")
        where = f"Redis {key.decode(errors='replace')}"
        dumped.append((where + " (key)", key))
        dumped += [(where, part) for value in values if value is not None for part in unpacked(value)]
    return dumped


def rq_jobs(client: redis.Redis) -> list[tuple[str, bytes]]:
    """Every RQ job's arguments and result as RQ itself reads them back."""
    out = []
    for key in client.scan_iter("rq:job:*"):
        job_id = key.decode().removeprefix("rq:job:")
        if ":" in job_id:        # rq:job:<id>:dependents and the like
            continue
        job = Job.fetch(job_id, connection=client, serializer=SERIALIZER)
        result = job.latest_result()
        seen = {"args": job.args, "kwargs": job.kwargs, "meta": job.meta, "description": job.description,
                "result": result and (result.return_value, result.exc_string)}
        out.append((f"RQ job {job_id}", json.dumps(seen, default=str).encode()))
    return out


def files_under(folder: Path, *, skip: tuple[Path, ...] = ()) -> list[tuple[str, bytes]]:
    """Every file's path and content under ``folder``."""
    out = []
    for path in sorted(folder.rglob("*")):
        out.append((f"file name {path}", str(path.relative_to(folder)).encode()))
        if path.is_file() and not any(path == s or path.name.startswith(s.name + "-") for s in skip):
            out.append((f"file {path}", path.read_bytes()))
    return out


# -- the parts: a local Twilio REST API, the flow, the server, the directory ----------------------------


def with_read_backs_and_a_text_message(folder: Path) -> Path:
    """verify.yaml with the caller's values read back, and the meter path ending as energie.yaml's
    does: the reading read back, then a summary by text message on request. The account change
    names the customer number the caller keyed before the PIN."""
    flow = yaml.safe_load(VERIFY_FLOW.read_text(encoding="utf-8"))
    steps = flow["steps"]
    steps["genoteerd"]["next"] = "sms_vraag"
    steps["sms_vraag"] = {"type": "ask", "slot": "sms_samenvatting", "slot_type": "yes_no",
                          "say": "Wilt u een samenvatting per sms?", "branches": {"yes": "sms", "no": "einde"},
                          "next": "einde"}
    steps["sms"] = {"type": "sms", "say": "Ik stuur u een sms met een samenvatting.", "next": "einde"}
    steps["pin_controle"]["next"] = "rekening_klant"
    steps["rekening_klant"] = {"type": "say", "next": "rekening_wijzigen",
                               "say": "U wijzigt het rekeningnummer van klantnummer {customer_number}."}
    path = folder / "verify.yaml"
    path.write_text(yaml.safe_dump(flow, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


DEBUG_LOGGING = '''"""Turns `voicebot serve`'s logging.basicConfig(level=INFO) to DEBUG for the redaction scan."""
import logging

_basic_config = logging.basicConfig


def _debug(**kwargs):
    kwargs["level"] = logging.DEBUG
    _basic_config(**kwargs)


logging.basicConfig = _debug
'''


@dataclass
class System:
    tmp: Path
    server: Server
    redis_url: str
    salt: str
    env: dict[str, str]
    database: Path
    cli_output: list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def text_api():
    with TwilioMessages(ACCOUNT) as fake:
        yield fake


@pytest.fixture(scope="module")
def system(tmp_path_factory, redis_url, text_api):
    tmp = tmp_path_factory.mktemp("redaction")
    url = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    flows = tmp / "flows"
    flows.mkdir()
    with_read_backs_and_a_text_message(flows)
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DEBUG_LOGGING)
    salt = SALT
    database = tmp / "directory" / "customers.sqlite3"
    scratch = tmp / "tmpdir"          # the server's temporary files, so that the scan sees any it leaves
    scratch.mkdir()
    environ = {"VOICEBOT_HASH_SALT": salt, "TWILIO_API_BASE": text_api.url, "TMPDIR": str(scratch),
               "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    server = Server(tmp, url, "scan", flows=flows, default_flow="verify", environ=environ,
                    sections=f"identity: {{database: {database}}}")
    try:
        env = {**os.environ, **environ, "VOICEBOT_CONFIG": str(server.config), "REDIS_URL": url,
               "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT}
        voicebot = [sys.executable, "-m", "voicebot", "customers"]
        imported = subprocess.run(voicebot + ["import", str(DEMO_CSV), "--update"], env=env, capture_output=True,
                                  timeout=60)
        assert imported.returncode == 0, imported.stderr.decode()
        pin = subprocess.run(voicebot + ["set-pin", "100002", "--pin-stdin"], input=f"{PIN}\n".encode(), env=env,
                             capture_output=True, timeout=60)
        assert pin.returncode == 0, pin.stderr.decode()
        cli_output = [("`customers import` output", imported.stdout + imported.stderr),
                      ("`customers set-pin` output", pin.stdout + pin.stderr)]
        yield System(tmp, server, url, salt, env, database, cli_output)
    finally:
        server.stop()


def keys(*entries: str) -> list[dict]:
    """A caller who keys each entry as soon as the bot starts its next prompt (keypad type-ahead)."""
    return [{"dtmf": entry, "barge_in": 0.3} for entry in entries]


def call(system: System, turns: list[dict], caller: str) -> CallReport:
    report = place_call(system.server.url, turns, auth_token=TOKEN, account_sid=ACCOUNT, caller=caller,
                        max_seconds=120, redis_url=system.redis_url)
    assert not report.timed_out, (report.events, system.server.output()[-3000:])
    assert report.bot_prompts is not None, report.said_unknown
    return report


@dataclass
class Calls:
    verified: CallReport
    failed: CallReport
    by_pin: CallReport
    contexts: dict[str, dict]
    written: list[tuple[str, bytes]]
    """(where, what) for everything the system wrote."""


def wait_for(condition, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def calls(system, text_api) -> Calls:
    # 1: customer number and date of birth, the meter reading, a text message.
    verified = call(system, keys("1", "100001#", BIRTH_DATE.strftime("%d%m%Y"), METER_READING + "#", "1"), JAN)
    wait_for(lambda: text_api.forms, "text message")
    # 2: the wrong date of birth until the flow's three attempts are spent.
    wrong = [entry for day in WRONG_BIRTH_DATES for entry in ("100001#", day.strftime("%d%m%Y"))]
    failed = call(system, keys("1", *wrong), JAN)
    # 3: the customer number asked by the flow, then the PIN.
    by_pin = call(system, keys("2", "100002#", PIN + "#"), FATIMA)

    client = redis.Redis.from_url(system.redis_url)
    written = redis_dump(client) + rq_jobs(client)          # the handoff jobs before the worker takes them
    worker = subprocess.run([sys.executable, "-m", "voicebot", "worker", "--burst"], env=system.env,
                            capture_output=True, timeout=120)
    assert worker.returncode == 0, worker.stderr.decode()
    contexts = {}
    for report in (failed, by_pin):
        raw = client.get(f"voicebot:handoff:{report.call_sid}")
        assert raw is not None, f"no handoff context for {report.call_sid}: {worker.stderr.decode()[-2000:]}"
        contexts[report.call_sid] = json.loads(raw)
    written += redis_dump(client) + rq_jobs(client)
    client.close()
    metrics = urllib.request.urlopen(system.server.url + "/metrics", timeout=10).read()
    written += [("server output", system.server.output().encode()),
                ("worker output", worker.stdout + worker.stderr),
                ("/metrics", metrics),
                *system.cli_output,
                *[(f"handoff context {sid}", json.dumps(c).encode()) for sid, c in contexts.items()],
                *[("text message", json.dumps(m).encode()) for m in text_api.forms],
                *files_under(system.tmp, skip=(system.database, system.server.log))]
    for report in (verified, failed, by_pin):
        said = f"what Twilio got on call {report.call_sid}"
        written += [(said + ": TwiML", (report.voice_twiml + (report.after_twiml or "")).encode()),
                    (said + ": whisper", (report.whisper_text or "").encode()),
                    (said + ": marks", json.dumps(report.marks).encode()),
                    (f"what the caller heard on {report.call_sid}", json.dumps(report.bot_prompts).encode())]
    return Calls(verified, failed, by_pin, contexts, written)


# -- the calls went as scripted -------------------------------------------------------------------------


def test_a_caller_verified_by_number_and_birth_date_gives_a_reading_and_gets_a_text_message(calls, text_api):
    said = calls.verified.bot_prompts
    assert "Dank u, dat klopt." in said
    assert "Dank u, uw meterstand 12345 is genoteerd." in said
    assert calls.verified.transfer is None and calls.verified.hung_up_by == "bot"
    [message] = text_api.forms
    assert message["To"] == [JAN] and METER_READING in message["Body"][0]


def test_a_wrong_birth_date_three_times_hands_the_caller_over_unverified(calls):
    said = calls.failed.bot_prompts
    assert sum(text.startswith("Dat klopt helaas niet.") for text in said) == 3
    assert said[-2:] == ["Dat klopt helaas niet.",
                         "Een medewerker helpt u hierbij verder. Ik verbind u door, een moment alstublieft."]
    context = calls.contexts[calls.failed.call_sid]
    assert context["reason"] == "verification_failed"
    assert context["identity"]["verified"] is False and context["identity"]["customer"] is None
    assert context["identity"]["attempts"] == [{"method": "customer_dob", "outcome": "no_match"}] * 3


def test_a_caller_verified_by_pin_is_put_through(calls):
    assert calls.by_pin.bot_prompts[-3:] == [
        "Dank u, dat klopt.", "U wijzigt het rekeningnummer van klantnummer 1 0 0 0 0 2.",
        "Ik verbind u door met de administratie voor uw nieuwe rekeningnummer."]
    context = calls.contexts[calls.by_pin.call_sid]
    assert context["identity"]["verified"] is True and context["identity"]["method"] == "pin"
    assert context["identity"]["customer"] == {"number": "100002", "name": "Fatima El Amrani"}


# -- the scan -------------------------------------------------------------------------------------------


CANARIES = {
    # source (prefix of its name) -> a value that must be in it
    "server output": "keypad only",
    "worker output": "handoff-",
    "/metrics": 'voicebot_verifications_total{method="customer_dob",outcome="no_match"} 3.0',
    "`customers import` output": "customers-demo.csv",
    "`customers set-pin` output": "100002",
    "handoff context": "Fatima El Amrani",
    "text message": METER_READING,
    "RQ job": "100002",
    "Redis voicebot:handoff:": "Fatima El Amrani",
    "Redis rq:job:": "Fatima El Amrani",                 # the job's data, decompressed
    "Redis voicebot:call:": "[verborgen]",               # the transcripts, with the secret answers masked
    "what Twilio got": "<Connect",
    "what the caller heard": "Dank u, dat klopt.",
    "file name": ".ulaw",
}


def test_no_secret_in_anything_the_system_wrote(calls, system):
    scan = Secrets.of_the_calls(system.salt)
    leaks = sorted({f"{where}: {label}" for where, data in calls.written for label in scan.in_(data)})
    assert not leaks, "\n".join(leaks)
    for source, canary in CANARIES.items():
        texts = [data for where, data in calls.written if where.startswith(source)]
        assert texts, f"nothing was read from {source}"
        assert any(canary.encode() in data for data in texts), f"{canary!r} not found in {source}"
    for report in (calls.verified, calls.failed, calls.by_pin):     # every call's record was read from Redis
        assert any(report.call_sid.encode() in data for where, data in calls.written if where.startswith("Redis"))


def test_the_scan_finds_the_secrets_where_they_are_rightly_kept(system):
    scan = Secrets.of_the_calls(system.salt)
    born = "birth date 1975-03-14 as '1975-03-14'"
    assert {born, "postcode as '1012AB'"} <= set(scan.in_(DEMO_CSV.read_bytes()))
    directory = b"".join(p.read_bytes() for p in system.database.parent.glob(system.database.name + "*"))
    found = scan.in_(directory)
    assert {born, "postcode as '1012AB'"} <= set(found)
    # The directory keeps a PIN only as a salted hash, and nothing a caller keyed wrongly.
    assert not [label for label in found if label.startswith(("PIN", "wrong"))]


@pytest.mark.parametrize("written,label", [
    ("geboren op 14 maart 1975", "birth date 1975-03-14 as '14 maart 1975'"),
    ("dob=14/03/1975;", "birth date 1975-03-14 as '14/03/1975'"),
    ("Uw pincode is 5 8 2 7 3 9 1.", "PIN as '5 8 2 7 3 9 1'"),
    ("postcode 1012 ab", "postcode as '1012 AB'"),
    (hashlib.sha256(b"14031975").hexdigest().upper(), "birth date 1975-03-14 as '14031975' (hashed)"),
])
def test_the_scan_finds_every_written_form(written, label):
    assert label in Secrets.of_the_calls(SALT).in_(written)


def test_the_scan_reads_dates_inside_compressed_pickles_as_rq_keeps_them():
    """A date object in a pickle is bytes, not text: the scan must see it all the same."""
    job_data = zlib.compress(pickle.dumps(("voicebot.handoff.jobs.deliver", None, ({"dob": BIRTH_DATE},), {})))
    scan = Secrets.of_the_calls(SALT)
    assert scan.in_(job_data) == []
    assert "birth date 1975-03-14 as '1975-03-14'" in scan.in_(b" ".join(unpacked(job_data)))
    digest = hmac.new(SALT.encode(), b"1975-03-14", hashlib.sha256).hexdigest()
    assert scan.in_(digest) == ["birth date 1975-03-14 as '1975-03-14' (hashed)"]


def test_marks_carry_only_numbers(calls):
    for report in (calls.verified, calls.failed, calls.by_pin):
        assert report.marks and all(mark.isdigit() for mark in report.marks), report.marks


def test_prompts_with_the_callers_values_leave_no_file_in_the_audio_cache(calls, system):
    names = {path.name for path in (system.tmp / "cache").iterdir()}
    said = [text for report in (calls.verified, calls.failed, calls.by_pin) for text in report.bot_prompts]
    personal = [text for text in said if "1 0 0 0 0 2" in text or METER_READING in text]
    assert len(personal) == 2, said                  # the customer number and the meter reading read back
    for text in personal:
        assert f"{cache_key(VOICE, RATE, text)}.ulaw" not in names, text
    # The flow's own sentences are cached under such names: the check above looks in the right place.
    assert f"{cache_key(VOICE, RATE, 'Waarmee kan ik u helpen?')}.ulaw" in names


# -- a PIN or a date of birth is secret by its type, whatever the flow says -----------------------------

UNMARKED = parse_flow(
    "flow: unmarked\nlanguage: nl\nstart: welkom\n"
    "steps:\n"
    "  welkom: {type: say, say: U spreekt met een digitale assistent., next: geboren}\n"
    "  geboren: {type: ask, slot: geboortedatum, slot_type: birth_date, input: both, say: 'Uw geboortedatum?',"
    " next: pin}\n"
    "  pin: {type: ask, slot: pincode, slot_type: pin, say: Toets uw pincode., next: klaar}\n"
    "  klaar: {type: transfer, say: Ik verbind u door.}\n", "unmarked.yaml")


@pytest.mark.parametrize("birth_date", ["#14031975", "veertien maart negentien vijfenzeventig"])
def test_an_ask_step_for_a_pin_or_a_birth_date_keeps_neither_without_being_marked_secret(birth_date):
    s = Simulation(UNMARKED, at="2026-11-23T10:00:00")
    asked = s.keys(birth_date[1:]) if birth_date.startswith("#") else s.say(birth_date)
    assert s.state.step == "pin"
    [listen] = [a for a in asked if isinstance(a, Listen)]
    assert listen.dtmf and not listen.speech              # a PIN is keyed, never said aloud
    [transfer] = [a for a in s.keys(PIN) if isinstance(a, Transfer)]
    assert sorted(s.state.secrets) == ["geboortedatum", "pincode"] and s.state.slots == {}
    written = json.dumps([transfer.context, s.state.to_dict()])
    assert Secrets.of_the_calls(SALT).in_(written) == [] and "veertien" not in written
    assert transfer.context["secrets_provided"] == ["geboortedatum", "pincode"]
