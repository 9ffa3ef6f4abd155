"""`voicebot worker` whose first handoff delivery stalls until the test kills it.

The fault tests run this file as a script instead of `python -m voicebot worker`, to catch a
work-horse in the middle of a delivery: the first delivery (of any worker sharing ``STALL_FILE``)
writes the work-horse's pid to that file and sleeps; every later one is the real
``voicebot.handoff.jobs.deliver``. RQ forks the work-horse from this process, so the horse runs
the replaced function. Nothing of the service imports this file.
"""

from __future__ import annotations

import os
import sys
import time

from voicebot.cli import main
from voicebot.handoff import jobs

STALL_FILE = os.environ["STALL_FILE"]
STALL_SECONDS = 300.0
"""Far longer than any test waits for the pid: the test kills the horse first."""

real_deliver = jobs.deliver


def stalling_deliver(*args, **kwargs):
    try:
        fd = os.open(STALL_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return real_deliver(*args, **kwargs)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(STALL_SECONDS)
    return real_deliver(*args, **kwargs)


jobs.deliver = stalling_deliver

if __name__ == "__main__":
    sys.exit(main(["worker"], prog_name="voicebot"))
