"""Officer card application: the one home of its commands, data layout and activation ledger format.

Pure (no I/O): the simulated card application (hardware_sims/card/apps/officer.py) and the host session
(cardsvc/pki/officer_card.py) both use these definitions. Documented in docs/keymgmt.md ("Officer cards").

Life cycle: a blank card is in PERSONALISATION; the DKMA generates the officer key ON the card, writes the
officer certificate, the officer's fingerprint templates and PIN, then LOCKs it (OPERATIONAL, for good).
In OPERATIONAL the card signs a beneficiary card's certificate body only after the PIN AND a matching
fingerprint (match-on-card) in the same power session, and appends every activation to its own ledger.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, IntFlag

from cardsvc.pki.cvc import CvCertificate, check_reference
from cardsvc.pki.errors import FormatError, SignatureInvalidError
from cardsvc.pki.signer import Signer, verify_signature
from cardsvc.tlv import strict_codec

expect_sequence, parse_all, _, tlv = strict_codec(FormatError)

OFFICER_AID = bytes.fromhex("F0525342594F464601")
"""'\\xF0RSBYOFF\\x01' (proprietary RID range F0)."""

OFFICER_CLA = 0x80
PIN_REF = 0x81  # local PIN of the officer application (ISO VERIFY 00 20 00 81)
OFFICER_KEY_REF = 0x01  # the officer's signing key, generated on the card; usable only through ACTIVATE
PIN_MAX_TRIES = 3
BIO_MAX_TRIES = 5
LEDGER_CAPACITY = 200
CHR_FIELD = 24


class OfficerIns(IntEnum):
    """Proprietary instructions (CLA 80) of the officer application."""

    GET_STATUS = 0x10
    GENERATE_KEY = 0x46  # personalisation: new key pair on the card; returns the 65-byte public point
    PUT_CERTIFICATE = 0x50  # personalisation: the officer's CV certificate (must carry the card's key)
    PUT_TEMPLATES = 0x52  # personalisation: one or more 7F2E {81 compact minutiae}
    SET_PIN = 0x54  # personalisation: the officer's PIN (4-12 digits)
    LOCK = 0x56  # end personalisation: OPERATIONAL for good
    GET_CERTIFICATE = 0x58  # the officer certificate (always readable)
    VERIFY_BIOMETRIC = 0x21  # 7F2E {81 compact minutiae}: match-on-card against the stored templates
    ACTIVATE_CARD = 0x60  # data = a beneficiary card's 7F4E body; returns the 64-byte signature
    READ_LEDGER = 0x62  # P1P2 = first entry index, data = host challenge (8-32 bytes)
    AUTHENTICATE = 0x64  # data = host challenge (8-32 bytes); returns flags(1) || officer_auth signature
    RESET_RETRY_COUNTER = 0x2C  # data = a district's UnblockAuthorisation [|| new PIN]; see below


class Lifecycle(IntEnum):
    PERSONALISATION = 1
    OPERATIONAL = 2


class LedgerTag(IntEnum):
    """Tags of the READ LEDGER response."""

    COUNT = 0x80  # 4 bytes: entries written so far
    HEAD = 0x81  # 32 bytes: hash-chain head over all entries
    FIRST = 0x82  # 4 bytes: index of the first entry returned
    ENTRIES = 0x83  # n x 64-byte entries
    SIGNATURE = 0x5F37  # officer key over ledger_statement(...)


@dataclass(frozen=True)
class Status:
    """GET STATUS answer: 01 lifecycle | 02 PIN tries | 03 bio tries | 04 count(2) | 05 capacity(2)."""

    lifecycle: Lifecycle
    pin_tries_left: int
    bio_tries_left: int
    ledger_count: int
    ledger_capacity: int

    def encode(self) -> bytes:
        return struct.pack(
            ">BBBHH",
            self.lifecycle,
            self.pin_tries_left,
            self.bio_tries_left,
            self.ledger_count,
            self.ledger_capacity,
        )

    @classmethod
    def decode(cls, raw: bytes) -> Status:
        if len(raw) != 7:
            raise FormatError(f"officer status must be 7 bytes, got {len(raw)}")
        lc, pin, bio, count, cap = struct.unpack(">BBBHH", raw)
        try:
            return cls(Lifecycle(lc), pin, bio, count, cap)
        except ValueError:
            raise FormatError(f"unknown officer card life cycle {lc}") from None


LEDGER_ENTRY_SIZE = 4 + 4 + CHR_FIELD + 32
GENESIS_HEAD = bytes(32)
LEDGER_DOMAIN = b"RSBY-LEDGER\x01"


@dataclass(frozen=True)
class LedgerEntry:
    """One activation: sequence number (from 1), card time (Unix seconds), card CHR, SHA-256 of the body."""

    seq: int
    time: int
    card_chr: str
    body_hash: bytes

    def encode(self) -> bytes:
        chr_raw = check_reference(self.card_chr, "card id").encode("ascii").ljust(CHR_FIELD, b"\x00")
        if len(self.body_hash) != 32:
            raise FormatError("ledger body hash must be 32 bytes")
        return struct.pack(">II", self.seq, self.time) + chr_raw + self.body_hash

    @classmethod
    def decode(cls, raw: bytes) -> LedgerEntry:
        if len(raw) != LEDGER_ENTRY_SIZE:
            raise FormatError(f"ledger entry must be {LEDGER_ENTRY_SIZE} bytes, got {len(raw)}")
        seq, t = struct.unpack(">II", raw[:8])
        try:
            chr_ = raw[8 : 8 + CHR_FIELD].rstrip(b"\x00").decode("ascii")
        except UnicodeDecodeError:
            raise FormatError("ledger card id is not ASCII") from None
        return cls(seq, t, check_reference(chr_, "card id"), raw[8 + CHR_FIELD :])

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.time, tz=UTC)


def next_head(head: bytes, entry: bytes) -> bytes:
    """The ledger is a hash chain: head_n = SHA-256(head_{n-1} || entry_n)."""
    return hashlib.sha256(head + entry).digest()


def ledger_statement(officer_chr: str, count: int, head: bytes, challenge: bytes) -> bytes:
    """What the card signs on READ LEDGER: binds the officer, the count, the head and a fresh challenge."""
    return (
        LEDGER_DOMAIN
        + tlv(0x80, check_reference(officer_chr, "officer CHR").encode("ascii"))
        + tlv(0x81, count.to_bytes(4, "big"))
        + tlv(0x82, head)
        + tlv(0x83, challenge)
    )


#: Bytes of a READ LEDGER answer besides the entries: 80(6) 81(34) 82(6) 83 header(4) 5F37(67).
LEDGER_PAGE_OVERHEAD = 6 + 34 + 6 + 4 + 67


def encode_ledger_response(count: int, head: bytes, first: int, entries: bytes, signature: bytes) -> bytes:
    return (
        tlv(LedgerTag.COUNT, count.to_bytes(4, "big"))
        + tlv(LedgerTag.HEAD, head)
        + tlv(LedgerTag.FIRST, first.to_bytes(4, "big"))
        + tlv(LedgerTag.ENTRIES, entries)
        + tlv(LedgerTag.SIGNATURE, signature)
    )


@dataclass(frozen=True)
class LedgerPage:
    count: int
    head: bytes
    first: int
    entries: tuple[LedgerEntry, ...]
    raw_entries: bytes
    signature: bytes

    @classmethod
    def parse(cls, data: bytes) -> LedgerPage:
        count, head, first, entries, sig = expect_sequence(
            parse_all(data),
            [LedgerTag.COUNT, LedgerTag.HEAD, LedgerTag.FIRST, LedgerTag.ENTRIES, LedgerTag.SIGNATURE],
            "ledger",
        )
        if len(entries) % LEDGER_ENTRY_SIZE:
            raise FormatError("ledger entries are not a whole number of 64-byte entries")
        parsed = tuple(
            LedgerEntry.decode(entries[i : i + LEDGER_ENTRY_SIZE])
            for i in range(0, len(entries), LEDGER_ENTRY_SIZE)
        )
        return cls(int.from_bytes(count, "big"), head, int.from_bytes(first, "big"), parsed, entries, sig)


def verify_ledger_page(officer_chr: str, officer_point: bytes, challenge: bytes, page: LedgerPage) -> None:
    """The card signed this page's count and head for our challenge."""
    statement = ledger_statement(officer_chr, page.count, page.head, challenge)
    verify_signature(officer_point, statement, page.signature, subject=officer_chr)


