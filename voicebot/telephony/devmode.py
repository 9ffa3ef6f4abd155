"""The development mode: `make run` with nothing configured still gives a working, safe server.

Without ``TWILIO_AUTH_TOKEN`` a server would refuse every request, and turning signature checks
off would let anyone who can reach it post calls. The development mode (``voicebot serve --dev``
or ``VOICEBOT_DEV=1``; ``make run`` turns it on when TWILIO_AUTH_TOKEN is not set) instead:

- binds to 127.0.0.1 only, whatever ``web.host`` says;
- when no TWILIO_AUTH_TOKEN is set, makes a random token for this run and writes it to
  ``.run/dev-auth-token`` (mode 600) next to config.yaml; requests are still signed and checked,
  with that token, and `voicebot call` picks it up by default;
- uses ``http://127.0.0.1:PORT`` as the public URL unless PUBLIC_URL is set (a tunnel to the
  loopback address still works).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from voicebot.config import DEV_TOKEN_FILE, LOOPBACK, Settings


def dev_token_path(root: Path) -> Path:
    return root / DEV_TOKEN_FILE


def write_dev_token(root: Path) -> Path:
    """A fresh random token in ``.run/dev-auth-token``, readable by this user only."""
    path = dev_token_path(root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return path


def read_dev_token(root: Path) -> str:
    """The token a development server wrote, or "" when there is none."""
    try:
        return dev_token_path(root).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


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
    settings = dataclasses.replace(settings, host=LOOPBACK, dev=True,
                                   telephony=dataclasses.replace(tel, auth_token=token, public_url=public))
    return settings, f"development mode: listening on {LOOPBACK}:{port} only, public URL {public}; {how}"


def serve_problem(settings: Settings) -> str | None:
    """Why a production server must not start, or None."""
    tel = settings.telephony
    missing = [name for name, value in (("TWILIO_AUTH_TOKEN", tel.auth_token), ("PUBLIC_URL", tel.public_url))
               if not value]
    if missing:
        return (f"{' and '.join(missing)} not set: every Twilio request would be refused. Set "
                f"{'them' if len(missing) > 1 else 'it'}, or run `voicebot serve --dev` (VOICEBOT_DEV=1) for a "
                "local server on 127.0.0.1 with a generated token")
    return None
