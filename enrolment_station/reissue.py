"""Re-personalisation with a central authorisation checked offline: renewal of an existing card for a new
policy year, a split card for a migrant member carrying part of the cover, a replacement for a lost card.

* Split and replacement issue a NEW card (the blank card in the reader) through the same step machine as a
  first issue, with the members and cover the authorisation grants (:mod:`enrolment_station.authorisation`).
  A replacement records the lost card as superseded in the journal (central blacklists it).
* Renewal presents central's RENEWAL authorisation (the card application's own format,
  ``cardsvc.beneficiary.protocol.Authorisation``) to the card in a RENEWAL record: the card checks it too and
  sets the new year's balance. The station checks it first, offline, so the operator hears why it is refused.
"""

from __future__ import annotations

from datetime import datetime

from cardsvc.beneficiary import protocol as ben
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.transport import CardConnection
from cardsvc.formats.profile import HouseholdProfile, OfflineLimits, SchemeCover
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.chain import validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.rights import Role
from cardsvc.pki.signer import verify_signature
from enrolment_station.authorisation import AuthKind, SignedAuthorisation
from enrolment_station.errors import AuthorisationError, HouseholdError
from enrolment_station.journal import CardState
from enrolment_station.keys import chr_id
from enrolment_station.personalise import CardKind, CardPlan, CardResult, PersonalisationService


def _authorised_plan(
    service: PersonalisationService,
    signed: SignedAuthorisation,
    kind: AuthKind,
    card_id: str,
    *,
    now: datetime,
) -> tuple[CardPlan, HouseholdProfile]:
    journal = service.journal
    row = journal.card(card_id)
    if row is None or row["profile"] is None:
        raise HouseholdError(
            f"card {card_id} was not issued by this station: its household's fingers are not here"
        )
    household_id = row["household_id"]
    auth = signed.verify(
        service.identity.anchor,
        now=now,
        revocations=service.identity.revocations,
        kind=kind,
        card_id=card_id,
        household_id=household_id,
    )
    if journal.authorisation_used(auth.auth_id):
        raise AuthorisationError(f"authorisation {auth.auth_id} was already used")
    profile = HouseholdProfile.parse(bytes(row["profile"]))
    household = journal.household(household_id)
    numbers = []
    for index in auth.members:
        try:
            name = profile.member(index).name
        except KeyError:
            raise AuthorisationError(
                f"authorisation {auth.auth_id} names member {index}, card has {len(profile.members)}"
            ) from None
        numbers.append(next(m.member_no for m in household.members if m.name == name))
    if kind is AuthKind.REPLACE and len(numbers) != len(profile.members):
        raise AuthorisationError("a replacement carries every member of the lost card")
    schemes = tuple(
        SchemeCover(s.scheme_id, s.cover_paise) for s in sorted(auth.schemes, key=lambda s: s.scheme_id)
    )
    cover = sum(s.cover_paise for s in schemes)
    plan = CardPlan(
        CardKind.SPLIT if kind is AuthKind.SPLIT else CardKind.REPLACEMENT, household_id, tuple(numbers),
        auth.policy_start, auth.policy_end, schemes,
        OfflineLimits(profile.limits.max_count, min(profile.limits.max_amount, cover)),
        supersedes=card_id if kind is AuthKind.REPLACE else None, authorisation=auth.auth_id,
    )  # fmt: skip
    return plan, profile


def issue_authorised(
    service: PersonalisationService,
    connection: CardConnection,
    signed: SignedAuthorisation,
    kind: AuthKind,
    card_id: str,
    *,
    now: datetime,
    fko: object,
    reinsert_wait: float = 60.0,
) -> CardResult:
    """A split or replacement card on the blank card in the reader; the authorisation is used once."""
    if kind is AuthKind.RENEW:
        raise AuthorisationError("renewal rewrites the existing card: use renew()")
    plan, _ = _authorised_plan(service, signed, kind, card_id, now=now)
    from enrolment_station.fko import FkoSession

    assert isinstance(fko, FkoSession)
    result = service.personalise_until_done(
        connection, plan.household_id, fko, plan=plan, reinsert_wait=reinsert_wait
    )
    journal = service.journal
    with journal.transaction():
        journal.use_authorisation(signed.authorisation.auth_id, result.card_id)
        journal.event(
            f"card.{kind.value}",
            result.card_id,
            {
                "authorisation": signed.authorisation.auth_id,
                "of": card_id,
                "members": list(plan.member_numbers),
            },
        )
        if kind is AuthKind.REPLACE:
            journal.db.execute("UPDATE cards SET state = ? WHERE card_id = ?", (CardState.ABANDONED, card_id))
            journal.event("card.superseded", card_id, {"by": result.card_id, "reason": "lost"})
    return result


