"""Upload to central: signed camp batches (cardsvc/formats/batch.py, kind "camp"), the FKO ledger read-back
(kind "fko_ledger"), and the check that the ledger the FKO card signed matches the journal.

Batches are built once, stored in the journal with their content hash and sent until central answers;
re-sending the same stored batch is idempotent on central's side (same content hash), and a card is put in
one camp batch only (``upload_items``). Camp items carry what central's second phase consumes: the card's
certificate chain (district, FKO, card), every scheme on the card with its cover, and the templates written
to the card sealed to central's de-duplication key (never unsealed, never logged, never images). Without a
de-duplication key installed the templates are left out and the journal says so (``upload.dedup_not_sent``).
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC as _UTC
from datetime import date, datetime, time
from typing import cast

from cardsvc.formats.batch import (
    Batch,
    BatchKind,
    CampCard,
    FkoLedgerEntry,
    Gender,
    Member,
    SchemeCover,
    SignedBatch,
    SignedLedger,
    TransactionItem,
    b64encode,
    id_hex,
)
from cardsvc.formats.profile import HouseholdProfile, card_number, parse_templates, reference_id
from cardsvc.formats.templates import StoredTemplateLike, from_stored, seal_templates
from cardsvc.formats.transaction import TransactionRecord
from cardsvc.pki import officer as fmt
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.officer_card import VerifiedLedger
from enrolment_station.errors import UploadError
from enrolment_station.fko import FkoSession
from enrolment_station.journal import CardState, Journal
from enrolment_station.keys import StationIdentity

REQUEST_DOMAIN = "CARDSVC-REQUEST-V1"


def _unix(d: date, end: bool = False) -> int:
    return int(datetime.combine(d, time(23, 59, 59) if end else time(0, 0), tzinfo=_UTC).timestamp())


DEDUP_NOT_SENT = "upload.dedup_not_sent"


def camp_items(
    journal: Journal, identity: StationIdentity | None = None, *, rng: Callable[[int], bytes] = os.urandom
) -> list[tuple[str, CampCard]]:
    """Activated cards not yet put in a camp batch: with the card's certificate chain (district, FKO, card),
    every scheme on the card and, when central's de-duplication key is installed, the templates written to
    the card sealed to it (``rng``: the sealing's ephemeral key and nonce)."""
    done = journal.uploaded_items(BatchKind.CAMP.value)
    dedup = identity.dedup_key() if identity is not None else None
    out = []
    for state in (CardState.ACTIVATED, CardState.HANDED_OVER):
        for row in journal.cards(state=state):
            if row["card_id"] in done:
                continue
            card_id = row["card_id"]
            profile = HouseholdProfile.parse(bytes(row["profile"]))
            steps = journal.steps(card_id)
            chain: tuple[bytes, ...] = ()
            sealed = b""
            if identity is not None and "certified" in steps:
                fko_cert = bytes.fromhex(steps["certified"]["fko_certificate"])
                district = identity.bundle.districts.get(profile.district)
                if district is not None:
                    chain = (district.encode(), fko_cert, bytes(row["certificate"]))
                if dedup is not None and "sealed" in steps.get("templates", {}):
                    plain = identity.unseal(
                        bytes.fromhex(steps["templates"]["sealed"]), f"card-templates/{card_id}"
                    )
                    # StoredTemplate is frozen; the Protocol's plain attributes read as writable to mypy
                    stored = from_stored(cast("list[StoredTemplateLike]", list(parse_templates(plain))))
                    sealed = seal_templates(dedup, card_number(card_id), stored, rng=rng)
            out.append((card_id, CampCard(
                card_id=card_number(card_id), household_id=profile.household_id,
                district=profile.district, scheme_id=profile.schemes[0].scheme_id,
                policy_start=_unix(profile.policy_start), policy_end=_unix(profile.policy_end, end=True),
                cover_paise=profile.schemes[0].cover_paise, card_key=bytes(row["card_key"]),
                fko_id=reference_id(profile.fko_id),
                members=tuple(Member(Gender(chr(m.gender)), m.birth_year) for m in profile.members),
                card_chain=chain, templates=sealed,
                schemes=tuple(SchemeCover(s.scheme_id, s.cover_paise) for s in profile.schemes),
            )))  # fmt: skip
    out.sort(key=lambda item: item[0])
    return out


def _store(
    journal: Journal,
    identity: StationIdentity,
    kind: BatchKind,
    items: list[tuple[str, object]],
    now: datetime,
) -> SignedBatch:
    seq = journal.next_upload_seq()
    batch = Batch(kind, identity.terminal_id, seq, int(now.timestamp()), tuple(i for _, i in items))  # type: ignore[misc]
    signed = SignedBatch(batch, identity.terminal.sign(batch.canonical()))
    journal.record_batch(
        seq,
        kind.value,
        signed.content_hash().hex(),
        batch.created,
        signed.encode(),
        [key for key, _ in items],
    )
    return signed


def build_camp_batch(
    journal: Journal, identity: StationIdentity, *, now: datetime, rng: Callable[[int], bytes] = os.urandom
) -> SignedBatch | None:
    """A signed batch of every activated card not yet batched (None when there is nothing new). Cards sent
    without sealed templates are recorded (``upload.dedup_not_sent``): central cannot de-duplicate them."""
    items = camp_items(journal, identity, rng=rng)
    if not items:
        return None
    signed = _store(journal, identity, BatchKind.CAMP, list(items), now)
    unsealed = [key for key, item in items if not item.templates]
    if unsealed:
        reason = (
            "no de-duplication key installed (enrol install --dedup-key)"
            if identity.dedup_key() is None
            else "no templates recorded for the card"
        )
        with journal.transaction():
            journal.event(DEDUP_NOT_SENT, str(signed.batch.seq), {"cards": unsealed, "reason": reason})
    return signed


def station_records(journal: Journal) -> list[tuple[str, TransactionItem]]:
    """The records this station made on cards (a renewal's RENEWAL records, a split's lowering of the
    original card), keyed ``card:counter``, not yet in a transactions batch: central needs them to keep
    the card's ledger whole (no counter gap) and its balances right."""
    sent = journal.uploaded_items(BatchKind.TRANSACTIONS.value)
    out: list[tuple[str, TransactionItem]] = []
    rows = journal.db.execute(
        "SELECT card_id, step, details FROM card_steps"
        " WHERE step LIKE 'renewal.%.committed' OR step LIKE 'split.%.lowered'"
    )
    for row in rows:
        details = json.loads(row["details"])
        if row["step"].startswith("renewal."):
            key = CvCertificate.parse(bytes.fromhex(details["certificate"])).public_point
        else:
            key = bytes.fromhex(details.get("card_key", ""))
        for raw in details["records"]:
            record = TransactionRecord.parse(bytes.fromhex(raw))
            item = f"{row['card_id']}:{record.counter}"
            if key and item not in sent:
                out.append((item, TransactionItem(record.encode(), key)))
    return sorted(out, key=lambda kv: kv[0])


def build_transactions_batch(journal: Journal, identity: StationIdentity, *, now: datetime
                             ) -> SignedBatch | None:  # fmt: skip
    """A signed transactions batch of the station's own card records not yet batched (None if none)."""
    items = station_records(journal)
    return _store(journal, identity, BatchKind.TRANSACTIONS, list(items), now) if items else None


def signed_ledger(fko: FkoSession, ledger: VerifiedLedger, challenge: bytes) -> SignedLedger:
    """The FKO card's own signature over the ledger just read with ``challenge`` (so central checks the
    officer's word, not only the station's): the signature and raw entries the read kept, else one more
    READ LEDGER page for the signature."""
    if ledger.signature and ledger.challenge == challenge:
        return SignedLedger(
            officer_chain=tuple(c.encode() for c in fko.chain), challenge=challenge, count=ledger.count,
            head=ledger.head, entries=ledger.raw_entries, signature=ledger.signature,
        )  # fmt: skip
    raw = fko.officer.protocol.send_apdu(fmt.OFFICER_CLA, fmt.OfficerIns.READ_LEDGER, 0, 0, challenge, 256)
    page = fmt.LedgerPage.parse(raw)
    fmt.verify_ledger_page(ledger.officer.chr, ledger.officer.public_point, challenge, page)
    if (page.count, page.head) != (len(ledger.entries), ledger.head):
        raise UploadError("the FKO ledger changed while it was read back")
    return SignedLedger(
        officer_chain=tuple(c.encode() for c in fko.chain), challenge=challenge, count=page.count,
        head=page.head, entries=b"".join(e.encode() for e in ledger.entries), signature=page.signature,
    )  # fmt: skip


def build_ledger_batch(
    journal: Journal, identity: StationIdentity, ledger: VerifiedLedger, *, now: datetime,
    signed: SignedLedger | None = None,
) -> SignedBatch:  # fmt: skip
    """The FKO ledger as read back from the FKO card (every card it activated), with the card's signature."""
    entry = FkoLedgerEntry(
        reference_id(ledger.officer.chr), tuple(card_number(e.card_chr) for e in ledger.entries), signed
    )
    key = f"{ledger.officer.chr}@{len(ledger.entries)}:{ledger.head.hex()}"
    if key in journal.uploaded_items(BatchKind.FKO_LEDGER.value):
        for row in journal.db.execute(
            "SELECT u.wire FROM uploads u JOIN upload_items i ON i.upload_seq = u.seq "
            "WHERE i.kind = ? AND i.item = ?",
            (BatchKind.FKO_LEDGER.value, key),
        ):
            return SignedBatch.parse(bytes(row[0]))
    return _store(journal, identity, BatchKind.FKO_LEDGER, [(key, entry)], now)


@dataclass(frozen=True)
class LedgerCheck:
    """The FKO card's ledger against the journal: every activation the station asked for, and no other."""

    fko_chr: str
    ledger_count: int
    journal_activated: int
    journal_void: int
    only_on_card: tuple[str, ...]
    only_in_journal: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return not self.only_on_card and not self.only_in_journal

    def describe(self) -> str:
        text = (
            f"FKO {self.fko_chr}: ledger {self.ledger_count} activation(s), journal {self.journal_activated} "
            f"activated + {self.journal_void} void"
        )
        if self.matches:
            return text + ": match"
        return (
            text + f": MISMATCH (only on the card: {', '.join(self.only_on_card) or '-'}; only in the "
            f"journal: {', '.join(self.only_in_journal) or '-'})"
        )


def check_ledger(journal: Journal, ledger: VerifiedLedger) -> LedgerCheck:
    """Match ledger entries to the journal by the SHA-256 of the certified body (what the FKO card hashed)."""
    fko = ledger.officer.chr
    certified: dict[str, str] = {}
    for row in journal.db.execute(  # first activations and renewals (step renewal.<serial>.requested)
        "SELECT card_id, details FROM card_steps WHERE step = 'requested' OR step LIKE 'renewal.%.requested'"
    ):
        d = json.loads(row["details"])
        if d.get("fko") == fko:
            certified[d["body_sha256"]] = row["card_id"]
    activated = {r["card_id"] for r in journal.cards() if r["fko_chr"] == fko and r["state"] in
                 (CardState.ACTIVATED, CardState.HANDED_OVER)}  # fmt: skip
    void = {}
    for e in journal.events("card.activation.void"):
        if e["details"].get("body_sha256"):
            void[e["details"]["body_sha256"]] = e["subject"]
    known = {**void, **certified}
    on_card = {e.body_hash.hex(): e.card_chr for e in ledger.entries}
    only_on_card = tuple(sorted(f"{c} ({h[:12]})" for h, c in on_card.items() if h not in known))
    only_in_journal = tuple(sorted(c for c in activated if c not in set(on_card.values())))
    return LedgerCheck(fko, len(ledger.entries), len(activated), len(void), only_on_card, only_in_journal)


def send_pending(
    journal: Journal,
    identity: StationIdentity,
    url: str,
    *,
    now: Callable[[], datetime],
    opener: Callable[..., object] = urllib.request.urlopen,
) -> list[str]:
    """POST every stored batch central has not acknowledged; returns the receipts. Resumable at any point."""
    receipts = []
    for row in journal.pending_uploads():
        body = bytes(row["wire"])
        path = "/api/v1/batches"
        headers = sign_headers(identity, "POST", path, body, int(now().timestamp()))
        request = urllib.request.Request(
            url.rstrip("/") + path,
            data=body,
            method="POST",
            headers={**headers, "Content-Type": "application/json"},
        )
        try:
            with opener(request, timeout=30) as answer:  # type: ignore[attr-defined]
                receipt = answer.read().decode()
        except urllib.error.HTTPError as exc:
            raise UploadError(
                f"central refused batch {row['seq']}: {exc.code} {exc.read().decode()[:300]}"
            ) from None
        except OSError as exc:
            raise UploadError(f"central not reachable ({exc}); batches stay queued") from None
        journal.mark_uploaded(row["seq"], receipt)
        receipts.append(receipt)
    return receipts


def sign_headers(identity: StationIdentity, method: str, path: str, body: bytes, now: int) -> dict[str, str]:
    """The request-signing headers of docs/api.md, signed with the station's terminal key."""
    import hashlib

    tid, ts, nonce = id_hex(identity.terminal_id), str(now), secrets.token_urlsafe(18)
    message = "\n".join(
        [REQUEST_DOMAIN, method.upper(), path, tid, ts, nonce, hashlib.sha256(body).hexdigest()]
    )
    signature = identity.terminal.sign(message.encode())
    return {"X-Terminal-Id": tid, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": b64encode(signature)}
