"""PINs stored only as salted scrypt hashes, compared in constant time.

A PIN has at most 10^8 values, so a fast hash of it is as good as the PIN itself to anyone who
copies the database. scrypt with a per-customer random salt makes each guess cost memory and
time, and the parameters travel with the hash (``scrypt$n$r$p$salt$hash``) so they can be raised
later without invalidating stored PINs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

SCHEME = "scrypt"
# 16 MiB and a few tens of milliseconds per check: slow for a guesser, fine for one caller.
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
# A stored hash asking for more than this is refused instead of tying up the machine.
MAX_COST = 2**20
MAX_MEMORY = 256 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=MAX_MEMORY)


def hash_pin(pin: str) -> str:
    """``scrypt$16384$8$1$<salt>$<hash>`` for ``pin`` with a fresh random salt."""
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(pin, salt, N, R, P, HASH_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` hashes to ``stored``; ``False`` for anything malformed, never an exception."""
    try:
        scheme, n_text, r_text, p_text, salt_text, hash_text = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, expected = base64.b64decode(salt_text, validate=True), base64.b64decode(hash_text, validate=True)
        if scheme != SCHEME or not (1 < n <= MAX_COST and 0 < r <= 32 and 0 < p <= 16) or not expected:
            return False
        actual = _scrypt(pin, salt, n, r, p, len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_pin("00000000")


def waste_time_like_a_check(pin: str) -> bool:
    """The cost of one ``verify_pin`` with no chance of a match; always ``False``.

    Used when there is no such customer or no PIN, so that answer takes as long as a wrong PIN
    and its timing does not tell a guesser which customer numbers exist.
    """
    verify_pin(pin, _dummy_hash())
    return False
