"""The free-form recogniser pool: kept per call, warmed ahead of demand, shrunk when idle."""

import threading
import time
import weakref

import pytest

from voicebot.speech import pool as pool_module
from voicebot.speech.pool import RETIRE_AFTER_SECONDS, RecognizerPool


class FakeRecognizer:
    made = 0

    def __init__(self):
        FakeRecognizer.made += 1
        self.fed, self.finals, self.resets = [], 0, 0

    def AcceptWaveform(self, pcm):
        self.fed.append(pcm)
        return False

    def FinalResult(self):
        self.finals += 1
        return "{}"

    def Reset(self):
        self.resets += 1


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def pool(size=4, **kw):
    return RecognizerPool(FakeRecognizer, size, **kw)


def test_a_recogniser_given_back_is_reset_and_lent_again_with_its_audio_seconds():
    p = pool()
    rec, seconds = p.take()
    assert seconds == 0.0 and p.live == 1 and p.idle == 0
    p.give_back(rec, 12.5)
    assert (rec.finals, rec.resets) == (1, 1) and p.idle == 1
    assert p.take() == (rec, 12.5)


def test_a_recogniser_that_heard_nothing_goes_back_untouched():
    p = pool()
    rec, _ = p.take()
    p.give_back(rec, 0.0, used=False)
    assert (rec.finals, rec.resets) == (0, 0) and p.idle == 1


def test_a_recogniser_that_decoded_long_enough_is_retired():
    p = pool()
    rec, _ = p.take()
    p.give_back(rec, RETIRE_AFTER_SECONDS)
    assert p.idle == 0 and p.live == 0


def test_the_pool_keeps_as_many_as_its_size_and_no_more():
    p = pool(size=2)
    recs = [p.take()[0] for _ in range(3)]         # a turn never waits: a third is made anyway
    assert p.live == 3
    for rec in recs:
        p.give_back(rec, 1.0)
    assert p.idle == 2 and p.live == 2


def test_warm_makes_recognisers_that_decoded_the_given_speech():
    p = pool()
    try:
        p.warm(3, b"speech")
        assert p.idle == 3 and p.live == 3
        rec, seconds = p.take()
        assert rec.fed == [b"speech"] and rec.resets == 1 and seconds == len(b"speech") / 16000
    finally:
        p.close()


def test_tend_warms_spares_ahead_of_demand_up_to_the_size():
    p = pool(size=3, spare=2)
    assert p.tend() and p.tend() and not p.tend()          # two spares, then enough
    assert p.idle == 2
    taken = [p.take()[0] for _ in range(2)]
    assert p.tend() and not p.tend()                       # three exist: the size
    assert p.live == 3 and p.idle == 1 and all(r.fed for r in taken)


def test_tend_frees_recognisers_idle_too_long_beyond_the_floor():
    clock = Clock()
    p = pool(size=8, spare=0, idle_seconds=600, clock=clock)
    try:
        p.warm(2, b"x")                                    # the floor: what start-up warmed
        extra = [p.take()[0] for _ in range(5)]
        for rec in extra:
            p.give_back(rec, 1.0)
        assert p.idle == 5 and p.live == 5
        clock.now += 599
        assert not p.tend()
        clock.now += 1
        assert p.tend()
        assert p.idle == 2 and p.live == 2
    finally:
        p.close()


def test_the_heap_is_trimmed_once_the_freed_recognisers_are_gone(monkeypatch):
    clock = Clock()
    p = pool(size=8, spare=0, idle_seconds=600, clock=clock)
    try:
        p.warm(1, b"x")
        p.close()                                          # the keeper's rounds are taken here, by hand
        recs = [p.take()[0] for _ in range(3)]
        for rec in recs:
            p.give_back(rec, 1.0)
        alive = [weakref.ref(r) for r in recs]
        del recs, rec
        trims = []
        monkeypatch.setattr(pool_module, "trim_heap", lambda: trims.append(sum(r() is not None for r in alive)))
        clock.now += 600
        assert p.tend() and trims == [1]                   # two freed and gone; the newest kept
        retired, _ = p.take()
        p.give_back(retired, RETIRE_AFTER_SECONDS)
        del retired
        assert not p.tend() and trims == [1, 0]            # a retired one: trimmed at the keeper's next round
        assert not p.tend() and trims == [1, 0]            # once
    finally:
        p.close()


def test_a_recogniser_that_cannot_be_made_is_not_counted():
    def broken():
        raise RuntimeError("no memory")

    p = RecognizerPool(broken, 4)
    with pytest.raises(RuntimeError):
        p.take()
    assert p.live == 0
    assert not p.tend() or p.live == 0


def test_a_warm_up_that_fails_half_way_keeps_what_it_made_and_counts_nothing_else():
    made = []

    def flaky():
        if made:
            raise RuntimeError("no memory")
        made.append(FakeRecognizer())
        return made[-1]

    p = RecognizerPool(flaky, 4)
    with pytest.raises(RuntimeError):
        p.warm(2, b"x")
    assert p.idle == 1 and p.live == 1


def test_the_keeper_thread_replaces_spares_as_calls_take_them():
    p = pool(size=6, spare=2)
    try:
        p.warm(2, b"speech")
        taken = [p.take()[0] for _ in range(2)]
        deadline = time.monotonic() + 5
        while p.idle < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.idle == 2 and p.live == 4 and len(taken) == 2
        assert any(t.name == "voicebot-recognizer-pool" for t in threading.enumerate())
    finally:
        p.close()


def test_speech_models_size_each_pool_by_the_calls_a_process_takes(tmp_path, monkeypatch):
    from voicebot.config import SpeechSettings
    from voicebot.speech import recognizer

    made = []
    monkeypatch.setattr(recognizer, "LoadedModel", lambda language, path, pool_size: made.append(pool_size))
    monkeypatch.setattr(recognizer, "model_dir", lambda language, speech: tmp_path)
    recognizer.SpeechModels(SpeechSettings(models_dir=tmp_path), pool_size=7).get("ko")
    assert made == [7]


def test_a_real_model_lends_and_keeps_free_recognisers(speech_models):
    model = speech_models.get("ko")
    rec, used = model.recognizer(None)
    before = model.pool.idle
    model.release(rec, False, used + 1.0)
    assert model.pool.idle == before + 1