def verify_ledger(
    officer_chr: str,
    officer_point: bytes,
    challenge: bytes,
    raw_entries: bytes,
    count: int,
    head: bytes,
    signature: bytes,
) -> tuple[LedgerEntry, ...]:
    """Check a COMPLETE ledger (all ``count`` entries from index 0) against the card's signed head.

    Raises SignatureInvalidError if the card did not sign this count and head for this challenge, and
    FormatError if the entries do not chain to the head or are out of sequence (tampered or incomplete).
    """
    verify_signature(
        officer_point, ledger_statement(officer_chr, count, head, challenge), signature, subject=officer_chr
    )
    if len(raw_entries) != count * LEDGER_ENTRY_SIZE:
        raise FormatError(
            f"ledger holds {len(raw_entries) // LEDGER_ENTRY_SIZE} entries, the card signed {count}"
        )
    h = GENESIS_HEAD
    entries: list[LedgerEntry] = []
    for i in range(count):
        raw = raw_entries[i * LEDGER_ENTRY_SIZE : (i + 1) * LEDGER_ENTRY_SIZE]
        entry = LedgerEntry.decode(raw)
        if entry.seq != i + 1:
            raise FormatError(f"ledger entry {i + 1} carries sequence number {entry.seq}")
        entries.append(entry)
        h = next_head(h, raw)
    if h != head:
        raise SignatureInvalidError(
            "ledger entries do not chain to the head the card signed (altered, dropped or reordered)",
            subject=officer_chr,
        )
    return tuple(entries)


