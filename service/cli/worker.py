"""``rfr worker``: the job worker alone, on any host, against the shared database.

Any number of workers, on any number of hosts, lease batches from the one queue in the database
(``service.services.worker``); each holds its own replica of the gallery index (in its data
directory, reconciled with the database's gallery version before each search) and reads the
images from the store every host shares (``RFR_STORE__PATH``). SIGTERM or Ctrl-C stops it after
the batch in hand is stored; a worker killed outright leaves its batch leased, and another worker
takes it over when the lease expires (``RFR_WORKER__LEASE_SECONDS``; a worker of its own host that
starts sooner re-queues it at once).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from service.cli.common import emit, open_runtime
from service.service_lock import WorkerLock


def add_parser(sub: Any) -> None:
    worker = sub.add_parser("worker", help="run the job worker alone (any number, on any host, one database)")
    worker.add_argument(
        "--until-empty", action="store_true", help="process what is queued, then exit (default: run until stopped)"
    )
    worker.add_argument("--json", action="store_true", help="print a JSON line when ready and when stopped")
    worker.set_defaults(func=cmd_worker, long_running=True)


def cmd_worker(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def stop_on_signal(signum: int, frame: object) -> None:
        stop.set()

    with open_runtime(args) as runtime:
        settings = runtime.settings
        if not settings.resolved_database_url.startswith("postgresql"):
            sys.stderr.write(
                "rfr worker: the database is SQLite, which only processes of this host can share; "
                "workers on other hosts need a shared PostgreSQL (RFR_DATABASE_URL)\n"
            )
        runtime.check_store()  # this host sees the images the others stored
        lock = WorkerLock(settings.data_dir)
        lock.acquire()  # shared: tells 'rfr submit' on this data directory that the queue is served
        worker = runtime.worker
        ready = {
            "worker": worker.name,
            "pack": runtime.pack_id,
            "gallery_templates": runtime.holder.index.count,
            "store": str(runtime.store.root),
        }
        if args.json:
            emit({"ready": ready})
        else:
            sys.stderr.write(f"rfr worker: {worker.name} ready ({ready['gallery_templates']} gallery templates)\n")
            sys.stderr.flush()
        try:
            if args.until_empty:
                processed = worker.run_until_empty()
            else:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, stop_on_signal)
                worker.start()
                stop.wait()
                worker.stop()
                processed = None
            runtime.gallery.save_index()  # the next start loads this replica instead of rebuilding it
        finally:
            lock.release()
    if args.json:
        emit({"stopped": worker.name, "processed": processed})
    return 0
