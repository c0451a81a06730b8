"""The audit trail's anchor outside the database: a key and an append-only checkpoint file.

Someone who can write the database can recompute a sha256 chain, cut its tail or empty it; he
cannot do so unseen without the key, which the database does not hold:

* every event carries ``mac = HMAC-SHA256(key, "rfr-audit-event-v1:<seq>:<hash>")`` (its hash
  covers its content and the hash before it), so an edited, inserted, reordered or recomputed
  event fails its MAC;
* after every commit that appended events the service appends one checkpoint line — the last
  sequence number and hash it wrote, HMAC'd — to the checkpoint file (one ``write`` with
  ``O_APPEND``, then ``fsync``). Every checkpoint must still name an event of the trail with that
  hash, so a cut tail (with or without the head row), an emptied trail or a trail cut and written
  again is seen. The first line, ``kind: anchor``, says from which event on MACs are required:
  events written before the key existed (an older database) are reported as unanchored.

The key is 32 random bytes, hex, in a file created ``0600`` (its folder ``0700``) on first use;
a key file that others may read is refused. This module knows no database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.durable_files import fsync_directory
from service.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_EVENT_CONTEXT = "rfr-audit-event-v1"
_LINE_CONTEXT = "rfr-audit-checkpoint-v1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class Problem(StrEnum):
    """What ``rfr audit verify`` found wrong (``Verification.kind``)."""

    MISSING_EVENT = "missing_event"  # a sequence number is absent: an event was deleted
    OUT_OF_ORDER = "out_of_order"  # prev_hash does not follow: reordered or inserted
    EDITED = "edited"  # content does not match its hash
    MAC_MISSING = "mac_missing"  # an anchored event without a MAC: written without the key
    MAC_MISMATCH = "mac_mismatch"  # the MAC does not match: chain recomputed or row forged
    TRUNCATED = "truncated"  # a checkpoint names an event the trail no longer has
    REPLACED = "replaced"  # a checkpoint names an event the trail has with another hash
    HEAD_MISSING = "head_missing"  # the audit_head row is gone
    HEAD_MISMATCH = "head_mismatch"  # the audit_head row does not name the last event
    CHECKPOINT_UNREADABLE = "checkpoint_unreadable"
    CHECKPOINT_FORGED = "checkpoint_forged"  # a checkpoint line fails its MAC
    CHECKPOINT_OTHER_KEY = "checkpoint_other_key"  # made with another key (wrong key file?)
    ANCHOR_MISSING = "anchor_missing"  # key present, but the checkpoint file or its anchor line is not


class AuditKey:
    """The secret the database does not hold."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ConfigurationError("the audit key must be at least 32 bytes")
        self._secret = secret
        self.key_id = self.mac("rfr-audit-key-id")[:16]

    def mac(self, message: str) -> str:
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def event_mac(self, seq: int, event_hash: str) -> str:
        return self.mac(f"{_EVENT_CONTEXT}:{seq}:{event_hash}")

    def __repr__(self) -> str:  # never the secret
        return f"AuditKey(key_id={self.key_id})"


