"""Flows that change while the server runs: which files changed, whether their new text is a valid
flow, and the three ways a running process is asked to look (docs/flows.md, *Changing a flow while
the server runs*).

``FlowFiles`` knows what each flow file held when its flow was loaded (the flow's version, the
hash of its text). A check reads the files whose size or modification time changed (every file
when asked explicitly), validates a changed text exactly as start-up does, and returns the new
set of flows: a valid change replaces its flow, a broken one leaves the running version in place
and its problems (``file:line: message``) in the result. Nothing is ever taken away by a reload:
a flow whose file was removed (or whose ``flow:`` id changed) is still served until the next
restart, because a webhook that names it would otherwise land in another flow.

``Reloader`` runs those checks on one thread of its own, asked by

- the watcher: every ``flows.watch_seconds`` it looks at the files' sizes and times (a stat per file:
  polling works on every file system, network mounts and container volumes included, where change
  notifications do not); a file that is still being written waits for the next look;
- ``SIGHUP`` to the server (``voicebot serve`` passes it on to its worker, see web.py);
- ``voicebot flows reload``: a message on the Redis channel ``voicebot:flows:reload`` that every
  server process listens to, so one command reaches every node without knowing their process ids or
  having a shell on them; each node answers on ``voicebot:flows:reloaded`` with what it did.

A look is cheap: one stat per file when nothing changed, and when a file did, the intent
classifier of examples that did not change comes from the NLU cache (voicebot/nlu/cache.py).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import socket
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis

from voicebot.errors import FlowError, Problem
from voicebot.flow import Flow, flow_version, parse_flow
from voicebot.redis_clients import redis_client

log = logging.getLogger("voicebot.flows")

RELOAD_CHANNEL = "voicebot:flows:reload"
"""Where `voicebot flows reload` asks every running server to load its changed flow files."""
REPLY_CHANNEL = "voicebot:flows:reloaded"
"""Where each server answers, with the request's id: the versions it serves and any problems."""
SETTLE_SECONDS = 0.3
"""The watcher reads a changed file only when its size and time stayed the same this long."""
MAX_MESSAGE_BYTES = 1024
"""A reload request is a few dozen bytes; anything longer on the channel is not ours."""
MAX_REPLY_PROBLEMS = 50
LISTEN_BACKOFF_SECONDS = (1, 2, 5, 10, 30)
MAX_WAITING_REQUESTS = 64
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class ReloadResult:
    """What one check did: flows loaded (old and new version), problems, and what is served now."""

    trigger: str
    loaded: dict[str, tuple[str, str]] = field(default_factory=dict)
    """flow id -> (the version served before, "" for a new flow; the version served now)"""
    problems: list[Problem] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Files whose new text is broken: their flows go on with the running version."""
    orphaned: list[str] = field(default_factory=list)
    """Flows whose file is gone (or names another flow now): still served until a restart."""
    serving: dict[str, str] = field(default_factory=dict)
    """Every flow id -> the version new calls get."""

    @property
    def changed(self) -> bool:
        return bool(self.loaded)

    def summary(self) -> str:
        parts = [f"{fid} {old or 'new'} -> {new}" for fid, (old, new) in sorted(self.loaded.items())]
        if self.kept:
            parts.append(f"{len(self.kept)} broken file(s) kept their running version ({len(self.problems)} "
                         f"problem(s))")
        if self.orphaned:
            parts.append("no file defines " + ", ".join(sorted(self.orphaned)) + " any more (served until a restart)")
        return "; ".join(parts) or "nothing changed"

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "loaded": {fid: list(pair) for fid, pair in self.loaded.items()},
                "problems": [str(p) for p in self.problems[:MAX_REPLY_PROBLEMS]], "kept": self.kept,
                "orphaned": self.orphaned, "serving": self.serving}


def _signature(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class FlowFiles:
    """The flow files of one directory, as the running flows were loaded from them."""

    def __init__(self, directory: str | Path, transfer_words: dict[str, list[str]] | None,
                 flows: dict[str, Flow]):
        self.directory = Path(directory)
        self.transfer_words = transfer_words
        self._loaded = {flow.path: flow.version for flow in flows.values()}   # file -> version served
        self._seen: dict[str, tuple[int, int]] = {}          # file -> (mtime, size) when last read
        self._failed: dict[str, str] = {}                   # file -> version of the broken text last reported
        self._orphans_told: set[str] = set()                # flows no file defines, already said

    def check(self, current: dict[str, Flow], trigger: str, *, force: bool, settle: bool = False
              ) -> tuple[dict[str, Flow], ReloadResult]:
        """The flows to serve from now on and what changed. ``force``: read every file (a file copied
        with its old time, or a request that wants the problems said again); ``settle``: a file whose
        size or time changes while being looked at is left for the next check (an editor writing)."""
        result = ReloadResult(trigger)
        paths = sorted(str(p) for p in self.directory.glob("*.yaml"))
        changed = self._changed(paths, force, settle)
        fresh: dict[str, Flow] = {}
        for path, signature in changed.items():
            flow = self._read(path, signature, force, result)
            if flow is not None:
                fresh[path] = flow
        flows = self._merge(current, paths, fresh, result)
        for path in {*self._loaded, *self._seen, *self._failed} - set(paths):     # removed files
            self._loaded.pop(path, None)
            self._seen.pop(path, None)
            self._failed.pop(path, None)
        defined = {flow.id for flow in flows.values() if self._loaded.get(flow.path) == flow.version}
        self._orphans_told &= set(flows) - defined
        result.orphaned = sorted(fid for fid in flows if fid not in defined and fid not in self._orphans_told)
        self._orphans_told.update(result.orphaned)
        result.serving = {fid: flow.version for fid, flow in sorted(flows.items())}
        return flows, result

    def _changed(self, paths: list[str], force: bool, settle: bool) -> dict[str, tuple[int, int]]:
        """The files to read, each with its (mtime, size) as read."""
        found = {p: s for p in paths if (s := _signature(p)) is not None}
        changed = {p: s for p, s in found.items() if force or self._seen.get(p) != s}
        if settle and changed:
            time.sleep(SETTLE_SECONDS)
            changed = {p: s for p, s in changed.items() if _signature(p) == s}
        return changed

    def _read(self, path: str, signature: tuple[int, int], force: bool, result: ReloadResult) -> Flow | None:
        """The flow in ``path`` when its text is new and valid; None when unchanged or broken."""
        self._seen[path] = signature
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            return self._broken(path, f"unreadable {signature}", [
                Problem(path, None, f"cannot read file: {exc.strerror or exc}")], force, result)
        except UnicodeDecodeError:
            return self._broken(path, f"undecodable {signature}", [Problem(path, None, "not UTF-8 text")], force,
                                result)
        version = flow_version(text)
        if version == self._loaded.get(path):
            self._failed.pop(path, None)
            return None
        if version == self._failed.get(path) and not force:
            return None                               # its problems were said when it was first seen
        try:
            return parse_flow(text, path, self.transfer_words)
        except FlowError as exc:
            return self._broken(path, version, exc.problems, force, result)

    def _broken(self, path: str, version: str, problems: list[Problem], force: bool, result: ReloadResult) -> None:
        """A file that cannot be served: its problems go in the result once per text (each time when forced)."""
        if version != self._failed.get(path) or force:
            self._failed[path] = version
            result.problems.extend(problems)
            result.kept.append(path)
        return None

    def _merge(self, current: dict[str, Flow], paths: list[str], fresh: dict[str, Flow],
               result: ReloadResult) -> dict[str, Flow]:
        """``current`` with the valid new flows in place; a flow id that another present file defines
        too is a problem (as at start-up), and that file's change is not taken."""
        owners = {flow.id: flow.path for flow in current.values()
                  if flow.path in paths and flow.path not in fresh and self._loaded.get(flow.path) == flow.version}
        flows = dict(current)
        for path, flow in sorted(fresh.items()):
            other = owners.get(flow.id)
            if other is not None and other != path:
                result.problems.append(Problem(path, 1, f"flow id '{flow.id}' is also used by {other}"))
                result.kept.append(path)
                self._failed[path] = flow.version
                continue
            owners[flow.id] = path
            self._loaded[path] = flow.version
            self._failed.pop(path, None)
            running = current.get(flow.id)
            if running is not None and running.version == flow.version and running.path == path:
                continue                                # the same text back again: nothing to do
            flows[flow.id] = flow
            result.loaded[flow.id] = (running.version if running is not None else "", flow.version)
        return flows


