"""The beneficiary card application's commands, status, and signed messages: one home (docs/card-layout.md).

Pure (no I/O): the simulated card application (hardware_sims/card/apps/beneficiary.py) and the host session
(cardsvc/beneficiary/session.py) both build and parse these bytes here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import IntEnum

from cardsvc import tlv as _tlv
from cardsvc.formats.profile import ContentHashes, ProfileFormatError, expect_tags, split_tlvs, tlv
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.rights import Right

BENEFICIARY_AID = bytes.fromhex("F05253425942454E01")
"""'\\xF0RSBYBEN\\x01' (proprietary RID range F0)."""

BENEFICIARY_CLA = 0x80
CARD_KEY_REF = 0x01
NONCE_LENGTH = 16
LOG_CAPACITY = 24
NONCE_MEMORY = 8
MAX_PENDING_BLOCKS = 8
IA_DOMAIN = b"RSBY-IA\x01"
AUTH_DOMAIN = b"RSBY-AUTH\x01"
MIN_CHALLENGE, MAX_CHALLENGE = 8, 32
RENEWAL_WINDOW = timedelta(days=90)
"""How far ahead of today a renewed policy year may start: renewal camps run in the weeks BEFORE the year.
The one home of the rule: the FKO card certifies no body effective later than today + this window, the
beneficiary card opens and commits no renewal starting later, and the station refuses first
(docs/card-os.md, docs/card-layout.md)."""


class BenIns(IntEnum):
    """Proprietary instructions (CLA 80) of the beneficiary application."""

    GET_STATUS = 0x10
    MSE_SET_DST = 0x22  # terminal authentication (cardsvc.pki.termauth)
    PSO_VERIFY_CERTIFICATE = 0x2A
    DEBIT = 0x30
    WRITE_OBJECT = 0x40  # personalisation: P1 = ObjectId, data = offset (2) || bytes
    ALLOCATE_PHOTOS = 0x44  # personalisation: data = size (2); creates the photo EF (6A84 when full)
    GENERATE_KEY = 0x46
    WIPE = 0x4E
    PUT_CERTIFICATE = 0x50  # activation
    COMMIT_RENEWAL = 0x52  # renewal: staged profile + the FKO's new certificate replace the old at once
    AUTHORISE = 0x70  # central-signed authorisation: sync acknowledgement, supersede, renewal opening
    EXTERNAL_AUTHENTICATE = 0x82
    INTERNAL_AUTHENTICATE = 0x88
    READ_LOG = 0xB2  # P1P2 = first counter


class Lifecycle(IntEnum):
    BLANK = 0
    PERSONALISING = 1
    ACTIVATED = 2
    BLOCKED = 3
    SUPERSEDED = 4


class ObjectId(IntEnum):
    """Objects written with WRITE OBJECT; each EF holds length (2) || object."""

    PROFILE = 1
    TEMPLATES = 2
    PHOTOS = 3
    NEXT_PROFILE = 4  # renewal: the new year's profile, staged until COMMIT RENEWAL


class FileId(IntEnum):
    """EFs in the application DF (DF 0xDF20); SFI = low byte."""

    CERTIFICATES = 0x0101  # length (2) || card CVC || FKO CVC       READ ALWAYS
    PROFILE = 0x0102  # length (2) || profile                      READ READ_PROFILE or ENROL
    TEMPLATES = 0x0103  # length (2) || template set              READ READ_TEMPLATES
    PHOTOS = 0x0104  # length (2) || photo set (created on demand) READ READ_PROFILE or ENROL
    LOG = 0x0105  # LOG_CAPACITY x 124-byte records (cyclic)    READ NEVER (READ LOG)
    NEXT_PROFILE = 0x0106  # length (2) || staged profile (only while a renewal is open)  READ ENROL


OBJECT_FILES = {
    ObjectId.PROFILE: FileId.PROFILE,
    ObjectId.TEMPLATES: FileId.TEMPLATES,
    ObjectId.PHOTOS: FileId.PHOTOS,
    ObjectId.NEXT_PROFILE: FileId.NEXT_PROFILE,
}
FILE_SIZES = {FileId.CERTIFICATES: 640, FileId.PROFILE: 1024, FileId.TEMPLATES: 2600}


#: Which terminal right each record type needs on DEBIT.
RIGHT_FOR_RECORD = {
    RecordType.BLOCK: Right.DEBIT,
    RecordType.SETTLE: Right.DEBIT,
    RecordType.RELEASE: Right.DEBIT,
    RecordType.CASH: Right.DEBIT,
    RecordType.PROOF_OF_LIFE: Right.PROOF_OF_LIFE,
    RecordType.TOP_UP: Right.TOP_UP,
    RecordType.RENEWAL: Right.RENEW,
    RecordType.SPLIT: Right.RENEW,
}
#: Record types that lower a balance and count against the offline limits.
DEBITING = frozenset({RecordType.BLOCK, RecordType.SETTLE, RecordType.CASH})


class StatusTag(IntEnum):
    LIFECYCLE = 0x80
    CARD_ID = 0x81
    COUNTER = 0x82
    MEMORY = 0x83  # usable (4) | free (4)
    LIMITS = 0x84  # max count (2) | max amount (4)
    SINCE_SYNC = 0x85  # count (2) | amount (4)
    SYNCED_COUNTER = 0x86
    LOG_CAPACITY = 0x87
    POLICY = 0x88  # start YYYYMMDD | end YYYYMMDD (empty before activation)
    OBJECT_LENGTHS = 0x89  # certificates, profile, templates, photos (2 each)
    KEY_GENERATED = 0x8A
    AUTH_SERIAL = 0x8B
    WALLETS = 0xA0  # 30 { 80 scheme | 81 balance (4) | 82 held (4) }
    RENEWAL_OPEN = 0x8C  # serial (4) of the RENEW_POLICY authorisation awaiting COMMIT RENEWAL (absent: none)
    RENEWAL_SCHEDULED = 0x8D  # serial (4) | start | end (YYYYMMDD) of a committed renewal not yet in force
    UNANSWERED = 0x8E  # first | last counter (4 each) of card-made records no terminal was answered with


#: status tags a card sends only when they apply, after the wallets and in this order
_OPTIONAL_STATUS = (StatusTag.RENEWAL_OPEN, StatusTag.RENEWAL_SCHEDULED, StatusTag.UNANSWERED)


@dataclass(frozen=True)
class Wallet:
    scheme_id: int
    balance: int
    held: int = 0


@dataclass(frozen=True)
class CardStatus:
    """GET STATUS: everything a reader without a terminal key may see."""

    lifecycle: Lifecycle
    card_id: str
    counter: int
    usable: int
    free: int
    max_count: int
    max_amount: int
    since_sync_count: int
    since_sync_amount: int
    synced_counter: int
    log_capacity: int
    policy_start: date | None
    policy_end: date | None
    object_lengths: tuple[int, int, int, int]
    key_generated: bool
    auth_serial: int
    wallets: tuple[Wallet, ...] = field(default=())
    renewal_open: int = 0  # serial of an open renewal (AUTHORISE RENEW_POLICY done, not yet committed)
    #: a renewal committed before its year starts: (serial, start, end); the card takes it on at ``start``
    renewal_scheduled: tuple[int, date, date] | None = None
    #: (first, last) counters of records the card made by itself (a held renewal's RENEWAL records) that
    #: no terminal received as an answer and central has not acknowledged (SYNC_ACK); None: there are none
    unanswered: tuple[int, int] | None = None

    def wallet(self, scheme_id: int) -> Wallet:
        for w in self.wallets:
            if w.scheme_id == scheme_id:
                return w
        raise KeyError(f"no wallet for scheme {scheme_id}")

    def encode(self) -> bytes:
        policy = b""
        if self.policy_start and self.policy_end:
            policy = (self.policy_start.strftime("%Y%m%d") + self.policy_end.strftime("%Y%m%d")).encode()
        wallets = b"".join(
            tlv(0x30, tlv(0x80, bytes([w.scheme_id])) + tlv(0x81, w.balance.to_bytes(4, "big"))
                + tlv(0x82, w.held.to_bytes(4, "big")))
            for w in self.wallets
        )  # fmt: skip
        return (
            tlv(StatusTag.LIFECYCLE, bytes([self.lifecycle]))
            + tlv(StatusTag.CARD_ID, self.card_id.encode("ascii"))
            + tlv(StatusTag.COUNTER, self.counter.to_bytes(4, "big"))
            + tlv(StatusTag.MEMORY, struct.pack(">II", self.usable, self.free))
            + tlv(StatusTag.LIMITS, struct.pack(">HI", self.max_count, self.max_amount))
            + tlv(StatusTag.SINCE_SYNC, struct.pack(">HI", self.since_sync_count, self.since_sync_amount))
            + tlv(StatusTag.SYNCED_COUNTER, self.synced_counter.to_bytes(4, "big"))
            + tlv(StatusTag.LOG_CAPACITY, self.log_capacity.to_bytes(2, "big"))
            + tlv(StatusTag.POLICY, policy)
            + tlv(StatusTag.OBJECT_LENGTHS, struct.pack(">4H", *self.object_lengths))
            + tlv(StatusTag.KEY_GENERATED, bytes([self.key_generated]))
            + tlv(StatusTag.AUTH_SERIAL, self.auth_serial.to_bytes(4, "big"))
            + tlv(StatusTag.WALLETS, wallets)
            + self._renewal_tlv()
        )

    def _renewal_tlv(self) -> bytes:
        out = tlv(StatusTag.RENEWAL_OPEN, self.renewal_open.to_bytes(4, "big")) if self.renewal_open else b""
        if self.renewal_scheduled is not None:
            serial, start, end = self.renewal_scheduled
            period = (start.strftime("%Y%m%d") + end.strftime("%Y%m%d")).encode()
            out += tlv(StatusTag.RENEWAL_SCHEDULED, serial.to_bytes(4, "big") + period)
        if self.unanswered is not None:
            first, last = self.unanswered
            out += tlv(StatusTag.UNANSWERED, first.to_bytes(4, "big") + last.to_bytes(4, "big"))
        return out

    @classmethod
    def parse(cls, data: bytes) -> CardStatus:
        items = split_tlvs(data, "status")
        renewal_open, scheduled, unanswered = 0, None, None
        if items and items[-1][0] == StatusTag.UNANSWERED:  # optional, last
            value = items.pop()[1]
            first, last = int.from_bytes(value[:4], "big"), int.from_bytes(value[4:], "big")
            if len(value) != 8 or not 0 < first <= last:
                raise ProfileFormatError("status unanswered records must be first <= last counter (4 each)")
            unanswered = (first, last)
        if items and items[-1][0] == StatusTag.RENEWAL_SCHEDULED:  # optional, after 8C
            value = items.pop()[1]
            if len(value) != 20:
                raise ProfileFormatError("status scheduled renewal must be serial (4) and 16 digits")
            scheduled = (int.from_bytes(value[:4], "big"), *parse_policy(value[4:]))
        if items and items[-1][0] == StatusTag.RENEWAL_OPEN:  # optional, after the wallets
            value = items.pop()[1]
            if len(value) != 4:
                raise ProfileFormatError("status renewal serial must be 4 bytes")
            renewal_open = int.from_bytes(value, "big")
        (
            lc,
            cid,
            counter,
            memory,
            limits,
            since,
            synced,
            logcap,
            policy,
            lengths,
            keygen,
            serial,
            wallets,
        ) = expect_tags(
            items,
            [t for t in StatusTag if t not in _OPTIONAL_STATUS],
            "status",
        )
        try:
            usable, free = struct.unpack(">II", memory)
            max_count, max_amount = struct.unpack(">HI", limits)
            s_count, s_amount = struct.unpack(">HI", since)
            object_lengths = struct.unpack(">4H", lengths)
            start = end = None
            if policy:
                if len(policy) != 16:
                    raise ProfileFormatError("status policy must be 16 digits")
                start = date(int(policy[:4]), int(policy[4:6]), int(policy[6:8]))
                end = date(int(policy[8:12]), int(policy[12:14]), int(policy[14:16]))
            out = []
            for tag, value in split_tlvs(wallets, "wallets"):
                sid, bal, held = expect_tags(split_tlvs(value, "wallet"), [0x80, 0x81, 0x82], "wallet")
                if tag != 0x30 or len(sid) != 1 or len(bal) != 4 or len(held) != 4:
                    raise ProfileFormatError("malformed wallet entry")
                out.append(Wallet(sid[0], int.from_bytes(bal, "big"), int.from_bytes(held, "big")))
            return cls(
                lifecycle=Lifecycle(lc[0]),
                card_id=cid.decode("ascii"),
                counter=int.from_bytes(counter, "big"),
                usable=usable,
                free=free,
                max_count=max_count,
                max_amount=max_amount,
                since_sync_count=s_count,
                since_sync_amount=s_amount,
                synced_counter=int.from_bytes(synced, "big"),
                log_capacity=int.from_bytes(logcap, "big"),
                policy_start=start,
                policy_end=end,
                object_lengths=(object_lengths[0], object_lengths[1], object_lengths[2], object_lengths[3]),
                key_generated=bool(keygen[0]),
                auth_serial=int.from_bytes(serial, "big"),
                wallets=tuple(out),
                renewal_open=renewal_open,
                renewal_scheduled=scheduled,
                unanswered=unanswered,
            )
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ProfileFormatError(f"malformed status: {exc}") from None


# ------------------------------------------------------------------------------------------ attestation
class IaTag(IntEnum):
    CHALLENGE = 0x80
    CARD_ID = 0x81
    LIFECYCLE = 0x82
    COUNTER = 0x83
    PROFILE_HASH = 0x84
    TEMPLATES_HASH = 0x85
    PHOTOS_HASH = 0x86
    SIGNATURE = 0x5F37


@dataclass(frozen=True)
class Attestation:
    """INTERNAL AUTHENTICATE answer: the card's state and content hashes, signed over the host's challenge.

    The signature proves the genuine chip (its key is in the FKO-signed certificate; a copy of the files
    on another chip has another key) and binds what the chip committed to at activation.
    """

    lifecycle: Lifecycle
    counter: int
    hashes: ContentHashes
    signature: bytes

    def fields(self) -> bytes:
        return (
            tlv(IaTag.LIFECYCLE, bytes([self.lifecycle]))
            + tlv(IaTag.COUNTER, self.counter.to_bytes(4, "big"))
            + tlv(IaTag.PROFILE_HASH, self.hashes.profile)
            + tlv(IaTag.TEMPLATES_HASH, self.hashes.templates)
            + tlv(IaTag.PHOTOS_HASH, self.hashes.photos)
        )

    def encode(self) -> bytes:
        return self.fields() + tlv(IaTag.SIGNATURE, self.signature)

    @classmethod
    def parse(cls, data: bytes) -> Attestation:
        lc, counter, hp, ht, hph, sig = expect_tags(
            split_tlvs(data, "attestation"),
            [IaTag.LIFECYCLE, IaTag.COUNTER, IaTag.PROFILE_HASH, IaTag.TEMPLATES_HASH, IaTag.PHOTOS_HASH,
             IaTag.SIGNATURE],
            "attestation",
        )  # fmt: skip
        if len(lc) != 1 or len(counter) != 4 or any(len(h) != 32 for h in (hp, ht, hph)) or len(sig) != 64:
            raise ProfileFormatError("attestation field of a wrong length")
        try:
            lifecycle = Lifecycle(lc[0])
        except ValueError:
            raise ProfileFormatError(f"unknown life cycle {lc[0]}") from None
        return cls(lifecycle, int.from_bytes(counter, "big"), ContentHashes(hp, ht, hph), sig)


def attestation_message(challenge: bytes, card_id: str, fields: bytes) -> bytes:
    """What the card key signs: domain || 80 challenge || 81 card id || the answer's fields (82-86)."""
    if not MIN_CHALLENGE <= len(challenge) <= MAX_CHALLENGE:
        raise ProfileFormatError(f"challenge must be {MIN_CHALLENGE}-{MAX_CHALLENGE} bytes")
    return IA_DOMAIN + tlv(IaTag.CHALLENGE, challenge) + tlv(IaTag.CARD_ID, card_id.encode("ascii")) + fields


