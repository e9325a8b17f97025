"""Split card and replacement: each only with a central authorisation the station checks offline (forged,
expired, wrong-card and re-used authorisations refused, saying why); a split lowers the original card's
cover on its chip under central's SPLIT card authorisation. Renewal: tests/test_station_renewal.py."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from cardsvc.beneficiary import protocol as ben
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.beneficiary.session import sign_authorisation as sign_card_authorisation
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.signer import SoftwareSigner
from enrolment_station.authorisation import AuthKind, SchemeGrant, SignedAuthorisation, sign_authorisation
from enrolment_station.camp import Camp
from enrolment_station.errors import AuthorisationError
from enrolment_station.journal import CardState
from enrolment_station.reissue import issue_authorised
from tests.fixtures.reissue import (
    card_authorisation,
    personalise_again,
    station_authorisation,
    verify_as_terminal,
)
from tests.fixtures.station import OpenCamp, StationWorld


def _enrolled(camp: Camp, world: StationWorld) -> tuple[str, Any]:
    card = world.blank_card()
    result = camp.enrol_household("HH-0001", InProcessConnection(card))
    return result.card_id, card


def _auth(
    world: StationWorld,
    kind: AuthKind,
    card_id: str,
    *,
    members: tuple[int, ...],
    by_root: bool = False,
    valid_for: timedelta = timedelta(days=7),
    auth_id: str = "a1b2c3d4e5f60718",
    cover: int = 1_000_000,
) -> SignedAuthorisation:
    """Central's authorisation for the station to split or replace HH-0001's card, issued now."""
    return station_authorisation(
        world, kind, "HH-0001", card_id, now=world.now(), members=members, cover=cover, by_root=by_root,
        valid_for=valid_for, auth_id=auth_id,
    )  # fmt: skip


def _lowering(world: StationWorld, card_id: str, value: int, serial: int = 1) -> ben.Authorisation:
    """Central's SPLIT card authorisation: lower scheme 1 of the original card by ``value``."""
    return card_authorisation(world, ben.Authorisation(ben.AuthKind.SPLIT, card_id, serial, 1, value))