class EngineVersions:
    """The engines of flow versions no longer served to new calls, for the calls that started on them.

    A live call holds its own engine (the session's ``engine``); what looks a call's flow up later by
    its recorded ``flow_version`` (after-stream, the agent's whisper, an unanswered transfer's offer)
    finds the version here: the last ``keep`` versions of each flow are held, and any older one for
    as long as something still uses it (weakly). A version neither finds is served by the current one.
    """

    def __init__(self, keep: int = 3):
        self._recent: dict[str, deque[Any]] = {}
        self._keep = keep
        self._all: weakref.WeakValueDictionary[tuple[str, str], Any] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def add(self, engine: Any) -> None:
        """Remember an engine (every engine, current ones included: they retire later)."""
        flow = engine.flow
        with self._lock:
            self._all[(flow.id, flow.version)] = engine

    def retire(self, engine: Any) -> None:
        """The engine's version is no longer the one new calls get."""
        flow = engine.flow
        with self._lock:
            self._recent.setdefault(flow.id, deque(maxlen=self._keep)).append(engine)
            self._all[(flow.id, flow.version)] = engine

    def get(self, flow_id: str, version: str) -> Any | None:
        with self._lock:
            return self._all.get((flow_id, version))


class Reloader:
    """Runs flow checks on one thread, asked by the watcher, ``SIGHUP`` and Redis (see the module doc).

    ``check(trigger, force, settle)`` is the runtime's reload; requests that arrive while one runs
    are answered by the next check, together (at most ``MAX_WAITING_REQUESTS`` wait; more are
    dropped, since that check answers them anyway, but unanswered). ``request`` is called from the
    SIGHUP handler, which runs on the main thread: no other code of the main thread touches the
    queue, so the handler never waits for a lock its own thread holds.
    """

    def __init__(self, check: Callable[[str, bool, bool], ReloadResult], *, watch_seconds: float,
                 redis_url: str | None, ready: threading.Event | None = None):
        self._check = check
        self.watch_seconds = watch_seconds
        self.redis_url = redis_url
        self._ready = ready
        self._requests: queue.Queue[tuple[str, str | None] | None] = queue.Queue(MAX_WAITING_REQUESTS)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._publisher: redis.Redis | None = None
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self.listening = threading.Event()
        """Set while subscribed to ``RELOAD_CHANNEL`` (tests wait for it)."""

    # -- asking --------------------------------------------------------------------------------

    def request(self, trigger: str, reply_to: str | None = None) -> None:
        """Look at every flow file now (``reply_to``: the id of a Redis request to answer)."""
        try:
            self._requests.put_nowait((trigger, reply_to))
        except queue.Full:
            pass                     # a check is due anyway: it reads every file

    def install_sighup(self) -> None:
        """``SIGHUP`` to this process asks for a reload (call from the main thread)."""
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self.request("SIGHUP"))

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """The checking thread (which first looks at every file: what changed since they were loaded)
        and, with a Redis URL, the thread that listens for `voicebot flows reload`."""
        self.node = f"{socket.gethostname()}:{os.getpid()}"       # after a fork: the worker's own id
        self.request("start")
        targets = [("voicebot-flows", self._run)]
        if self.redis_url:
            targets.append(("voicebot-flows-listen", self._listen))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:
            self._requests.put_nowait(None)
        except queue.Full:
            pass                     # the thread is about to look at the queue, and then at _stop
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _run(self) -> None:
        if self._ready is not None:
            while not self._ready.wait(1.0):       # the start-up work first: models, prompts
                if self._stop.is_set():
                    return
        while not self._stop.is_set():
            asked = self._next()
            if self._stop.is_set():
                return
            triggers = sorted({trigger for trigger, _ in asked})
            try:
                result = self._check("+".join(triggers) or "watch", bool(asked), not asked)
            except Exception:          # the thread must outlive any one check; the flows stay as they were
                log.exception("checking the flow files failed; the running flows stay")
                continue
            for reply_to in (r for _, r in asked if r):
                self._reply(reply_to, result)

    def _next(self) -> list[tuple[str, str | None]]:
        """The requests to answer now: [] when it is the watcher's turn."""
        timeout = self.watch_seconds if self.watch_seconds > 0 else None
        try:
            first = self._requests.get(timeout=timeout)
        except queue.Empty:
            return []
        asked = [first]
        while True:
            try:
                asked.append(self._requests.get_nowait())
            except queue.Empty:
                break
        return [a for a in asked if a is not None]

    # -- Redis -----------------------------------------------------------------------------------

    def _listen(self) -> None:
        """Subscribe to ``RELOAD_CHANNEL`` for as long as the process runs, again after Redis comes back."""
        failures = 0
        while not self._stop.is_set():
            client = pubsub = None
            try:
                client = redis_client(self.redis_url or "", "listen")
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(RELOAD_CHANNEL)
                self._publisher = client
                self.listening.set()
                if failures:
                    log.info("listening again for `voicebot flows reload` on Redis")
                failures = 0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._heard(message.get("data"))
            except (redis.RedisError, OSError, ValueError) as exc:
                self.listening.clear()
                if failures == 0:
                    log.warning("`voicebot flows reload` is not heard while Redis does not answer (%s); the "
                                "watcher and SIGHUP still reload flows", exc)
                pause = LISTEN_BACKOFF_SECONDS[min(failures, len(LISTEN_BACKOFF_SECONDS) - 1)]
                failures += 1
                self._stop.wait(pause)
            finally:
                for thing in (pubsub, client):
                    try:
                        if thing is not None:
                            thing.close()
                    except (redis.RedisError, OSError):
                        pass

    def _heard(self, data: Any) -> None:
        """A message on the channel: a JSON object asks for a reload (answered when it has a good ``id``);
        anything else is not ours and is ignored."""
        if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_BYTES:
            return
        try:
            body = json.loads(data)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        wanted = body.get("id")
        self.request("voicebot flows reload",
                     wanted if isinstance(wanted, str) and REQUEST_ID.fullmatch(wanted) else None)

    def _reply(self, reply_to: str, result: ReloadResult) -> None:
        client = self._publisher
        if client is None:
            return
        body = {"id": reply_to, "node": self.node, **result.to_dict()}
        try:
            client.publish(REPLY_CHANNEL, json.dumps(body))
        except (redis.RedisError, OSError) as exc:
            log.warning("the answer to `voicebot flows reload` was not sent: %s", exc)
