"""The beneficiary card's stored objects: household profile, fingerprint template set, photo set, and the
content digest that binds them to the card (docs/card-layout.md).

One home: the card application (hardware_sims/card/apps/beneficiary.py), the enrolment station, the point of
service and central all build and parse these bytes here. Pure (standard library only). Parsing is strict:
every field is required in the documented order, lengths and ranges are checked, and every refusal is a
:class:`ProfileFormatError` naming the field.

Household profile (BER-TLV, tags are context-specific inside their template)::

    70 profile
      80 format version          1 byte, 01
      81 card id                 ASCII "CARD-<decimal, < 10^19>" (the card certificate's CHR)
      82 household id            ASCII reference, 1-24 of A-Z a-z 0-9 . _ -
      83 village                 UTF-8, 1-64 bytes
      84 district                ASCII reference (the district's CHR)
      85 FKO id                  ASCII reference (the activating officer's CHR)
      86 policy start            8 ASCII digits YYYYMMDD (first valid day)
      87 policy end              8 ASCII digits YYYYMMDD (last valid day, inclusive)
      88 offline limits          max debits (2) | max amount in paise (4) since the last sync
      A0 members                 1-5 x  30 { 80 index (1) | 81 name UTF-8 1-48 | 82 gender F/M/O |
                                              83 birth year (2) | 84 relation (1, Relation) }
      A1 schemes                 1-4 x  30 { 80 scheme id (1) | 81 cover in paise (4) }

Template set: 0-10 x ``72 { 80 member index | 81 finger position (ISO 19794-2: 1-10) | 7F2E {81 compact} }``.
Photo set: 0-5 x ``73 { 80 member index | 81 JPEG bytes }``.

Content digest: SHA-256("RSBY-CONTENT" 01 || SHA-256(profile) || SHA-256(template set) || SHA-256(photo set)),
each hash over the object's exact bytes. The FKO signs it into the card certificate (extension
2.999.7816.2.1, cardsvc/pki/cvc.py) at activation; a verifier recomputes it from the profile it read and the
template and photo hashes the card attests.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import IntEnum

from cardsvc import tlv as _tlv
from cardsvc.formats.errors import FormatError

PROFILE_VERSION = 1
MAX_MEMBERS = 5
MAX_SCHEMES = 4
MAX_TEMPLATES = 10
MAX_PHOTOS = 5
CARD_ID_PREFIX = "CARD-"
_REFERENCE = re.compile(r"^[A-Za-z0-9._-]{1,24}$")
_CARD_ID = re.compile(r"^CARD-(0|[1-9][0-9]{0,18})$")
MAX_CARD_NUMBER = 10**19 - 1  # "CARD-" + 19 digits = 24 characters, the CHR limit
CONTENT_DOMAIN = b"RSBY-CONTENT\x01"
ID_DOMAIN = b"RSBY-ID\x01"


class ProfileFormatError(FormatError):
    """A profile, template set or photo set could not be parsed or built; the message names the field."""


class ProfileTag(IntEnum):
    """Tags of the household profile."""

    PROFILE = 0x70
    VERSION = 0x80
    CARD_ID = 0x81
    HOUSEHOLD_ID = 0x82
    VILLAGE = 0x83
    DISTRICT = 0x84
    FKO_ID = 0x85
    POLICY_START = 0x86
    POLICY_END = 0x87
    LIMITS = 0x88
    MEMBERS = 0xA0
    SCHEMES = 0xA1
    ENTRY = 0x30


class MemberTag(IntEnum):
    INDEX = 0x80
    NAME = 0x81
    GENDER = 0x82
    BIRTH_YEAR = 0x83
    RELATION = 0x84


class SchemeTag(IntEnum):
    SCHEME_ID = 0x80
    COVER = 0x81


class ObjectTag(IntEnum):
    """Entries of the template and photo sets."""

    TEMPLATE = 0x72
    PHOTO = 0x73
    MEMBER = 0x80
    FINGER_OR_DATA = 0x81
    BIOMETRIC_TEMPLATE = 0x7F2E


class Relation(IntEnum):
    HEAD = 1
    SPOUSE = 2
    CHILD = 3
    PARENT = 4
    OTHER = 5


class Gender(IntEnum):
    """Stored as the ASCII letter."""

    FEMALE = ord("F")
    MALE = ord("M")
    OTHER = ord("O")


# ------------------------------------------------------------------------------------------------ TLV
# The encoding rules live in cardsvc/tlv.py (strict mode: shortest lengths, no padding, every byte used);
# here only the profile's error type and the ``where`` that names the object in every message.
def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV (1- to 3-byte tag, shortest definite length)."""
    try:
        return _tlv.tlv(tag, bytes(value))
    except _tlv.TlvError as exc:
        raise ProfileFormatError(str(exc)) from None