# ------------------------------------------------------------------------------------------ debit
_DEBIT = struct.Struct(">BBIIQIIB16s")
DEBIT_LENGTH = _DEBIT.size  # 43


@dataclass(frozen=True)
class DebitRequest:
    """DEBIT data: what the terminal asks; the card adds card id, counter, balance, terminal id and chain.

    ``nonce`` is the terminal's transaction id: the same nonce again returns the same record (a terminal
    that crashed after sending DEBIT never debits twice). TOP_UP and RENEWAL carry a central authorisation.
    """

    record_type: RecordType
    scheme_id: int
    amount: int
    time: int
    operator_id: int
    facility_id: int
    reference: int
    member_index: int
    nonce: bytes
    authorisation: bytes = b""

    def encode(self) -> bytes:
        if len(self.nonce) != NONCE_LENGTH:
            raise ProfileFormatError(f"nonce must be {NONCE_LENGTH} bytes")
        try:
            head = _DEBIT.pack(
                self.record_type, self.scheme_id, self.amount, self.time, self.operator_id, self.facility_id,
                self.reference, self.member_index, self.nonce,
            )  # fmt: skip
        except struct.error as exc:
            raise ProfileFormatError(f"debit field out of range: {exc}") from None
        return head + self.authorisation

    @classmethod
    def parse(cls, data: bytes) -> DebitRequest:
        if len(data) < DEBIT_LENGTH:
            raise ProfileFormatError(f"DEBIT data must be at least {DEBIT_LENGTH} bytes, got {len(data)}")
        rt, scheme, amount, time, op, fac, ref, member, nonce = _DEBIT.unpack(data[:DEBIT_LENGTH])
        try:
            record_type = RecordType(rt)
        except ValueError:
            raise ProfileFormatError(f"unknown record type {rt}") from None
        return cls(record_type, scheme, amount, time, op, fac, ref, member, nonce, bytes(data[DEBIT_LENGTH:]))


