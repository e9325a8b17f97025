"""The upload batch envelope: how a terminal hands camps, transactions, FKO ledgers and fallbacks to central.

Encoding: canonical JSON (see docs/formats.md). The signed object is ``batch``; its canonical bytes are
UTF-8 JSON with sorted keys, no whitespace, ASCII only, integers only (no floats), binary fields as standard
base64 with padding, identifiers as 16 lower-case hex digits. The wire document is
``{"batch": {...}, "signature": "<base64 raw r||s>"}``. SHA-256 of the canonical bytes is the batch's content
hash and idempotency key: the same batch re-signed (ECDSA signatures differ each time) or re-serialised still
has the same hash, so it is never counted twice.

Pure: no I/O. The terminal's key is found through a caller-supplied lookup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.formats.errors import FieldValueError, FormatError
from cardsvc.formats.templates import check_sealed
from cardsvc.formats.transaction import (
    RECORD_LENGTH,
    TransactionRecord,
    sign_raw,
    verify_raw_signature,
)
from cardsvc.pki.errors import PointError
from cardsvc.pki.signer import load_public_point

BATCH_FORMAT: Final = "cardsvc-batch"
BATCH_VERSION: Final = 1
MAX_ITEMS: Final = 20_000
MAX_TEXT: Final = 200
MAX_CHAIN: Final = 4  # certificates below the root
MAX_CERTIFICATE: Final = 1024
_RECORD_B64 = 4 * ((RECORD_LENGTH + 2) // 3)  # base64 length of a record
_HEX_ID = re.compile(r"[0-9a-f]{16}")
_U32 = 0xFFFF_FFFF
_U63 = (1 << 63) - 1


class BatchKind(StrEnum):
    """What a batch carries."""

    CAMP = "camp"
    TRANSACTIONS = "transactions"
    FKO_LEDGER = "fko_ledger"
    FALLBACKS = "fallbacks"


class Gender(StrEnum):
    FEMALE = "F"
    MALE = "M"
    OTHER = "O"


# -- canonical JSON --------------------------------------------------------------------------------


def _check_canonical_value(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise FieldValueError(f"{where}: floats are not allowed in a batch (use integers)")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_canonical_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldValueError(f"{where}: object keys must be strings")
            _check_canonical_value(item, f"{where}.{key}")
        return
    raise FieldValueError(f"{where}: {type(value).__name__} cannot be encoded")


def canonical_json(value: Any) -> bytes:
    """The one deterministic encoding of a JSON value (sorted keys, no spaces, ASCII, no floats)."""
    _check_canonical_value(value, "batch")
    return _dumps(value)


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: Any, where: str) -> bytes:
    """Decode standard base64, accepting only its canonical form (one text per value: stable hashes)."""
    if not isinstance(text, str):
        raise FieldValueError(f"{where} must be a base64 string")
    try:
        encoded = text.encode("ascii")
        data = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise FieldValueError(f"{where} is not valid base64") from None
    if binascii.b2a_base64(data, newline=False) != encoded:
        raise FieldValueError(f"{where} is not canonical base64 (padding or unused bits)")
    return data


def id_hex(value: int) -> str:
    """An 8-byte identifier as the 16 lower-case hex digits used in JSON and in the database."""
    if not 0 <= value < 1 << 64:
        raise FieldValueError(f"identifier {value} does not fit in 8 bytes")
    return f"{value:016x}"


def parse_id(text: Any, where: str) -> int:
    if not isinstance(text, str) or not _HEX_ID.fullmatch(text):
        raise FieldValueError(f"{where} must be 16 lower-case hex digits")
    return int(text, 16)


# -- field helpers ---------------------------------------------------------------------------------


def _obj(value: Any, where: str, keys: set[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldValueError(f"{where} must be an object")
    missing = keys - optional - value.keys()
    if missing:
        raise FieldValueError(f"{where} lacks {', '.join(sorted(missing))}")
    extra = value.keys() - keys
    if extra:
        raise FieldValueError(f"{where} has unknown fields {', '.join(sorted(extra))}")
    return value


def _int(value: Any, where: str, maximum: int = _U63, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldValueError(f"{where} must be an integer")
    if not minimum <= value <= maximum:
        raise FieldValueError(f"{where}={value} is outside {minimum}..{maximum}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise FieldValueError(f"{where} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def load_public_key(sec1: bytes, where: str = "public key") -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its SEC1 point encoding (65 bytes uncompressed or 33 compressed), decoded by
    :func:`cardsvc.pki.signer.load_public_point`; FieldValueError naming ``where`` when it is not one."""
    try:
        return load_public_point(sec1, compressed=True)
    except PointError:
        raise FieldValueError(f"{where} is not a P-256 point") from None