def split_tlvs(data: bytes, where: str) -> list[tuple[int, bytes]]:
    """Strict split of concatenated TLVs: no padding, shortest lengths, nothing trailing."""
    try:
        return [(t.tag, t.value) for t in _tlv.parse_tlvs(bytes(data), strict=True)]
    except _tlv.TlvError as exc:
        raise ProfileFormatError(f"{where}: {exc}") from None


def expect_tags(items: list[tuple[int, bytes]], tags: Sequence[int], where: str) -> list[bytes]:
    got = [t for t, _ in items]
    if got != list(tags):
        want = " ".join(f"{t:X}" for t in tags)
        have = " ".join(f"{t:X}" for t in got)
        raise ProfileFormatError(f"{where}: expected tags {want}, found {have or 'nothing'}")
    return [v for _, v in items]


def _single(data: bytes, tag: int, where: str) -> bytes:
    items = split_tlvs(data, where)
    if len(items) != 1 or items[0][0] != tag:
        raise ProfileFormatError(f"{where}: expected exactly one TLV with tag {tag:X}")
    return items[0][1]


# ------------------------------------------------------------------------------------------------ ids
def check_reference(value: str, what: str) -> str:
    if not _REFERENCE.match(value):
        raise ProfileFormatError(f"{what} {value!r} must be 1-24 characters of A-Z a-z 0-9 . _ -")
    return value


def card_chr(card_id: int) -> str:
    """The card's text id (certificate CHR) for its numeric id (transaction records)."""
    if not 0 <= card_id <= MAX_CARD_NUMBER:
        raise ProfileFormatError(f"card id {card_id} outside 0..10^19-1 (CHR is at most 24 characters)")
    return f"{CARD_ID_PREFIX}{card_id}"


def card_number(chr_: str) -> int:
    """The numeric card id (u64 of the transaction record) of ``CARD-<decimal>``."""
    m = _CARD_ID.match(chr_)
    if not m:
        raise ProfileFormatError(f"card id {chr_!r} must be CARD-<decimal 0..10^19-1>, no leading zeros")
    return int(m.group(1))


def reference_id(chr_: str) -> int:
    """A certificate holder's u64 id for transaction records (terminal_id): SHA-256 of domain || CHR."""
    return int.from_bytes(
        hashlib.sha256(ID_DOMAIN + check_reference(chr_, "reference").encode()).digest()[:8], "big"
    )


def _date(d: date) -> bytes:
    return d.strftime("%Y%m%d").encode("ascii")


def _parse_date(raw: bytes, what: str) -> date:
    if len(raw) != 8 or not raw.isdigit():
        raise ProfileFormatError(f"{what} must be 8 ASCII digits YYYYMMDD, got {raw!r}")
    try:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        raise ProfileFormatError(f"{what} {raw.decode()} is not a calendar date") from None


