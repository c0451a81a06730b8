"""The command line as a new operator meets it: options anywhere, a word on success, clear refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import free_port
from service.cli import globals_first
from service.config import Settings
from tests.cli.test_cli_and_crash import fresh_database, rfr, run
from tests.conftest import lfw_path


def _run(args: list[str], data_dir: Path, database: str, settings: Settings, stdin: str = "") -> tuple[int, str, str]:
    proc = rfr(args, data_dir, database, settings, stdin=subprocess.PIPE)
    out, err = proc.communicate(stdin, timeout=300)
    return proc.returncode, out, err


def test_global_options_go_before_or_after_the_command() -> None:
    assert globals_first(["users", "list", "--data-dir", "D", "-v"]) == ["--data-dir", "D", "-v", "users", "list"]
    assert globals_first(["--pack=p", "results", "3", "--json"]) == ["--pack=p", "results", "3", "--json"]
    assert globals_first(["review", "decide", "1", "--", "--data-dir"]) == ["review", "decide", "1", "--", "--data-dir"]


def test_a_new_operator_gets_answers_not_silence_or_tracebacks(
    tmp_path: Path, database: str, settings: Settings
) -> None:
    database = fresh_database(tmp_path, database)
    env_dir = tmp_path / "elsewhere"  # RFR_DATA_DIR points here; --data-dir after the command wins
    data_dir = tmp_path / "data"
    code, out, err = _run(
        ["users", "create", "rita", "--role", "reviewer", "--password-stdin", "--data-dir", str(data_dir)],
        env_dir,
        database,
        settings,
        stdin="Harbour-Lantern-Nine9\n",
    )
    assert code == 0 and out.strip() == "user rita: created reviewer", (out, err)
    listed = run(["users", "list", "--data-dir", str(data_dir)], env_dir, database, settings)
    assert [u["username"] for u in listed["users"]] == ["rita"]
    # The weak-password message names the rule it broke.
    code, _, err = _run(
        ["users", "create", "rita2", "--role", "analyst", "--password-stdin"], data_dir, database, settings,
        stdin="Rita2-Harbour-Lantern9\n",
    )  # fmt: skip
    assert code == 2 and "contains the user name 'rita2'" in err and "weak_password" in err
    # Without a terminal and without --password-stdin: a clear refusal, no EOFError.
    code, _, err = _run(["users", "create", "ann", "--role", "analyst"], data_dir, database, settings)
    assert code != 0 and "--password-stdin" in err and "Traceback" not in err
    # A search names its case and purpose, as the API requires.
    code, _, err = _run(["search", str(lfw_path("Colin_Powell", 1))], data_dir, database, settings)
    assert code == 2 and "--case" in err and "--purpose" in err


def test_rfr_serve_says_where_it_listens(tmp_path: Path, database: str, settings: Settings) -> None:
    database = fresh_database(tmp_path, database)
    port = free_port()
    env = {
        **os.environ,
        "RFR_DATA_DIR": str(tmp_path / "data"),
        "RFR_DATABASE_URL": database,
        "RFR_CACHE_DIR": str(settings.cache_dir),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        deadline, line = time.time() + 60, ""
        while time.time() < deadline and not line:
            line = proc.stderr.readline()
        assert re.search(rf"http://127\.0\.0\.1:{port}/", line), line
    finally:
        proc.terminate()
        proc.wait(30)
