"""Local accounts, sign-in and bearer tokens (R10).

Passwords are hashed with argon2id (salted, slow). Tokens are 256-bit random strings shown once;
only their sha256 is stored. There is no default account and no default password: the first
admin is created with ``rfr users create NAME --role admin``, which refuses weak or well-known
passwords.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import read_session
from service.db.models import ApiToken, User
from service.domain.roles import Principal, Role
from service.errors import Conflict, InvalidRequest, NotFound, TooManyAttempts, Unauthenticated
from service.services import audit
from service.services.views import UserOut

MIN_PASSWORD_LENGTH = 12
# Plain ASCII names only: no control characters (NUL), no look-alike letters from other scripts.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
WELL_KNOWN = {
    "password", "password1", "password123", "changeme", "changeme123", "admin", "administrator", "admin123",
    "letmein", "welcome", "welcome1", "qwerty", "qwertyuiop", "123456789012", "default", "secret", "rfr",
    "retailcrime", "police123",
}  # fmt: skip

_hasher = PasswordHasher()


TOKEN_PREFIX = "rfr_"


def check_password_policy(username: str, password: str) -> None:
    lowered = password.lower()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"password must have at least {MIN_PASSWORD_LENGTH} characters", code="weak_password")
    if lowered in WELL_KNOWN or lowered.rstrip("0123456789!") in WELL_KNOWN:
        raise InvalidRequest("password is a default or well-known password", code="weak_password")
    if username.lower() in lowered:
        raise InvalidRequest(f"password contains the user name {username!r}", code="weak_password")
    if len(set(password)) < 5:
        raise InvalidRequest("password has too few distinct characters", code="weak_password")


def new_token() -> str:
    """A random 256-bit token; the prefix keeps it from starting with ``-``, which a command line would
    read as an option (``rfr review --token -Xa...`` failed for one token in 64)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _principal(user: User, via: str) -> Principal:
    return Principal(username=user.username, role=Role(user.role), user_id=user.id, via=via)


# Who a failed sign-in is recorded as: never the typed name (that goes in the event's details).
UNAUTHENTICATED = Principal(username="unauthenticated", role=Role.ANALYST, via="api")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches in practice, checked for unknown users so they take as long."""
    return _hasher.hash(secrets.token_urlsafe(32))


class LoginThrottle:
    """Failed sign-ins in a sliding window, per user name and per address (in this process)."""

    def __init__(self, per_user: int = 5, per_address: int = 20, window_s: float = 900.0) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def refusal(self, username: str, address: str) -> int:
        """Seconds to wait before trying again (0: go ahead)."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self.window_s - (now - times[-self.limits[kind]])
                for kind, value in (("user", username.lower()), ("address", address))
                if value and len(times := self._recent((kind, value), now)) >= self.limits[kind]
            ]
        return max(1, int(max(waits)) + 1) if waits else 0

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for kind, value in (("user", username.lower()), ("address", address)):
                if value:
                    self._recent((kind, value), now).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username.lower()), None)