def _utf8(raw: bytes, what: str, limit: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileFormatError(f"{what} is not UTF-8") from None
    _check_text(text, what, limit)
    return text


def _check_text(text: str, what: str, limit: int) -> None:
    n = len(text.encode("utf-8"))
    if not 1 <= n <= limit or text != text.strip() or any(ord(c) < 0x20 for c in text):
        raise ProfileFormatError(f"{what} must be 1-{limit} UTF-8 bytes without control or edge spaces")


def _ascii_ref(raw: bytes, what: str) -> str:
    try:
        return check_reference(raw.decode("ascii"), what)
    except UnicodeDecodeError:
        raise ProfileFormatError(f"{what} is not ASCII") from None


# ------------------------------------------------------------------------------------------------ profile
@dataclass(frozen=True)
class Member:
    index: int
    name: str
    gender: Gender
    birth_year: int
    relation: Relation

    def check(self) -> None:
        if not 0 <= self.index < MAX_MEMBERS:
            raise ProfileFormatError(f"member index {self.index} outside 0..{MAX_MEMBERS - 1}")
        _check_text(self.name, f"member {self.index} name", 48)
        Gender(self.gender)
        Relation(self.relation)
        if not 1900 <= self.birth_year <= 2099:
            raise ProfileFormatError(f"member {self.index} birth year {self.birth_year} outside 1900-2099")

    def encode(self) -> bytes:
        self.check()
        return tlv(
            ProfileTag.ENTRY,
            tlv(MemberTag.INDEX, bytes([self.index]))
            + tlv(MemberTag.NAME, self.name.encode("utf-8"))
            + tlv(MemberTag.GENDER, bytes([self.gender]))
            + tlv(MemberTag.BIRTH_YEAR, self.birth_year.to_bytes(2, "big"))
            + tlv(MemberTag.RELATION, bytes([self.relation])),
        )

    @classmethod
    def parse(cls, value: bytes) -> Member:
        idx, name, gender, year, rel = expect_tags(split_tlvs(value, "member"), list(MemberTag), "member")
        if len(idx) != 1 or len(gender) != 1 or len(year) != 2 or len(rel) != 1:
            raise ProfileFormatError("member: index, gender, birth year or relation has a wrong length")
        try:
            g, r = Gender(gender[0]), Relation(rel[0])
        except ValueError as exc:
            raise ProfileFormatError(f"member {idx[0]}: {exc}") from None
        member = cls(idx[0], _utf8(name, f"member {idx[0]} name", 48), g, int.from_bytes(year, "big"), r)
        member.check()
        return member


@dataclass(frozen=True)
class SchemeCover:
    scheme_id: int
    cover_paise: int

    def encode(self) -> bytes:
        if not 0 <= self.scheme_id <= 0xFF or not 0 <= self.cover_paise <= 0xFFFF_FFFF:
            raise ProfileFormatError(f"scheme {self.scheme_id} cover {self.cover_paise} out of range")
        return tlv(
            ProfileTag.ENTRY,
            tlv(SchemeTag.SCHEME_ID, bytes([self.scheme_id]))
            + tlv(SchemeTag.COVER, self.cover_paise.to_bytes(4, "big")),
        )

    @classmethod
    def parse(cls, value: bytes) -> SchemeCover:
        sid, cover = expect_tags(split_tlvs(value, "scheme"), list(SchemeTag), "scheme")
        if len(sid) != 1 or len(cover) != 4:
            raise ProfileFormatError("scheme: id must be 1 byte and cover 4 bytes")
        return cls(sid[0], int.from_bytes(cover, "big"))


@dataclass(frozen=True)
class OfflineLimits:
    """How many debits and how many paise a card allows between two acknowledged syncs."""

    max_count: int
    max_amount: int

    def encode(self) -> bytes:
        if not 1 <= self.max_count <= 0xFFFF or not 0 <= self.max_amount <= 0xFFFF_FFFF:
            raise ProfileFormatError(f"offline limits {self.max_count} / {self.max_amount} out of range")
        return struct.pack(">HI", self.max_count, self.max_amount)

    @classmethod
    def parse(cls, raw: bytes) -> OfflineLimits:
        if len(raw) != 6:
            raise ProfileFormatError(f"offline limits must be 6 bytes, got {len(raw)}")
        limits = cls(*struct.unpack(">HI", raw))
        limits.encode()
        return limits


@dataclass(frozen=True)
class HouseholdProfile:
    """What the card says about the household; its policy period equals the card certificate's validity."""

    card_id: str
    household_id: str
    village: str
    district: str
    fko_id: str
    policy_start: date
    policy_end: date
    limits: OfflineLimits
    members: tuple[Member, ...]
    schemes: tuple[SchemeCover, ...]

    @property
    def card_number(self) -> int:
        return card_number(self.card_id)

    def member(self, index: int) -> Member:
        for m in self.members:
            if m.index == index:
                return m
        raise KeyError(f"no member {index} on this card")

    def cover(self, scheme_id: int) -> int:
        for s in self.schemes:
            if s.scheme_id == scheme_id:
                return s.cover_paise
        raise KeyError(f"no scheme {scheme_id} on this card")

    def content_digest(
        self, templates: Iterable[StoredTemplate], photos: Iterable[StoredPhoto] = ()
    ) -> bytes:
        """The content digest of a card holding this profile, these templates and photos: what the FKO
        signs into the card certificate at activation (docs/certificates.md, content-digest extension)."""
        return content_digest(self.encode(), encode_templates(templates), encode_photos(photos))

    def _check(self) -> None:
        card_number(self.card_id)
        check_reference(self.household_id, "household id")
        _check_text(self.village, "village", 64)
        check_reference(self.district, "district")
        check_reference(self.fko_id, "FKO id")
        if self.policy_end < self.policy_start:
            raise ProfileFormatError(f"policy end {self.policy_end} before start {self.policy_start}")
        for d in (self.policy_start, self.policy_end):
            if not 2000 <= d.year <= 2099:
                raise ProfileFormatError(f"policy date {d} outside 2000-2099 (certificate dates)")
        if not 1 <= len(self.members) <= MAX_MEMBERS:
            raise ProfileFormatError(f"a household has 1-{MAX_MEMBERS} members, got {len(self.members)}")
        if [m.index for m in self.members] != list(range(len(self.members))):
            raise ProfileFormatError("member indexes must be 0, 1, 2 ... in order")
        if (
            sum(m.relation is Relation.HEAD for m in self.members) != 1
            or self.members[0].relation != Relation.HEAD
        ):
            raise ProfileFormatError("member 0 must be the one head of household")
        if not 1 <= len(self.schemes) <= MAX_SCHEMES:
            raise ProfileFormatError(f"a card carries 1-{MAX_SCHEMES} schemes, got {len(self.schemes)}")
        ids = [s.scheme_id for s in self.schemes]
        if ids != sorted(set(ids)):
            raise ProfileFormatError("scheme ids must be unique and ascending")

    def encode(self) -> bytes:
        self._check()
        return tlv(
            ProfileTag.PROFILE,
            tlv(ProfileTag.VERSION, bytes([PROFILE_VERSION]))
            + tlv(ProfileTag.CARD_ID, self.card_id.encode("ascii"))
            + tlv(ProfileTag.HOUSEHOLD_ID, self.household_id.encode("ascii"))
            + tlv(ProfileTag.VILLAGE, self.village.encode("utf-8"))
            + tlv(ProfileTag.DISTRICT, self.district.encode("ascii"))
            + tlv(ProfileTag.FKO_ID, self.fko_id.encode("ascii"))
            + tlv(ProfileTag.POLICY_START, _date(self.policy_start))
            + tlv(ProfileTag.POLICY_END, _date(self.policy_end))
            + tlv(ProfileTag.LIMITS, self.limits.encode())
            + tlv(ProfileTag.MEMBERS, b"".join(m.encode() for m in self.members))
            + tlv(ProfileTag.SCHEMES, b"".join(s.encode() for s in self.schemes)),
        )

    @classmethod
    def parse(cls, data: bytes) -> HouseholdProfile:
        body = _single(data, ProfileTag.PROFILE, "profile")
        tags = [t for t in ProfileTag if t not in (ProfileTag.PROFILE, ProfileTag.ENTRY)]
        version, cid, hid, village, district, fko, start, end, limits, members, schemes = expect_tags(
            split_tlvs(body, "profile"), tags, "profile"
        )
        if version != bytes([PROFILE_VERSION]):
            raise ProfileFormatError(f"profile version {version.hex()} (known: 01)")
        member_items = split_tlvs(members, "members")
        scheme_items = split_tlvs(schemes, "schemes")
        if any(t != ProfileTag.ENTRY for t, _ in member_items + scheme_items):
            raise ProfileFormatError("members and schemes hold only 30 entries")
        card_text = _ascii_ref(cid, "card id")
        profile = cls(
            card_id=card_text,
            household_id=_ascii_ref(hid, "household id"),
            village=_utf8(village, "village", 64),
            district=_ascii_ref(district, "district"),
            fko_id=_ascii_ref(fko, "FKO id"),
            policy_start=_parse_date(start, "policy start"),
            policy_end=_parse_date(end, "policy end"),
            limits=OfflineLimits.parse(limits),
            members=tuple(Member.parse(v) for _, v in member_items),
            schemes=tuple(SchemeCover.parse(v) for _, v in scheme_items),
        )
        profile._check()
        return profile


# ------------------------------------------------------------------------------------------------ templates
@dataclass(frozen=True)
class StoredTemplate:
    """One member's finger in ISO 19794-2 compact card format (3 bytes a minutia)."""

    member_index: int
    finger_position: int
    compact: bytes

    def encode(self) -> bytes:
        if not 0 <= self.member_index < MAX_MEMBERS or not 1 <= self.finger_position <= 10:
            raise ProfileFormatError(
                f"template member {self.member_index} finger {self.finger_position} out of range"
            )
        if not self.compact or len(self.compact) % 3:
            raise ProfileFormatError("compact minutiae must be a non-empty multiple of 3 bytes")
        inner = tlv(ObjectTag.FINGER_OR_DATA, self.compact)
        return tlv(
            ObjectTag.TEMPLATE,
            tlv(ObjectTag.MEMBER, bytes([self.member_index]))
            + tlv(ObjectTag.FINGER_OR_DATA, bytes([self.finger_position]))
            + tlv(ObjectTag.BIOMETRIC_TEMPLATE, inner),
        )

    @classmethod
    def parse(cls, value: bytes) -> StoredTemplate:
        member, finger, bit = expect_tags(
            split_tlvs(value, "template"),
            [ObjectTag.MEMBER, ObjectTag.FINGER_OR_DATA, ObjectTag.BIOMETRIC_TEMPLATE],
            "template",
        )
        compact = _single(bit, ObjectTag.FINGER_OR_DATA, "template 7F2E")
        if len(member) != 1 or len(finger) != 1:
            raise ProfileFormatError("template: member and finger are one byte each")
        t = cls(member[0], finger[0], compact)
        t.encode()
        return t


def encode_templates(templates: Iterable[StoredTemplate]) -> bytes:
    items = list(templates)
    if len(items) > MAX_TEMPLATES:
        raise ProfileFormatError(f"at most {MAX_TEMPLATES} templates, got {len(items)}")
    keys = [(t.member_index, t.finger_position) for t in items]
    if len(set(keys)) != len(keys):
        raise ProfileFormatError("one template per member and finger")
    return b"".join(t.encode() for t in items)


def parse_templates(data: bytes) -> tuple[StoredTemplate, ...]:
    items = split_tlvs(data, "template set")
    if any(tag != ObjectTag.TEMPLATE for tag, _ in items):
        raise ProfileFormatError("the template set holds only 72 entries")
    out = tuple(StoredTemplate.parse(v) for _, v in items)
    encode_templates(out)
    return out


# ------------------------------------------------------------------------------------------------ photos
@dataclass(frozen=True)
class StoredPhoto:
    member_index: int
    jpeg: bytes

    def encode(self) -> bytes:
        if not 0 <= self.member_index < MAX_MEMBERS or not self.jpeg:
            raise ProfileFormatError(f"photo of member {self.member_index}: bad index or empty")
        return tlv(
            ObjectTag.PHOTO,
            tlv(ObjectTag.MEMBER, bytes([self.member_index])) + tlv(ObjectTag.FINGER_OR_DATA, self.jpeg),
        )


def encode_photos(photos: Iterable[StoredPhoto]) -> bytes:
    items = list(photos)
    if len(items) > MAX_PHOTOS or len({p.member_index for p in items}) != len(items):
        raise ProfileFormatError(f"at most one photo per member ({MAX_PHOTOS})")
    return b"".join(p.encode() for p in items)


def parse_photos(data: bytes) -> tuple[StoredPhoto, ...]:
    out = []
    for tag, value in split_tlvs(data, "photo set"):
        if tag != ObjectTag.PHOTO:
            raise ProfileFormatError("the photo set holds only 73 entries")
        member, jpeg = expect_tags(
            split_tlvs(value, "photo"), [ObjectTag.MEMBER, ObjectTag.FINGER_OR_DATA], "photo"
        )
        if len(member) != 1:
            raise ProfileFormatError("photo member index is one byte")
        out.append(StoredPhoto(member[0], jpeg))
    encode_photos(out)
    return tuple(out)


# ------------------------------------------------------------------------------------------------ digest
@dataclass(frozen=True)
class ContentHashes:
    """SHA-256 of each stored object (exact bytes, without the EF length prefix)."""

    profile: bytes
    templates: bytes
    photos: bytes

    @classmethod
    def of(cls, profile: bytes, templates: bytes, photos: bytes) -> ContentHashes:
        return cls(*(hashlib.sha256(x).digest() for x in (profile, templates, photos)))

    def digest(self) -> bytes:
        """The content digest: SHA-256("RSBY-CONTENT" 01 || H(profile) || H(templates) || H(photos))."""
        return hashlib.sha256(CONTENT_DOMAIN + self.profile + self.templates + self.photos).digest()


def content_digest(profile: bytes, templates: bytes, photos: bytes = b"") -> bytes:
    return ContentHashes.of(profile, templates, photos).digest()


__all__ = [
    "ContentHashes",
    "Gender",
    "HouseholdProfile",
    "Member",
    "OfflineLimits",
    "ProfileFormatError",
    "Relation",
    "SchemeCover",
    "StoredPhoto",
    "StoredTemplate",
    "card_chr",
    "card_number",
    "content_digest",
    "encode_photos",
    "encode_templates",
    "parse_photos",
    "parse_templates",
    "reference_id",
]
