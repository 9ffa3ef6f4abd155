"""Two `voicebot serve` processes on one redis-server behind one public URL, as behind a load balancer.

The call's webhook lands on node 1, its media stream on node 2 (which makes the transfer decision),
and the status callback, ``/twilio/after-stream`` and ``/twilio/whisper`` on node 1 again: node 1
must answer with what node 2 decided, and its own later writes must not undo node 2's.
"""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest
import redis

from servers import AGENT, Server, Stream, signed_post, twiml, voice_params
from voicebot.emulator.record import said_by_bot
from voicebot.telephony.store import PREFIX


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, redis_url):
    tmp = tmp_path_factory.mktemp("nodes")
    node1 = Server(tmp, redis_url, "node1")
    try:
        node2 = Server(tmp, redis_url, "node2", public_url=node1.public_url)
    except BaseException:
        node1.stop()
        raise
    yield node1, node2
    node2.stop()
    node1.stop()


def test_webhook_on_one_node_stream_on_the_other_and_the_first_answers_with_the_decision(nodes, redis_url):
    node1, node2 = nodes
    public = node1.public_url
    call = "CA" + secrets.token_hex(16)
    params = voice_params(call)

    voice = signed_post(node1, public + "/twilio/voice", params)
    connect = twiml(voice).find("Connect")
    assert connect is not None and connect.find("Stream") is not None, voice

    stream = Stream(node2, voice, call)
    try:
        stream.open()
        assert not stream.pump(30, quiet=1.5), "node 2 closed the stream before the caller said anything"
        assert stream.marks, "node 2 played no prompt"
        stream.dtmf("0")                                    # the caller asks for a person on node 2
        assert stream.pump(30), "node 2 did not end the stream after the key"
    finally:
        stream.close()
    assert all(mark.isdigit() for mark in stream.marks)      # marks carry no prompt text
    said, _ = said_by_bot(redis_url, call)
    assert said and said[-1] == "상담원에게 연결해 드리겠습니다"

    # Node 1 still holds the copy it wrote at /twilio/voice; a status callback there writes after node 2.
    signed_post(node1, public + "/twilio/status", {**params, "CallStatus": "in-progress"})

    after = signed_post(node1, connect.get("action"), {**params, "CallStatus": "in-progress"})
    number = twiml(after).find("Dial/Number")
    assert number is not None, after
    assert number.text == AGENT
    whisper_url = number.get("url")
    assert whisper_url and whisper_url.startswith(public + "/twilio/whisper?")

    whisper = signed_post(node1, whisper_url, {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": params[
        "AccountSid"], "From": params["To"], "To": AGENT, "CallStatus": "in-progress"}, number.get("method", "POST"))
    said = twiml(whisper).find("Say")
    assert said is not None and "고객이 상담원을 요청했습니다" in said.text

    signed_post(node1, public + "/twilio/status", {**params, "CallStatus": "completed", "CallDuration": "9"})
    record = {k.decode(): json.loads(v) for k, v in redis.Redis.from_url(redis_url).hgetall(PREFIX + call).items()}
    assert record["finished"] is True and record["status"] == "completed"
    assert record["caller"] == "+8210"                                      # node 1's write
    assert record["ending"]["action"] == "transfer"                         # node 2's decision, kept
    assert record["ending"]["context"]["reason"] == "explicit_request"
    assert record["state"]["ended"]
    for server in (node1, node2):
        assert urllib.request.urlopen(server.url + "/healthz", timeout=5).status == 200
