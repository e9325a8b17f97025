"""Certificates and chain validation: every attack is refused by its named rule.

Root and district keys live in SoftHSM2 (fixture ``pki_hierarchy``); officer, terminal and card keys
in memory.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.pki import errors
from cardsvc.pki.chain import TrustAnchor, explain, validate_chain
from cardsvc.pki.cvc import CvCertificate, decode_date, encode_date, issue_certificate, self_signed_root
from cardsvc.pki.errors import FormatError, PkiError
from cardsvc.pki.rights import ROLE_MAX_RIGHTS, Right, Role
from cardsvc.pki.signer import SoftwareSigner
from tests.fixtures.keys import PKI_NOW, PkiHierarchy


def test_every_holder_validates_offline_with_only_the_root_key(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    anchor = TrustAnchor(chr=h.root.chr, public_point=h.root.signer.public_key())
    for holder in (h.district, h.fko, h.facility_operator, h.enrolment_terminal, h.pos_terminal, h.card):
        chain = [c.encode() for c in h.chain_of(holder)]
        result = validate_chain(chain, anchor, now=PKI_NOW)
        assert result.leaf.chr == holder.chr
        assert result.rights == holder.cert.rights
    card_chain = validate_chain(h.chain_of(h.card), anchor, now=PKI_NOW)
    assert [c.role for c in card_chain.certificates] == [
        Role.DISTRICT,
        Role.FIELD_KEY_OFFICER,
        Role.BENEFICIARY_CARD,
    ]


def test_chain_may_start_with_the_root_certificate_itself(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    chain = [h.root.cert, *h.chain_of(h.pos_terminal)]
    assert validate_chain(chain, h.anchor, now=PKI_NOW).leaf.chr == h.pos_terminal.chr


def test_certificate_round_trips_and_is_card_sized(pki_hierarchy: PkiHierarchy) -> None:
    cert = pki_hierarchy.fko.cert
    raw = cert.encode()
    assert raw[:2] == b"\x7f\x21"
    assert CvCertificate.parse(raw) == cert
    assert len(raw) < 250  # HARDWARE.md: CV certificates about 229 bytes


def test_dates_are_one_digit_per_byte() -> None:
    assert encode_date(date(2026, 11, 23)) == bytes([2, 6, 1, 1, 2, 3])
    assert decode_date(bytes([3, 0, 1, 2, 3, 1])) == date(2030, 12, 31)
    with pytest.raises(FormatError, match="not a calendar date"):
        decode_date(bytes([2, 6, 0, 2, 3, 0]))


# -- forged -------------------------------------------------------------------------------------------------


def test_forged_certificate_signed_by_an_impostor_key_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    impostor = SoftwareSigner.generate()
    forged = issue_certificate(
        impostor,
        car=h.district.chr,  # claims the real district as issuer
        chr="INTRM-POS-6666",
        public_point=SoftwareSigner.generate().public_key(),
        role=Role.POS_TERMINAL,
        rights=Right.READ_TEMPLATES | Right.DEBIT,
        effective=date(2026, 1, 1),
        expiry=date(2030, 1, 1),
    )
    with pytest.raises(errors.SignatureInvalidError) as exc:
        validate_chain([h.district.cert, forged], h.anchor, now=PKI_NOW)
    assert exc.value.rule == "bad-signature"
    assert exc.value.subject == "INTRM-POS-6666"


def test_certificate_altered_after_signing_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    raw = bytearray(h.enrolment_terminal.cert.encode())
    rights_at = raw.index(bytes([0x53, 0x04])) + 2
    raw[rights_at + 3] |= int(Right.DEBIT)  # grant itself DEBIT by flipping a rights bit
    with pytest.raises(errors.SignatureInvalidError, match="does not verify"):
        validate_chain([h.district.cert, bytes(raw)], h.anchor, now=PKI_NOW)


# -- issuer -------------------------------------------------------------------------------------------------


def test_certificate_presented_under_the_wrong_issuer_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    other_district = h.issue(h.root, "INDKMA-GAYA-01", Role.DISTRICT)
    with pytest.raises(errors.WrongIssuerError, match="names issuer INDKMA-PATNA1"):
        validate_chain([other_district.cert, h.fko.cert], h.anchor, now=PKI_NOW)


def test_chain_from_another_root_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    rogue_root_key = SoftwareSigner.generate()
    rogue_root = self_signed_root(
        rogue_root_key, chr="XXROOT", effective=date(2026, 1, 1), expiry=date(2030, 1, 1)
    )
    district = issue_certificate(
        rogue_root_key,
        car="XXROOT",
        chr="XXDKMA",
        public_point=SoftwareSigner.generate().public_key(),
        role=Role.DISTRICT,
        rights=Right.all(),
        effective=date(2026, 1, 1),
        expiry=date(2030, 1, 1),
    )
    with pytest.raises(errors.UntrustedRootError):
        validate_chain([rogue_root, district], h.anchor, now=PKI_NOW)
    with pytest.raises(errors.UntrustedRootError, match="trusted root is INROOT00001"):
        validate_chain([district], h.anchor, now=PKI_NOW)


def test_root_impersonation_with_the_right_name_but_wrong_key_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    fake_key = SoftwareSigner.generate()
    district = issue_certificate(
        fake_key,
        car=h.root.chr,
        chr="INDKMA-FAKE",
        public_point=SoftwareSigner.generate().public_key(),
        role=Role.DISTRICT,
        rights=Right.all(),
        effective=date(2026, 1, 1),
        expiry=date(2030, 1, 1),
    )
    with pytest.raises(errors.SignatureInvalidError):
        validate_chain([district], h.anchor, now=PKI_NOW)


# -- validity period ----------------------------------------------------------------------------------------


def test_expired_certificate_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    term = h.issue(
        h.district, "INTRM-POS-OLD", Role.POS_TERMINAL, effective=date(2026, 1, 1), expiry=date(2026, 6, 30)
    )
    chain = h.chain_of(term)
    last_valid = datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert validate_chain(chain, h.anchor, now=last_valid).leaf.chr == "INTRM-POS-OLD"
    with pytest.raises(errors.ExpiredError) as exc:
        validate_chain(chain, h.anchor, now=last_valid + timedelta(seconds=1))
    assert "expired on 2026-06-30" in str(exc.value)
    assert exc.value.subject == "INTRM-POS-OLD"


def test_not_yet_valid_certificate_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    term = h.issue(
        h.district, "INTRM-POS-NEW", Role.POS_TERMINAL, effective=date(2026, 12, 1), expiry=date(2027, 12, 1)
    )
    with pytest.raises(errors.NotYetValidError, match="valid only from 2026-12-01"):
        validate_chain(h.chain_of(term), h.anchor, now=PKI_NOW)
    assert validate_chain(h.chain_of(term), h.anchor, now=datetime(2026, 12, 1, tzinfo=UTC))


def test_expired_issuer_makes_the_chain_fail(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    with pytest.raises(errors.ExpiredError) as exc:
        validate_chain(h.chain_of(h.card), h.anchor, now=datetime(2031, 1, 1, tzinfo=UTC))
    assert exc.value.subject == h.district.chr


# -- tiers and rights ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer_name", "role"),
    [
        ("district", Role.DISTRICT),  # a district cannot create another district
        ("root", Role.FIELD_KEY_OFFICER),  # the root certifies districts only
        ("fko", Role.POS_TERMINAL),  # an FKO activates cards only
        ("pos_terminal", Role.BENEFICIARY_CARD),  # a terminal issues nothing
        ("district", Role.BENEFICIARY_CARD),  # cards are activated by an FKO, not the district
    ],
)
def test_role_issued_by_the_wrong_tier_is_refused(
    pki_hierarchy: PkiHierarchy, issuer_name: str, role: Role
) -> None:
    h = pki_hierarchy
    issuer = getattr(h, issuer_name)
    child = h.issue(issuer, "X-WRONG-TIER", role, rights=Right.NONE)
    with pytest.raises(errors.RoleNotIssuableError, match=f"may not issue a {role.name}"):
        validate_chain(h.chain_of(child), h.anchor, now=PKI_NOW)


def test_child_claiming_a_right_its_issuer_lacks_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    small = h.issue(h.root, "INDKMA-SMALL", Role.DISTRICT, rights=Right.CERTIFY | Right.READ_PROFILE)
    pos = h.issue(small, "INTRM-POS-BIG", Role.POS_TERMINAL, rights=Right.READ_PROFILE | Right.DEBIT)
    with pytest.raises(errors.RightsEscalationError) as exc:
        validate_chain(h.chain_of(pos), h.anchor, now=PKI_NOW)
    assert "claims DEBIT" in str(exc.value) and "INDKMA-SMALL" in str(exc.value)
    ok = h.issue(small, "INTRM-POS-OK", Role.POS_TERMINAL, rights=Right.READ_PROFILE)
    assert validate_chain(h.chain_of(ok), h.anchor, now=PKI_NOW).rights == Right.READ_PROFILE


def test_role_holding_a_right_it_may_never_hold_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    term = h.issue(h.district, "INTRM-POS-CERT", Role.POS_TERMINAL, rights=Right.CERTIFY | Right.DEBIT)
    with pytest.raises(errors.RoleRightsError, match="POS_TERMINAL may never hold CERTIFY"):
        validate_chain(h.chain_of(term), h.anchor, now=PKI_NOW)


def test_issuer_without_the_certify_right_cannot_issue(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    fko = h.issue(h.district, "INFKO-NOACT", Role.FIELD_KEY_OFFICER, rights=Right.ENROL | Right.READ_PROFILE)
    card = h.issue(fko, "CARD-NOACT", Role.BENEFICIARY_CARD)
    with pytest.raises(errors.MissingRightError, match="lacks the ACTIVATE_CARD right"):
        validate_chain(h.chain_of(card), h.anchor, now=PKI_NOW)


def test_operation_needing_a_right_the_holder_lacks_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    chain = h.chain_of(h.enrolment_terminal)
    validate_chain(chain, h.anchor, now=PKI_NOW, required=Right.READ_TEMPLATES)
    with pytest.raises(errors.MissingRightError) as exc:
        validate_chain(chain, h.anchor, now=PKI_NOW, required=Right.DEBIT)
    assert explain(exc.value).startswith("refused (missing-right): INTRM-ENR-0001 (ENROLMENT_TERMINAL) lacks")


# -- robustness ---------------------------------------------------------------------------------------------


def test_empty_or_overlong_chains_are_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    with pytest.raises(errors.ChainEmptyError):
        validate_chain([h.root.cert], h.anchor, now=PKI_NOW)
    with pytest.raises(FormatError, match="longer than the hierarchy"):
        validate_chain([h.district.cert, h.fko.cert, h.card.cert, h.card.cert], h.anchor, now=PKI_NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_certificates_never_validate_and_fail_only_with_pki_errors(
    pki_hierarchy_soft: PkiHierarchy, data: st.DataObject
) -> None:
    h = pki_hierarchy_soft
    raw = bytearray(h.fko.cert.encode())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(len(raw) - 3, len(raw)))
    with pytest.raises(PkiError):
        validate_chain([h.district.cert, bytes(raw[:cut])], h.anchor, now=PKI_NOW)


_RIGHTS = st.integers(0, int(Right.all())).map(Right)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(district_rights=_RIGHTS, terminal_rights=_RIGHTS)
def test_rights_rule_accepts_exactly_the_subsets(
    pki_hierarchy_soft: PkiHierarchy, district_rights: Right, terminal_rights: Right
) -> None:
    """A terminal validates iff its rights are within its district's AND within what a POS terminal may hold
    (and the district keeps CERTIFY to issue at all)."""
    h = pki_hierarchy_soft
    district = h.issue(h.root, "INDKMA-PROP", Role.DISTRICT, rights=district_rights)
    term = h.issue(district, "INTRM-PROP", Role.POS_TERMINAL, rights=terminal_rights)
    allowed = (
        Right.CERTIFY in district_rights
        and not terminal_rights & ~district_rights
        and not terminal_rights & ~ROLE_MAX_RIGHTS[Role.POS_TERMINAL]
    )
    if allowed:
        assert validate_chain([district.cert, term.cert], h.anchor, now=PKI_NOW).rights == terminal_rights
    else:
        with pytest.raises((errors.RightsEscalationError, errors.RoleRightsError, errors.MissingRightError)):
            validate_chain([district.cert, term.cert], h.anchor, now=PKI_NOW)