def _chain(obj: dict[str, Any], where: str) -> tuple[bytes, ...]:
    """The optional ``card_chain`` list: 1 to MAX_CHAIN certificates when present, never empty."""
    chain = obj.get("card_chain", [])
    if not isinstance(chain, list) or len(chain) > MAX_CHAIN or ("card_chain" in obj and not chain):
        raise FieldValueError(f"{where}.card_chain must list 1 to {MAX_CHAIN} certificates when present")
    card_chain = tuple(b64decode(c, f"{where}.card_chain[{i}]") for i, c in enumerate(chain))
    if any(not 0 < len(c) <= MAX_CERTIFICATE for c in card_chain):
        raise FieldValueError(f"{where}.card_chain: a certificate must be 1 to {MAX_CERTIFICATE} bytes")
    return card_chain


# -- items -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionItem:
    """One card record and the card key that signed it (SEC1 point).

    ``card_chain`` (optional, absent from the JSON when empty): the card's CV certificates (district, FKO,
    card; root excluded), for a card whose camp central may not have yet; central then checks the key
    with the root key alone, at the record's time.
    """

    record: bytes
    card_key: bytes
    card_chain: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        chain = {"card_chain": [b64encode(c) for c in self.card_chain]} if self.card_chain else {}
        return {**chain, "record": b64encode(self.record), "card_key": b64encode(self.card_key)}

    @classmethod
    def from_json(cls, value: Any, where: str) -> TransactionItem:
        # the common case first, checked as strictly but with less work (thousands of items per batch)
        if type(value) is dict and len(value) == 2:
            record, card_key = value.get("record"), value.get("card_key")
            if type(record) is str and len(record) == _RECORD_B64 and type(card_key) is str:
                raw_record = b64decode(record, f"{where}.record")
                raw_key = b64decode(card_key, f"{where}.card_key")
                if len(raw_key) in (33, 65):
                    return cls(record=raw_record, card_key=raw_key)
        obj = _obj(value, where, {"record", "card_key", "card_chain"}, optional=frozenset({"card_chain"}))
        record = b64decode(obj["record"], f"{where}.record")
        if len(record) != RECORD_LENGTH:
            raise FieldValueError(f"{where}.record is {len(record)} bytes, expected {RECORD_LENGTH}")
        card_key = b64decode(obj["card_key"], f"{where}.card_key")
        if len(card_key) not in (33, 65):
            raise FieldValueError(f"{where}.card_key must be a 33- or 65-byte SEC1 point")
        return cls(record=record, card_key=card_key, card_chain=_chain(obj, where))

    def parsed(self) -> TransactionRecord:
        return TransactionRecord.parse(self.record)


@dataclass(frozen=True, slots=True)
class Member:
    gender: Gender
    birth_year: int

    def to_json(self) -> dict[str, Any]:
        return {"gender": self.gender.value, "birth_year": self.birth_year}

    @classmethod
    def from_json(cls, value: Any, where: str) -> Member:
        obj = _obj(value, where, {"gender", "birth_year"})
        try:
            gender = Gender(obj["gender"])
        except ValueError:
            raise FieldValueError(f"{where}.gender must be one of F, M, O") from None
        return cls(gender=gender, birth_year=_int(obj["birth_year"], f"{where}.birth_year", 2200, 1880))


@dataclass(frozen=True, slots=True)
class SchemeCover:
    """One scheme on a card and its cover (paise): the balance before the card's first record of it."""

    scheme_id: int
    cover_paise: int

    def to_json(self) -> dict[str, Any]:
        return {"scheme_id": self.scheme_id, "cover_paise": self.cover_paise}

    @classmethod
    def from_json(cls, value: Any, where: str) -> SchemeCover:
        obj = _obj(value, where, {"scheme_id", "cover_paise"})
        return cls(
            _int(obj["scheme_id"], f"{where}.scheme_id", 0xFF),
            _int(obj["cover_paise"], f"{where}.cover_paise", _U32),
        )


MAX_SCHEMES: Final = 8


