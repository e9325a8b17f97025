"""Sync with central: upload the card records in signed batches (idempotent, resumable), download
revocations, the package catalogue and authorisations (kept in the journal; sync acknowledgements are
presented to their card at its next insertion, services/authorisations.py). Days offline are normal.

Idempotent and resumable by construction: records are frozen into a batch (its wire bytes kept in the
journal) BEFORE the first upload attempt, so every retry sends byte-identical content; central keys batches
by content hash and answers a repeat with the original receipt (docs/api.md). A failure mid-way leaves the
unsent batches pending for the next sync; nothing is rebuilt, nothing is counted twice.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cardsvc.central.services.auth import request_message
from cardsvc.formats.batch import (
    MAX_TEXT,
    Batch,
    BatchKind,
    FallbackItem,
    FallbackKind,
    SignedBatch,
    TransactionItem,
    id_hex,
)
from point_of_service.errors import CatalogueError, SyncError
from point_of_service.identity import TerminalIdentity, reference_id
from point_of_service.journal import Event, Journal
from point_of_service.reasons import Reason
from point_of_service.services.authorisations import store_authorisations
from point_of_service.trust import TrustState, utc

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_BATCH_ITEMS = 500
#: A fallback is uploaded once its visit is over (the records made under an override are journalled).
VISIT_SECONDS = 15 * 60
#: Cards named in GET /authorisations (central's limit): those of other districts this terminal served.
MAX_NAMED_CARDS = 200
_LAST_SYNC = "sync.last_success"
_LAST_ATTEMPT = "sync.last_attempt"
_CENTRAL_PACKAGES = "sync.central_packages"


class CentralTransport(Protocol):
    """One HTTP exchange with central. Raises ``ConnectionError`` (or ``OSError``) when unreachable."""

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]: ...


class HttpTransport:
    """urllib against ``base_url`` (no extra dependency); time-outs count as "unreachable"."""

    def __init__(self, base_url: str, *, timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.base_url + path,
            data=body if method == "POST" else None,
            headers={**headers, "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
            try:
                return status, json.loads(raw or b"null")
            except ValueError:
                raise ConnectionError(
                    f"central at {self.base_url} answered {status} with a body that is not JSON "
                    f"({len(raw)} bytes): the answer was cut"
                ) from None
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"null")
            except ValueError:
                payload = None
            return exc.code, payload
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ConnectionError(f"central unreachable at {self.base_url}: {exc}") from None
        except http.client.HTTPException as exc:  # e.g. IncompleteRead: central died mid-answer
            raise ConnectionError(f"central's answer was cut ({type(exc).__name__}: {exc})") from None


@dataclass
class SyncReport:
    """What one sync did; ``error`` set when it stopped early (the rest waits for the next sync)."""

    batches_made: int = 0
    batches_sent: int = 0
    duplicates: int = 0
    records_sent: int = 0
    fallbacks_sent: int = 0
    downloads: list[str] = field(default_factory=list)
    error: str | None = None
    reason: Reason | None = None


@dataclass(frozen=True)
class OfflineStatus:
    """How long the terminal has been offline and what waits for central."""

    last_success: int | None
    seconds_offline: int | None
    pending_batches: int
    unbatched_records: int


class SyncService:
    def __init__(
        self,
        journal: Journal,
        identity: TerminalIdentity,
        trust: TrustState,
        transport: CentralTransport,
        *,
        now: Callable[[], int],
        nonce: Callable[[], str] = lambda: secrets.token_urlsafe(18),
        max_items: int = MAX_BATCH_ITEMS,
    ) -> None:
        self.journal, self.identity, self.trust, self.transport = journal, identity, trust, transport
        self.now, self.nonce, self.max_items = now, nonce, max_items

    # --- signing ----------------------------------------------------------------------------------
    def _headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        tid, ts, nonce = id_hex(self.identity.terminal_id), str(self.now()), self.nonce()
        signature = self.identity.signer.sign(request_message(method, path, tid, ts, nonce, body))
        return {
            "X-Terminal-Id": tid,
            "X-Timestamp": ts,
            "X-Nonce": nonce,
            "X-Signature": base64.b64encode(signature).decode("ascii"),
        }

    def _call(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        full = API + path
        try:
            return self.transport.request(method, full, body, self._headers(method, full, body))
        except OSError as exc:  # ConnectionError, timeouts, refused connections
            raise SyncError(Reason.SYNC_FAILED, str(exc)) from None

    # --- upload ------------------------------------------------------------------------------------
    def freeze_batches(self) -> int:
        """Put every record not yet in a batch into signed batches kept in the journal."""
        made = 0
        while True:
            rows = self.journal.unbatched_records(self.max_items)
            if not rows:
                return made
            seq = self.journal.next_batch_seq()
            items = tuple(TransactionItem(r.encode(), key) for r, key in rows)
            batch = Batch(BatchKind.TRANSACTIONS, self.identity.terminal_id, seq, self.now(), items)
            signed = SignedBatch(batch, self.identity.signer.sign(batch.canonical()))
            self.journal.add_batch(
                seq, batch.created, batch.content_hash().hex(), signed.encode(), [r for r, _ in rows]
            )
            made += 1

    def freeze_fallbacks(self) -> int:
        """Put every fallback event whose visit is over into signed ``fallbacks`` batches in the journal."""
        made = 0
        while True:
            events = self.journal.unbatched_fallbacks(
                self.max_items, settled_before=self.now() - VISIT_SECONDS
            )
            if not events:
                return made
            items = []
            for event in events:
                try:
                    items.append(fallback_item(event, self.journal))
                except (ValueError, KeyError, TypeError) as exc:  # marked sent anyway: it can never upload
                    log.warning("fallback event %s not uploadable: %s", event.id, exc)
            if not items:
                self.journal.skip_events([e.id for e in events])
                continue
            seq = self.journal.next_batch_seq()
            batch = Batch(BatchKind.FALLBACKS, self.identity.terminal_id, seq, self.now(), tuple(items))
            signed = SignedBatch(batch, self.identity.signer.sign(batch.canonical()))
            digest = batch.content_hash().hex()
            self.journal.add_batch(seq, batch.created, digest, signed.encode(), events=[e.id for e in events])
            made += 1

    def upload(self, report: SyncReport) -> None:
        for pending in self.journal.pending_batches():
            try:
                status, payload = self._call("POST", "/batches", pending.wire)
            except SyncError as exc:
                self.journal.batch_attempt(pending.seq, exc.detail)
                raise
            if status in (200, 201) and isinstance(payload, dict) and "receipt" in payload:
                receipt = payload["receipt"]
                if receipt.get("content_hash") != pending.content_hash:
                    raise SyncError(Reason.SYNC_REFUSED, f"batch {pending.seq}: receipt for another batch")
                self.journal.ack_batch(pending.seq, receipt)
                report.batches_sent += 1
                if receipt.get("kind") == BatchKind.FALLBACKS.value:
                    report.fallbacks_sent += int(receipt.get("items", 0))
                else:
                    report.records_sent += int(receipt.get("items", 0))
                report.duplicates += 1 if payload.get("duplicate") else 0
                continue
            why = payload.get("reason") if isinstance(payload, dict) else None
            code = payload.get("error") if isinstance(payload, dict) else None
            self.journal.batch_attempt(pending.seq, f"{status} {code}: {why}")
            retryable = status >= 500 or status == 429 or code in ("stale_timestamp", "replayed_nonce")
            raise SyncError(
                Reason.SYNC_FAILED if retryable else Reason.SYNC_REFUSED,
                f"batch {pending.seq}: central answered {status} {code}: {why}",
                retryable=retryable,
            )

    # --- downloads ---------------------------------------------------------------------------------
    def download(self, report: SyncReport) -> None:
        status, payload = self._call("GET", "/revocations")
        if status == 200 and isinstance(payload, dict):
            self.trust.set_central_revocations(payload)
            report.downloads.append("revocations")
        else:
            raise SyncError(
                Reason.SYNC_REFUSED, f"revocations: central answered {status} {payload}", retryable=False
            )
        status, payload = self._call("GET", "/packages")
        if status == 200 and isinstance(payload, dict):
            self.journal.put(_CENTRAL_PACKAGES, payload.get("packages", []))
            signed = payload.get("signed_catalogue")
            if isinstance(signed, str):
                try:
                    if self.trust.install_catalogue(base64.b64decode(signed), now=utc(self.now())):
                        report.downloads.append("catalogue")
                except CatalogueError as exc:
                    log.warning("catalogue from central refused: %s", exc)
            report.downloads.append("packages")
        cards = "&".join(f"card={id_hex(c)}" for c in self.journal.recent_cards(MAX_NAMED_CARDS))
        status, payload = self._call("GET", "/authorisations" + (f"?{cards}" if cards else ""))
        if status == 200 and isinstance(payload, dict):
            items = payload.get("authorisations", [])
            store_authorisations(self.journal, items if isinstance(items, list) else [])
            report.downloads.append("authorisations")

    # --- the whole sync ----------------------------------------------------------------------------
    def sync(self) -> SyncReport:
        """Freeze, upload, download. Never raises for a network failure: the report says what stopped."""
        report = SyncReport()
        now = self.now()
        self.journal.put(_LAST_ATTEMPT, now)
        try:
            report.batches_made = self.freeze_batches() + self.freeze_fallbacks()
            self.upload(report)
            self.download(report)
        except SyncError as exc:
            report.error, report.reason = exc.detail, exc.reason
            self.journal.log(
                "sync", at=now, outcome="failed", reason=exc.reason.value, detail=_summary(report)
            )
            return report
        self.journal.put(_LAST_SYNC, now)
        self.journal.log("sync", at=now, detail=_summary(report))
        return report

    def status(self) -> OfflineStatus:
        last = self.journal.get(_LAST_SYNC)
        return offline_status(self.journal, self.now(), last)


def fallback_item(event: Event, journal: Journal) -> FallbackItem:
    """The upload item of one journalled ``fallback`` event (docs/formats.md, ``fallbacks`` batches)."""
    kind = FallbackKind(str(event.fallback))
    override = kind is FallbackKind.OVERRIDE
    if event.card_id is None or event.member is None or event.operator is None:
        raise ValueError(f"fallback event {event.id} lacks its card, member or operator")
    item = FallbackItem(
        event=event.id, at=event.at, kind=kind, card_id=int(event.card_id, 16), member=event.member,
        operator_id=reference_id(event.operator),
        supervisor_id=reference_id(str(event.detail["supervisor"])) if override else None,
        reason=str(event.detail["why"]) if override else "",
        note=str(event.detail["note"]).strip()[:MAX_TEXT] if override else "",
        records=tuple(journal.records_under_override(event)) if override else (),
    )  # fmt: skip
    item.check(f"fallback event {event.id}")
    return item


def offline_status(journal: Journal, now: int, last: int | None = None) -> OfflineStatus:
    last = journal.get(_LAST_SYNC) if last is None else last
    return OfflineStatus(
        last_success=last,
        seconds_offline=None if last is None else now - last,
        pending_batches=journal.batch_status().get("pending", 0),
        unbatched_records=len(journal.unbatched_records(1_000_000)),
    )


def _summary(report: SyncReport) -> dict[str, Any]:
    return {
        "batches_made": report.batches_made,
        "batches_sent": report.batches_sent,
        "duplicates": report.duplicates,
        "records_sent": report.records_sent,
        "fallbacks_sent": report.fallbacks_sent,
        "downloads": report.downloads,
        "error": report.error,
    }
