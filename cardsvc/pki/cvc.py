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
      5F37 signature                   (64 bytes raw r||s, ECDSA P-256 SHA-256 by the CAR's key)
"""

from __future__ import annotations

import re
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
from cardsvc.tlv import strict_codec

expect_sequence, parse_all, parse_single, tlv = strict_codec(FormatError)

PROFILE_ID = 0x00
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,24}$")


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
    SIGNATURE = 0x5F37


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
        return (
            f"{self.chr} ({self.role.name}) issued by {self.car}, valid {self.effective}..{self.expiry}, "
            f"rights {rights}"
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
) -> bytes:
    """The 7F4E body TLV, i.e. the bytes the issuer signs."""
    check_reference(car, "CAR")
    check_reference(chr, "CHR")
    load_public_point(public_point)
    if expiry < effective:
        raise FormatError(f"expiry {expiry} is before effective date {effective}")
    algorithm = tlv(CvcTag.OID, encode_oid(ALGORITHM_OID_ECDSA_SHA256))
    public_key = algorithm + tlv(CvcTag.PUBLIC_POINT, public_point)
    chat = tlv(CvcTag.OID, encode_oid(role_oid(role))) + tlv(CvcTag.RIGHTS, Right(rights).encode())
    return tlv(
        CvcTag.BODY,
        tlv(CvcTag.PROFILE, bytes([PROFILE_ID]))
        + tlv(CvcTag.CAR, car.encode("ascii"))
        + tlv(CvcTag.PUBLIC_KEY, public_key)
        + tlv(CvcTag.CHR, chr.encode("ascii"))
        + tlv(CvcTag.CHAT, chat)
        + tlv(CvcTag.EFFECTIVE_DATE, encode_date(effective))
        + tlv(CvcTag.EXPIRY_DATE, encode_date(expiry)),
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
) -> CvCertificate:
    """Build and sign a certificate. Policy (tier, rights subset) is checked by the caller's validator;
    this function only produces well-formed bytes, so tests can also forge bad ones deliberately."""
    body = build_body(
        car=car,
        chr=chr,
        public_point=public_point,
        role=role,
        rights=rights,
        effective=effective,
        expiry=expiry,
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