@dataclass(frozen=True, slots=True)
class CampCard:
    """One card activated at a camp: who it belongs to, its cover and policy period, its public key."""

    card_id: int
    household_id: str
    district: str
    scheme_id: int
    policy_start: int
    policy_end: int
    cover_paise: int
    card_key: bytes
    fko_id: int
    members: tuple[Member, ...]
    #: optional: the card's CV certificates (district, FKO, card: top first, root excluded), so central can
    #: check with only the root key that an FKO certified this key for this card. Absent from the JSON when
    #: empty (batches without it keep their bytes and content hash).
    card_chain: tuple[bytes, ...] = ()
    #: optional: the card's fingerprint templates sealed to central's de-duplication key
    #: (cardsvc/formats/templates.py); absent from the JSON when empty (older batches keep their hash).
    templates: bytes = b""
    #: optional: EVERY scheme on the card with its cover (the main ``scheme_id``/``cover_paise`` among them),
    #: so central reconciles each scheme's balance; absent from the JSON when empty.
    schemes: tuple[SchemeCover, ...] = ()

    def to_json(self) -> dict[str, Any]:
        chain = {"card_chain": [b64encode(c) for c in self.card_chain]} if self.card_chain else {}
        sealed = {"templates": b64encode(self.templates)} if self.templates else {}
        schemes = {"schemes": [s.to_json() for s in self.schemes]} if self.schemes else {}
        return {
            **chain,
            **sealed,
            **schemes,
            "card_id": id_hex(self.card_id),
            "household_id": self.household_id,
            "district": self.district,
            "scheme_id": self.scheme_id,
            "policy_start": self.policy_start,
            "policy_end": self.policy_end,
            "cover_paise": self.cover_paise,
            "card_key": b64encode(self.card_key),
            "fko_id": id_hex(self.fko_id),
            "members": [m.to_json() for m in self.members],
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> CampCard:
        keys = {
            "card_id", "household_id", "district", "scheme_id", "policy_start", "policy_end",
            "cover_paise", "card_key", "fko_id", "members", "card_chain", "templates", "schemes",
        }  # fmt: skip
        obj = _obj(value, where, keys, optional=frozenset({"card_chain", "templates", "schemes"}))
        schemes: tuple[SchemeCover, ...] = ()
        if "schemes" in obj:
            listed = obj["schemes"]
            if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_SCHEMES:
                raise FieldValueError(f"{where}.schemes must list 1 to {MAX_SCHEMES} schemes when present")
            schemes = tuple(SchemeCover.from_json(x, f"{where}.schemes[{i}]") for i, x in enumerate(listed))
            if len({x.scheme_id for x in schemes}) != len(schemes):
                raise FieldValueError(f"{where}.schemes lists a scheme twice")
            if SchemeCover(obj["scheme_id"], obj["cover_paise"]) not in schemes:
                raise FieldValueError(
                    f"{where}.schemes must include the card's scheme_id with its cover_paise"
                )
        templates = b""
        if "templates" in obj:
            templates = b64decode(obj["templates"], f"{where}.templates")
            check_sealed(templates, f"{where}.templates")
        chain = obj.get("card_chain", [])
        if not isinstance(chain, list) or len(chain) > MAX_CHAIN or ("card_chain" in obj and not chain):
            raise FieldValueError(f"{where}.card_chain must list 1 to {MAX_CHAIN} certificates when present")
        card_chain = tuple(b64decode(c, f"{where}.card_chain[{i}]") for i, c in enumerate(chain))
        if any(not 0 < len(c) <= MAX_CERTIFICATE for c in card_chain):
            raise FieldValueError(f"{where}.card_chain: a certificate must be 1 to {MAX_CERTIFICATE} bytes")
        members = obj["members"]
        if not isinstance(members, list) or not 1 <= len(members) <= 5:
            raise FieldValueError(f"{where}.members must list 1 to 5 members")
        start = _int(obj["policy_start"], f"{where}.policy_start", _U32)
        end = _int(obj["policy_end"], f"{where}.policy_end", _U32)
        if end <= start:
            raise FieldValueError(f"{where}: policy_end must be after policy_start")
        card_key = b64decode(obj["card_key"], f"{where}.card_key")
        load_public_key(card_key, f"{where}.card_key")
        return cls(
            card_id=parse_id(obj["card_id"], f"{where}.card_id"),
            household_id=_text(obj["household_id"], f"{where}.household_id"),
            district=_text(obj["district"], f"{where}.district"),
            scheme_id=_int(obj["scheme_id"], f"{where}.scheme_id", 0xFF),
            policy_start=start,
            policy_end=end,
            cover_paise=_int(obj["cover_paise"], f"{where}.cover_paise", _U32),
            card_key=card_key,
            fko_id=parse_id(obj["fko_id"], f"{where}.fko_id"),
            members=tuple(Member.from_json(m, f"{where}.members[{i}]") for i, m in enumerate(members)),
            card_chain=card_chain,
            templates=templates,
            schemes=schemes,
        )


@dataclass(frozen=True, slots=True)
class SignedLedger:
    """The FKO card's own signature over its ledger, as read back (cardsvc/pki/officer.py ``verify_ledger``):
    the card signed (officer CHR, ``count``, ``head``, ``challenge``); ``entries`` are the raw 64-byte ledger
    entries that must chain to ``head``; ``officer_chain`` the officer's CV certificates (district, FKO)."""

    officer_chain: tuple[bytes, ...]
    challenge: bytes
    count: int
    head: bytes
    entries: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "officer_chain": [b64encode(c) for c in self.officer_chain],
            "challenge": b64encode(self.challenge),
            "count": self.count,
            "head": b64encode(self.head),
            "entries": b64encode(self.entries),
            "signature": b64encode(self.signature),
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> SignedLedger:
        obj = _obj(value, where, {"officer_chain", "challenge", "count", "head", "entries", "signature"})
        chain = _chain({"card_chain": obj["officer_chain"]}, f"{where}.officer")
        challenge = b64decode(obj["challenge"], f"{where}.challenge")
        head = b64decode(obj["head"], f"{where}.head")
        signature = b64decode(obj["signature"], f"{where}.signature")
        if not 8 <= len(challenge) <= 64:
            raise FieldValueError(f"{where}.challenge must be 8 to 64 bytes")
        if len(head) != 32 or len(signature) != 64:
            raise FieldValueError(f"{where}: head must be 32 bytes and signature 64 (raw r||s)")
        entries = b"" if obj["entries"] == "" else b64decode(obj["entries"], f"{where}.entries")
        count = _int(obj["count"], f"{where}.count", MAX_ITEMS)
        return cls(chain, challenge, count, head, entries, signature)


@dataclass(frozen=True, slots=True)
class FkoLedgerEntry:
    """What one FKO card's ledger says it activated, read back by the district after a camp.

    ``signed_ledger`` (optional, absent from the JSON when None): the card's signature over the ledger, so
    central checks the officer's word and not only the terminal's.
    """

    fko_id: int
    activated: tuple[int, ...]
    signed_ledger: SignedLedger | None = None

    def to_json(self) -> dict[str, Any]:
        signed = {"signed_ledger": self.signed_ledger.to_json()} if self.signed_ledger else {}
        return {**signed, "fko_id": id_hex(self.fko_id), "activated": [id_hex(c) for c in self.activated]}

    @classmethod
    def from_json(cls, value: Any, where: str) -> FkoLedgerEntry:
        obj = _obj(
            value, where, {"fko_id", "activated", "signed_ledger"}, optional=frozenset({"signed_ledger"})
        )
        activated = obj["activated"]
        if not isinstance(activated, list) or len(activated) > MAX_ITEMS:
            raise FieldValueError(f"{where}.activated must be a list of at most {MAX_ITEMS} card ids")
        signed = obj.get("signed_ledger")
        return cls(
            fko_id=parse_id(obj["fko_id"], f"{where}.fko_id"),
            activated=tuple(parse_id(c, f"{where}.activated[{i}]") for i, c in enumerate(activated)),
            signed_ledger=None
            if signed is None
            else SignedLedger.from_json(signed, f"{where}.signed_ledger"),
        )


class FallbackKind(StrEnum):
    """How a member was accepted after a fingerprint mismatch (point_of_service/services/fallback.py)."""

    ANOTHER_FINGER = "another-finger"
    ANOTHER_MEMBER = "another-member"
    OVERRIDE = "supervised-override"


MAX_MEMBER: Final = 4
MAX_RECORDS: Final = 16
_TOKEN = re.compile(r"[a-z][a-z0-9-]{0,39}")


@dataclass(frozen=True, slots=True)
class FallbackItem:
    """One fallback a terminal journalled: another finger, another member, or a supervised override.

    ``event`` is the terminal's own journal event number (two identical-looking fallbacks stay two items);
    ``records`` the card counters of the records made on the strength of this verification (an override's
    admission and discharge). An override names its supervisor, a reason code and the note in words; the
    other kinds carry none of them. Optional fields are absent from the JSON when empty.
    """

    event: int
    at: int
    kind: FallbackKind
    card_id: int
    member: int
    operator_id: int
    supervisor_id: int | None = None
    reason: str = ""
    note: str = ""
    records: tuple[int, ...] = ()

    def check(self, where: str) -> None:
        """The item's own rules (checked when parsed and before it is encoded); raises FieldValueError."""
        override = self.kind is FallbackKind.OVERRIDE
        if override and (self.supervisor_id is None or not self.reason or not self.note.strip()):
            raise FieldValueError(f"{where}: a supervised override needs supervisor_id, reason and note")
        if not override and (self.supervisor_id is not None or self.reason or self.note):
            raise FieldValueError(f"{where}: only a supervised override carries supervisor_id, reason, note")
        if self.reason and not _TOKEN.fullmatch(self.reason):
            raise FieldValueError(f"{where}.reason must be a code of lower-case letters, digits and '-'")
        if len(self.note) > MAX_TEXT:
            raise FieldValueError(f"{where}.note is longer than {MAX_TEXT} characters")
        if not 0 <= self.member <= MAX_MEMBER:
            raise FieldValueError(f"{where}.member={self.member} is outside 0..{MAX_MEMBER}")
        if len(self.records) > MAX_RECORDS or list(self.records) != sorted(set(self.records)):
            raise FieldValueError(f"{where}.records must list at most {MAX_RECORDS} counters, increasing")
        if any(not 1 <= c <= _U32 for c in self.records):
            raise FieldValueError(f"{where}.records: a card counter is 1..{_U32}")

    def to_json(self) -> dict[str, Any]:
        self.check("fallback")
        optional: dict[str, Any] = {}
        if self.supervisor_id is not None:
            optional["supervisor_id"] = id_hex(self.supervisor_id)
        if self.reason:
            optional["reason"] = self.reason
        if self.note:
            optional["note"] = self.note
        if self.records:
            optional["records"] = list(self.records)
        return {
            **optional,
            "event": self.event,
            "at": self.at,
            "kind": self.kind.value,
            "card_id": id_hex(self.card_id),
            "member": self.member,
            "operator_id": id_hex(self.operator_id),
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> FallbackItem:
        optional = frozenset({"supervisor_id", "reason", "note", "records"})
        keys = {"event", "at", "kind", "card_id", "member", "operator_id"} | optional
        obj = _obj(value, where, keys, optional=optional)
        try:
            kind = FallbackKind(obj["kind"])
        except ValueError:
            known = ", ".join(k.value for k in FallbackKind)
            raise FieldValueError(f"{where}.kind must be one of {known}") from None
        records = obj.get("records", [])
        if not isinstance(records, list) or ("records" in obj and not records):
            raise FieldValueError(f"{where}.records must list 1 to {MAX_RECORDS} counters when present")
        supervisor = obj.get("supervisor_id")
        for name in ("reason", "note"):
            if name in obj and (not isinstance(obj[name], str) or not obj[name]):
                raise FieldValueError(f"{where}.{name} must be a non-empty string when present")
        item = cls(
            event=_int(obj["event"], f"{where}.event"),
            at=_int(obj["at"], f"{where}.at", _U32),
            kind=kind,
            card_id=parse_id(obj["card_id"], f"{where}.card_id"),
            member=_int(obj["member"], f"{where}.member", MAX_MEMBER),
            operator_id=parse_id(obj["operator_id"], f"{where}.operator_id"),
            supervisor_id=None if supervisor is None else parse_id(supervisor, f"{where}.supervisor_id"),
            reason=obj.get("reason", ""),
            note=obj.get("note", ""),
            records=tuple(_int(c, f"{where}.records[{i}]", _U32) for i, c in enumerate(records)),
        )
        item.check(where)
        return item


Item = TransactionItem | CampCard | FkoLedgerEntry | FallbackItem
_ITEM_TYPES: dict[BatchKind, Callable[[Any, str], Item]] = {
    BatchKind.TRANSACTIONS: TransactionItem.from_json,
    BatchKind.CAMP: CampCard.from_json,
    BatchKind.FKO_LEDGER: FkoLedgerEntry.from_json,
    BatchKind.FALLBACKS: FallbackItem.from_json,
}


# -- the envelope ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """The signed content of an upload. Build, then :meth:`sign`; parse with :meth:`SignedBatch.parse`."""

    kind: BatchKind
    terminal_id: int
    seq: int
    created: int
    items: tuple[Item, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BATCH_FORMAT,
            "version": BATCH_VERSION,
            "kind": self.kind.value,
            "terminal_id": id_hex(self.terminal_id),
            "seq": self.seq,
            "created": self.created,
            "items": [item.to_json() for item in self.items],
        }

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    def content_hash(self) -> bytes:
        """SHA-256 of the canonical bytes: the idempotency key."""
        return hashlib.sha256(self.canonical()).digest()

    def sign(self, terminal_key: ec.EllipticCurvePrivateKey) -> SignedBatch:
        return SignedBatch(self, sign_raw(terminal_key, self.canonical()))

    @classmethod
    def from_json(cls, value: Any) -> Batch:
        obj = _obj(value, "batch", {"format", "version", "kind", "terminal_id", "seq", "created", "items"})
        if obj["format"] != BATCH_FORMAT:
            raise FieldValueError(f"batch.format must be {BATCH_FORMAT!r}")
        if type(obj["version"]) is not int or obj["version"] != BATCH_VERSION:
            raise FieldValueError(f"batch.version {obj['version']!r} is not supported (known: 1)")
        try:
            kind = BatchKind(obj["kind"])
        except ValueError:
            known = ", ".join(k.value for k in BatchKind)
            raise FieldValueError(f"batch.kind must be one of {known}") from None
        items = obj["items"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
            raise FieldValueError(f"batch.items must list 1 to {MAX_ITEMS} items")
        parse_item = _ITEM_TYPES[kind]
        return cls(
            kind=kind,
            terminal_id=parse_id(obj["terminal_id"], "batch.terminal_id"),
            seq=_int(obj["seq"], "batch.seq"),
            created=_int(obj["created"], "batch.created", _U32),
            items=tuple(parse_item(item, f"batch.items[{i}]") for i, item in enumerate(items)),
        )


@dataclass(frozen=True, slots=True)
class SignedBatch:
    """A batch with the terminal's raw r||s signature over its canonical bytes."""

    batch: Batch
    signature: bytes
    #: the signed bytes; from :meth:`parse`, the canonical form of the received JSON (the same bytes, as
    #: parsing admits exactly one text per value), which saves re-encoding large batches.
    canonical: bytes = b""

    def __post_init__(self) -> None:
        if not self.canonical:
            object.__setattr__(self, "canonical", self.batch.canonical())

    def content_hash(self) -> bytes:
        return hashlib.sha256(self.canonical).digest()

    def encode(self) -> bytes:
        """The wire document (itself canonical JSON, though the server does not require that)."""
        return canonical_json({"batch": self.batch.to_json(), "signature": b64encode(self.signature)})

    @classmethod
    def parse(cls, wire: bytes) -> SignedBatch:
        """Strictly parse the wire document; the signature is NOT checked here (see :meth:`verify`)."""
        try:
            document = json.loads(wire, parse_float=_refuse_float, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"batch is not valid JSON: {exc}") from None
        obj = _obj(document, "document", {"batch", "signature"})
        signature = b64decode(obj["signature"], "signature")
        if len(signature) != 64:
            raise FieldValueError("signature must be 64 bytes (raw r||s)")
        batch = Batch.from_json(obj["batch"])
        return cls(batch, signature, _dumps(obj["batch"]))

    def verify(self, terminal_key: Callable[[int], ec.EllipticCurvePublicKey]) -> None:
        """Check the signature with the key of the batch's terminal; raises SignatureError."""
        verify_raw_signature(terminal_key(self.batch.terminal_id), self.canonical, self.signature)


def _refuse_float(text: str) -> float:
    raise FieldValueError(f"floats are not allowed in a batch ({text[:20]})")


def _refuse_constant(text: str) -> float:
    raise FieldValueError(f"{text} is not allowed in a batch")


def transaction_items(records: Sequence[bytes], card_key: bytes) -> tuple[TransactionItem, ...]:
    """Convenience for a terminal: items for records of one card."""
    return tuple(TransactionItem(record=r, card_key=card_key) for r in records)
