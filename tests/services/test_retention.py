"""The retention purge's sweep of stored files that no record names (an upload that died between
storing its files and committing their rows), on the real store and database."""

from __future__ import annotations

import os
import time

from service.db.image_store import sha256_bytes
from service.domain.roles import Principal, Role
from service.runtime import Runtime
from tests.conftest import lfw_path
from tests.fixtures import OPERATOR, submit_stills

ANALYST = Principal(username="ana", role=Role.ANALYST, via="test")
DAY = 24 * 3600


def age(runtime: Runtime, digest: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(runtime.store.path_for(digest), (then, then))


def test_a_purge_removes_old_files_no_record_names_and_nothing_else(runtime: Runtime) -> None:
    submit_stills(runtime, ANALYST, [("Jacques_Chirac", 2)])
    runtime.worker.run_until_empty()
    kept = sha256_bytes(lfw_path("Jacques_Chirac", 2).read_bytes())
    orphan = runtime.store.put(b"an interrupted upload's still " + os.urandom(16))
    young = runtime.store.put(b"a live upload's still, not committed yet " + os.urandom(16))
    for digest in (kept, orphan):
        age(runtime, digest, 2 * DAY)
    result = runtime.retention.purge(OPERATOR)
    assert result.orphan_files_deleted == 1
    assert not runtime.store.exists(orphan)
    assert runtime.store.exists(kept) and runtime.store.exists(young)
    assert runtime.retention.sweep_orphans() == 0