def test_split_card_for_a_migrant_member_lowers_the_original_on_its_chip(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, original = _enrolled(camp, station_world)
    signed = _auth(station_world, AuthKind.SPLIT, card_id, members=(1,))
    split_card = station_world.blank_card()
    result = issue_authorised(
        camp.personaliser,
        InProcessConnection(split_card),
        signed,
        AuthKind.SPLIT,
        card_id,
        now=station_world.now(),
        fko=camp.fko,
        original=InProcessConnection(original),
        lowering=[_lowering(station_world, card_id, 1_000_000)],
    )
    assert [m.name for m in result.profile.members] == ["Sita Devi"]
    assert result.profile.schemes[0].cover_paise == 1_000_000
    with InProcessConnection(split_card) as c:
        assert verify_as_terminal(station_world, c, station_world.now()).card_id == result.card_id
    with InProcessConnection(original) as c:  # the original carries 1,000,000 less, by a card-signed record
        verified = verify_as_terminal(station_world, c, station_world.now())
        assert verified.status.wallet(1).balance == 3_000_000 - 1_000_000
        session = BeneficiarySession(c)
        identity = station_world.identity()
        session.terminal_authenticate(identity.chain, identity.terminal, card_id)
        [record] = session.read_log(1)  # verified with the card key
    assert (record.record_type, record.amount, record.balance_after, record.reference) == (
        RecordType.SPLIT, 1_000_000, 2_000_000, 1,
    )  # fmt: skip  # its own type: the amount lowered, never a new policy year
    from enrolment_station.cli import _lowered_words  # what `enrol split` prints of it

    assert _lowered_words(card_id, record) == (
        f"card {card_id}: cover of scheme 1 lowered by 10000.00 for the split card, 20000.00 left "
        "(card record 1)"
    )
    lowered = camp.journal.events("card.split.lowered")
    assert [e["subject"] for e in lowered] == [card_id]
    with pytest.raises(AuthorisationError, match="already used"):  # one authorisation, one card
        issue_authorised(
            camp.personaliser,
            InProcessConnection(station_world.blank_card()),
            signed,
            AuthKind.SPLIT,
            card_id,
            now=station_world.now(),
            fko=camp.fko,
            original=InProcessConnection(original),
            lowering=[_lowering(station_world, card_id, 1_000_000)],
        )
    assert camp.ledger().matches


@pytest.mark.parametrize("fault", ["absent", "not-enough", "other-card", "unsigned", "other-amount"])
def test_split_is_refused_unless_the_original_card_carries_the_cover(
    station_camp: OpenCamp, station_world: StationWorld, fault: str
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, original = _enrolled(camp, station_world)
    grant, value = 1_000_000, 1_000_000
    presented: Any = original
    lowering = [_lowering(station_world, card_id, value)]
    expected = {"absent": "present that card", "not-enough": "carries 3000000 paise",
                "other-card": "reader holds", "unsigned": "does not verify",
                "other-amount": "exactly what the split card carries"}[fault]  # fmt: skip
    if fault == "absent":
        presented = None
    elif fault == "not-enough":
        grant = value = 5_000_000
        lowering = [_lowering(station_world, card_id, value)]
    elif fault == "other-card":
        presented = station_world.blank_card()
        camp.enrol_household("HH-0002", InProcessConnection(presented))
    elif fault == "unsigned":
        lowering = [sign_card_authorisation(SoftwareSigner.generate(), lowering[0])]
    elif fault == "other-amount":
        lowering = [_lowering(station_world, card_id, 10)]
    signed = _auth(station_world, AuthKind.SPLIT, card_id, members=(1,), cover=grant)
    blank = station_world.blank_card()
    with pytest.raises(AuthorisationError, match=expected):
        issue_authorised(
            camp.personaliser, InProcessConnection(blank), signed, AuthKind.SPLIT, card_id,
            now=station_world.now(), fko=camp.fko,
            original=None if presented is None else InProcessConnection(presented), lowering=lowering,
        )  # fmt: skip
    with InProcessConnection(original) as c:  # nothing happened to the original card
        status = BeneficiarySession(c).status()
    assert (status.counter, status.wallet(1).balance) == (0, 3_000_000)
    with InProcessConnection(blank) as c:  # and the blank card is still blank
        assert BeneficiarySession(c).status().lifecycle is ben.Lifecycle.BLANK
    assert camp.journal.events("card.split") == []


def test_replacement_of_a_lost_card_supersedes_it(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, _ = _enrolled(camp, station_world)
    signed = _auth(station_world, AuthKind.REPLACE, card_id, members=(0, 1), by_root=True)
    result = issue_authorised(
        camp.personaliser,
        InProcessConnection(station_world.blank_card()),
        signed,
        AuthKind.REPLACE,
        card_id,
        now=station_world.now(),
        fko=camp.fko,
    )
    assert len(result.profile.members) == 2
    row = camp.journal.card(card_id)
    assert row is not None and row["state"] == CardState.ABANDONED
    assert camp.journal.events("card.superseded")[0]["details"]["by"] == result.card_id


@pytest.mark.parametrize("fault", ["forged", "expired", "wrong-card", "wrong-kind", "stranger-key"])
def test_bad_authorisations_are_refused(
    station_camp: OpenCamp, station_world: StationWorld, fault: str
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, _ = _enrolled(camp, station_world)
    signed = _auth(station_world, AuthKind.SPLIT, card_id, members=(1,))
    expected = {
        "forged": "does not verify",
        "expired": "expired",
        "wrong-card": "is for card",
        "wrong-kind": "is for a split",
        "stranger-key": "does not verify",
    }[fault]
    kind, target = AuthKind.SPLIT, card_id
    if fault == "forged":
        signed = dataclasses.replace(
            signed,
            authorisation=dataclasses.replace(signed.authorisation, schemes=(SchemeGrant(1, 9_000_000),)),
        )
    elif fault == "expired":
        signed = _auth(station_world, AuthKind.SPLIT, card_id, members=(1,), valid_for=timedelta(seconds=-1))
    elif fault == "wrong-card":
        other = camp.enrol_household("HH-0002", InProcessConnection(station_world.blank_card())).card_id
        target = other
        expected = "is for card"
    elif fault == "wrong-kind":
        kind = AuthKind.REPLACE
    elif fault == "stranger-key":
        signed = sign_authorisation(signed.authorisation, SoftwareSigner.generate(), signed.chain)
    with pytest.raises(AuthorisationError, match=expected):
        issue_authorised(
            camp.personaliser,
            InProcessConnection(station_world.blank_card()),
            signed,
            kind,
            target,
            now=station_world.now(),
            fko=camp.fko,
        )
    assert camp.journal.events("card.split") == []


def test_split_lowering_torn_at_every_apdu_lowers_the_original_exactly_once(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    """Pull the original card at each APDU of the lowering (before and after the card acted): the re-run
    finds the record in the card's log when the card made it, and never lowers twice."""
    from cardsvc.card.transport import CardRemovedError
    from enrolment_station.reissue import lower_original
    from tests.test_station_tearing import TearingConnection

    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, original = _enrolled(camp, station_world)

    def grant(card: str, k: int) -> SignedAuthorisation:
        return _auth(station_world, AuthKind.SPLIT, card, members=(1,), auth_id=f"{k:016x}")

    clean = TearingConnection(original, None, after=False)
    lower_original(camp.personaliser, clean, grant(card_id, 0).authorisation,
                   [_lowering(station_world, card_id, 1_000_000)], now=station_world.now())  # fmt: skip
    total = clean.sent
    outcomes = set()
    for k in range(1, total + 1):
        for after in (False, True):
            card_id, card = personalise_again(camp, station_world, "HH-0001")
            signed, lowering = grant(card_id, 2 * k + after), [_lowering(station_world, card_id, 1_000_000)]
            torn = TearingConnection(card, k, after=after)
            with pytest.raises((CardRemovedError, AuthorisationError)):  # pulled (at SELECT: "no card")
                lower_original(
                    camp.personaliser, torn, signed.authorisation, lowering, now=station_world.now()
                )
            assert torn.torn
            with InProcessConnection(card) as c:
                outcomes.add(BeneficiarySession(c).status().counter)
            [record] = lower_original(camp.personaliser, InProcessConnection(card), signed.authorisation,
                                      lowering, now=station_world.now())  # fmt: skip
            with InProcessConnection(card) as c:
                status = BeneficiarySession(c).status()
            assert (status.counter, status.wallet(1).balance) == (1, 2_000_000), (k, after)
            assert (record.record_type, record.counter, record.amount, record.balance_after) == (
                RecordType.SPLIT, 1, 1_000_000, 2_000_000
            )  # fmt: skip
    assert outcomes == {0, 1}  # torn before and after the card made its record
