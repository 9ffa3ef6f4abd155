"""The figures of the operations page, checked by value on hand-built call records."""

from __future__ import annotations

import datetime as dt

import pytest

from records_rows import record, records_database, turn, two_days, write
from voicebot.records.build import build_record
from voicebot.records.stats import (
    DayFigures, IntentFeedback, MAX_COMMENTS, Percentiles, StepFigures, compute, parse_period,
)
from voicebot.records.store import RecordStore

TZ = "Europe/Amsterdam"
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite"])
def records_engine(request, tmp_path):
    """A fresh records database per test (parametrised by dialect)."""
    yield from records_database(request, tmp_path)


def _period():
    return parse_period("2026-11-02", timezone=TZ), parse_period("2026-11-03", timezone=TZ, end=True)


def test_containment_outcomes_and_transfers(records_engine):
    two_days(records_engine)
    since, until = _period()
    report = compute(records_engine, flow="energie", since=since, until=until, timezone=TZ)
    assert report.calls == 8
    assert report.outcomes == {"completed": 4, "transferred": 2, "hung_up": 1, "unanswered": 1}
    assert report.answered == 7
    assert report.containment == pytest.approx(4 / 7)
    assert list(report.transfers.items()) == [("explicit_request", 1), ("low_confidence", 1)]
    assert report.since == dt.datetime(2026, 11, 2, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert report.timezone == TZ


def test_days_and_hours_on_the_flows_clock(records_engine):
    two_days(records_engine)
    since, until = _period()
    report = compute(records_engine, flow="energie", since=since, until=until, timezone=TZ)
    assert report.days == [
        DayFigures(day=dt.date(2026, 11, 2), calls=3, completed=2, transferred=1, hung_up=0,
                   transfers={"explicit_request": 1}),
        DayFigures(day=dt.date(2026, 11, 3), calls=4, completed=2, transferred=1, hung_up=1,
                   transfers={"low_confidence": 1}),
    ]
    assert [d.containment for d in report.days] == [pytest.approx(2 / 3), 0.5]
    expected = [0] * 24
    expected[0], expected[9], expected[10], expected[11], expected[14] = 2, 1, 1, 2, 1
    assert report.hours == expected


def test_funnel_per_step(records_engine):
    two_days(records_engine)
    since, until = _period()
    report = compute(records_engine, flow="energie", since=since, until=until, timezone=TZ)
    assert report.funnel == [
        StepFigures("energie", "start", reached=7, asked=0, first_time=0, reasked=0, confirmation=0,
                    to_agent=0, hung_up=0),
        StepFigures("energie", "menu", reached=6, asked=6, first_time=3, reasked=2, confirmation=1,
                    to_agent=2, hung_up=0),
        StepFigures("energie", "meter", reached=3, asked=3, first_time=1, reasked=2, confirmation=0,
                    to_agent=0, hung_up=1),
        StepFigures("energie", "storing", reached=1, asked=0, first_time=0, reasked=0, confirmation=0,
                    to_agent=0, hung_up=0),
        StepFigures("energie", "bye", reached=4, asked=0, first_time=0, reasked=0, confirmation=0,
                    to_agent=0, hung_up=0),
    ]


def test_feedback_distribution_intents_and_comments(records_engine):
    two_days(records_engine)
    since, until = _period()
    feedback = compute(records_engine, flow="energie", since=since, until=until, timezone=TZ).feedback
    assert feedback.scores == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1}
    assert feedback.given == 3 and feedback.average == 4.0
    assert feedback.by_intent == [IntentFeedback("meterstand", 2, 4.0), IntentFeedback("storing", 1, 4.0)]
    assert [(c.text, c.score, c.intent) for c in feedback.comments] == [
        ("<script>alert(1)</script> duurde lang", 3, "meterstand"), ("Prima geholpen", 5, "meterstand")]
    assert feedback.comments[0].at.utcoffset() == dt.timedelta(hours=1)
    assert feedback.comments[0].at.replace(tzinfo=None) == dt.datetime(2026, 11, 3, 11, 5)