# ------------------------------------------------------------------------------------------ authorisation
class AuthKind(IntEnum):
    """Central-signed authorisations the card checks itself (root key, or a district chained to it)."""

    SYNC_ACK = 1  # value = the highest counter central holds: resets the offline counters
    SUPERSEDE = 2  # the card was replaced (lost, split, renewal on a new chip): SUPERSEDED for good
    TOP_UP = 3  # value = paise added to scheme
    RENEWAL = 4  # value = new balance of scheme
    SPLIT = 5  # value = paise of scheme moved to a split card: the balance is lowered (a SPLIT record)
    RENEW_POLICY = 6  # opens a renewal: new policy period and cover per scheme (tags 85, A1); scheme, value 0


class AuthTag(IntEnum):
    CHAIN = 0xA0  # zero or one 7F21 district certificate (absent: signed by the root key)
    BODY = 0x71
    KIND = 0x80
    CARD_ID = 0x81
    SERIAL = 0x82
    SCHEME = 0x83
    VALUE = 0x84
    POLICY = 0x85  # RENEW_POLICY only: start YYYYMMDD | end YYYYMMDD (inclusive)
    COVERS = 0xA1  # RENEW_POLICY only: 1-4 x 30 { 80 scheme (1) | 81 cover paise (4) }, ascending schemes
    SIGNATURE = 0x5F37


