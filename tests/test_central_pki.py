"""Central with a trust anchor: terminals known by CV certificate chains checked to the root (cardsvc.pki)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from flask import Flask

from cardsvc.central.app import create_app
from cardsvc.central.errors import AuthenticationError
from cardsvc.central.extensions import get_db
from cardsvc.central.services.pki_keys import register_certified_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal, p256_key
from cardsvc.formats.batch import BatchKind, CampCard, Gender, Member
from cardsvc.formats.profile import card_number, reference_id
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.chain import Revocation
from cardsvc.pki.rights import Role
from cardsvc.pki.signer import SoftwareSigner

UPLOAD = "/api/v1/batches"
NOW = 1_800_000_000  # 2027-01-15, inside the fixture certificates' validity (2026-2030)


@dataclass
class ListedRevocations:
    """A RevocationLookup with fixed answers (the PKI's RevocationStore in production)."""

    revoked: dict[str, datetime]

    def revocation_of(self, chr: str, issuer_path: Sequence[str]) -> Revocation | None:
        at = self.revoked.get(chr)
        return None if at is None else Revocation(at, "INROOT00001", 1, "KEY_COMPROMISE")


@pytest.fixture
def certified(db_url: str, pki_hierarchy_soft) -> Iterator[tuple[Flask, object, ListedRevocations]]:
    revocations = ListedRevocations({})
    app = create_app(
        {
            "DATABASE_URL": db_url,
            "CLOCK": FixedClock(float(NOW)),
            "TRUST_ANCHOR": pki_hierarchy_soft.anchor,
            "REVOCATIONS": revocations,
        }
    )
    yield app, pki_hierarchy_soft, revocations
    get_db(app).dispose()


def enrol_terminal(
    app: Flask, pki, chr: str, terminal_id: int, role: Role = Role.POS_TERMINAL
) -> SimTerminal:
    key = p256_key(random.Random(terminal_id))
    holder = pki.issue(pki.district, chr, role, signer=SoftwareSigner(key))
    with get_db(app).sessions() as session:
        register_certified_terminal(session, terminal_id, pki.chain_of(holder), pki.anchor, NOW)
        session.commit()
    return SimTerminal(terminal_id, key)


def upload(app: Flask, terminal: SimTerminal):
    card = SimCard.new(0xCA, random.Random(3))
    card.transact(RecordType.CASH, 500, NOW - 60, terminal.terminal_id, 1, 1)
    body = terminal.batch(BatchKind.TRANSACTIONS, card.items(), NOW)
    return app.test_client().post(UPLOAD, data=body, headers=terminal.headers("POST", UPLOAD, body, NOW))


def test_certified_terminal_uploads(certified) -> None:
    app, pki, _ = certified
    terminal = enrol_terminal(app, pki, "INTRM-POS-0101", 0x101)
    response = upload(app, terminal)
    assert response.status_code == 201, response.get_json()


def test_terminal_revoked_by_the_pki_list_is_refused(certified) -> None:
    app, pki, revocations = certified
    terminal = enrol_terminal(app, pki, "INTRM-POS-0102", 0x102)
    revocations.revoked["INTRM-POS-0102"] = datetime.fromtimestamp(NOW - 3600, UTC)
    response = upload(app, terminal)
    assert response.status_code == 403 and response.get_json()["error"] == "revoked_terminal"


def test_chain_under_another_root_cannot_be_registered(certified, pki_hierarchy_soft) -> None:
    app, pki, _ = certified
    from tests.fixtures.keys import build_hierarchy

    stranger = build_hierarchy(SoftwareSigner.generate(), SoftwareSigner.generate())
    with get_db(app).sessions() as session, pytest.raises(AuthenticationError) as refused:
        register_certified_terminal(session, 0x103, stranger.chain_of(stranger.pos_terminal), pki.anchor, NOW)
    assert refused.value.code == "bad_terminal_certificate" and "signature" in refused.value.reason


def test_an_officer_certificate_is_not_a_terminal(certified) -> None:
    app, pki, _ = certified
    with get_db(app).sessions() as session, pytest.raises(AuthenticationError) as refused:
        register_certified_terminal(session, 0x104, pki.chain_of(pki.fko), pki.anchor, NOW)
    assert refused.value.code == "not_a_terminal"


def test_plain_key_terminal_refused_when_an_anchor_is_configured(certified) -> None:
    app, _pki, _ = certified
    from cardsvc.central.services.terminals import register_terminal

    plain = SimTerminal.new(0x105, random.Random(5))
    with get_db(app).sessions() as session:
        register_terminal(session, plain.terminal_id, plain.key.public_key(), NOW - 10)
        session.commit()
    response = upload(app, plain)
    assert response.status_code == 401 and response.get_json()["error"] == "uncertified_terminal"


def camp_card_of(pki, holder, fko_chr: str | None = None, chain=None) -> CampCard:
    """The camp item the station reports for the card ``holder`` (CHR CARD-<n>) activated by the FKO."""
    return CampCard(
        card_id=card_number(holder.chr), household_id="HH-1", district="Patna", scheme_id=1,
        policy_start=NOW - 86_400, policy_end=NOW + 300 * 86_400, cover_paise=3_000_000,
        card_key=holder.cert.public_point, fko_id=reference_id(fko_chr or holder.cert.car),
        members=(Member(Gender.FEMALE, 1980),),
        card_chain=tuple(c.encode() for c in (chain if chain is not None else pki.chain_of(holder))),
    )  # fmt: skip


def post_camp(app: Flask, terminal: SimTerminal, cards: list[CampCard]):
    body = terminal.batch(BatchKind.CAMP, cards, NOW)
    return app.test_client().post(UPLOAD, data=body, headers=terminal.headers("POST", UPLOAD, body, NOW))


def test_camp_cards_certified_by_an_fko_are_accepted(certified) -> None:
    app, pki, _ = certified
    station = enrol_terminal(app, pki, "INTRM-ENR-0201", 0x201, Role.ENROLMENT_TERMINAL)
    response = post_camp(app, station, [camp_card_of(pki, pki.card)])
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize(
    ("case", "code", "says"),
    [
        ("no chain", "uncertified_card", "no card_chain"),
        ("another card's chain", "bad_card_certificate", "the certificate is for"),
        ("another fko", "bad_card_certificate", "was activated by"),
        ("forged chain", "bad_card_certificate", "signature"),
    ],
)
def test_camp_cards_without_a_valid_certificate_are_refused(certified, case: str, code: str, says: str):
    app, pki, _ = certified
    station = enrol_terminal(app, pki, "INTRM-ENR-0202", 0x202, Role.ENROLMENT_TERMINAL)
    other = pki.issue(pki.fko, "CARD-10000000002", Role.BENEFICIARY_CARD)
    card = camp_card_of(pki, pki.card)
    if case == "no chain":
        card = replace(card, card_chain=())
    elif case == "another card's chain":
        card = replace(card, card_chain=tuple(c.encode() for c in pki.chain_of(other)))
    elif case == "another fko":
        card = camp_card_of(pki, pki.card, fko_chr="INFKO-PAT-0099")
    else:
        from tests.fixtures.keys import build_hierarchy

        stranger = build_hierarchy(SoftwareSigner.generate(), SoftwareSigner.generate())
        card = camp_card_of(pki, stranger.card, chain=stranger.chain_of(stranger.card))
    response = post_camp(app, station, [card])
    body = response.get_json()
    assert (response.status_code, body["error"]) == (422, code), body
    assert says in body["reason"] and "batch.items[0]" in body["reason"]
