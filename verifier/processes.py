"""Worker processes run in their own session; ending one ends everything it started."""
from __future__ import annotations

import os
import signal


def kill_group(pid: int) -> None:
    """SIGKILL to the process group led by `pid`; to the process alone if it has not made its group yet."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except ProcessLookupError:
            continue