class UserService:
    def __init__(
        self, factory: sessionmaker[Session], session_hours: float, throttle: LoginThrottle | None = None
    ) -> None:
        self.factory = factory
        self.session_hours = session_hours
        self.throttle = throttle or LoginThrottle()

    def count(self) -> int:
        with self.factory() as session:
            return int(session.scalar(select(func.count()).select_from(User)) or 0)

    def create(self, actor: Principal, username: str, role: str, password: str) -> int:
        name = username.strip()
        if not USERNAME.fullmatch(name):
            raise InvalidRequest(
                "user name must be 1-128 characters: ASCII letters, digits and . _ @ -, starting with a letter or digit"
            )
        try:
            role_value = Role(role)
        except ValueError as exc:
            raise InvalidRequest(f"unknown role {role!r}; roles: {[r.value for r in Role]}") from exc
        check_password_policy(name, password)
        with self.factory() as session, session.begin():
            # A name that differs from another only in case (Rita, rita) is refused: it would pass for it.
            taken = session.scalar(select(User.username).where(func.lower(User.username) == name.lower()))
            if taken is not None:
                raise Conflict(f"user {taken!r} already exists" + ("" if taken == name else f" (like {name!r})"))
            user = User(username=name, role=role_value.value, password_hash=_hasher.hash(password))
            session.add(user)
            session.flush()
            audit.append(session, actor, "user_created", "user", user.id, username=name, role=role_value.value)
            return int(user.id)

    def _user(self, session: Session, username: str) -> User:
        # A name no account can have (a NUL, a control character) is not looked up: PostgreSQL refuses NUL.
        user = session.scalar(select(User).where(User.username == username)) if USERNAME.fullmatch(username) else None
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    def set_disabled(self, actor: Principal, username: str, disabled: bool) -> None:
        with self.factory() as session, session.begin():
            user = self._user(session, username)
            if disabled and user.role == Role.ADMIN.value and not user.disabled:
                others = session.scalar(
                    select(func.count())
                    .select_from(User)
                    .where(User.role == Role.ADMIN.value, User.disabled.is_(False), User.id != user.id)
                )
                if not others:
                    raise Conflict(f"{username!r} is the last enabled admin: enable or create another admin first")
            user.disabled = disabled
            if disabled:
                session.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
            audit.append(
                session, actor, "user_disabled" if disabled else "user_enabled", "user", user.id, username=username
            )

    def reset_password(self, actor: Principal, username: str, password: str) -> None:
        check_password_policy(username, password)
        with self.factory() as session, session.begin():
            user = self._user(session, username)
            user.password_hash = _hasher.hash(password)
            user.password_changed_at = datetime.now(UTC)
            session.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
            audit.append(session, actor, "password_reset", "user", user.id, username=username)

    def issue_token(self, actor: Principal, username: str, kind: str = "api") -> str:
        """A new API token for a script; shown once, only its hash is stored."""
        token = new_token()
        with self.factory() as session, session.begin():
            user = self._user(session, username)
            if user.disabled:
                raise InvalidRequest(f"user {username!r} is disabled")
            session.add(ApiToken(user_id=user.id, token_hash=token_hash(token), kind=kind))
            audit.append(session, actor, "token_issued", "user", user.id, username=username, kind=kind)
        return token

    def login(
        self, username: str, password: str, address: str = "", via: str = "api"
    ) -> tuple[str, Principal, datetime]:
        """Check a password; on success a session token. Both outcomes are audited, with the door it
        came in by (``via``: ``api`` or ``web``, the sign-in page).

        Unknown users and disabled ones cost the same password check as known ones (the timing tells
        no one who exists). After repeated failures for a user name, or from an address, sign-in is
        refused for a while (``TooManyAttempts``, 429), before any password is checked."""
        typed = username[:128].encode("unicode_escape").decode("ascii")  # as typed, NUL and controls escaped
        anonymous = replace(UNAUTHENTICATED, via=via)
        wait = self.throttle.refusal(typed, address)
        if wait:
            with self.factory() as session, session.begin():
                audit.append(
                    session, anonymous, "login_throttled", "user", "", as_role="none",
                    typed_username=typed, address=address,
                )  # fmt: skip
            raise TooManyAttempts(f"too many failed sign-ins: try again in {wait} s")
        with self.factory() as session, session.begin():
            user = (
                session.scalar(select(User).where(User.username == username)) if USERNAME.fullmatch(username) else None
            )
            ok = _verify(user.password_hash if user is not None and not user.disabled else _dummy_hash(), password)
            ok = ok and user is not None and not user.disabled
            if not ok or user is None:
                audit.append(
                    session,
                    anonymous,
                    "login_failed",
                    "user",
                    user.id if user else "",
                    as_role="none",
                    typed_username=typed,
                    address=address,
                    reason="disabled" if user is not None and user.disabled else "bad credentials",
                )
                failed = True
            else:
                failed = False
                if _hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = _hasher.hash(password)
                token = new_token()
                expires = datetime.now(UTC) + timedelta(hours=self.session_hours)
                session.add(ApiToken(user_id=user.id, token_hash=token_hash(token), kind="session", expires_at=expires))
                principal = _principal(user, via)
                audit.append(session, principal, "login", "user", user.id)
        if failed:
            self.throttle.failed(typed, address)
            raise Unauthenticated("user name or password is wrong, or the account is disabled")
        self.throttle.succeeded(typed)
        return token, principal, expires

    def logout(self, token: str) -> None:
        with self.factory() as session, session.begin():
            session.execute(update(ApiToken).where(ApiToken.token_hash == token_hash(token)).values(revoked=True))

    def authenticate(self, token: str, via: str = "api") -> Principal:
        """The principal a bearer token stands for, or ``Unauthenticated``."""
        now = datetime.now(UTC)
        with self.factory() as session:
            row = session.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == token_hash(token))
            ).first()
        if row is None:
            raise Unauthenticated("unknown or revoked token")
        api_token, user = row
        expires = api_token.expires_at
        if api_token.revoked or user.disabled or (expires is not None and expires < now):
            raise Unauthenticated("token revoked or expired, or the account is disabled")
        return _principal(user, via)

    def list(self) -> list[UserOut]:
        with read_session(self.factory) as session:
            return [
                UserOut(id=u.id, username=u.username, role=u.role, disabled=u.disabled, created_at=u.created_at)
                for u in session.scalars(select(User).order_by(User.id))
            ]