_BASE_TAGS = [AuthTag.KIND, AuthTag.CARD_ID, AuthTag.SERIAL, AuthTag.SCHEME, AuthTag.VALUE]


def _yyyymmdd(d: date) -> bytes:
    return d.strftime("%Y%m%d").encode("ascii")


def parse_policy(raw: bytes) -> tuple[date, date]:
    """16 ASCII digits YYYYMMDD YYYYMMDD -> (start, end); ProfileFormatError otherwise."""
    try:
        text = raw.decode("ascii")
        if len(text) != 16 or not text.isdigit():
            raise ValueError("not 16 digits")
        start = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        end = date(int(text[8:12]), int(text[12:14]), int(text[14:16]))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProfileFormatError(f"authorisation policy period malformed: {exc}") from None
    if end < start:
        raise ProfileFormatError(f"authorisation policy ends {end} before it starts {start}")
    return start, end


@dataclass(frozen=True)
class Authorisation:
    """A central decision about one card. ``serial`` strictly increases per card (no replay).

    RENEW_POLICY carries the new policy period (``policy``) and the cover of every scheme (``covers``,
    ascending scheme ids); every other kind carries neither.
    """

    kind: AuthKind
    card_id: str
    serial: int
    scheme_id: int
    value: int
    chain: bytes = b""
    signature: bytes = b""
    policy: tuple[date, date] | None = None
    covers: tuple[tuple[int, int], ...] = ()

    def body(self) -> bytes:
        renewal = self.kind is AuthKind.RENEW_POLICY
        if renewal != (self.policy is not None) or renewal != bool(self.covers):
            raise ProfileFormatError("a RENEW_POLICY authorisation, and only it, carries a policy and covers")
        extra = b""
        if self.policy is not None:
            ids = [s for s, _ in self.covers]
            if ids != sorted(set(ids)) or len(ids) > 4:
                raise ProfileFormatError("authorisation covers: 1-4 schemes in ascending order, once each")
            try:
                covers = b"".join(
                    tlv(0x30, tlv(0x80, bytes([s])) + tlv(0x81, c.to_bytes(4, "big"))) for s, c in self.covers
                )
            except (ValueError, OverflowError) as exc:
                raise ProfileFormatError(f"authorisation cover out of range: {exc}") from None
            extra = tlv(AuthTag.POLICY, _yyyymmdd(self.policy[0]) + _yyyymmdd(self.policy[1])) + tlv(
                AuthTag.COVERS, covers
            )
        return tlv(
            AuthTag.BODY,
            tlv(AuthTag.KIND, bytes([self.kind]))
            + tlv(AuthTag.CARD_ID, self.card_id.encode("ascii"))
            + tlv(AuthTag.SERIAL, self.serial.to_bytes(4, "big"))
            + tlv(AuthTag.SCHEME, bytes([self.scheme_id]))
            + tlv(AuthTag.VALUE, self.value.to_bytes(4, "big"))
            + extra,
        )

    def signed_bytes(self) -> bytes:
        return AUTH_DOMAIN + self.body()

    def encode(self) -> bytes:
        return tlv(AuthTag.CHAIN, self.chain) + self.body() + tlv(AuthTag.SIGNATURE, self.signature)

    @classmethod
    def parse(cls, data: bytes) -> Authorisation:
        chain, body, sig = expect_tags(
            split_tlvs(data, "authorisation"),
            [AuthTag.CHAIN, AuthTag.BODY, AuthTag.SIGNATURE],
            "authorisation",
        )
        items = split_tlvs(body, "authorisation body")
        kind = items[0][1] if items and items[0][0] == AuthTag.KIND else b""
        renewal = kind == bytes([AuthKind.RENEW_POLICY])
        tags = [*_BASE_TAGS, AuthTag.POLICY, AuthTag.COVERS] if renewal else _BASE_TAGS
        values = expect_tags(items, tags, "authorisation body")
        kind, cid, serial, scheme, value = values[:5]
        if len(kind) != 1 or len(serial) != 4 or len(scheme) != 1 or len(value) != 4 or len(sig) != 64:
            raise ProfileFormatError("authorisation field of a wrong length")
        try:
            k = AuthKind(kind[0])
        except ValueError:
            raise ProfileFormatError(f"unknown authorisation kind {kind[0]}") from None
        policy: tuple[date, date] | None = None
        covers: list[tuple[int, int]] = []
        if renewal:
            policy = parse_policy(values[5])
            for tag, entry in split_tlvs(values[6], "authorisation covers"):
                sid, cover = expect_tags(split_tlvs(entry, "cover"), [0x80, 0x81], "cover")
                if tag != 0x30 or len(sid) != 1 or len(cover) != 4:
                    raise ProfileFormatError("malformed authorisation cover")
                covers.append((sid[0], int.from_bytes(cover, "big")))
            ids = [s for s, _ in covers]
            if not covers or len(covers) > 4 or ids != sorted(set(ids)):
                raise ProfileFormatError("authorisation covers: 1-4 schemes in ascending order, once each")
        return cls(k, cid.decode("ascii", "replace"), int.from_bytes(serial, "big"), scheme[0],
                   int.from_bytes(value, "big"), chain, sig, policy, tuple(covers))  # fmt: skip


