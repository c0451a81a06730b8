"""``rfr serve``: the HTTP service on the data directory (one per directory, held by a lock);
``--no-worker`` serves the API and pages only, leaving the queue to ``rfr worker`` processes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.cli.common import settings
from service.service_lock import ServiceLock, WorkerLock


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the HTTP service on the data directory")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8700)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="serve the API and pages only; 'rfr worker' processes (on any host) process the queue",
    )
    serve.set_defaults(func=cmd_serve, long_running=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    config = settings(args)
    if args.no_worker:
        config = config.model_copy(update={"worker": config.worker.model_copy(update={"enabled": False})})
    lock = ServiceLock(config.data_dir)
    if not lock.acquire():
        raise SystemExit(f"rfr serve: a service is already running on {config.data_dir}")
    working = WorkerLock(config.data_dir)
    if config.worker.enabled:
        working.acquire()
    host, port = args.host or config.host, args.port or config.port
    role = "API and pages only, no worker" if not config.worker.enabled else "with its worker"
    sys.stderr.write(
        f"rfr serve: http://{host}:{port}/ (pages at /ui, API docs at /docs; {role}) on {config.data_dir};"
        " Ctrl-C stops\n"
    )
    sys.stderr.flush()
    try:
        uvicorn.run(
            create_app(config),
            host=host,
            port=port,
            log_level="info" if args.verbose else "warning",
        )
    finally:
        working.release()
        lock.release()
    return 0