def test_versions_side_by_side(records_engine):
    two_days(records_engine)
    since, until = _period()
    versions = compute(records_engine, flow="energie", since=since, until=until, timezone=TZ).versions
    assert [(v.version, v.calls, v.completed, v.containment) for v in versions] == [("v1", 5, 2, 0.4),
                                                                                    ("v2", 2, 2, 1.0)]
    assert versions[0].first.replace(tzinfo=None) == dt.datetime(2026, 11, 2, 0, 0)
    assert versions[0].last.replace(tzinfo=None) == dt.datetime(2026, 11, 3, 11, 0)
    assert versions[1].first.replace(tzinfo=None) == dt.datetime(2026, 11, 3, 11, 5)


def test_every_flow_when_none_is_named(records_engine):
    two_days(records_engine)
    since, until = _period()
    report = compute(records_engine, flow=None, since=since, until=until, timezone=TZ)
    assert report.calls == 9 and report.outcomes["completed"] == 5
    assert ("webshop", "welkom") in [(s.flow, s.step) for s in report.funnel]
    assert report.feedback.scores[1] == 1
    assert {v.flow for v in report.versions} == {"energie", "webshop"}


def test_latency_percentiles_by_nearest_rank(records_engine):
    measured = tuple(turn("menu", "accepted", recognition_ms=ms, response_ms=None) for ms in range(200, 0, -10))
    write(records_engine,
          record("a", "2026-11-02T10:00:00", turns=measured[:12]),
          record("b", "2026-11-02T11:00:00", turns=measured[12:] + (turn("menu", "no_input", kind="no_input"),)),
          record("late", "2026-11-09T11:00:00", turns=(turn("menu", "accepted", recognition_ms=99999,
                                                            response_ms=99999),)))
    report = compute(records_engine, flow="energie", since=parse_period("2026-11-02", timezone=TZ),
                     until=parse_period("2026-11-02", timezone=TZ, end=True), timezone=TZ)
    # 20 values 10, 20, ..., 200: the 10th, 18th and 19th smallest
    assert report.latency["recognition"] == Percentiles(count=20, p50=100, p90=180, p95=190)
    assert report.latency["response"] == Percentiles(count=0, p50=None, p90=None, p95=None)


def test_an_empty_period_has_zeros_and_every_day(records_engine):
    report = compute(records_engine, flow="energie", since=parse_period("2026-11-02", timezone=TZ),
                     until=parse_period("2026-11-04", timezone=TZ, end=True), timezone=TZ)
    assert report.calls == 0 and report.containment is None
    assert [d.day.day for d in report.days] == [2, 3, 4] and all(d.calls == 0 for d in report.days)
    assert report.funnel == [] and report.versions == [] and report.feedback.average is None
    assert report.hours == [0] * 24


def test_the_day_the_clocks_go_back_has_25_hours(records_engine):
    # 25 October 2026: 02:00-03:00 local happens twice (00:30 UTC in summer time, 01:30 UTC in winter time)
    write(records_engine, record("s", "2026-10-25T00:30:00"), record("w", "2026-10-25T01:30:00"),
          record("late", "2026-10-25T22:30:00"))
    report = compute(records_engine, flow="energie", since=parse_period("2026-10-25", timezone=TZ),
                     until=parse_period("2026-10-25", timezone=TZ, end=True), timezone=TZ)
    assert [(d.day, d.calls) for d in report.days] == [(dt.date(2026, 10, 25), 3)]
    assert report.hours[2] == 2 and report.hours[23] == 1


def test_a_quarter_hour_zone(records_engine):
    # Kathmandu is UTC+05:45: 18:14 UTC is 23:59 on the 2nd, 18:20 UTC is 00:05 on the 3rd
    write(records_engine, record("before", "2026-11-02T18:14:00"), record("after", "2026-11-02T18:20:00"))
    zone = "Asia/Kathmandu"
    report = compute(records_engine, flow="energie", since=parse_period("2026-11-02", timezone=zone),
                     until=parse_period("2026-11-03", timezone=zone, end=True), timezone=zone)
    assert [(d.day.day, d.calls) for d in report.days] == [(2, 1), (3, 1)]
    assert report.hours[23] == 1 and report.hours[0] == 1


