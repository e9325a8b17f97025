"""The officer-card unblock authorisation (cardsvc/pki/officer.py): what the district signs and the strict
decoding of RESET RETRY COUNTER data the card applies. Pure: no card, no reader."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from cardsvc.pki import officer as fmt
from cardsvc.pki.cvc import CvCertificate, issue_certificate, self_signed_root
from cardsvc.pki.errors import FormatError, SignatureInvalidError
from cardsvc.pki.rights import DEFAULT_RIGHTS, Role
from cardsvc.pki.signer import SoftwareSigner
from cardsvc.tlv import tlv

OFFICER = "INCLK-PAT-0042"
CHALLENGE = bytes(range(16))
NEW_PIN = b"58203147"


@pytest.fixture(scope="module")
def district() -> tuple[SoftwareSigner, CvCertificate]:
    root_key, district_key = SoftwareSigner.generate(), SoftwareSigner.generate()
    root = self_signed_root(root_key, chr="INROOT00001", effective=date(2026, 1, 1), expiry=date(2040, 1, 1))
    cert = issue_certificate(
        root_key, car=root.chr, chr="INDKMA-PATNA1", public_point=district_key.public_key(),
        role=Role.DISTRICT, rights=DEFAULT_RIGHTS[Role.DISTRICT], effective=date(2026, 1, 1),
        expiry=date(2035, 1, 1),
    )  # fmt: skip
    return district_key, cert


def _auth(district: tuple[SoftwareSigner, CvCertificate], what: fmt.Unblock) -> fmt.UnblockAuthorisation:
    key, cert = district
    return fmt.sign_unblock(key, cert, OFFICER, CHALLENGE, what)


def test_an_authorisation_round_trips_and_verifies_under_the_presented_certificate(district) -> None:
    auth = _auth(district, fmt.UNBLOCK_ALL)
    parsed, pin = fmt.UnblockAuthorisation.parse(auth.encode(NEW_PIN))
    assert parsed == auth and pin == NEW_PIN
    parsed.verify()
    finger_only, no_pin = fmt.UnblockAuthorisation.parse(_auth(district, fmt.Unblock.FINGERPRINT).encode())
    assert finger_only.what is fmt.Unblock.FINGERPRINT and no_pin is None
    finger_only.verify()


def test_the_signature_binds_card_challenge_and_what(district) -> None:
    auth = _auth(district, fmt.Unblock.FINGERPRINT)
    for altered in (
        replace(auth, officer_chr="INCLK-PAT-0043"),
        replace(auth, challenge=bytes(16)),
        replace(auth, what=fmt.UNBLOCK_ALL),
    ):
        with pytest.raises(SignatureInvalidError):
            altered.verify()
    other_key = SoftwareSigner.generate()
    with pytest.raises(SignatureInvalidError):  # a key that is not the presented certificate's
        fmt.sign_unblock(other_key, district[1], OFFICER, CHALLENGE, fmt.Unblock.PIN).verify()


def test_the_statement_has_its_own_domain_and_names_what_is_unblocked() -> None:
    statement = fmt.unblock_statement(OFFICER, CHALLENGE, fmt.Unblock.PIN)
    assert statement.startswith(b"RSBY-OFFICER-UNBLOCK\x01")
    assert statement != fmt.unblock_statement(OFFICER, CHALLENGE, fmt.Unblock.FINGERPRINT)
    assert NEW_PIN not in statement
    for nothing_or_unknown in (fmt.Unblock(0), fmt.Unblock(0x04)):
        with pytest.raises(FormatError, match="PIN, the fingerprint or both"):
            fmt.unblock_statement(OFFICER, CHALLENGE, nothing_or_unknown)


def _fields(auth: fmt.UnblockAuthorisation) -> list[bytes]:
    return [
        auth.district.encode(),
        tlv(0x80, auth.officer_chr.encode()),
        tlv(0x81, auth.challenge),
        tlv(0x82, bytes([auth.what])),
        tlv(0x5F37, auth.signature),
    ]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda f: f[1:], "unblock"),  # district certificate missing
        (lambda f: [f[1], f[0], *f[2:]], "unblock"),  # out of order
        (lambda f: [*f, tlv(0x83, NEW_PIN), tlv(0x84, b"x")], "unblock"),  # an unknown trailing tag
        (lambda f: [*f[:2], tlv(0x81, bytes(7)), *f[3:], tlv(0x83, NEW_PIN)], "8-32 bytes"),  # short
        (lambda f: [*f[:3], tlv(0x82, b"\x01\x00"), f[4], tlv(0x83, NEW_PIN)], "one byte"),
        (lambda f: [*f[:3], tlv(0x82, b"\x04"), f[4]], "PIN, the fingerprint or both"),
        (lambda f: [*f[:4], tlv(0x5F37, bytes(63)), tlv(0x83, NEW_PIN)], "64 bytes"),
        (lambda f: f, "new PIN goes with a PIN unblock"),  # PIN unblock without a new PIN
        (lambda f: [*f, tlv(0x83, b"123")], "4-12 digits"),
        (lambda f: [*f, tlv(0x83, b"1234567890123")], "4-12 digits"),
        (lambda f: [*f, tlv(0x83, b"12a4")], "4-12 digits"),
        (lambda f: [*f, tlv(0x83, NEW_PIN), b"\x00"], None),  # trailing garbage
    ],
)
def test_strict_decoding_refuses_anything_but_the_one_layout(district, mangle, message: str | None) -> None:
    fields = _fields(_auth(district, fmt.Unblock.PIN))
    with pytest.raises(FormatError, match=message):
        fmt.UnblockAuthorisation.parse(b"".join(mangle(fields)))


def test_a_fingerprint_unblock_carries_no_pin_and_a_pin_message_never_echoes_it(district) -> None:
    fields = _fields(_auth(district, fmt.Unblock.FINGERPRINT))
    with pytest.raises(FormatError, match="new PIN goes with a PIN unblock") as info:
        fmt.UnblockAuthorisation.parse(b"".join([*fields, tlv(0x83, NEW_PIN)]))
    assert NEW_PIN.decode() not in str(info.value)
    with pytest.raises(FormatError) as bad:
        fmt.check_new_pin(b"98765x")
    assert "98765" not in str(bad.value)
    with pytest.raises(FormatError, match="new PIN goes with a PIN unblock"):
        _auth(district, fmt.Unblock.FINGERPRINT).encode(NEW_PIN)
