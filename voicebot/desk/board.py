"""The desk's board in Redis: the transfers waiting in the queues' streams, who took each, how it ended.

The worker adds each transfer's record to its queue's stream ``voicebot:handoff:stream:<queue>``
(``handoff/jobs.py``). The desk reads those streams with a consumer group (``desk.group``, one per
desk: a second desk or a CRM reading the same streams keeps its own group and its own
acknowledgements), and the group's pending entries ARE the board:

- ``XREADGROUP GROUP <group> board ... >`` takes the entries delivered since the last look into
  the group's pending list (any process may do it: all read as the one consumer ``board``, so the
  board is the same from every web process and every node);
- ``XREADGROUP ... 0`` reads the pending list back with its records: the open transfers;
- closing a transfer acknowledges its entry (``XACK``), which takes it off the board for good.

Nothing needs a process of its own, nothing is lost when a web process dies between two looks
(an entry is pending until an agent closes it), and nothing grows without bound: the stream keeps
at most 1000 entries, none older than the call TTL; an entry trimmed away comes back from the
pending list without its record and is acknowledged at the next look; the group goes with its
stream when the stream expires and is made again (``MKSTREAM``) when needed.

Who took a transfer and how it ended is a small hash per call, ``voicebot:desk:<group>:call:<call
id>`` (kept for the call TTL). Taking one is one script: ``HSETNX agent`` decides, so two agents
clicking at once get one winner and one "taken by". Closing is one script too: only the agent who
took it, once, with an outcome from ``OUTCOMES``; it records the outcome and acknowledges the
entries in the same step. Both announce themselves on ``voicebot:desk:<group>`` so every open desk
updates at once; new transfers are announced by the worker on ``voicebot:handoff``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from voicebot.handoff.jobs import CHANNEL as HANDOFF_CHANNEL
from voicebot.handoff.jobs import stream_key

CONSUMER = "board"
STATE_KEY = "voicebot:desk:{group}:call:{call_id}"
EVENTS_CHANNEL = "voicebot:desk:{group}"
NEW_ENTRIES_PER_LOOK = 1000      # the stream's own bound: one look takes in everything new
MAX_RECORD_BYTES = 512 * 1024    # a record larger than this is not parsed (shown as unreadable)

OUTCOMES = {
    "resolved": "Resolved",
    "follow_up": "Follow-up needed",
    "call_back": "Call back arranged",
    "passed_on": "Passed to another team",
    "caller_gone": "Caller had hung up",
    "wrong_queue": "Wrong queue",
}
"""How a transfer can end: the only outcomes ``close`` accepts, with the words the desk shows."""

_CLAIM = """
local now = redis.call('TIME')
local ms = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
if redis.call('HSETNX', KEYS[1], 'agent', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'claimed_at_ms', ms)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('PUBLISH', ARGV[3], cjson.encode({event = 'claimed', call_id = ARGV[4], agent = ARGV[1]}))
  return {1, ARGV[1]}
end
return {0, redis.call('HGET', KEYS[1], 'agent')}
"""
"""KEYS: the call's state. ARGV: agent, seconds to keep, channel, call id. {1 if won, who has it}."""

_CLOSE = """
local agent = redis.call('HGET', KEYS[1], 'agent')
if agent ~= ARGV[1] then return {0, agent or ''} end
if redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then return {2, agent} end
local now = redis.call('TIME')
local ms = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
redis.call('HSET', KEYS[1], 'outcome', ARGV[2], 'closed_at_ms', ms)
redis.call('EXPIRE', KEYS[1], ARGV[3])
for i = 2, #KEYS do redis.call('XACK', KEYS[i], ARGV[5], ARGV[5 + i - 1]) end
redis.call('PUBLISH', ARGV[4], cjson.encode({event = 'closed', call_id = ARGV[6 + #KEYS - 1], agent = ARGV[1]}))
return {1, agent}
"""
"""KEYS: the call's state, then the stream of each of its entries. ARGV: agent, outcome, seconds to
keep, channel, group, the entry ids (one per stream key), call id. {1 closed | 0 not theirs | 2 closed
before, who has it}."""


_RELEASE = """
local agent = redis.call('HGET', KEYS[1], 'agent')
if agent ~= ARGV[1] then return {0, agent or ''} end
if redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then return {2, agent} end
redis.call('HDEL', KEYS[1], 'agent', 'claimed_at_ms')
redis.call('PUBLISH', ARGV[2], cjson.encode({event = 'released', call_id = ARGV[3], agent = ARGV[1]}))
return {1, agent}
"""
"""KEYS: the call's state. ARGV: agent, channel, call id. {1 released | 0 not theirs | 2 closed, who had it}."""


class NotOnBoard(LookupError):
    """No open transfer of that call on the board (never there, closed, or expired)."""


@dataclass
class Transfer:
    """One open transfer: its stream entry, its record (None when unreadable) and its desk state."""

    call_id: str
    queue: str
    entries: list[tuple[str, str]]       # (stream, entry id): one call delivered twice is still one card
    delivered_ms: int
    record: dict[str, Any] | None
    agent: str | None = None
    claimed_at_ms: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def entry_ids(self) -> list[str]:
        return [entry_id for _, entry_id in self.entries]

    @property
    def waiting_since_ms(self) -> int:
        """When the caller started waiting: the delivery, less the wait the record says they had by then."""
        waited = (self.record or {}).get("waited_seconds")
        if isinstance(waited, (int, float)) and not isinstance(waited, bool) and waited >= 0:
            return self.delivered_ms - int(waited * 1000)
        return self.delivered_ms

    def to_json(self, now_ms: int) -> dict[str, Any]:
        end = self.claimed_at_ms or now_ms
        return {"call_id": self.call_id, "queue": self.queue, "entry_ids": self.entry_ids,
                "delivered_at_ms": self.delivered_ms, "waiting_since_ms": self.waiting_since_ms,
                "waited_seconds": round(max(0, end - self.waiting_since_ms) / 1000, 1),
                "claimed_by": self.agent, "claimed_at_ms": self.claimed_at_ms, "record": self.record}


