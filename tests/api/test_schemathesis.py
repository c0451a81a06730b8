"""A bounded schemathesis run against the live service's own ``/openapi.json`` (issue 16): with an
admin's, a confirmer's and an analyst's token, generated and boundary requests to every operation
get no 500 and no status the document does not declare."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from benchmarks.harness import free_port
from service.app import create_app
from service.runtime import Runtime

ROLES = ("adam", "cora", "ana")  # admin, confirmer, analyst
EXAMPLES = 10  # per operation and phase: bounded, about half a minute per role on this machine


def schemathesis_cli() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    return found


@pytest.fixture(scope="module")
def server(runtime: Runtime, tokens: dict[str, str]) -> Iterator[str]:
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    assert uv.started, "the service did not start"
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("user", ROLES)
def test_no_500_and_no_undocumented_status(server: str, tokens: dict[str, str], user: str) -> None:
    command = [
        schemathesis_cli(),
        "run",
        f"{server}/openapi.json",
        "--header",
        f"Authorization: Bearer {tokens[user]}",
        "--max-examples",
        str(EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--checks",
        "not_a_server_error,status_code_conformance",
        "--seed",
        "16",
        # Signing out would revoke the token the rest of the run uses.
        "--exclude-path",
        "/auth/logout",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested.group(1)) >= 35, result.stdout[-3000:]  # every operation but logout
