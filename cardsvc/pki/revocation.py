"""Revocation lists: the one home of their binary format, their verification and the rollback rule.

Wire layout (documented in docs/certificates.md)::

    7F70 revocation list
      7F71 list body                    <- the signed bytes (the whole 7F71 TLV)
        5F29 format version             (1 byte, 01)
        42   issuer reference           (CHR of the root or district that signs the list)
        80   list version               (4 bytes, big-endian, strictly increasing per issuer)
        81   issued at                  (4 bytes, seconds since 1970-01-01 UTC)
        A1   entries                    (zero or more 30 entries, sorted by subject)
          30 entry
            80 subject kind             (1 byte: SubjectKind)
            81 subject reference        (CHR of an officer / terminal / district, or a card id)
            82 revoked at               (4 bytes, seconds since 1970-01-01 UTC)
            83 reason                   (1 byte: RevocationReason)
      5F37 signature                    (64 bytes raw r||s by the issuer's key)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from functools import cached_property

from cardsvc.pki.chain import Revocation, RevocationLookup, TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate, check_reference
from cardsvc.pki.errors import (
    FormatError,
    MissingRightError,
    RollbackError,
    WrongIssuerError,
)
from cardsvc.pki.rights import Right
from cardsvc.pki.signer import SIGNATURE_LEN, Signer, verify_signature
from cardsvc.tlv import strict_codec

expect_sequence, parse_all, parse_single, tlv = strict_codec(FormatError)

FORMAT_VERSION = 0x01
MAX_TIME = 2**32 - 1


class RevocationTag(IntEnum):
    LIST = 0x7F70
    BODY = 0x7F71
    FORMAT = 0x5F29
    ISSUER = 0x42
    VERSION = 0x80
    ISSUED_AT = 0x81
    ENTRIES = 0xA1
    ENTRY = 0x30
    SIGNATURE = 0x5F37


class EntryTag(IntEnum):
    KIND = 0x80
    SUBJECT = 0x81
    REVOKED_AT = 0x82
    REASON = 0x83


class SubjectKind(IntEnum):
    """What kind of holder an entry revokes (informational: matching is by reference)."""

    DISTRICT = 1
    OFFICER = 2
    TERMINAL = 3
    CARD = 4
    #: a facility operator named by the id written in card records (central knows operators by it):
    #: subject ``OP-<16 hex digits>`` (:func:`operator_subject`)
    OPERATOR = 5


OPERATOR_SUBJECT_PREFIX = "OP-"


def operator_subject(operator_id: int) -> str:
    """The subject naming a facility operator by its record id (``reference_id`` of its CHR, 8 bytes).

    Central revokes operators by that id; a terminal signing a clerk in checks this subject beside the
    operator certificate's CHR.
    """
    if not 0 <= operator_id < 2**64:
        raise FormatError(f"operator id must be 8 bytes (0..2^64-1), got {operator_id}")
    return f"{OPERATOR_SUBJECT_PREFIX}{operator_id:016x}"


TERMINAL_SUBJECT_PREFIX = "TRM-"


def terminal_subject(terminal_id: int) -> str:
    """The subject naming a terminal by its record id (the 8-byte terminal id its requests and records
    carry), for a terminal central knows by a plain key only (no certificate, so no CHR to name). Kind
    TERMINAL; a terminal checks this subject for its own id beside its certificate's CHR."""
    if not 0 <= terminal_id < 2**64:
        raise FormatError(f"terminal id must be 8 bytes (0..2^64-1), got {terminal_id}")
    return f"{TERMINAL_SUBJECT_PREFIX}{terminal_id:016x}"


class RevocationReason(IntEnum):
    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    LOST = 2
    STOLEN = 3
    SUPERSEDED = 4
    CEASED_DUTY = 5
    FRAUD = 6


def encode_time(t: datetime) -> bytes:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    seconds = int(t.timestamp())
    if not 0 <= seconds <= MAX_TIME:
        raise FormatError(f"time {t} is outside the 32-bit range of the format")
    return seconds.to_bytes(4, "big")


def decode_time(data: bytes) -> datetime:
    if len(data) != 4:
        raise FormatError(f"time must be 4 bytes, got {len(data)}")
    return datetime.fromtimestamp(int.from_bytes(data, "big"), tz=UTC)


def _one_byte(data: bytes, what: str) -> int:
    if len(data) != 1:
        raise FormatError(f"{what} must be 1 byte, got {len(data)}")
    return data[0]