@dataclass
class Snapshot:
    transfers: list[Transfer]
    now_ms: int


@dataclass(frozen=True)
class Outcome:
    ok: bool
    agent: str          # who has the transfer now ("" when nobody)
    why: str = ""       # "taken", "not_yours", "closed" when not ok


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _record(raw: Any) -> dict[str, Any] | None:
    if raw is None or len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def entry_ms(entry_id: str) -> int:
    try:
        return int(entry_id.split("-", 1)[0])
    except ValueError:
        return 0


class Board:
    """The transfers of ``queues`` as the consumer group ``group`` sees them."""

    def __init__(self, client: redis.Redis, queues: list[str], *, group: str = "desk", keep_seconds: int = 86400,
                 max_cards: int = 200):
        self.client = client
        self.queues = list(dict.fromkeys(queues))
        self.group = group
        self.keep_seconds = int(keep_seconds)
        self.max_cards = max_cards
        self.channels = [HANDOFF_CHANNEL, EVENTS_CHANNEL.format(group=group)]
        self._claim = client.register_script(_CLAIM)
        self._close = client.register_script(_CLOSE)
        self._release = client.register_script(_RELEASE)

    def state_key(self, call_id: str) -> str:
        return STATE_KEY.format(group=self.group, call_id=call_id)

    def _make_group(self, stream: str) -> None:
        try:
            self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, stream: str, start: str, count: int) -> list[tuple[Any, dict]]:
        """XREADGROUP from ``start`` (">" new, "0" pending), making the group when it is not there."""
        for attempt in (1, 2):
            try:
                reply = self.client.xreadgroup(self.group, CONSUMER, {stream: start}, count=count)
                break
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc) or attempt == 2:
                    raise
                self._make_group(stream)
        return reply[0][1] if reply else []

    def snapshot(self) -> Snapshot:
        """The open transfers, unclaimed first, each group longest waiting first. Raises RedisError."""
        by_call: dict[str, Transfer] = {}
        for queue in self.queues:
            stream = stream_key(queue)
            self._read(stream, ">", NEW_ENTRIES_PER_LOOK)
            gone = []
            for raw_id, fields in self._read(stream, "0", self.max_cards):
                entry_id = _text(raw_id)
                if not fields:               # trimmed from the stream: nothing left to show
                    gone.append(entry_id)
                    continue
                call_id = _text(fields.get(b"call_id", b""))
                if call_id in by_call:       # one call, one card; closing it acknowledges every entry
                    by_call[call_id].entries.append((stream, entry_id))
                    later = _record(fields.get(b"context"))
                    if later is not None:    # the newest record tells most: a call back asked for after
                        by_call[call_id].record = later      # nobody answered replaces the transfer's
                    continue
                by_call[call_id] = Transfer(call_id=call_id, queue=queue, entries=[(stream, entry_id)],
                                            delivered_ms=entry_ms(entry_id), record=_record(fields.get(b"context")))
            if gone:
                self.client.xack(stream, self.group, *gone)
        transfers = list(by_call.values())
        pipe = self.client.pipeline(transaction=False)
        for transfer in transfers:
            pipe.hgetall(self.state_key(transfer.call_id))
        pipe.time()
        *states, (seconds, micros) = pipe.execute()
        for transfer, state in zip(transfers, states):
            state = {_text(k): _text(v) for k, v in state.items()}
            transfer.agent = state.pop("agent", None)
            claimed = state.pop("claimed_at_ms", None)
            transfer.claimed_at_ms = int(claimed) if claimed and claimed.isdigit() else None
            transfer.extra = state
        transfers.sort(key=lambda t: (t.agent is not None, t.waiting_since_ms))
        return Snapshot(transfers, int(seconds) * 1000 + int(micros) // 1000)

    def find(self, call_id: str) -> Transfer:
        for transfer in self.snapshot().transfers:
            if transfer.call_id == call_id:
                return transfer
        raise NotOnBoard(call_id)

    def claim(self, call_id: str, agent: str) -> Outcome:
        """Take the transfer for ``agent``: exactly one of several agents at once wins."""
        self.find(call_id)
        won, holder = self._claim(keys=[self.state_key(call_id)],
                                  args=[agent, self.keep_seconds, self.channels[1], call_id])
        holder = _text(holder or b"")
        return Outcome(bool(won), holder, "" if won else "taken")

    def release(self, call_id: str, agent: str) -> Outcome:
        """Give back a transfer ``agent`` took by mistake: it waits for anyone again (only its taker can)."""
        self.find(call_id)
        result, holder = self._release(keys=[self.state_key(call_id)], args=[agent, self.channels[1], call_id])
        holder = _text(holder or b"")
        return Outcome(result == 1, holder, {0: "not_yours", 2: "closed"}.get(int(result), ""))

    def close(self, call_id: str, agent: str, outcome: str) -> Outcome:
        """End the transfer ``agent`` took with ``outcome`` (a key of OUTCOMES); it leaves the board."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        transfer = self.find(call_id)
        keys = [self.state_key(call_id)] + [stream for stream, _ in transfer.entries]
        result, holder = self._close(keys=keys, args=[agent, outcome, self.keep_seconds, self.channels[1],
                                                      self.group, *transfer.entry_ids, call_id])
        holder = _text(holder or b"")
        return Outcome(result == 1, holder, {0: "not_yours", 2: "closed"}.get(int(result), ""))
