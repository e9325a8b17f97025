"""Card-verifiable certificates (ISO 7816-8 / BSI TR-03110 style): the one home of the certificate format.

Pure functions and frozen dataclasses, no I/O: the host, keymgmt and the simulated card applications all
parse and build certificates here. Layout (every tag documented in docs/certificates.md)::

    7F21 CV certificate
      7F4E certificate body            <- the signed bytes (the whole 7F4E TLV)
        5F29 profile identifier        (1 byte, 00)
        42   CAR  issuer reference     (printable ASCII)
        7F49 public key
          06 algorithm OID             (id-TA-ECDSA-SHA-256)
          86 public point              (65 bytes, uncompressed P-256)
        5F20 CHR  holder reference     (printable ASCII)
        7F4C CHAT holder authorisation
          06 role OID                  (2.999.7816.1.<role>)
          53 rights bitmap             (4 bytes, big-endian)
        5F25 effective date            (6 bytes YYMMDD, one digit 0-9 per byte)
        5F24 expiry date               (6 bytes YYMMDD, inclusive: valid to 23:59:59 UTC that day)
        65   certificate extensions    (optional, BSI TR-03110 C.3: one or more discretionary data templates)
          73 discretionary data        06 extension OID, 80 value (the card's content digest, 32 bytes)
      5F37 signature                   (64 bytes raw r||s, ECDSA P-256 SHA-256 by the CAR's key)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum

from cardsvc.pki.errors import FormatError
from cardsvc.pki.rights import (
    ALGORITHM_OID_ECDSA_SHA256,
    RIGHTS_BYTES,
    ROLE_OID_ARC,
    Right,
    Role,
    decode_oid,
    encode_oid,
    role_oid,
)
from cardsvc.pki.signer import POINT_LEN, SIGNATURE_LEN, Signer, load_public_point, verify_signature
from cardsvc.tlv import Tlv, strict_codec

expect_sequence, parse_all, parse_single, tlv = strict_codec(FormatError)

PROFILE_ID = 0x00
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,24}$")

#: Arc of the programme's certificate extensions (2.999 placeholder arc, as the role OIDs in rights.py).
EXTENSION_OID_ARC: tuple[int, ...] = (2, 999, 7816, 2)
#: "Household content digest": ``ContentHashes.digest()`` of cardsvc/formats/profile.py, i.e.
#: SHA-256("RSBY-CONTENT" 01 || H(profile) || H(template set) || H(photo set)); 32 bytes. A beneficiary card
#: certificate carries exactly one, so the FKO's signature covers the household data, not only the key.
CONTENT_DIGEST_OID: tuple[int, ...] = (*EXTENSION_OID_ARC, 1)
CONTENT_DIGEST_LEN = 32


class CvcTag(IntEnum):
    """Tags of the CV certificate."""

    CERTIFICATE = 0x7F21
    BODY = 0x7F4E
    PROFILE = 0x5F29
    CAR = 0x42
    PUBLIC_KEY = 0x7F49
    OID = 0x06
    PUBLIC_POINT = 0x86
    CHR = 0x5F20
    CHAT = 0x7F4C
    RIGHTS = 0x53
    EFFECTIVE_DATE = 0x5F25
    EXPIRY_DATE = 0x5F24
    EXTENSIONS = 0x65
    DISCRETIONARY_DATA = 0x73
    EXTENSION_VALUE = 0x80
    SIGNATURE = 0x5F37


@dataclass(frozen=True)
class CertificateExtension:
    """One discretionary data template ``73 { 06 oid, 80 value }`` of the extensions (TR-03110 C.3).

    The value is opaque here (usually a hash of data kept elsewhere); which extensions a role may or must
    carry is a validation rule (chain.py ``check_extensions``), not a format rule.
    """

    oid: tuple[int, ...]
    value: bytes

    def encode(self) -> bytes:
        try:
            oid = encode_oid(self.oid)
        except (ValueError, IndexError):
            raise FormatError(f"extension OID {self.oid} cannot be encoded") from None
        return tlv(CvcTag.DISCRETIONARY_DATA, tlv(CvcTag.OID, oid) + tlv(CvcTag.EXTENSION_VALUE, self.value))

    @classmethod
    def parse(cls, item: Tlv) -> CertificateExtension:
        if item.tag != CvcTag.DISCRETIONARY_DATA:
            raise FormatError(f"certificate extensions hold only 73 templates, found tag {item.tag:X}")
        oid, value = expect_sequence(
            parse_all(item.value), [CvcTag.OID, CvcTag.EXTENSION_VALUE], "certificate extension"
        )
        return cls(oid=_oid(oid), value=value)

    @property
    def oid_text(self) -> str:
        return ".".join(str(a) for a in self.oid)


def content_digest_extension(digest: bytes) -> CertificateExtension:
    """The household content digest as a certificate extension (what an FKO signs at activation)."""
    if len(digest) != CONTENT_DIGEST_LEN:
        raise FormatError(f"content digest must be {CONTENT_DIGEST_LEN} bytes, got {len(digest)}")
    return CertificateExtension(CONTENT_DIGEST_OID, bytes(digest))


def check_reference(ref: str, what: str) -> str:
    """Holder/issuer references: 1-24 characters of A-Z a-z 0-9 . _ - (they are printed and typed)."""
    if not REFERENCE_PATTERN.match(ref):
        raise FormatError(f"{what} {ref!r} must be 1-24 characters of A-Z a-z 0-9 . _ -")
    return ref


def encode_date(d: date) -> bytes:
    """CVC date: YYMMDD as six bytes, each one decimal digit (2000-2099)."""
    if not 2000 <= d.year <= 2099:
        raise FormatError(f"date {d} outside 2000-2099, not representable in a CV certificate")
    return bytes(int(c) for c in d.strftime("%y%m%d"))


def decode_date(data: bytes) -> date:
    if len(data) != 6 or any(b > 9 for b in data):
        raise FormatError(f"CVC date must be 6 bytes of digits 0-9, got {data.hex()}")
    yy, mm, dd = (data[0] * 10 + data[1], data[2] * 10 + data[3], data[4] * 10 + data[5])
    try:
        return date(2000 + yy, mm, dd)
    except ValueError as exc:
        raise FormatError(f"CVC date {data.hex()} is not a calendar date: {exc}") from None


def start_of_day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return t


@dataclass(frozen=True)
class CvCertificate:
    """One parsed (or freshly built) CV certificate. ``body`` holds the exact signed 7F4E TLV."""

    car: str
    chr: str
    public_point: bytes
    role: Role
    rights: Right
    effective: date
    expiry: date
    signature: bytes
    body: bytes
    profile: int = PROFILE_ID
    extensions: tuple[CertificateExtension, ...] = ()

    def extension(self, oid: Sequence[int]) -> bytes | None:
        """The value of the extension ``oid``; None when absent; FormatError when it is repeated."""
        found = [e.value for e in self.extensions if e.oid == tuple(oid)]
        if len(found) > 1:
            text = ".".join(str(a) for a in oid)
            raise FormatError(f"{self.chr}: extension {text} appears {len(found)} times")
        return found[0] if found else None

    @property
    def content_digest(self) -> bytes | None:
        """The FKO-signed household content digest (beneficiary card certificates), or None."""
        return self.extension(CONTENT_DIGEST_OID)

    # -- validity -----------------------------------------------------------------------------------------
    @property
    def not_before(self) -> datetime:
        return start_of_day(self.effective)

    @property
    def not_after(self) -> datetime:
        """First instant at which the certificate is no longer valid (the day after the expiry date)."""
        return start_of_day(self.expiry) + timedelta(days=1)

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= _aware(now) < self.not_after

    @property
    def self_signed(self) -> bool:
        return self.car == self.chr

    # -- wire -----------------------------------------------------------------------------------------------
    def encode(self) -> bytes:
        return tlv(CvcTag.CERTIFICATE, self.body + tlv(CvcTag.SIGNATURE, self.signature))

    @classmethod
    def parse(cls, data: bytes) -> CvCertificate:
        """Parse and structurally check a certificate (no signature or chain check: see chain.py)."""
        outer = parse_single(bytes(data), CvcTag.CERTIFICATE)
        parts = parse_all(outer.value)
        body_tlv, sig = expect_sequence(parts, [CvcTag.BODY, CvcTag.SIGNATURE], "certificate")
        body_raw = tlv(CvcTag.BODY, body_tlv)
        fields = parse_all(body_tlv)
        extensions: tuple[CertificateExtension, ...] = ()
        if fields and fields[-1].tag == CvcTag.EXTENSIONS:  # optional, last (TR-03110)
            templates = parse_all(fields[-1].value)
            if not templates:
                raise FormatError("certificate extensions (65) must hold at least one 73 template")
            extensions = tuple(CertificateExtension.parse(t) for t in templates)
            fields = fields[:-1]
        profile, car, pk, chr_, chat, eff, exp = expect_sequence(
            fields,
            [
                CvcTag.PROFILE,
                CvcTag.CAR,
                CvcTag.PUBLIC_KEY,
                CvcTag.CHR,
                CvcTag.CHAT,
                CvcTag.EFFECTIVE_DATE,
                CvcTag.EXPIRY_DATE,
            ],
            "certificate body",
        )
        if profile != bytes([PROFILE_ID]):
            raise FormatError(f"unsupported certificate profile {profile.hex()}")
        alg, point = expect_sequence(parse_all(pk), [CvcTag.OID, CvcTag.PUBLIC_POINT], "public key")
        if _oid(alg) != ALGORITHM_OID_ECDSA_SHA256:
            raise FormatError(f"unsupported public key algorithm OID {_oid_text(alg)}")
        if len(point) != POINT_LEN:
            raise FormatError(f"public point must be {POINT_LEN} bytes, got {len(point)}")
        load_public_point(point)
        role_oid_raw, rights_raw = expect_sequence(parse_all(chat), [CvcTag.OID, CvcTag.RIGHTS], "CHAT")
        role_arcs = _oid(role_oid_raw)
        if role_arcs[:-1] != ROLE_OID_ARC:
            raise FormatError(f"CHAT OID {_oid_text(role_oid_raw)} is not under the role arc")
        try:
            role = Role(role_arcs[-1])
        except ValueError:
            raise FormatError(f"unknown role {role_arcs[-1]} in CHAT") from None
        if len(rights_raw) != RIGHTS_BYTES:
            raise FormatError(f"rights bitmap must be {RIGHTS_BYTES} bytes, got {len(rights_raw)}")
        try:
            rights = Right.decode(rights_raw)
        except ValueError as exc:
            raise FormatError(str(exc)) from None
        if len(sig) != SIGNATURE_LEN:
            raise FormatError(f"signature must be {SIGNATURE_LEN} bytes r||s, got {len(sig)}")
        effective, expiry = decode_date(eff), decode_date(exp)
        if expiry < effective:
            raise FormatError(f"expiry {expiry} is before effective date {effective}")
        return cls(
            car=check_reference(_text(car, "CAR"), "CAR"),
            chr=check_reference(_text(chr_, "CHR"), "CHR"),
            public_point=point,
            role=role,
            rights=rights,
            effective=effective,
            expiry=expiry,
            signature=sig,
            body=body_raw,
            extensions=extensions,
        )

    @classmethod
    def parse_body(cls, body: bytes) -> CvCertificate:
        """Parse an unsigned 7F4E body (what an officer card is asked to sign); ``signature`` is empty."""
        placeholder = tlv(CvcTag.SIGNATURE, bytes(SIGNATURE_LEN))
        parsed = cls.parse(tlv(CvcTag.CERTIFICATE, bytes(body) + placeholder))
        return replace(parsed, signature=b"")

    def with_signature(self, signature: bytes) -> CvCertificate:
        """The certificate assembled from this body and the issuer's signature (re-parsed, checked)."""
        return CvCertificate.parse(tlv(CvcTag.CERTIFICATE, self.body + tlv(CvcTag.SIGNATURE, signature)))

    def verify_signed_by(self, issuer_point: bytes) -> None:
        """Raise SignatureInvalidError unless the issuer key signed this body."""
        verify_signature(issuer_point, self.body, self.signature, subject=self.chr)

    def describe(self) -> str:
        rights = ",".join(self.rights.names()) or "-"
        extra = "".join(f", extension {e.oid_text}" for e in self.extensions)
        return (
            f"{self.chr} ({self.role.name}) issued by {self.car}, valid {self.effective}..{self.expiry}, "
            f"rights {rights}{extra}"
        )