def test_comments_are_bounded_newest_first(records_engine):
    write(records_engine, *(record(f"k{i:02}", f"2026-11-02T{i:02}:00:00", feedback=4, comment=f"nummer {i} " * 200)
                            for i in range(MAX_COMMENTS + 3)))
    comments = compute(records_engine, flow="energie", since=parse_period("2026-11-01", timezone=TZ),
                       until=parse_period("2026-11-03", timezone=TZ, end=True), timezone=TZ).feedback.comments
    assert len(comments) == MAX_COMMENTS
    assert comments[0].text.startswith(f"nummer {MAX_COMMENTS + 2} ")
    assert all(len(c.text) <= 500 for c in comments)


def test_a_record_from_the_call_store(records_engine):
    """A record made by ``build_record`` from what the call store holds lands on the flow's clock."""
    stored = {
        "flow": "energie", "flow_version": "abc123", "language": "nl", "caller": "+31612345678",
        "status": "completed", "updated_at": dt.datetime(2026, 11, 2, 8, 3, tzinfo=UTC).timestamp(),
        "ending": {"action": "transfer", "reason": "explicit_request"},
        "timings": [{"turn": 1, "recognition_ms": 420, "response_ms": 900}],
        "state": {"flow": "energie", "started_at": "2026-11-02T09:00:00", "step": "menu",
                  "visited": ["start", "menu"], "outcome": "transfer", "reason": "explicit_request",
                  "transcript": [{"who": "bot", "text": "Waarmee kan ik u helpen?"},
                                 {"who": "caller", "step": "menu", "text": "medewerker", "confidence": 0.8,
                                  "understood": {"result": "agent", "intent": None, "confidence": None}}]},
    }
    assert RecordStore(records_engine).write(build_record("CA1", stored, "salt", timezone=TZ))
    report = compute(records_engine, flow="energie", since=parse_period("2026-11-02", timezone=TZ),
                     until=parse_period("2026-11-02", timezone=TZ, end=True), timezone=TZ)
    assert report.hours[9] == 1 and report.transfers == {"explicit_request": 1}
    assert report.latency["recognition"].p50 == 420 and report.latency["response"].p95 == 900
    menu = next(s for s in report.funnel if s.step == "menu")
    assert (menu.reached, menu.asked, menu.to_agent) == (1, 1, 1)


def test_parse_period():
    assert parse_period("7d", now=NOW) == NOW - dt.timedelta(days=7)
    assert parse_period(" 24h ", now=NOW) == NOW - dt.timedelta(hours=24)
    assert parse_period("90m", now=NOW) == NOW - dt.timedelta(minutes=90)
    assert parse_period("2w", now=NOW) == NOW - dt.timedelta(days=14)
    assert parse_period("now", now=NOW) == NOW
    assert parse_period("2026-11-01", timezone=TZ) == dt.datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    assert parse_period("2026-11-01", timezone=TZ, end=True) == dt.datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
    assert parse_period("2026-07-01", timezone=TZ) == dt.datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
    assert parse_period("2026-11-01T08:30", timezone=TZ) == dt.datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
    assert parse_period("2026-11-01t08:30+00:00", timezone=TZ) == dt.datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    for wrong in ("", "week", "7 days", "-7d", "2026-13-01", "99999d", "7d" * 40):
        with pytest.raises(ValueError):
            parse_period(wrong, now=NOW)
    with pytest.raises(ValueError, match="time zone"):
        parse_period("7d", timezone="Mars/Olympus")


def test_compute_refuses_what_it_cannot_answer(records_engine):
    with pytest.raises(ValueError, match="time zone"):
        compute(records_engine, flow=None, since=dt.datetime(2026, 11, 1), until=NOW)
    with pytest.raises(ValueError, match="ends before"):
        compute(records_engine, flow=None, since=NOW, until=NOW - dt.timedelta(days=1))
    with pytest.raises(ValueError, match="at most"):
        compute(records_engine, flow=None, since=NOW - dt.timedelta(days=4000), until=NOW)
