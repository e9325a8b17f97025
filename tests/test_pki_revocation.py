"""Revocation lists and terminal authentication: refusals that name the rule, time-aware revocation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.pki import errors
from cardsvc.pki.chain import validate_chain
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationList,
    RevocationReason,
    RevocationStore,
    SubjectKind,
    build_revocation_list,
)
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import SoftwareSigner
from cardsvc.pki.termauth import authenticate_terminal, sign_terminal_auth, terminal_auth_message
from tests.fixtures.keys import PKI_NOW, PkiHierarchy

REVOKED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _district_list(h: PkiHierarchy, version: int, *entries: RevocationEntry) -> RevocationList:
    return build_revocation_list(
        h.district.signer, issuer=h.district.chr, version=version, issued_at=PKI_NOW, entries=entries
    )


def _store_with(h: PkiHierarchy, rl: RevocationList) -> RevocationStore:
    store = h.revocation_store()
    store.offer(rl.encode(), now=PKI_NOW, issuer_chain=[h.district.cert])
    return store


def test_revocation_list_round_trips_compactly(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    entries = [
        RevocationEntry("INTRM-POS-0001", SubjectKind.TERMINAL, REVOKED_AT, RevocationReason.STOLEN),
        RevocationEntry("CARD-10000000001", SubjectKind.CARD, REVOKED_AT, RevocationReason.LOST),
    ]
    rl = _district_list(h, 3, *entries)
    raw = rl.encode()
    assert RevocationList.parse(raw) == rl
    assert [e.subject for e in rl.entries] == sorted(e.subject for e in entries)
    assert len(raw) < 100 + 2 * 40  # header + signature, then about 30 bytes per entry


def test_revoked_terminal_is_refused_after_the_revocation_time_only(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    store = _store_with(
        h, _district_list(h, 1, RevocationEntry(h.pos_terminal.chr, SubjectKind.TERMINAL, REVOKED_AT))
    )
    chain = h.chain_of(h.pos_terminal)
    before = REVOKED_AT - timedelta(seconds=1)
    assert validate_chain(chain, h.anchor, now=PKI_NOW, revocations=store, signed_at=before)
    with pytest.raises(errors.RevokedError) as exc:
        validate_chain(chain, h.anchor, now=PKI_NOW, revocations=store, signed_at=REVOKED_AT)
    assert exc.value.rule == "revoked"
    assert "INTRM-POS-0001 was revoked at 2026-11-20 10:00:00Z" in str(exc.value)
    assert f"list {h.district.chr} v1" in str(exc.value)
    with pytest.raises(errors.RevokedError):  # acting now (the default) is after the revocation
        validate_chain(chain, h.anchor, now=PKI_NOW, revocations=store)


def test_cards_activated_before_the_fko_was_revoked_stay_valid(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    store = _store_with(
        h,
        _district_list(
            h, 1, RevocationEntry(h.fko.chr, SubjectKind.OFFICER, REVOKED_AT, RevocationReason.KEY_COMPROMISE)
        ),
    )
    # h.card was activated 2026-01-01, long before the FKO's revocation.
    assert validate_chain(h.chain_of(h.card), h.anchor, now=PKI_NOW, revocations=store)
    day_before = h.issue(h.fko, "CARD-BEFORE", Role.BENEFICIARY_CARD, effective=date(2026, 11, 19))
    assert validate_chain(h.chain_of(day_before), h.anchor, now=PKI_NOW, revocations=store)
    for chr_, eff in (("CARD-SAMEDAY", date(2026, 11, 20)), ("CARD-AFTER", date(2026, 11, 21))):
        card = h.issue(h.fko, chr_, Role.BENEFICIARY_CARD, effective=eff)
        with pytest.raises(
            errors.RevokedError, match=f"{chr_} was issued on {eff} by {h.fko.chr}, which was"
        ):
            validate_chain(h.chain_of(card), h.anchor, now=PKI_NOW, revocations=store)


def test_a_district_cannot_revoke_another_districts_holders(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    gaya = h.issue(h.root, "INDKMA-GAYA-01", Role.DISTRICT)
    rl = build_revocation_list(
        gaya.signer,
        issuer=gaya.chr,
        version=1,
        issued_at=PKI_NOW,
        entries=[RevocationEntry(h.pos_terminal.chr, SubjectKind.TERMINAL, REVOKED_AT)],
    )
    store = h.revocation_store()
    store.offer(rl, now=PKI_NOW, issuer_chain=[gaya.cert])
    assert validate_chain(h.chain_of(h.pos_terminal), h.anchor, now=PKI_NOW, revocations=store)


def test_root_list_revokes_anyone_including_a_district(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    rl = build_revocation_list(
        h.root.signer,
        issuer=h.root.chr,
        version=1,
        issued_at=PKI_NOW,
        entries=[RevocationEntry(h.district.chr, SubjectKind.DISTRICT, REVOKED_AT)],
    )
    store = h.revocation_store()
    store.offer(rl, now=PKI_NOW)
    late = h.issue(h.district, "INTRM-POS-LATE", Role.POS_TERMINAL, effective=date(2026, 11, 22))
    with pytest.raises(errors.RevokedError, match="INDKMA-PATNA1, which was revoked"):
        validate_chain(h.chain_of(late), h.anchor, now=PKI_NOW, revocations=store)
    with pytest.raises(errors.RevokedError, match="INDKMA-PATNA1 was revoked"):
        validate_chain([h.district.cert], h.anchor, now=PKI_NOW, revocations=store)


def test_older_list_is_refused_as_rollback_and_newer_replaces(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    v1 = _district_list(h, 1)
    v2 = _district_list(h, 2, RevocationEntry(h.pos_terminal.chr, SubjectKind.TERMINAL, REVOKED_AT))
    store = _store_with(h, v2)
    with pytest.raises(errors.RollbackError, match="v1 is older than v2"):
        store.offer(v1, now=PKI_NOW, issuer_chain=[h.district.cert])
    assert store.offer(v2, now=PKI_NOW, issuer_chain=[h.district.cert]) is False
    other_v2 = _district_list(h, 2)
    with pytest.raises(errors.RollbackError, match="differs"):
        store.offer(other_v2, now=PKI_NOW, issuer_chain=[h.district.cert])
    v3 = _district_list(h, 3)  # the terminal is reinstated in v3
    assert store.offer(v3, now=PKI_NOW, issuer_chain=[h.district.cert]) is True
    assert store.version_of(h.district.chr) == 3
    assert validate_chain(h.chain_of(h.pos_terminal), h.anchor, now=PKI_NOW, revocations=store)


def test_forged_or_unauthorised_lists_are_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    store = h.revocation_store()
    forged = build_revocation_list(
        SoftwareSigner.generate(), issuer=h.district.chr, version=9, issued_at=PKI_NOW, entries=[]
    )
    with pytest.raises(errors.SignatureInvalidError):
        store.offer(forged, now=PKI_NOW, issuer_chain=[h.district.cert])
    by_terminal = build_revocation_list(
        h.pos_terminal.signer, issuer=h.pos_terminal.chr, version=1, issued_at=PKI_NOW, entries=[]
    )
    with pytest.raises(errors.MissingRightError, match="lacks the right REVOKE"):
        store.offer(by_terminal, now=PKI_NOW, issuer_chain=h.chain_of(h.pos_terminal))
    with pytest.raises(errors.WrongIssuerError):
        store.offer(_district_list(h, 1), now=PKI_NOW, issuer_chain=h.chain_of(h.fko))
    assert store.lists == {}


@settings(max_examples=50, deadline=None)
@given(
    subjects=st.lists(st.from_regex(r"[A-Z0-9-]{1,24}", fullmatch=True), max_size=8),
    seconds=st.integers(0, 2**32 - 1),
    version=st.integers(1, 2**32 - 1),
)
def test_any_list_round_trips(subjects: list[str], seconds: int, version: int) -> None:
    signer = SoftwareSigner.generate()
    at = datetime.fromtimestamp(seconds, tz=UTC)
    rl = build_revocation_list(
        signer,
        issuer="INROOT",
        version=version,
        issued_at=at,
        entries=[RevocationEntry(s, SubjectKind.CARD, at) for s in subjects],
    )
    back = RevocationList.parse(rl.encode())
    assert back == rl
    assert sorted({*subjects}) == [e.subject for e in back.entries]


# -- terminal authentication --------------------------------------------------------------------------------

CHALLENGE = bytes.fromhex("0011223344556677")


def test_terminal_proves_its_key_over_the_cards_challenge(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    t = h.pos_terminal
    sig = sign_terminal_auth(t.signer, challenge=CHALLENGE, card_id=h.card.chr, terminal_chr=t.chr)
    granted = authenticate_terminal(
        h.chain_of(t),
        sig,
        anchor=h.anchor,
        challenge=CHALLENGE,
        card_id=h.card.chr,
        now=PKI_NOW,
        required=Right.READ_TEMPLATES,
    )
    assert Right.READ_TEMPLATES in granted.rights and Right.DEBIT in granted.rights


def test_replayed_or_transplanted_terminal_proof_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    t = h.pos_terminal
    sig = sign_terminal_auth(t.signer, challenge=CHALLENGE, card_id=h.card.chr, terminal_chr=t.chr)
    with pytest.raises(errors.SignatureInvalidError):  # a new power session, a new challenge
        authenticate_terminal(
            h.chain_of(t), sig, anchor=h.anchor, challenge=b"\x99" * 8, card_id=h.card.chr, now=PKI_NOW
        )
    with pytest.raises(errors.SignatureInvalidError):  # proof made for another card
        authenticate_terminal(
            h.chain_of(t), sig, anchor=h.anchor, challenge=CHALLENGE, card_id="CARD-OTHER", now=PKI_NOW
        )


def test_terminal_without_the_template_right_or_non_terminal_is_refused(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    weak = h.issue(h.district, "INTRM-POS-WEAK", Role.POS_TERMINAL, rights=Right.READ_PROFILE)
    sig = sign_terminal_auth(weak.signer, challenge=CHALLENGE, card_id=h.card.chr, terminal_chr=weak.chr)
    with pytest.raises(errors.MissingRightError, match="lacks the right READ_TEMPLATES"):
        authenticate_terminal(
            h.chain_of(weak),
            sig,
            anchor=h.anchor,
            challenge=CHALLENGE,
            card_id=h.card.chr,
            now=PKI_NOW,
            required=Right.READ_TEMPLATES,
        )
    op = h.facility_operator
    sig = sign_terminal_auth(op.signer, challenge=CHALLENGE, card_id=h.card.chr, terminal_chr=op.chr)
    with pytest.raises(errors.MissingRightError, match="not a terminal"):
        authenticate_terminal(
            h.chain_of(op), sig, anchor=h.anchor, challenge=CHALLENGE, card_id=h.card.chr, now=PKI_NOW
        )


def test_terminal_auth_message_binds_every_field() -> None:
    base = terminal_auth_message(CHALLENGE, "CARD-1", "INTRM-1")
    assert base.startswith(b"RSBY-TA\x01")
    assert base != terminal_auth_message(CHALLENGE, "CARD-2", "INTRM-1")
    assert base != terminal_auth_message(CHALLENGE, "CARD-1", "INTRM-2")
    with pytest.raises(errors.FormatError, match="challenge must be 8-32 bytes"):
        terminal_auth_message(b"\x00" * 4, "CARD-1", "INTRM-1")
