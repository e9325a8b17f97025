"""Certificate extensions (BSI TR-03110 ``65 { 73 { 06 OID, 80 value } }``) and their validation rules.

What a verifier notices: a card certificate carries the household content digest the FKO signed; a card
certificate without it, with two, or with a short one is refused (``content-digest``); an extension on a
role that does not know it is refused (``extension-not-allowed``); altering the digest breaks the signature.
Keys are in memory (``pki_hierarchy_soft``): these tests are pure and fast.
"""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.pki import errors
from cardsvc.pki.chain import check_extensions, validate_chain
from cardsvc.pki.cvc import (
    CONTENT_DIGEST_OID,
    EXTENSION_OID_ARC,
    CertificateExtension,
    CvCertificate,
    CvcTag,
    build_body,
    content_digest_extension,
    issue_certificate,
)
from cardsvc.pki.errors import FormatError
from cardsvc.pki.rights import DEFAULT_RIGHTS, Right, Role
from cardsvc.pki.signer import SoftwareSigner
from cardsvc.tlv import tlv
from tests.fixtures.keys import PKI_EFFECTIVE, PKI_EXPIRY, PKI_NOW, PkiHierarchy

DIGEST = hashlib.sha256(b"household").digest()
POINT = SoftwareSigner.generate().public_key()
OTHER_OID = (*EXTENSION_OID_ARC, 99)


def _body(**over: object) -> bytes:
    fields: dict = {
        "car": "INFKO-PAT-0007", "chr": "CARD-1", "public_point": POINT, "role": Role.BENEFICIARY_CARD,
        "rights": Right.NONE, "effective": date(2026, 11, 23), "expiry": date(2027, 11, 22),
    }  # fmt: skip
    fields.update(over)
    return build_body(**fields)


def _card(h: PkiHierarchy, **over: object) -> CvCertificate:
    fields: dict = {
        "car": h.fko.chr, "chr": "CARD-77", "public_point": POINT, "role": Role.BENEFICIARY_CARD,
        "rights": Right.NONE, "effective": PKI_EFFECTIVE, "expiry": PKI_EXPIRY,
    }  # fmt: skip
    fields.update(over)
    return issue_certificate(h.fko.signer, **fields)


def _rule(h: PkiHierarchy, chain: list[CvCertificate]) -> str:
    with pytest.raises(errors.ValidationError) as info:
        validate_chain(chain, h.anchor, now=PKI_NOW)
    return info.value.rule


# ------------------------------------------------------------------------------------------ format
def test_content_digest_is_encoded_as_documented() -> None:
    body = _body(content_digest=DIGEST)
    # docs/certificates.md: 65 2C { 73 2A { 06 06 <2.999.7816.2.1> 80 20 <digest> } } right after 5F24
    ext = bytes.fromhex("652c732a06068837bd0802018020") + DIGEST
    assert body.endswith(ext)
    assert body[: -len(ext)].endswith(tlv(CvcTag.EXPIRY_DATE, bytes([2, 7, 1, 1, 2, 2]))[-9:])
    cert = CvCertificate.parse_body(body)
    assert cert.extensions == (CertificateExtension(CONTENT_DIGEST_OID, DIGEST),)
    assert cert.content_digest == DIGEST
    assert cert.extension(CONTENT_DIGEST_OID) == DIGEST
    assert cert.extension(OTHER_OID) is None
    assert "extension 2.999.7816.2.1" in cert.describe()


def test_certificates_without_extensions_keep_their_bytes() -> None:
    plain = _body(role=Role.POS_TERMINAL, rights=Right.DEBIT, chr="INTRM-POS-9")
    assert b"\x65" not in plain[-10:] and plain.endswith(bytes([2, 7, 1, 1, 2, 2]))
    cert = CvCertificate.parse_body(plain)
    assert cert.extensions == () and cert.content_digest is None
    assert len(_body(content_digest=DIGEST)) == len(_body()) + 46  # the extension costs 46 bytes