def _oid(raw: bytes) -> tuple[int, ...]:
    try:
        return decode_oid(raw)
    except (ValueError, IndexError):
        raise FormatError(f"malformed OID {raw.hex()}") from None


def _oid_text(raw: bytes) -> str:
    try:
        return ".".join(str(a) for a in decode_oid(raw))
    except (ValueError, IndexError):
        return raw.hex()


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not ASCII") from None


def build_body(
    *,
    car: str,
    chr: str,
    public_point: bytes,
    role: Role,
    rights: Right,
    effective: date,
    expiry: date,
    extensions: Sequence[CertificateExtension] = (),
    content_digest: bytes | None = None,
) -> bytes:
    """The 7F4E body TLV, i.e. the bytes the issuer signs.

    ``extensions`` go into a ``65`` template after the expiry date (none: no ``65`` at all);
    ``content_digest`` is a shortcut that appends :func:`content_digest_extension` (beneficiary cards).
    """
    check_reference(car, "CAR")
    check_reference(chr, "CHR")
    load_public_point(public_point)
    if expiry < effective:
        raise FormatError(f"expiry {expiry} is before effective date {effective}")
    algorithm = tlv(CvcTag.OID, encode_oid(ALGORITHM_OID_ECDSA_SHA256))
    public_key = algorithm + tlv(CvcTag.PUBLIC_POINT, public_point)
    chat = tlv(CvcTag.OID, encode_oid(role_oid(role))) + tlv(CvcTag.RIGHTS, Right(rights).encode())
    all_extensions = list(extensions)
    if content_digest is not None:
        all_extensions.append(content_digest_extension(content_digest))
    extension_tlv = (
        tlv(CvcTag.EXTENSIONS, b"".join(e.encode() for e in all_extensions)) if all_extensions else b""
    )
    return tlv(
        CvcTag.BODY,
        tlv(CvcTag.PROFILE, bytes([PROFILE_ID]))
        + tlv(CvcTag.CAR, car.encode("ascii"))
        + tlv(CvcTag.PUBLIC_KEY, public_key)
        + tlv(CvcTag.CHR, chr.encode("ascii"))
        + tlv(CvcTag.CHAT, chat)
        + tlv(CvcTag.EFFECTIVE_DATE, encode_date(effective))
        + tlv(CvcTag.EXPIRY_DATE, encode_date(expiry))
        + extension_tlv,
    )