def read_key(path: Path) -> AuditKey | None:
    """The key in ``path`` (None: no such file). Refused if group or others may read or write it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the audit key file {path}: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"the audit key file {path} is open to group or others (mode {stat.S_IMODE(mode):o}): chmod 600 it"
            )
        text = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        secret = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigurationError(f"the audit key file {path} does not hold a hex key") from exc
    return AuditKey(secret)


def create_key(path: Path) -> tuple[AuditKey, bool]:
    """A new key in ``path`` (``0600``, folder ``0700``), or the one another process just made:
    ``(key, created)``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = read_key(path)
        if key is None:
            raise ConfigurationError(f"the audit key file {path} vanished while it was created") from None
        return key, False
    secret = secrets.token_bytes(32)
    try:
        os.write(fd, (secret.hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)
    return AuditKey(secret), True


@dataclass(frozen=True, slots=True)
class CheckpointLog:
    """What the checkpoint file says, sorted by seq; ``problem`` names the first bad line."""

    anchored_from: int | None
    seqs: np.ndarray  # int64, ascending
    digests: np.ndarray  # uint8 (n, 32): the hash each checkpoint names, aligned with seqs
    problem: tuple[Problem, int | None, str] | None = None

    @property
    def last_seq(self) -> int | None:
        return int(self.seqs[-1]) if len(self.seqs) else None

    def digest(self, index: int) -> str:
        return bytes(self.digests[index]).hex()


class AuditAnchor:
    """The key and the append-only checkpoint file (one JSON line per commit that appended events)."""

    def __init__(self, path: Path, key: AuditKey) -> None:
        self.path = path
        self.key = key

    def exists(self) -> bool:
        return self.path.exists()

    def write_anchor(self, anchored_from: int, last_hash: str) -> None:
        """The first line: MACs are required from ``anchored_from`` on (the trail then ended at the event before)."""
        self._append({"kind": "anchor", "from": anchored_from, "seq": anchored_from - 1, "hash": last_hash})

    def write(self, seq: int, event_hash: str) -> None:
        """Record that the trail reached ``seq`` with ``event_hash``. Never raises: the commit it
        follows is done; a failure is logged (and verify then sees a longer trail than checkpointed)."""
        try:
            self._append({"kind": "checkpoint", "seq": seq, "hash": event_hash})
        except OSError:
            log.exception("could not write the audit checkpoint for event %s to %s", seq, self.path)

    def _append(self, fields: dict[str, Any]) -> None:
        body = {**fields, "at": datetime.now(UTC).isoformat(timespec="microseconds"), "key": self.key.key_id}
        line = canonical_json({**body, "mac": self.key.mac(_LINE_CONTEXT + canonical_json(body))}) + "\n"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write of one line: O_APPEND keeps concurrent writers whole
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, also: Sequence[Path] = ()) -> CheckpointLog:
        """Every line checked against the key; the checkpoints sorted by seq (numpy: 40 bytes a line).

        ``also``: the checkpoint files of other hosts' processes on this trail (``rfr worker`` hosts,
        each appending its own commits' checkpoints); their lines are checked and counted the same
        way. Only this file's anchor line says from which event on MACs are required."""
        import numpy as np  # only verification needs it; commands that merely append do not load it

        seqs: list[int] = []
        digests = bytearray()
        anchored_from: int | None = None
        problem: tuple[Problem, int | None, str] | None = None
        for path in (self.path, *also):
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                missing = (Problem.ANCHOR_MISSING, None, f"the checkpoint file {path} is missing")
                if path == self.path:
                    return CheckpointLog(None, np.zeros(0, np.int64), np.zeros((0, 32), np.uint8), missing)
                problem = problem or missing
                continue
            with handle:
                for number, raw in enumerate(handle, start=1):
                    line = self._check(raw, number, path)
                    if isinstance(line, tuple):
                        problem = problem or line
                        continue
                    if line["kind"] == "anchor" and anchored_from is None and path == self.path:
                        anchored_from = int(line["from"])
                    seqs.append(int(line["seq"]))
                    digests += bytes.fromhex(line["hash"])
        if anchored_from is None and problem is None:
            problem = (Problem.ANCHOR_MISSING, None, f"the checkpoint file {self.path} has no anchor line")
        seq_array = np.asarray(seqs, np.int64)
        order = np.argsort(seq_array, kind="stable")
        return CheckpointLog(
            anchored_from, seq_array[order], np.frombuffer(digests, np.uint8).reshape(-1, 32)[order], problem
        )

    def _check(self, raw: bytes, number: int, path: Path) -> dict[str, Any] | tuple[Problem, int | None, str]:
        where = f"checkpoint line {number}" + ("" if path == self.path else f" of {path}")
        try:
            line = json.loads(raw)
            body = {k: v for k, v in line.items() if k != "mac"}
            seq = int(body["seq"])
            if body["kind"] not in ("anchor", "checkpoint") or len(bytes.fromhex(body["hash"])) != 32:
                raise ValueError(body["kind"])
            if body["kind"] == "anchor":
                int(body["from"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return (Problem.CHECKPOINT_UNREADABLE, None, f"{where} is unreadable")
        if body.get("key") != self.key.key_id:
            return (
                Problem.CHECKPOINT_OTHER_KEY,
                seq,
                f"{where} was made with another key ({body.get('key')}; this key is {self.key.key_id})",
            )
        if not hmac.compare_digest(str(line.get("mac", "")), self.key.mac(_LINE_CONTEXT + canonical_json(body))):
            return (Problem.CHECKPOINT_FORGED, seq, f"{where} fails its MAC (forged or altered)")
        return dict(body)
