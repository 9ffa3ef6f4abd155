"""Headless Debian Chromium driven by Playwright, shared by the browser tests (desk and /ops).

Never a downloaded browser: Debian's chromium (`make install` installs it) at ``CHROMIUM``. A
missing Playwright or Chromium fails the importing test module loudly: these tests run in CI,
they are not skipped. A test module takes the ``browser`` fixture by importing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from servers import REPO

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / ".artifacts"
"""Screenshots the browser tests leave for people to look at."""

try:
    from playwright import sync_api as playwright_api
except ImportError:
    pytest.fail("playwright is missing: `make install` installs it (the dev extra of pyproject.toml)", pytrace=False)
if not Path(CHROMIUM).exists():
    pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium (apt-get install chromium)",
                pytrace=False)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def keep_screenshot(shot: Path) -> Path:
    """Copy a screenshot into ``ARTIFACTS``; the copy's path."""
    ARTIFACTS.mkdir(exist_ok=True)
    return Path(shutil.copy(shot, ARTIFACTS / shot.name))
