"""Answering the engine's ``CheckIdentity`` actions: the directory, the lockout, the metrics.

``IdentityService.check`` turns one ``CheckIdentity`` into one ``IdentityChecked``:

- ``locked`` when the claimed customer number or the calling number has had ``lockout_attempts``
  failed checks within ``lockout_minutes`` of the last one (across calls and nodes: the counters
  are in Redis). A locked check compares nothing, so a locked customer cannot be probed.
- ``match`` / ``no_match`` from ``methods.check``.
- ``unavailable`` when the counters or the directory cannot answer, or anything else breaks: the
  check fails closed and the engine hands the caller to a person, unverified.

What counts: every check of ``customer_dob``, ``postcode_house`` and ``pin`` that does not match
counts once for the calling number and, when the caller gave one, once for the customer number
they claimed (whether or not it exists: a lockout that only existing numbers reach would tell
which exist). ``caller_id`` asks the caller nothing, so its misses count for nobody; but a locked
calling number gets ``locked`` for it too. A match by ``customer_dob`` or ``pin`` clears the
claimed customer's counter; a match by ``caller_id`` (spoofable) or ``postcode_house`` (an
address is easy to learn) clears nothing, or it would reset the count of someone guessing a PIN.
The calling number's failures stay until they expire.

Counter keys are ``voicebot:lockout:customer:<hmac>`` and ``voicebot:lockout:caller:<hmac>``: an
HMAC-SHA256 of the number keyed with ``VOICEBOT_HASH_SALT``, never the number. A calling number
that is not a phone number (withheld, a SIP identity) shares one counter: hiding one's number
must not buy unlimited guesses.

Nothing here logs, raises or counts a value the caller gave: log lines carry the method and the
outcome, metrics the labels ``method`` and ``outcome`` only, failures the type of the error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any, Iterable, Sequence

from voicebot.dialog.actions import Action, CheckIdentity
from voicebot.dialog.events import IdentityChecked, SystemFailure
from voicebot.identity import Customer, Directory, DirectoryUnavailable
from voicebot.identity import methods
from voicebot.identity.lockout import Lockout, LockoutUnavailable, RedisLockout

log = logging.getLogger("voicebot.identity")

KEY_PREFIX = "voicebot:lockout"
WITHHELD = "withheld"
"""What every calling number that is not a phone number is counted as."""
CLAIMING_METHODS = ("customer_dob", "pin")
"""Methods where the caller names the customer: only their match clears that customer's counter."""
MAX_SETTLE_ROUNDS = 4
"""A turn holds one check; a few rounds allow an engine that checks again at once (caller ID,
then a stronger method); more means the engine is looping, and the caller goes to a person."""


class IdentityService:
    """One per process (web app, chat). ``redis_client`` holds the lockout counters; a ``lockout``
    given instead replaces them (`voicebot chat` without Redis: ``MemoryLockout``). ``metrics``:
    an object with a ``verifications`` counter labelled ``method`` and ``outcome``, or None."""

    def __init__(self, directory: Directory, redis_client: Any, salt: str, lockout_attempts: int,
                 lockout_minutes: int, *, metrics: Any = None, lockout: Lockout | None = None):
        self.directory = directory
        self.lockout = lockout if lockout is not None else RedisLockout(
            redis_client, lockout_attempts, lockout_minutes * 60)
        self._salt = salt.encode("utf-8")
        self.metrics = metrics

    def check(self, action: CheckIdentity) -> IdentityChecked:
        label = action.method if action.method in methods.METHODS else "unknown"
        customer = None
        try:
            outcome, customer = self._check(action)
        except LockoutUnavailable as exc:
            outcome = "unavailable"
            log.error("identity check %s: lockout counters unreachable (%s); failing closed", label, exc)
        except DirectoryUnavailable as exc:
            outcome = "unavailable"
            log.error("identity check %s: customer directory unavailable (%s); failing closed", label,
                      type(exc).__name__)
        except Exception as exc:   # a bug must not verify anyone, nor put a value in a traceback
            outcome = "unavailable"
            log.error("identity check %s failed (%s); failing closed", label, type(exc).__name__)
        if outcome == "locked":
            log.warning("identity check %s refused: too many failed attempts for the claimed customer number "
                        "or the calling number", label)
        if self.metrics is not None:
            self.metrics.verifications.labels(method=label, outcome=outcome).inc()
        return IdentityChecked(method=action.method, outcome=outcome,
                               customer=customer.public() if customer is not None else None)

    def _check(self, action: CheckIdentity) -> tuple[str, Customer | None]:
        if action.method not in methods.METHODS:
            raise ValueError("unknown verification method")
        caller = [self.key("caller", methods.e164(action.caller) or WITHHELD)]
        if action.method == "caller_id":
            if self.lockout.locked(caller):
                return "locked", None
            customer = methods.check(action.method, {}, action.caller, self.directory)
            return ("match", customer) if customer is not None else ("no_match", None)
        claimed = methods.claimed_number(action.values)
        claimed_key = [self.key("customer", claimed)] if claimed else []
        keys = caller + claimed_key
        if not self.lockout.take(keys):
            return "locked", None
        try:
            customer = methods.check(action.method, action.values, action.caller, self.directory)
        except BaseException:
            self.lockout.give_back(keys)          # not the caller's failure
            raise
        if customer is None:
            return "no_match", None
        self.lockout.give_back(caller)
        if action.method in CLAIMING_METHODS:
            self.lockout.clear(claimed_key)
        return "match", customer

    def key(self, kind: str, number: str) -> str:
        """The counter of a ``customer`` or ``caller`` number: an HMAC of it, never the number."""
        digest = hmac.new(self._salt, number.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{KEY_PREFIX}:{kind}:{digest}"

    def close(self) -> None:
        self.directory.close()


def settle(engine: Any, state: Any, actions: Sequence[Action], service: IdentityService | None) -> list[Action]:
    """The engine's actions with every identity check answered: while the last action is a
    ``CheckIdentity``, it is replaced by what the engine does with ``service.check``'s answer.

    Every runner calls this on every list of actions the engine gives (start, resume, handle),
    so the engine never waits and never sees a directory. Without a service (a process whose flows
    have no verify step) every check is ``unavailable``. An engine that asks more than
    ``MAX_SETTLE_ROUNDS`` times in a row gets a ``SystemFailure``: the caller reaches a person."""
    actions = list(actions)
    rounds = 0
    while actions and isinstance(actions[-1], CheckIdentity):
        ask = actions.pop()
        if rounds == MAX_SETTLE_ROUNDS:
            log.error("identity checks did not settle after %d rounds; handing the call to a person", rounds)
            actions += [a for a in engine.handle(state, SystemFailure("identity checks did not settle"))
                        if not isinstance(a, CheckIdentity)]
            break
        rounds += 1
        answer = service.check(ask) if service is not None else IdentityChecked(ask.method, "unavailable")
        actions += engine.handle(state, answer)
    return actions


def uses_verification(flows: Iterable[Any]) -> bool:
    """Whether any of these flows has a verify step: only then does a process open the directory."""
    return any(getattr(step, "type", None) == "verify" for flow in flows for step in flow.spec.steps.values())