def test_several_extensions_round_trip_in_order_and_a_repeated_one_is_ambiguous() -> None:
    exts = [CertificateExtension(OTHER_OID, b"\x01\x02"), content_digest_extension(DIGEST)]
    cert = CvCertificate.parse_body(_body(extensions=exts))
    assert cert.extensions == tuple(exts)
    assert cert.extension(OTHER_OID) == b"\x01\x02"
    twice = CvCertificate.parse_body(_body(extensions=[content_digest_extension(DIGEST)] * 2))
    with pytest.raises(FormatError, match="appears 2 times"):
        twice.extension(CONTENT_DIGEST_OID)


@pytest.mark.parametrize(
    ("extensions_tlv", "message"),
    [
        (tlv(0x65, b""), "at least one 73"),
        (tlv(0x65, tlv(0x53, b"\x00")), "only 73 templates"),
        (tlv(0x65, tlv(0x73, tlv(0x06, b"\x2a"))), r"expected tags \[6 80\]"),
        (tlv(0x65, tlv(0x73, tlv(0x06, b"\x2a") + tlv(0x80, b"") + tlv(0x81, b""))), "expected tags"),
        (tlv(0x65, tlv(0x73, tlv(0x80, b"") + tlv(0x06, b"\x2a"))), "expected tags"),
        (bytes.fromhex("65812c") + bytes.fromhex("732a06068837bd0802018020") + DIGEST, "non-minimal"),
        (tlv(0x65, tlv(0x73, tlv(0x06, b"\x80") + tlv(0x80, b"x"))), "malformed OID"),
    ],
)
def test_malformed_extensions_are_refused(extensions_tlv: bytes, message: str) -> None:
    plain = _body()
    inner = plain[4:]  # 7F4E 81 xx: the body's value
    assert plain[:3] == bytes.fromhex("7f4e81")
    forged = tlv(CvcTag.BODY, inner + extensions_tlv)
    with pytest.raises(FormatError, match=message):
        CvCertificate.parse_body(forged)


def test_extensions_must_come_last() -> None:
    body = _body(content_digest=DIGEST)
    cert = CvCertificate.parse_body(body)
    ext = tlv(0x65, content_digest_extension(DIGEST).encode())
    expiry = tlv(CvcTag.EXPIRY_DATE, bytes([2, 7, 1, 1, 2, 2]))
    value = body[4:]
    moved = value.replace(expiry + ext, ext + expiry)
    assert moved != value
    with pytest.raises(FormatError, match="expected tags"):
        CvCertificate.parse_body(tlv(CvcTag.BODY, moved))
    with pytest.raises(FormatError, match="expected tags"):  # two 65 templates
        CvCertificate.parse_body(tlv(CvcTag.BODY, value + ext))
    assert cert.content_digest == DIGEST


def test_content_digest_must_be_32_bytes_to_be_built() -> None:
    with pytest.raises(FormatError, match="32 bytes"):
        content_digest_extension(DIGEST[:31])


@given(
    st.lists(
        st.tuples(st.integers(0, 2**32), st.binary(max_size=80)), min_size=0, max_size=4
    )
)
def test_any_extension_list_round_trips(items: list[tuple[int, bytes]]) -> None:
    exts = [CertificateExtension((*EXTENSION_OID_ARC, arc), value) for arc, value in items]
    cert = CvCertificate.parse_body(_body(extensions=exts))
    assert cert.extensions == tuple(exts)
    assert CvCertificate.parse_body(cert.body) == cert


# ------------------------------------------------------------------------------------------ rules
def test_card_certificate_with_its_digest_validates(pki_hierarchy_soft: PkiHierarchy) -> None:
    h = pki_hierarchy_soft
    card = _card(h, content_digest=DIGEST)
    result = validate_chain([h.district.cert, h.fko.cert, card], h.anchor, now=PKI_NOW)
    assert result.leaf.content_digest == DIGEST


