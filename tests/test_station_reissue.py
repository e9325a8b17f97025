"""Renewal, split card and replacement: each only with a central authorisation the station checks offline
(forged, expired, wrong-card and re-used authorisations refused, saying why)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from cardsvc.beneficiary import protocol as ben
from cardsvc.beneficiary.session import sign_authorisation as sign_card_authorisation
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.pki.signer import SoftwareSigner
from enrolment_station.authorisation import (
    AuthKind,
    SchemeGrant,
    SignedAuthorisation,
    StationAuthorisation,
    sign_authorisation,
)
from enrolment_station.camp import Camp
from enrolment_station.errors import AuthorisationError
from enrolment_station.journal import CardState
from enrolment_station.reissue import issue_authorised, renew
from tests.fixtures.station import (
    DISTRICT,
    DISTRICT_SECRET,
    ROOT,
    ROOT_SECRET,
    OpenCamp,
    StationWorld,
    verify_issued,
)


def _enrolled(camp: Camp, world: StationWorld) -> tuple[str, object]:
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
) -> SignedAuthorisation:
    now = world.now()
    start = now.date()
    auth = StationAuthorisation(
        auth_id=auth_id, kind=kind, household_id="HH-0001", card_id=card_id, issued=int(now.timestamp()),
        not_after=int((now + valid_for).timestamp()), policy_start=start,
        policy_end=start.replace(year=start.year + 1) - timedelta(days=1),
        schemes=(SchemeGrant(1, 1_000_000),), members=members, signer=ROOT if by_root else DISTRICT,
    )  # fmt: skip
    if by_root:
        return sign_authorisation(auth, world.km.load_signer(ROOT, ROOT_SECRET))
    return sign_authorisation(
        auth, world.km.load_signer(DISTRICT, DISTRICT_SECRET), (world.km.store.certificate(DISTRICT),)
    )


def test_split_card_for_a_migrant_member(station_camp: OpenCamp, station_world: StationWorld) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, _ = _enrolled(camp, station_world)
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
    )
    assert [m.name for m in result.profile.members] == ["Sita Devi"]
    assert result.profile.schemes[0].cover_paise == 1_000_000
    with InProcessConnection(split_card) as c:
        assert verify_issued(station_world, c).card_id == result.card_id  # type: ignore[attr-defined]
    with pytest.raises(AuthorisationError, match="already used"):  # one authorisation, one card
        issue_authorised(
            camp.personaliser,
            InProcessConnection(station_world.blank_card()),
            signed,
            AuthKind.SPLIT,
            card_id,
            now=station_world.now(),
            fko=camp.fko,
        )
    assert camp.ledger().matches


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


def test_renewal_sets_the_new_year_balance_only_with_a_central_authorisation(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, card = _enrolled(camp, station_world)
    auth = ben.Authorisation(ben.AuthKind.RENEWAL, card_id, 1, 1, 3_000_000)
    forged = sign_card_authorisation(SoftwareSigner.generate(), auth)
    with pytest.raises(AuthorisationError, match="does not verify"):
        renew(camp.personaliser, InProcessConnection(card), forged, now=station_world.now())
    wrong = sign_card_authorisation(
        station_world.km.load_signer(ROOT, ROOT_SECRET), dataclasses.replace(auth, card_id="CARD-12")
    )
    with pytest.raises(AuthorisationError, match="reader holds"):
        renew(camp.personaliser, InProcessConnection(card), wrong, now=station_world.now())
    good = sign_card_authorisation(station_world.km.load_signer(ROOT, ROOT_SECRET), auth)
    record = renew(camp.personaliser, InProcessConnection(card), good, now=station_world.now())
    assert record.balance_after == 3_000_000 and record.counter == 1
    with pytest.raises(AuthorisationError, match="already used"):
        renew(camp.personaliser, InProcessConnection(card), good, now=station_world.now())


def test_renewal_with_centrals_station_renew_is_checked_and_used_once(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    card_id, card = _enrolled(camp, station_world)
    root = station_world.km.load_signer(ROOT, ROOT_SECRET)
    station = _auth(station_world, AuthKind.RENEW, card_id, members=(0, 1), by_root=True)
    mismatched = sign_card_authorisation(
        root, ben.Authorisation(ben.AuthKind.RENEWAL, card_id, 1, 1, 3_000_000)
    )
    with pytest.raises(AuthorisationError, match="different cover"):  # the station RENEW grants 1,000,000
        renew(
            camp.personaliser,
            InProcessConnection(card),
            mismatched,
            now=station_world.now(),
            station_authorisation=station,
        )
    good = sign_card_authorisation(root, ben.Authorisation(ben.AuthKind.RENEWAL, card_id, 1, 1, 1_000_000))
    record = renew(
        camp.personaliser,
        InProcessConnection(card),
        good,
        now=station_world.now(),
        station_authorisation=station,
    )
    assert record.balance_after == 1_000_000
    assert camp.journal.authorisation_used(station.authorisation.auth_id)
