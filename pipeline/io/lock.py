"""One job per output: ``DIR/lock.json`` holds the owner's pid and host; a dead owner's lock is taken over.

Local outputs create the lock with O_EXCL; object stores have no create-if-absent in fsspec, so the
lock is written and read back (a concurrent writer that wins the race is detected by its token).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

from pipeline.io.storage import Storage

NAME = "lock.json"


class LockBusy(RuntimeError):
    """Another live job holds the output."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal still counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "token": uuid.uuid4().hex,
        }
        self.took_over: dict | None = None

    def _create(self) -> bool:
        data = json.dumps(self.owner).encode()
        if self.storage.local:
            try:
                fd = os.open(f"{self.storage.root}/{NAME}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if self.storage.exists(NAME):
            return False
        self.storage.write(NAME, data)
        return json.loads(self.storage.read(NAME)).get("token") == self.owner["token"]

    def _holder(self) -> dict:
        try:
            return json.loads(self.storage.read(NAME))
        except FileNotFoundError:
            return {}
        except ValueError:  # a lock file cut short by a crash while it was written: its owner is gone
            return {"pid": -1, "host": self.owner["host"]}

    def acquire(self) -> None:
        for _ in range(3):
            if self._create():
                return
            held = self._holder()
            if not held:
                continue  # released between our attempt and the read
            if held.get("host") == self.owner["host"] and not pid_alive(int(held.get("pid", -1))):
                self.storage.remove(NAME)  # stale: its process is dead
                self.took_over = held
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("since", 0)))
            raise LockBusy(
                f"{self.storage}: another job holds this output (pid {held.get('pid')} on "
                f"{held.get('host')}, since {since}); if that job is gone, delete "
                f"{self.storage}/{NAME} and rerun"
            )
        raise LockBusy(f"{self.storage}: could not take the lock (it changed hands repeatedly)")

    def release(self) -> None:
        if self._holder().get("token") == self.owner["token"]:
            self.storage.remove(NAME)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *_) -> None:
        self.release()
