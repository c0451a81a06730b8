"""Commands that need no model run on the storage tier: they never import onnxruntime or faiss.

Each command runs in a fresh interpreter (``python -c`` calling ``service.cli.main``) that, after
``main()`` returns, fails with exit 99 naming any module of the model or index tier it imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple\n"

# Run in the child: main(argv), then refuse if the full tier was imported.
GUARD = """
import sys
from service.cli import main
code = main(sys.argv[1:])
heavy = sorted(
    m for m in sys.modules
    if m.split(".")[0] in {"onnxruntime", "faiss", "uvicorn"}
    or m == "service.app" or m == "service.embeddings.pipeline"
    or m == "service.index" or m.startswith("service.index.")
)
if heavy:
    sys.stderr.write("imported the full tier: " + " ".join(heavy) + "\\n")
    sys.exit(99)
sys.exit(code)
"""


def run_guarded(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFR_")}
    return subprocess.run(
        [sys.executable, "-c", GUARD, "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def test_the_guard_sees_the_full_tier() -> None:
    """The guard is not vacuous: importing the face pipeline in the child is caught."""
    guard = GUARD.replace("code = main(sys.argv[1:])", "import service.embeddings.pipeline\ncode = 0")
    done = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 99, done.stderr
    assert "onnxruntime" in done.stderr


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage-tier")


@pytest.fixture(scope="module")
def reviewer_token(data_dir: Path) -> str:
    admin = run_guarded(data_dir, "users", "create", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert admin.returncode == 0, admin.stderr
    reviewer = run_guarded(
        data_dir, "users", "create", "rita", "--role", "reviewer", "--password-stdin", "--token", stdin=PASSWORD
    )
    assert reviewer.returncode == 0, reviewer.stderr
    token: str = json.loads(reviewer.stdout)["token"]
    return token


def test_users_list_imports_neither_onnxruntime_nor_faiss(data_dir: Path, reviewer_token: str) -> None:
    done = run_guarded(data_dir, "users", "list")
    assert done.returncode == 0, done.stderr
    names = {user["username"]: user["role"] for user in json.loads(done.stdout)["users"]}
    assert names == {"root": "admin", "rita": "reviewer"}


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "verify", "--json"),
        ("purge", "--json"),
        ("unknowns", "--json"),
        ("prolific", "--json"),
    ],
    ids=lambda args: " ".join(args),
)
def test_storage_commands_stay_off_the_model(data_dir: Path, reviewer_token: str, args: tuple[str, ...]) -> None:
    done = run_guarded(data_dir, *args)
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)


def test_review_queue_with_a_token_stays_off_the_model(data_dir: Path, reviewer_token: str) -> None:
    done = run_guarded(data_dir, "review", "queue", "--token", reviewer_token)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"queue": []}


def test_a_service_error_on_the_storage_tier_exits_2_off_the_model(data_dir: Path, reviewer_token: str) -> None:
    done = run_guarded(data_dir, "results", "12345")
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stderr)["error"]["code"] == "not_found"
