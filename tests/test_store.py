"""The call store against a real redis-server: two processes' stores share one call, Redis may fail."""

from __future__ import annotations

import json
import secrets

import pytest
import redis

from conftest import _free_port
from voicebot.telephony import store as store_module
from voicebot.telephony.store import PREFIX, CallStore

TTL = 600


def sid() -> str:
    return "CA" + secrets.token_hex(16)


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def test_two_nodes_writing_different_keys_of_one_call_keep_both(redis_url):
    node1, node2 = CallStore(redis_url, TTL), CallStore(redis_url, TTL)
    call = sid()
    node1.update(call, caller="+31612345678", flow="ko_test", status="ringing")  # /twilio/voice on node 1
    assert node2.get(call)["caller"] == "+31612345678"                             # the stream on node 2 resumes
    node2.update(call, state={"step": "booking", "slots": {"number": "123"}})
    node2.update(call, ending={"action": "transfer", "reason": "explicit_request"}, announce=True)
    record = node1.update(call, status="in-progress")                              # node 1's copy is stale
    assert record["ending"] == {"action": "transfer", "reason": "explicit_request"}
    assert record["state"]["slots"] == {"number": "123"} and record["announce"] is True
    for node in (node1, node2):
        got = node.get(call)
        assert got["caller"] == "+31612345678" and got["status"] == "in-progress"
        assert got["ending"]["action"] == "transfer" and got["state"]["step"] == "booking"


def test_a_record_is_a_hash_of_json_values_with_the_ttl_set(redis_url, client):
    store, call = CallStore(redis_url, TTL), sid()
    store.update(call, flow="ko_test", state={"step": None, "turn": 3})
    assert client.type(PREFIX + call) == b"hash"
    assert json.loads(client.hget(PREFIX + call, "state")) == {"step": None, "turn": 3}
    assert json.loads(client.hget(PREFIX + call, "flow")) == "ko_test"
    assert 0 < client.ttl(PREFIX + call) <= TTL
    client.expire(PREFIX + call, 5)
    store.update(call, status="completed")
    assert client.ttl(PREFIX + call) > 5                # every write renews the time-to-live


def test_mark_sets_keys_of_a_stored_record_only_leaving_its_end_and_ttl(redis_url, client):
    store, call = CallStore(redis_url, TTL), sid()
    store.update(call, flow="ko_test", finished=True)
    client.expire(PREFIX + call, 100)
    before = client.hget(PREFIX + call, "updated_at")
    assert store.mark(call, recorded=True) is True
    assert json.loads(client.hget(PREFIX + call, "recorded")) is True
    assert client.hget(PREFIX + call, "updated_at") == before and 0 < client.ttl(PREFIX + call) <= 100
    gone = sid()
    assert store.mark(gone, recorded=True) is False and not client.exists(PREFIX + gone)   # never a key without TTL
    client.set(PREFIX + gone, "{}", ex=60)                     # an earlier version's string record
    assert store.mark(gone, recorded=True) is False and client.get(PREFIX + gone) == b"{}"
    assert CallStore(f"redis://127.0.0.1:{_free_port()}/0", TTL).mark(call, recorded=True) is False


def test_get_reads_redis_before_this_process_memory(redis_url):
    node1, node2 = CallStore(redis_url, TTL), CallStore(redis_url, TTL)
    call = sid()
    node1.update(call, status="ringing")
    node2.update(call, status="completed")
    assert node1.get(call)["status"] == "completed"


def test_an_earlier_versions_json_string_is_read_and_turned_into_a_hash(redis_url, client):
    store, call = CallStore(redis_url, TTL), sid()
    client.set(PREFIX + call, json.dumps({"flow": "ko_test", "caller": "+31"}), ex=TTL)
    assert store.get(call)["caller"] == "+31"
    record = store.update(call, status="completed")
    assert record["flow"] == "ko_test" and record["status"] == "completed"
    assert client.type(PREFIX + call) == b"hash" and client.ttl(PREFIX + call) > 0


def test_update_first_writes_a_key_once_across_nodes(redis_url, client):
    """The call's ending, stored by whichever of the stream's session and after-stream comes first."""
    node1, node2, call = CallStore(redis_url, TTL), CallStore(redis_url, TTL), sid()
    node1.update(call, caller="+31")
    assert node2.update_first(call, "ending", {"action": "transfer", "reason": "error"}, announce="hello")
    assert not node1.update_first(call, "ending", {"action": "transfer", "reason": "explicit_request"},
                                  announce=False)
    assert not node2.update_first(call, "ending", {"action": "hangup"})      # its own memory says so
    for node in (node1, node2):
        record = node.get(call)
        assert record["ending"]["reason"] == "error" and record["announce"] == "hello"
        assert record["caller"] == "+31"
    assert 0 < client.ttl(PREFIX + call) <= TTL


