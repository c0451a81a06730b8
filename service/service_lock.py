"""Tells whether a service is running on a data directory (an exclusive lock it holds while up)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class ServiceLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "service.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def service_running(self) -> bool:
        """True while another process holds the lock."""
        if self.acquire():
            self.release()
            return False
        return True