def issue_certificate(
    issuer: Signer,
    *,
    car: str,
    chr: str,
    public_point: bytes,
    role: Role,
    rights: Right,
    effective: date,
    expiry: date,
    extensions: Sequence[CertificateExtension] = (),
    content_digest: bytes | None = None,
) -> CvCertificate:
    """Build and sign a certificate (``extensions`` / ``content_digest`` as in :func:`build_body`).

    Policy (tier, rights subset, extensions) is checked by the caller's validator; this function only
    produces well-formed bytes, so tests can also forge bad ones deliberately."""
    body = build_body(
        car=car,
        chr=chr,
        public_point=public_point,
        role=role,
        rights=rights,
        effective=effective,
        expiry=expiry,
        extensions=extensions,
        content_digest=content_digest,
    )
    signature = issuer.sign(body)
    return CvCertificate.parse(tlv(CvcTag.CERTIFICATE, body + tlv(CvcTag.SIGNATURE, signature)))


def self_signed_root(signer: Signer, *, chr: str, effective: date, expiry: date) -> CvCertificate:
    """The root's own certificate: CAR = CHR, all rights, signed by the root key."""
    return issue_certificate(
        signer,
        car=chr,
        chr=chr,
        public_point=signer.public_key(),
        role=Role.ROOT,
        rights=Right.all(),
        effective=effective,
        expiry=expiry,
    )
