"""Named crash points for the crash-safety tests: `MAKEANYTHING_FAILPOINT=name[:n]` makes the process
SIGKILL itself the n-th time (default 1st) it passes `name`. Unset in normal use: one dict lookup."""

from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter = Counter()


def failpoint(name: str) -> None:
    spec = os.environ.get("MAKEANYTHING_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target == name:
        _seen[name] += 1
        if _seen[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