AUTH_DOMAIN = b"RSBY-OFFICER-AUTH\x01"
AUTH_CHALLENGE_MIN = 8
AUTH_CHALLENGE_MAX = 32
AUTH_SIGNATURE_SIZE = 64


class AuthFlag(IntFlag):
    """AUTHENTICATE flag byte: what the officer proved to the card in this power session."""

    PIN_VERIFIED = 0x01
    FINGERPRINT_VERIFIED = 0x02


AUTH_FULLY_VERIFIED = AuthFlag.PIN_VERIFIED | AuthFlag.FINGERPRINT_VERIFIED


def check_auth_challenge(challenge: bytes) -> bytes:
    if not AUTH_CHALLENGE_MIN <= len(challenge) <= AUTH_CHALLENGE_MAX:
        raise FormatError(
            f"officer AUTHENTICATE challenge must be {AUTH_CHALLENGE_MIN}-{AUTH_CHALLENGE_MAX} bytes, "
            f"got {len(challenge)}"
        )
    return challenge


def officer_auth_message(officer_chr: str, challenge: bytes, flags: AuthFlag) -> bytes:
    """What the card signs on AUTHENTICATE: proof of key possession for a terminal's fresh challenge.

    The "RSBY-OFFICER-AUTH" 01 prefix keeps it apart from the other two things the officer key signs (a
    7F4E certificate body on ACTIVATE CARD, "RSBY-LEDGER" 01 on READ LEDGER), so an authentication
    signature can never pass as an activation or a ledger statement, nor the other way round.
    """
    return (
        AUTH_DOMAIN
        + tlv(0x80, check_reference(officer_chr, "officer CHR").encode("ascii"))
        + tlv(0x81, check_auth_challenge(challenge))
        + tlv(0x82, bytes([AuthFlag(flags)]))
    )


def encode_auth_response(flags: AuthFlag, signature: bytes) -> bytes:
    if len(signature) != AUTH_SIGNATURE_SIZE:
        raise FormatError(f"officer signature must be {AUTH_SIGNATURE_SIZE} bytes, got {len(signature)}")
    return bytes([AuthFlag(flags)]) + signature


def parse_auth_response(raw: bytes) -> tuple[AuthFlag, bytes]:
    """AUTHENTICATE answer: flags(1) || r||s(64)."""
    if len(raw) != 1 + AUTH_SIGNATURE_SIZE:
        raise FormatError(f"officer AUTHENTICATE answer must be 65 bytes, got {len(raw)}")
    if raw[0] & ~int(AUTH_FULLY_VERIFIED):
        raise FormatError(f"unknown officer AUTHENTICATE flags {raw[0]:02X}")
    return AuthFlag(raw[0]), raw[1:]