def test_altered_digest_breaks_the_fko_signature(pki_hierarchy_soft: PkiHierarchy) -> None:
    h = pki_hierarchy_soft
    raw = _card(h, content_digest=DIGEST).encode()
    other = hashlib.sha256(b"another household").digest()
    forged = CvCertificate.parse(raw.replace(DIGEST, other))
    assert forged.content_digest == other
    assert _rule(h, [h.district.cert, h.fko.cert, forged]) == "bad-signature"


@pytest.mark.parametrize(
    ("extensions", "why"),
    [
        ([], "found 0"),
        ([content_digest_extension(DIGEST)] * 2, "found 2"),
        ([CertificateExtension(CONTENT_DIGEST_OID, DIGEST[:31])], "31 bytes"),
    ],
)
def test_card_certificate_needs_exactly_one_32_byte_digest(
    pki_hierarchy_soft: PkiHierarchy, extensions: list[CertificateExtension], why: str
) -> None:
    h = pki_hierarchy_soft
    card = _card(h, extensions=extensions)
    with pytest.raises(errors.ContentDigestError, match=why) as info:
        validate_chain([h.district.cert, h.fko.cert, card], h.anchor, now=PKI_NOW)
    assert info.value.rule == "content-digest" and info.value.subject == "CARD-77"


def test_unknown_extension_is_refused_on_a_card(pki_hierarchy_soft: PkiHierarchy) -> None:
    h = pki_hierarchy_soft
    card = _card(h, content_digest=DIGEST, extensions=[CertificateExtension(OTHER_OID, b"x")])
    with pytest.raises(errors.ExtensionNotAllowedError, match=r"2\.999\.7816\.2\.99"):
        validate_chain([h.district.cert, h.fko.cert, card], h.anchor, now=PKI_NOW)


@pytest.mark.parametrize("role", [Role.POS_TERMINAL, Role.FIELD_KEY_OFFICER, Role.ENROLMENT_TERMINAL])
def test_other_roles_carry_no_extension(pki_hierarchy_soft: PkiHierarchy, role: Role) -> None:
    h = pki_hierarchy_soft
    holder = SoftwareSigner.generate()
    cert = issue_certificate(
        h.district.signer, car=h.district.chr, chr="INX-EXT-1", public_point=holder.public_key(), role=role,
        rights=DEFAULT_RIGHTS[role], effective=PKI_EFFECTIVE, expiry=PKI_EXPIRY, content_digest=DIGEST,
    )  # fmt: skip
    assert _rule(h, [h.district.cert, cert]) == "extension-not-allowed"
    if role is Role.FIELD_KEY_OFFICER:  # an issuer with an extension refuses its whole subtree
        card = issue_certificate(
            holder, car=cert.chr, chr="CARD-78", public_point=POINT, role=Role.BENEFICIARY_CARD,
            rights=Right.NONE, effective=PKI_EFFECTIVE, expiry=PKI_EXPIRY, content_digest=DIGEST,
        )  # fmt: skip
        assert _rule(h, [h.district.cert, cert, card]) == "extension-not-allowed"


def test_check_extensions_is_the_rule_the_officer_card_applies() -> None:
    check_extensions(CvCertificate.parse_body(_body(content_digest=DIGEST)))
    with pytest.raises(errors.ContentDigestError):
        check_extensions(CvCertificate.parse_body(_body()))
    terminal = CvCertificate.parse_body(
        _body(role=Role.POS_TERMINAL, rights=Right.DEBIT, chr="INTRM-POS-9", content_digest=DIGEST)
    )
    with pytest.raises(errors.ExtensionNotAllowedError):
        check_extensions(terminal)


@given(st.binary(max_size=120))
def test_arbitrary_extension_bytes_parse_or_raise_format_error(junk: bytes) -> None:
    """Whatever follows 5F24 inside the body: a parsed certificate or a FormatError, never another error."""
    forged = tlv(CvcTag.BODY, _body()[4:] + tlv(0x65, junk))
    try:
        cert = CvCertificate.parse_body(forged)
    except FormatError:
        return
    assert cert.extensions and CvCertificate.parse_body(cert.body) == cert