@dataclass(frozen=True, order=True)
class RevocationEntry:
    subject: str
    kind: SubjectKind
    revoked_at: datetime
    reason: RevocationReason = RevocationReason.UNSPECIFIED

    def encode(self) -> bytes:
        return tlv(
            RevocationTag.ENTRY,
            tlv(EntryTag.KIND, bytes([self.kind]))
            + tlv(EntryTag.SUBJECT, check_reference(self.subject, "subject").encode("ascii"))
            + tlv(EntryTag.REVOKED_AT, encode_time(self.revoked_at))
            + tlv(EntryTag.REASON, bytes([self.reason])),
        )

    @classmethod
    def parse_value(cls, value: bytes) -> RevocationEntry:
        kind, subject, at, reason = expect_sequence(
            parse_all(value), [EntryTag.KIND, EntryTag.SUBJECT, EntryTag.REVOKED_AT, EntryTag.REASON], "entry"
        )
        try:
            return cls(
                subject=check_reference(subject.decode("ascii"), "subject"),
                kind=SubjectKind(_one_byte(kind, "kind")),
                revoked_at=decode_time(at),
                reason=RevocationReason(_one_byte(reason, "reason")),
            )
        except (UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"bad revocation entry: {exc}") from None


@dataclass(frozen=True)
class RevocationList:
    """A signed list. ``body`` holds the exact signed 7F71 TLV."""

    issuer: str
    version: int
    issued_at: datetime
    entries: tuple[RevocationEntry, ...]
    signature: bytes
    body: bytes

    def encode(self) -> bytes:
        return tlv(RevocationTag.LIST, self.body + tlv(RevocationTag.SIGNATURE, self.signature))

    @classmethod
    def parse(cls, data: bytes) -> RevocationList:
        outer = parse_single(bytes(data), RevocationTag.LIST)
        body_value, sig = expect_sequence(
            parse_all(outer.value), [RevocationTag.BODY, RevocationTag.SIGNATURE], "revocation list"
        )
        fmt, issuer, version, issued_at, entries = expect_sequence(
            parse_all(body_value),
            [
                RevocationTag.FORMAT,
                RevocationTag.ISSUER,
                RevocationTag.VERSION,
                RevocationTag.ISSUED_AT,
                RevocationTag.ENTRIES,
            ],
            "revocation list body",
        )
        if fmt != bytes([FORMAT_VERSION]):
            raise FormatError(f"unsupported revocation list format {fmt.hex()}")
        if len(version) != 4:
            raise FormatError("list version must be 4 bytes")
        if len(sig) != SIGNATURE_LEN:
            raise FormatError(f"signature must be {SIGNATURE_LEN} bytes r||s, got {len(sig)}")
        parsed: list[RevocationEntry] = []
        for item in parse_all(entries):
            if item.tag != RevocationTag.ENTRY:
                raise FormatError(f"expected entry tag 30, found {item.tag:X}")
            parsed.append(RevocationEntry.parse_value(item.value))
        subjects = [e.subject for e in parsed]
        if subjects != sorted(set(subjects)):
            raise FormatError("revocation list entries must be sorted by subject, one entry per subject")
        try:
            issuer_ref = check_reference(issuer.decode("ascii"), "issuer")
        except UnicodeDecodeError:
            raise FormatError("issuer reference is not ASCII") from None
        return cls(
            issuer=issuer_ref,
            version=int.from_bytes(version, "big"),
            issued_at=decode_time(issued_at),
            entries=tuple(parsed),
            signature=sig,
            body=tlv(RevocationTag.BODY, body_value),
        )

    @cached_property
    def _index(self) -> dict[str, RevocationEntry]:
        return {e.subject: e for e in self.entries}

    def entry_for(self, subject: str) -> RevocationEntry | None:
        """O(1) lookup (terminals hold lists of many thousand cards)."""
        return self._index.get(subject)


