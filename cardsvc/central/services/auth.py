"""Request authentication: every API request is signed by the terminal's registered P-256 key.

Headers: ``X-Terminal-Id`` (16 hex digits), ``X-Timestamp`` (unix seconds), ``X-Nonce`` (16-64 characters of
[A-Za-z0-9_-]) and ``X-Signature`` (base64 raw r||s) over :func:`request_message`. A request is refused when
unsigned, stale (outside the window), from an unknown or revoked terminal, badly signed, or replaying a nonce
(nonces are remembered per terminal for twice the window). The wire details are in docs/api.md.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.central.errors import AuthenticationError, ForbiddenError
from cardsvc.central.models import NonceRow
from cardsvc.central.services.terminals import TerminalDirectory, TerminalInfo
from cardsvc.formats.batch import b64encode, id_hex
from cardsvc.formats.errors import FormatError
from cardsvc.formats.transaction import sign_raw, verify_raw_signature

CONTEXT: Final = b"CARDSVC-REQUEST-V1"
DEFAULT_WINDOW: Final = 300
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TERMINAL = re.compile(r"[0-9a-f]{16}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
HEADERS: Final = ("X-Terminal-Id", "X-Timestamp", "X-Nonce", "X-Signature")


def request_message(
    method: str, path: str, terminal_id: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """What the terminal signs: context, method, path with query, terminal, time, nonce, SHA-256(body)."""
    parts = [CONTEXT, method.upper().encode(), path.encode(), terminal_id.encode(), timestamp.encode()]
    parts += [nonce.encode(), hashlib.sha256(body).hexdigest().encode()]
    return b"\n".join(parts)


def sign_request(
    key: ec.EllipticCurvePrivateKey, terminal_id: int, method: str, path: str, body: bytes, now: int,
    nonce: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """The four headers a terminal sends (client side; also used by tests and the benchmark)."""
    nonce = nonce if nonce is not None else secrets.token_urlsafe(18)
    tid, ts = id_hex(terminal_id), str(now)
    signature = sign_raw(key, request_message(method, path, tid, ts, nonce, body))
    return {"X-Terminal-Id": tid, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": b64encode(signature)}


def authenticate(
    session: Session, directory: TerminalDirectory, headers: Mapping[str, str], method: str, path: str,
    body: bytes, now: int, window: int = DEFAULT_WINDOW,
) -> TerminalInfo:  # fmt: skip
    """Return the authenticated terminal or raise the refusal (checks in the order that leaks least)."""
    values = {name: headers.get(name) for name in HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise AuthenticationError("unsigned", f"request lacks {', '.join(missing)}")
    terminal_id, timestamp, nonce, signature_b64 = (str(values[name]) for name in HEADERS)
    if not _TERMINAL.fullmatch(terminal_id):
        raise AuthenticationError("bad_terminal_id", "X-Terminal-Id must be 16 lower-case hex digits")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise AuthenticationError("bad_timestamp", "X-Timestamp must be unix seconds")
    if abs(int(timestamp) - now) > window:
        skew = int(timestamp) - now
        raise AuthenticationError(
            "stale_timestamp", f"X-Timestamp is {skew:+d} s from server time (window {window} s)"
        )
    if not _NONCE.fullmatch(nonce):
        raise AuthenticationError("bad_nonce", "X-Nonce must be 16-64 characters of A-Z a-z 0-9 _ -")
    terminal = directory.lookup(terminal_id)
    if terminal.revoked_by(now):
        raise ForbiddenError(
            "revoked_terminal", f"terminal {terminal_id} was revoked at {terminal.revoked_at}"
        )
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        verify_raw_signature(
            terminal.public_key, request_message(method, path, terminal_id, timestamp, nonce, body), signature
        )
    except (FormatError, ValueError):
        raise AuthenticationError(
            "bad_signature", "X-Signature does not verify with the terminal's key"
        ) from None
    _remember_nonce(session, terminal_id, nonce, now, window)
    return terminal


def _remember_nonce(session: Session, terminal_id: str, nonce: str, now: int, window: int) -> None:
    """Record the nonce in its own transaction: a replay is refused even if the first request failed."""
    try:
        session.execute(delete(NonceRow).where(NonceRow.seen_at < now - 2 * window))
        session.add(NonceRow(terminal_id=terminal_id, nonce=nonce, seen_at=now))
        session.commit()
    except IntegrityError:
        session.rollback()
        raise AuthenticationError("replayed_nonce", "X-Nonce was already used by this terminal") from None
