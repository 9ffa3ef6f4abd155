"""The development mode: `make run` with nothing configured still gives a working, safe server.

Without ``TWILIO_AUTH_TOKEN`` a server would refuse every request, and turning signature checks
off would let anyone who can reach it post calls. The development mode (``voicebot serve --dev``
or ``VOICEBOT_DEV=1``; ``make run`` turns it on when TWILIO_AUTH_TOKEN is not set) instead:

- binds to 127.0.0.1 only, whatever ``web.host`` says;
- when no TWILIO_AUTH_TOKEN is set, makes a random token for this run and writes it to
  ``.run/dev-auth-token`` (mode 600) next to config.yaml; requests are still signed and checked,
  with that token, and `voicebot call` picks it up by default;
- uses ``http://127.0.0.1:PORT`` as the public URL unless PUBLIC_URL is set (a tunnel to the
  loopback address still works);
- when no VOICEBOT_HASH_SALT is set, keys its hashes with a random salt kept in ``.run/hash-salt``
  (mode 600). Unlike the token it is made once and kept: hashes written under one salt (stored
  secret answers, lockout counters, unfinished calls) are only found again under the same salt;
- when no VOICEBOT_DESK_SECRET is set, signs the agent desk's session cookies with a random secret
  kept in ``.run/desk-secret`` (mode 600) the same way, so agents stay logged in across restarts.

Outside this mode ``serve_problem`` refuses to start without Twilio's credentials and a salt of
its own: a production server must not hash callers' secrets with a value nobody chose.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from voicebot.config import DEV_TOKEN_FILE, LOOPBACK, Settings

DEV_SALT_FILE = Path(".run") / "hash-salt"
DEV_DESK_SECRET_FILE = Path(".run") / "desk-secret"
SALT_ENV = "VOICEBOT_HASH_SALT"
MIN_SALT_LENGTH = 16
"""Characters a salt needs at least: a short one can be guessed, and every hash keyed with it undone."""
SALT_RECIPE = "python3 -c 'import secrets; print(secrets.token_hex(32))'"


def dev_token_path(root: Path) -> Path:
    return root / DEV_TOKEN_FILE


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by this user only (the folder too)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def write_dev_token(root: Path) -> Path:
    """A fresh random token in ``.run/dev-auth-token``, readable by this user only."""
    path = dev_token_path(root)
    _write_private(path, secrets.token_urlsafe(24))
    return path


def read_dev_token(root: Path) -> str:
    """The token a development server wrote, or "" when there is none."""
    try:
        return dev_token_path(root).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def dev_salt(root: Path) -> str:
    """The salt in ``.run/hash-salt``, made (mode 600) when there is none yet."""
    return _kept_secret(root / DEV_SALT_FILE)


def dev_desk_secret(root: Path) -> str:
    """The desk's cookie-signing secret in ``.run/desk-secret``, made (mode 600) when there is none yet."""
    return _kept_secret(root / DEV_DESK_SECRET_FILE)


def _kept_secret(path: Path) -> str:
    """A random value kept in ``path``, made (mode 600) when there is none yet.

    The web process and the worker may both start at once: the file is written under another
    name and linked into place, so one of them makes it and both read the same value.
    """
    try:
        salt = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        salt = ""
    if salt:
        return salt
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_private(draft, secrets.token_hex(32))
    try:
        if path.exists():                    # empty: made by hand, or cut short; make it again
            os.replace(draft, path)
        else:
            os.link(draft, path)
    except FileExistsError:
        pass                                  # another process made it first: use theirs
    finally:
        draft.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()


def salt_problem(salt: str) -> str | None:
    """Why ``salt`` cannot key the hashes of a server taking real calls, or None."""
    if not salt:
        return (f"{SALT_ENV} not set: secret answers and calling numbers are kept only as hashes keyed with it. "
                f"Make one with `{SALT_RECIPE}` and set it (the same on every node)")
    if len(salt) < MIN_SALT_LENGTH:
        return (f"{SALT_ENV} is too short ({len(salt)} characters, at least {MIN_SALT_LENGTH}): make one with "
                f"`{SALT_RECIPE}`")
    return None


def apply_dev_mode(settings: Settings, port: int) -> tuple[Settings, str]:
    """Settings for a development server on ``port`` and the one line that says what was done."""
    tel = settings.telephony
    public = tel.public_url or f"http://{LOOPBACK}:{port}"
    token = tel.auth_token
    if token:
        how = "requests are signed with TWILIO_AUTH_TOKEN"
    else:
        path = write_dev_token(settings.root)
        token = read_dev_token(settings.root)
        how = f"requests are signed with a random local token in {path} (`voicebot call` uses it)"
    salt = settings.hash_salt
    if salt:
        hashed = f"hashes keyed with {SALT_ENV}"
    else:
        salt = dev_salt(settings.root)
        hashed = f"hashes keyed with the local salt in {settings.root / DEV_SALT_FILE}"
    desk = settings.desk
    if not desk.secret:
        desk = dataclasses.replace(desk, secret=dev_desk_secret(settings.root))
    settings = dataclasses.replace(settings, host=LOOPBACK, dev=True, hash_salt=salt, desk=desk,
                                   telephony=dataclasses.replace(tel, auth_token=token, public_url=public))
    return settings, f"development mode: listening on {LOOPBACK}:{port} only, public URL {public}; {how}; {hashed}"


def serve_problem(settings: Settings) -> str | None:
    """Why a production server must not start (one line, every reason), or None."""
    tel = settings.telephony
    problems = []
    missing = [name for name, value in (("TWILIO_AUTH_TOKEN", tel.auth_token), ("PUBLIC_URL", tel.public_url))
               if not value]
    if missing:
        problems.append(f"{' and '.join(missing)} not set: every Twilio request would be refused. Set "
                        f"{'them' if len(missing) > 1 else 'it'}")
    salt = salt_problem(settings.hash_salt)
    if salt:
        problems.append(salt)
    if not problems:
        return None
    return ("; ".join(problems) + ". Or run `voicebot serve --dev` (VOICEBOT_DEV=1) for a local server on "
            "127.0.0.1 with a generated token and salt")