def test_update_first_over_an_earlier_versions_string(redis_url, client):
    store, call = CallStore(redis_url, TTL), sid()
    client.set(PREFIX + call, json.dumps({"flow": "ko_test", "ending": {"action": "hangup"}}), ex=TTL)
    assert not store.update_first(call, "ending", {"action": "transfer"})
    other = sid()
    client.set(PREFIX + other, json.dumps({"flow": "ko_test"}), ex=TTL)
    assert store.update_first(other, "ending", {"action": "transfer"})
    assert client.type(PREFIX + other) == b"hash"
    assert store.get(other)["ending"] == {"action": "transfer"} and store.get(other)["flow"] == "ko_test"


def test_update_first_with_redis_down_is_decided_in_memory(redis_url):
    store, call = CallStore(f"redis://127.0.0.1:{_free_port()}/0", TTL), sid()
    assert store.update_first(call, "ending", {"action": "transfer"})
    assert not store.update_first(call, "ending", {"action": "hangup"})
    assert store.get(call)["ending"] == {"action": "transfer"}


def test_values_that_are_not_json_are_refused_before_anything_is_stored(redis_url):
    store, call = CallStore(redis_url, TTL), sid()
    with pytest.raises(TypeError):
        store.update(call, state=object())
    assert store.get(call) is None


def test_a_bad_url_keeps_everything_in_memory(caplog):
    store, call = CallStore("http://not-redis", TTL), sid()
    assert store.redis is None
    assert "not a valid Redis URL" in caplog.text
    store.update(call, flow="ko_test")
    store.update(call, status="completed")
    assert store.get(call)["flow"] == "ko_test" and store.get(call)["status"] == "completed"
    store.forget_local(call)                              # nothing else has it: kept
    assert store.get(call)["status"] == "completed"


def test_with_redis_down_the_call_works_from_memory_and_redis_is_left_alone(caplog, monkeypatch):
    store, call = CallStore(f"redis://127.0.0.1:{_free_port()}/0", TTL), sid()
    store.update(call, flow="ko_test")
    assert "Redis write failed" in caplog.text
    calls = []
    monkeypatch.setattr(store.redis, "pipeline", lambda *a, **k: calls.append(a) or pytest.fail("Redis retried"))
    monkeypatch.setattr(store.redis, "hgetall", lambda *a, **k: calls.append(a) or pytest.fail("Redis retried"))
    store.update(call, ending={"action": "hangup"})
    record = store.get(call)
    assert record["flow"] == "ko_test" and record["ending"] == {"action": "hangup"}
    assert calls == []


def test_keys_written_while_redis_was_down_reach_it_when_it_is_back(redis_url, monkeypatch):
    node1, node2 = CallStore(redis_url, TTL), CallStore(redis_url, TTL)
    call = sid()
    node2.update(call, caller="+31")
    good = node1._redis
    node1._redis = redis.Redis.from_url(f"redis://127.0.0.1:{_free_port()}/0", socket_timeout=0.2,
                                        socket_connect_timeout=0.2)
    node1.update(call, ending={"action": "transfer"})       # Redis down: memory only
    assert node1.get(call)["ending"] == {"action": "transfer"}
    assert "ending" not in node2.get(call)
    node1._redis = good                                     # Redis back
    monkeypatch.setattr(node1, "_down_until", 0.0)
    record = node1.get(call)                                # Redis's record, this node's unsent keys over it
    assert record["caller"] == "+31" and record["ending"] == {"action": "transfer"}
    node1.update(call, status="in-progress")
    assert node2.get(call)["ending"] == {"action": "transfer"} and node2.get(call)["caller"] == "+31"


def test_forget_local_keeps_what_redis_has_not_got(redis_url, monkeypatch):
    store, call = CallStore(redis_url, TTL), sid()
    store.update(call, flow="ko_test")
    store.forget_local(call)
    assert call not in store._memory and store.get(call)["flow"] == "ko_test"
    monkeypatch.setattr(store, "_write", lambda *a: None)   # this write does not reach Redis
    store.update(call, status="completed")
    store.forget_local(call)
    assert store.get(call)["status"] == "completed"


def test_memory_is_bounded(redis_url):
    store = CallStore(f"redis://127.0.0.1:{_free_port()}/0", TTL, memory_limit=10)
    calls = [sid() for _ in range(25)]
    for call in calls:
        store.update(call, flow="ko_test")
    assert len(store._memory) == 10 and len(store._pending) <= 10
    assert store.get(calls[-1]) is not None and store.get(calls[0]) is None


def test_redis_outage_is_retried_after_a_pause(redis_url, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(store_module, "clock", lambda: clock[0])
    store, call = CallStore(redis_url, TTL), sid()
    good = store._redis
    store._redis = redis.Redis.from_url(f"redis://127.0.0.1:{_free_port()}/0", socket_timeout=0.2,
                                        socket_connect_timeout=0.2)
    store.update(call, flow="ko_test")
    store._redis = good
    store.update(call, status="ringing")
    assert redis.Redis.from_url(redis_url).exists(PREFIX + call) == 0     # still left alone
    clock[0] += store_module.RETRY_AFTER + 0.1
    store.update(call, status="in-progress")
    stored = CallStore(redis_url, TTL).get(call)
    assert stored["flow"] == "ko_test" and stored["status"] == "in-progress"