# ------------------------------------------------------------------------------------------ certificates
CVC_TAG = 0x7F21


def split_certificates(data: bytes) -> list[bytes]:
    """Concatenated CV certificates (EF 0101, PUT CERTIFICATE / COMMIT RENEWAL data) as each one's bytes."""
    try:
        parts = _tlv.parse_tlvs(bytes(data), strict=True)
    except _tlv.TlvError as exc:
        raise ProfileFormatError(f"certificates: {exc}") from None
    if any(p.tag != CVC_TAG for p in parts):
        raise ProfileFormatError("certificates: only 7F21 CV certificates")
    return [bytes(p) for p in parts]


# ------------------------------------------------------------------------------------------ renewal commit
_COMMIT = struct.Struct(">IQ")
COMMIT_HEAD_LENGTH = _COMMIT.size  # 12


def commit_renewal_data(time: int, operator_id: int, certificates: bytes) -> bytes:
    """COMMIT RENEWAL data: terminal time (4) || operator id (8) || card CVC || FKO CVC [|| district CVC]."""
    try:
        return _COMMIT.pack(time, operator_id) + certificates
    except struct.error as exc:
        raise ProfileFormatError(f"renewal commit field out of range: {exc}") from None


def parse_commit_renewal(data: bytes) -> tuple[int, int, bytes]:
    if len(data) <= COMMIT_HEAD_LENGTH:
        raise ProfileFormatError("COMMIT RENEWAL data = time (4) || operator (8) || certificates")
    time, operator = _COMMIT.unpack(data[:COMMIT_HEAD_LENGTH])
    return time, operator, bytes(data[COMMIT_HEAD_LENGTH:])


__all__ = [
    "BENEFICIARY_AID",
    "RENEWAL_WINDOW",
    "Attestation",
    "AuthKind",
    "Authorisation",
    "BenIns",
    "CardStatus",
    "DebitRequest",
    "FileId",
    "Lifecycle",
    "ObjectId",
    "Wallet",
    "attestation_message",
    "commit_renewal_data",
    "parse_commit_renewal",
    "parse_policy",
]