def build_revocation_list(
    signer: Signer,
    *,
    issuer: str,
    version: int,
    issued_at: datetime,
    entries: Iterable[RevocationEntry],
) -> RevocationList:
    """Sign a list. Entries are sorted by subject; a subject may appear once (its earliest time wins)."""
    if not 0 < version < 2**32:
        raise FormatError(f"list version must be 1..2^32-1, got {version}")
    by_subject: dict[str, RevocationEntry] = {}
    for e in entries:
        prev = by_subject.get(e.subject)
        if prev is None or e.revoked_at < prev.revoked_at:
            by_subject[e.subject] = e
    ordered = sorted(by_subject.values())
    body = tlv(
        RevocationTag.BODY,
        tlv(RevocationTag.FORMAT, bytes([FORMAT_VERSION]))
        + tlv(RevocationTag.ISSUER, check_reference(issuer, "issuer").encode("ascii"))
        + tlv(RevocationTag.VERSION, version.to_bytes(4, "big"))
        + tlv(RevocationTag.ISSUED_AT, encode_time(issued_at))
        + tlv(RevocationTag.ENTRIES, b"".join(e.encode() for e in ordered)),
    )
    sig = signer.sign(body)
    return RevocationList.parse(tlv(RevocationTag.LIST, body + tlv(RevocationTag.SIGNATURE, sig)))


def verify_revocation_list(
    rl: RevocationList,
    anchor: TrustAnchor,
    *,
    issuer_chain: Sequence[CvCertificate | bytes] = (),
    now: datetime,
) -> None:
    """Check a list's signature and that its signer may revoke.

    A list by the root needs no chain. A list by a district needs the district's chain (validated with the
    REVOKE right at ``now``) whose leaf is the list's issuer.
    """
    label = f"list {rl.issuer} v{rl.version}"
    if rl.issuer == anchor.chr and not issuer_chain:
        verify_signature(anchor.public_point, rl.body, rl.signature, subject=label)
        return
    validated = validate_chain(issuer_chain, anchor, now=now)
    if validated.leaf.chr != rl.issuer:
        raise WrongIssuerError(
            f"list names issuer {rl.issuer}, but the chain given is for {validated.leaf.chr}",
            subject=rl.issuer,
        )
    if Right.REVOKE not in validated.rights:
        raise MissingRightError(
            f"{rl.issuer} ({validated.role.name}) lacks the right REVOKE to sign revocation lists",
            subject=rl.issuer,
        )
    verify_signature(validated.leaf.public_point, rl.body, rl.signature, subject=label)


@dataclass
class RevocationStore:
    """The revocation lists a verifier holds: the newest verified list per issuer.

    A list from the root applies to every holder; a list from a district applies to holders under that
    district (its reference appears in the holder's issuer path), so one district cannot revoke another's.
    """

    anchor: TrustAnchor
    lists: dict[str, RevocationList] = field(default_factory=dict)
    #: other revocation state :meth:`revocation_of` consults too (e.g. the lists central signs, versioned
    #: apart from the DKMA's lists of the same issuer); the earliest revocation found anywhere wins
    also: list[RevocationLookup] = field(default_factory=list)

    def offer(
        self,
        rl: RevocationList | bytes,
        *,
        now: datetime,
        issuer_chain: Sequence[CvCertificate | bytes] = (),
    ) -> bool:
        """Verify and install ``rl``. Returns True if it replaced what was held, False if identical.

        Raises RollbackError for an older version, or a different list under the version already held.
        """
        rl = RevocationList.parse(rl) if isinstance(rl, bytes | bytearray) else rl
        verify_revocation_list(rl, self.anchor, issuer_chain=issuer_chain, now=now)
        held = self.lists.get(rl.issuer)
        if held is not None:
            if rl.version < held.version:
                raise RollbackError(
                    f"list {rl.issuer} v{rl.version} is older than v{held.version} already held; refused",
                    subject=rl.issuer,
                )
            if rl.version == held.version:
                if rl.body == held.body:
                    return False
                raise RollbackError(
                    f"list {rl.issuer} v{rl.version} differs from the v{held.version} already held; refused",
                    subject=rl.issuer,
                )
        self.lists[rl.issuer] = rl
        return True

    def version_of(self, issuer: str) -> int:
        held = self.lists.get(issuer)
        return held.version if held else 0

    def revocation_of(self, chr: str, issuer_path: Sequence[str]) -> Revocation | None:
        best: Revocation | None = None
        for issuer, rl in self.lists.items():
            if issuer != self.anchor.chr and issuer not in issuer_path and issuer != chr:
                continue
            entry = rl.entry_for(chr)
            if entry is None:
                continue
            if best is None or entry.revoked_at < best.revoked_at:
                best = Revocation(
                    revoked_at=entry.revoked_at,
                    list_issuer=rl.issuer,
                    list_version=rl.version,
                    reason=entry.reason.name,
                )
        for other in self.also:
            found = other.revocation_of(chr, issuer_path)
            if found is not None and (best is None or found.revoked_at < best.revoked_at):
                best = found
        return best
