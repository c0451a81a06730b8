"""What runs on a data directory, told by locks its processes hold while up (``flock``, of this host).

* ``ServiceLock`` — ``service.lock``, exclusive: one ``rfr serve`` per data directory.
* ``WorkerLock`` — ``worker.lock``, shared: held by every process of this data directory that runs
  the job worker (``rfr serve`` with its worker, each ``rfr worker``).

``rfr submit`` leaves the queue to them when either is held, and processes it itself otherwise.
The data directory belongs to one host (its SQLite file, index replica, audit checkpoints), so
these locks never need to work across hosts; workers of other hosts coordinate through the
database's leases alone.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class ServiceLock:
    """An exclusive lock file in the data directory (``shared``: a lock many processes hold at once)."""

    NAME = "service.lock"

    def __init__(self, data_dir: Path, shared: bool = False) -> None:
        self.path = data_dir / self.NAME
        self.shared = shared
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        if not self.shared:
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
        """True while another process holds the lock (in either mode)."""
        if not self.path.exists():
            return False
        with self.path.open("a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


class WorkerLock(ServiceLock):
    """Held, shared, by every process running the job worker on this data directory."""

    NAME = "worker.lock"

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, shared=True)


def queue_served(data_dir: Path) -> bool:
    """True while a service or a worker runs on ``data_dir``: ``rfr submit`` then leaves them the queue."""
    return ServiceLock(data_dir).service_running() or WorkerLock(data_dir).service_running()
