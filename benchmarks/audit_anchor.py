"""Issue 16 item 2: what anchoring the audit trail outside the database costs.

1. Audited commits per second on one database, one event a commit (a view, a login: the common
   case), through ``audit.append`` in sessions of a factory without the anchor and of one with it
   (an HMAC per event, and after each commit one checkpoint line appended and fsynced). Both pay
   the head repair's look-up of the last event.
2. ``audit.verify`` of a trail of ``--commits`` such commits (every hash, MAC and checkpoint),
   events per second, and the checkpoint file's size per commit.

    python -m benchmarks.audit_anchor --commits 2000
    python -m benchmarks.audit_anchor --database-url postgresql+psycopg://rfr:rfr@127.0.0.1:5432/rfr_bench
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.common import default_out, stamp, write_json
from service.db.engine import make_engine, migrate, session_factory
from service.domain.roles import operator_principal
from service.services import audit


def commits_per_second(factory: sessionmaker[Session], commits: int) -> float:
    actor = operator_principal()
    start = time.perf_counter()
    for n in range(commits):
        with factory() as session, session.begin():
            audit.append(session, actor, "benchmark_view", "thing", n)
    return commits / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=2000, help="audited commits per variant")
    parser.add_argument("--database-url", help="an empty database (default SQLite in a temporary folder)")
    parser.add_argument("--out", type=Path, default=default_out("audit_anchor"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rfr-audit-bench-") as tmp:
        root = Path(tmp)
        url = args.database_url or f"sqlite:///{root / 'rfr.db'}"
        engine = make_engine(url)
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))
            conn.execute(text("DELETE FROM audit_head"))
        plain = session_factory(engine)
        anchored = session_factory(engine)
        anchor = audit.open_anchor(anchored, root / "keys" / "audit.key", root / "keys" / "audit-checkpoints.jsonl")
        commits_per_second(plain, 50)  # warm-up (and events before the anchor: they verify as unanchored)
        commits_per_second(anchored, 50)
        rates: dict[str, list[float]] = {"plain": [], "anchored": []}
        for _ in range(3):  # interleaved, so a busy neighbour on the machine costs both alike
            rates["plain"].append(commits_per_second(plain, args.commits // 3))
            rates["anchored"].append(commits_per_second(anchored, args.commits // 3))
        # A trail written wholly with the anchor (the plain writes above would rightly fail it).
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))
            conn.execute(text("DELETE FROM audit_head"))
        anchor.path.unlink()
        anchored = session_factory(engine)
        anchor = audit.open_anchor(anchored, anchor.path.parent / "audit.key", anchor.path)
        commits_per_second(anchored, args.commits)
        start = time.perf_counter()
        result = audit.verify(anchored, anchor)
        verify_s = time.perf_counter() - start
        checkpoint_bytes = anchor.path.stat().st_size
        lines = sum(1 for _ in anchor.path.open("rb"))
        engine.dispose()
    best = {k: max(v) for k, v in rates.items()}
    payload: dict[str, Any] = {
        "meta": stamp("none", database=url.split(":", 1)[0], commits=args.commits),
        "commits_per_s": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "best_commits_per_s": {k: round(v, 1) for k, v in best.items()},
        "anchored_cost_ms_per_commit": round(1000 / best["anchored"] - 1000 / best["plain"], 3),
        "verify": {
            "ok": result.ok,
            "kind": result.kind,
            "events": result.events,
            "unanchored": result.unanchored,
            "seconds": round(verify_s, 3),
            "events_per_s": round(result.events / verify_s, 1),
        },
        "checkpoint_file": {
            "lines": lines,
            "bytes": checkpoint_bytes,
            "bytes_per_line": round(checkpoint_bytes / lines),
        },
    }
    write_json(args.out, payload)
    sys.stdout.write(f"{payload}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
