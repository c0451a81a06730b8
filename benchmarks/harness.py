"""The HTTP harness the service benchmarks share: ``rfr`` on a fresh data directory, over loopback.

* :class:`Service` — the ``rfr`` command, its data directory and environment: ``command`` builds a CLI
  call, ``serve`` runs ``rfr serve`` on a free loopback port for the length of a ``with`` block.
* :func:`service_env` — that environment; :func:`rfr_command` — how ``rfr`` is run.
* :func:`obtain_token` — an analyst token from ``rfr users create ... --token --json``.
* :class:`ApiClient` — a thin client for the rfr HTTP API (the only place that knows about
  authentication), raising :class:`ApiError` on any error status.
* :func:`upload_images` and :func:`wait_complete` — a submission's multipart uploads in chunks, and
  polling until it is complete.

``httpx`` is imported only when a client is made, so a script's ``--help`` works without it.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

UploadFile = tuple[str, bytes, str]  # file name, content, MIME type


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rfr_command(spec: str | None = None) -> list[str]:
    """``spec`` split as a shell would (e.g. ``"rfr"``), or this Python's ``-m service.cli``."""
    if spec:
        return shlex.split(spec)
    return [sys.executable, "-m", "service.cli"]


def service_env(
    data_dir: Path,
    *,
    database_url: str | None = None,
    service_src: str | None = None,
    settings: dict[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment with ``RFR_DATA_DIR`` set and ``RFR_DATABASE_URL`` given or removed.

    Without ``database_url`` the service makes a fresh SQLite database in the fresh data directory.
    ``service_src`` goes first on ``PYTHONPATH``; ``settings`` are further ``RFR_*`` variables.
    """
    env = dict(os.environ)
    env["RFR_DATA_DIR"] = str(data_dir)
    if database_url:
        env["RFR_DATABASE_URL"] = database_url
    else:
        env.pop("RFR_DATABASE_URL", None)
    if settings:
        env.update(settings)
    if service_src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(service_src).resolve()), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    return env


@dataclass(slots=True)
class Service:
    """How to run ``rfr`` on one data directory."""

    rfr: list[str]
    data_dir: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        """``rfr --data-dir DATA_DIR ARGS``."""
        return [*self.rfr, "--data-dir", str(self.data_dir), *args]

    @contextmanager
    def serve(
        self, log_path: Path | None = None, options: Sequence[str] = ()
    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        """``rfr serve [OPTIONS]`` on a free loopback port: yields its base URL and process, and stops it after.

        The server's output goes to ``log_path`` (discarded without one).
        """
        port = free_port()
        cmd = self.command("serve", "--host", "127.0.0.1", "--port", str(port), *options)
        with open(log_path or os.devnull, "wb") as fh:
            proc = subprocess.Popen(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
            try:
                yield f"http://127.0.0.1:{port}", proc
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


def obtain_token(service: Service, name_prefix: str = "benchmark") -> tuple[str | None, str]:
    """An analyst token from ``rfr users create NAME --role analyst --token --json``, or none without that command.

    Returns the token (or ``None``) and a sentence saying where it came from. The password goes in on
    standard input (``--password-stdin`` when the CLI has it), so nothing waits on a terminal prompt.
    """
    password = secrets.token_urlsafe(24)
    name = f"{name_prefix}-{secrets.token_hex(3)}"
    base = ["users", "create", name, "--role", "analyst", "--token", "--json"]
    attempts = [([*base, "--password-stdin"], f"{password}\n"), (base, f"{password}\n{password}\n")]
    last = ""
    for args, stdin in attempts:
        try:
            done = subprocess.run(
                service.command(*args), env=service.env, input=stdin, text=True, capture_output=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"no token ({exc})"
        if done.returncode == 0:
            for line in reversed(done.stdout.strip().splitlines()):
                try:
                    payload = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(payload, dict) and payload.get("token"):
                    return str(payload["token"]), f"analyst token from `rfr users create ... {' '.join(args[3:])}`"
            return None, "no token: rfr users create printed no JSON with a token"
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = lines[-1] if lines else ""
        if "--password-stdin" not in last:
            break  # the command itself is missing or failed: no point in the second form
    return None, f"no token, requests sent without Authorization (rfr users create failed: {last})"


class ApiError(RuntimeError):
    pass


class ApiClient:
    """A thin client for the rfr HTTP API. ``token`` (when the service has users) goes in every request."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 300.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self.authenticated = token is not None

    def close(self) -> None:
        self._client.close()

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(
                f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:500]}"
            )
        return response.json()

    def get(self, path: str, **params: str | int | float) -> Any:
        return self._check(self._client.get(path, params=params or None))

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._check(self._client.post(path, json=body))

    def post_files(self, path: str, files: Sequence[UploadFile], data: dict[str, str] | None = None) -> Any:
        parts = [("files", (name, payload, mime)) for name, payload, mime in files]
        return self._check(self._client.post(path, files=parts, data=data or {}))

    def post_file(self, path: str, field: str, file: UploadFile, data: dict[str, str] | None = None) -> Any:
        """A multipart form of one file in ``field`` and text fields (e.g. ``POST /gallery/enrol``)."""
        return self._check(self._client.post(path, files={field: file}, data=data or {}))

    def wait_healthy(self, deadline_s: float, process: subprocess.Popen[Any]) -> dict[str, Any]:
        """``GET /health`` until it answers (``ApiError`` if ``process`` exits first or time runs out)."""
        import httpx

        end = time.monotonic() + deadline_s
        last = ""
        while time.monotonic() < end:
            if process.poll() is not None:
                raise ApiError(f"rfr serve exited with status {process.returncode} before it was healthy")
            try:
                health: dict[str, Any] = self.get("/health")
                return health
            except (httpx.TransportError, ApiError) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ApiError(f"rfr serve not healthy after {deadline_s:.0f} s: {last}")


def mime_of(data: bytes) -> tuple[str, str]:
    """The file suffix and MIME type of JPEG or PNG bytes (``.bin``, octet-stream otherwise)."""
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg", "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png", "image/png"
    return ".bin", "application/octet-stream"


def upload_images(
    client: ApiClient,
    submission_id: int,
    files: Sequence[UploadFile],
    chunk: int,
    data: dict[str, str] | None = None,
    provenance: Sequence[dict[str, str]] | None = None,
) -> list[int]:
    """``POST /submissions/{id}/images`` of ``files``, ``chunk`` a request; the image ids, in file order.

    ``data`` is every request's provenance; ``provenance``, one entry per file, overrides it per file.
    """
    ids: list[int] = []
    for lo in range(0, len(files), chunk):
        fields = dict(data or {})
        if provenance is not None:
            fields["provenance"] = json.dumps(list(provenance[lo : lo + chunk]))
        accepted = client.post_files(f"/submissions/{submission_id}/images", files[lo : lo + chunk], fields or None)
        ids += [int(image_id) for image_id in accepted["image_ids"]]
    return ids


def wait_complete(client: ApiClient, submission_id: int, poll_s: float) -> dict[str, Any]:
    """``GET /submissions/{id}`` every ``poll_s`` seconds until its status is ``complete``; the last status."""
    while True:
        status: dict[str, Any] = client.get(f"/submissions/{submission_id}")
        if status["status"] == "complete":
            return status
        time.sleep(poll_s)