def verify_card_authorisation(
    service: PersonalisationService, auth: ben.Authorisation, *, now: datetime
) -> None:
    """The card's own checks, made first by the station (offline): signer chains to the root, signature."""
    anchor = service.identity.anchor
    if auth.chain:
        try:
            cert = CvCertificate.parse(auth.chain)
            validate_chain([cert], anchor, now=now, revocations=service.identity.revocations)
        except PkiError as exc:
            raise AuthorisationError(f"the authorisation's signer is refused: {exc}") from None
        if cert.role is not Role.DISTRICT:
            raise AuthorisationError(f"authorisations come from the root or a district, not {cert.role.name}")
        point = cert.public_point
    else:
        point = anchor.public_point
    try:
        verify_signature(point, auth.signed_bytes(), auth.signature, subject=auth.card_id)
    except PkiError:
        raise AuthorisationError(
            "the renewal authorisation's signature does not verify (forged or altered)"
        ) from None


def renew(
    service: PersonalisationService,
    connection: CardConnection,
    auth: ben.Authorisation,
    *,
    now: datetime,
    station_authorisation: SignedAuthorisation | None = None,
) -> TransactionRecord:
    """Renew the card in the reader for a new policy year: the RENEWAL record sets the new balance.

    ``station_authorisation``: central's RENEW for this station (JSON, checked offline and used once) when
    central issued one beside the card's RENEWAL; it must grant the cover the card's RENEWAL sets.
    """
    if auth.kind is not ben.AuthKind.RENEWAL:
        raise AuthorisationError(f"a {auth.kind.name} authorisation is not a renewal")
    verify_card_authorisation(service, auth, now=now)
    session = BeneficiarySession(connection)
    status = session.status()
    if auth.card_id != status.card_id:
        raise AuthorisationError(f"the renewal is for card {auth.card_id}, the reader holds {status.card_id}")
    if station_authorisation is not None:
        row = service.journal.card(status.card_id)
        stated = station_authorisation.authorisation.household_id
        household = row["household_id"] if row is not None else stated
        granted = station_authorisation.verify(
            service.identity.anchor, now=now, revocations=service.identity.revocations, kind=AuthKind.RENEW,
            card_id=status.card_id, household_id=household,
        )  # fmt: skip
        if service.journal.authorisation_used(granted.auth_id):
            raise AuthorisationError(f"authorisation {granted.auth_id} was already used")
        if (auth.scheme_id, auth.value) not in {(g.scheme_id, g.cover_paise) for g in granted.schemes}:
            raise AuthorisationError("the card's RENEWAL and the station's RENEW grant different cover")
    if auth.serial <= status.auth_serial:
        raise AuthorisationError(f"renewal serial {auth.serial} was already used on this card")
    if status.lifecycle is not ben.Lifecycle.ACTIVATED:
        raise AuthorisationError(
            f"card {status.card_id} is {status.lifecycle.name}: only an activated card renews"
        )
    identity = service.identity
    session.terminal_authenticate(identity.chain, identity.terminal, status.card_id)
    public = session.read_public(status)
    record = session.debit(
        RecordType.RENEWAL, scheme_id=auth.scheme_id, amount=auth.value, time=int(now.timestamp()),
        operator_id=chr_id(identity.chr), facility_id=0, authorisation=auth,
        card_key=public.card_certificate.public_point if public.card_certificate else None,
    )  # fmt: skip
    journal = service.journal
    with journal.transaction():
        if station_authorisation is not None:
            journal.use_authorisation(station_authorisation.authorisation.auth_id, status.card_id)
        journal.event(
            "card.renew",
            status.card_id,
            {
                "serial": auth.serial,
                "scheme": auth.scheme_id,
                "balance": auth.value,
                "counter": record.counter,
            },
        )
    return record