def verify_officer_auth(
    officer_chr: str, officer_point: bytes, challenge: bytes, flags: AuthFlag, signature: bytes
) -> None:
    """The card holding ``officer_point``'s private key signed this challenge, else SignatureInvalidError."""
    verify_signature(
        officer_point, officer_auth_message(officer_chr, challenge, flags), signature, subject=officer_chr
    )


def split_templates(data: bytes) -> list[bytes]:
    """PUT TEMPLATES data: one or more 7F2E TLVs; returns each whole TLV (checked, not decoded)."""
    items = parse_all(data)
    if not items or any(t.tag != 0x7F2E for t in items):
        raise FormatError("templates must be one or more 7F2E biometric data templates")
    return [tlv(t.tag, t.value) for t in items]


def join_templates(templates: Sequence[bytes]) -> bytes:
    return b"".join(templates)


# --- unblock at the DKMA (RESET RETRY COUNTER under the district's signature) ---------------------------

UNBLOCK_DOMAIN = b"RSBY-OFFICER-UNBLOCK\x01"
UNBLOCK_CHALLENGE_LENGTH = 16  # GET CHALLENGE Le the DKMA asks for (the card takes 8-32 bytes)
PIN_MIN_LENGTH = 4
PIN_MAX_LENGTH = 12


class Unblock(IntFlag):
    """What a district authorises the card to unblock (tag 82 of the authorisation)."""

    PIN = 0x01  # a new PIN (tag 83 of the command) and fresh PIN tries
    FINGERPRINT = 0x02  # fresh match-on-card tries

    def names(self) -> list[str]:
        """["PIN"], ["fingerprint"] or both: for messages and the audit log."""
        return [
            name for flag, name in ((Unblock.PIN, "PIN"), (Unblock.FINGERPRINT, "fingerprint")) if self & flag
        ]

    def describe(self) -> str:
        return " and ".join(self.names())


UNBLOCK_ALL = Unblock.PIN | Unblock.FINGERPRINT


class UnblockTag(IntEnum):
    """Tags of the RESET RETRY COUNTER command data, in this order (docs/keymgmt.md)."""

    DISTRICT_CERTIFICATE = 0x7F21  # the authorising district's CV certificate (chains to the card's anchor)
    OFFICER = 0x80  # CHR of the card's own officer certificate
    CHALLENGE = 0x81  # the card's GET CHALLENGE answer, 8-32 bytes
    WHAT = 0x82  # one byte of Unblock flags
    SIGNATURE = 0x5F37  # district key over unblock_statement(...)
    NEW_PIN = 0x83  # 4-12 ASCII digits, present exactly when WHAT has PIN; NOT covered by the signature


def check_new_pin(pin: bytes) -> bytes:
    """An officer PIN as the card stores it: 4-12 ASCII digits (the message never echoes it)."""
    if not (PIN_MIN_LENGTH <= len(pin) <= PIN_MAX_LENGTH and pin.isascii() and pin.isdigit()):
        raise FormatError(f"the new PIN must be {PIN_MIN_LENGTH}-{PIN_MAX_LENGTH} digits")
    return pin


def check_unblock_what(what: Unblock | int) -> Unblock:
    """What an unblock may name: the PIN, the fingerprint or both, nothing else."""
    what = Unblock(what)
    if not what or int(what) & ~int(UNBLOCK_ALL):  # int: ~ on a flag keeps only known bits
        raise FormatError(f"unblock must name the PIN, the fingerprint or both, got {int(what):02X}")
    return what


def check_unblock(what: Unblock | int, new_pin: bytes | None) -> Unblock:
    """What an unblock may name (the PIN, the fingerprint or both), with a new PIN (4-12 digits) exactly
    when it names the PIN: the one check for the DKMA before it touches the card, the command's encoder and
    its decoder."""
    what = check_unblock_what(what)
    if bool(what & Unblock.PIN) != (new_pin is not None):
        raise FormatError("a new PIN goes with a PIN unblock, and only with one")
    if new_pin is not None:
        check_new_pin(new_pin)
    return what


def unblock_statement(officer_chr: str, challenge: bytes, what: Unblock) -> bytes:
    """What the district signs: "RSBY-OFFICER-UNBLOCK" 01 || 80 officer CHR || 81 challenge || 82 what.

    The prefix keeps it apart from everything else a district key signs (7F4E certificate bodies,
    revocation lists, audit-entry hashes). The new PIN is deliberately not in it: a signature over a
    4-12 digit PIN and a public challenge would let anyone holding the authorisation search the PIN.
    """
    what = check_unblock_what(what)
    return (
        UNBLOCK_DOMAIN
        + tlv(0x80, check_reference(officer_chr, "officer CHR").encode("ascii"))
        + tlv(0x81, check_auth_challenge(challenge))
        + tlv(0x82, bytes([what]))
    )


@dataclass(frozen=True)
class UnblockAuthorisation:
    """A district's signed permission for ONE card (``officer_chr``) to unblock ``what``, now (``challenge``)

    is the card's GET CHALLENGE of this power session, so the permission works once)."""

    district: CvCertificate
    officer_chr: str
    challenge: bytes
    what: Unblock
    signature: bytes

    def statement(self) -> bytes:
        return unblock_statement(self.officer_chr, self.challenge, self.what)

    def verify(self) -> None:
        """The signature is the presented district certificate's key over the statement (else raises)."""
        verify_signature(self.district.public_point, self.statement(), self.signature,
                         subject=self.district.chr)  # fmt: skip

    def encode(self, new_pin: bytes | None = None) -> bytes:
        """RESET RETRY COUNTER command data; ``new_pin`` exactly when the PIN is unblocked."""
        self.statement()  # refuses a malformed authorisation before it is sent
        check_unblock(self.what, new_pin)
        if len(self.signature) != AUTH_SIGNATURE_SIZE:
            raise FormatError(f"district signature must be {AUTH_SIGNATURE_SIZE} bytes")
        out = (
            self.district.encode()
            + tlv(UnblockTag.OFFICER, self.officer_chr.encode("ascii"))
            + tlv(UnblockTag.CHALLENGE, self.challenge)
            + tlv(UnblockTag.WHAT, bytes([self.what]))
            + tlv(UnblockTag.SIGNATURE, self.signature)
        )
        return out if new_pin is None else out + tlv(UnblockTag.NEW_PIN, new_pin)

    @classmethod
    def parse(cls, data: bytes) -> tuple[UnblockAuthorisation, bytes | None]:
        """Strict decoding of RESET RETRY COUNTER data: every tag once, in order, nothing else.

        Returns the authorisation and the new PIN (None for a fingerprint-only unblock). The signature is
        NOT checked here (:meth:`verify`; the card also validates the district certificate).
        """
        items = parse_all(data)
        tags = [UnblockTag.DISTRICT_CERTIFICATE, UnblockTag.OFFICER, UnblockTag.CHALLENGE, UnblockTag.WHAT,
                UnblockTag.SIGNATURE]  # fmt: skip
        with_pin = len(items) == len(tags) + 1
        values = expect_sequence(items, [*tags, UnblockTag.NEW_PIN] if with_pin else tags, "unblock")
        district = CvCertificate.parse(items[0].encoded)
        try:
            officer_chr = check_reference(values[1].decode("ascii"), "officer CHR")
        except UnicodeDecodeError:
            raise FormatError("unblock officer CHR is not ASCII") from None
        challenge = check_auth_challenge(values[2])
        if len(values[3]) != 1:
            raise FormatError("unblock 'what' must be one byte")
        what = Unblock(values[3][0])
        if len(values[4]) != AUTH_SIGNATURE_SIZE:
            raise FormatError(f"district signature must be {AUTH_SIGNATURE_SIZE} bytes, got {len(values[4])}")
        auth = cls(district, officer_chr, challenge, what, values[4])
        auth.statement()  # 'what' names something known
        new_pin = values[5] if with_pin else None
        check_unblock(what, new_pin)
        return auth, new_pin


def sign_unblock(
    signer: Signer, district: CvCertificate, officer_chr: str, challenge: bytes, what: Unblock
) -> UnblockAuthorisation:
    """The district (its key in ``signer``) authorises ``officer_chr``'s card to unblock ``what``."""
    signature = signer.sign(unblock_statement(officer_chr, challenge, what))
    return UnblockAuthorisation(district, officer_chr, challenge, Unblock(what), signature)
