"""Re-personalisation with a central authorisation checked offline: renewal of an existing card for a new
policy year, a split card for a migrant member carrying part of the cover, a replacement for a lost card.

* Split and replacement issue a NEW card (the blank card in the reader) through the same step machine as a
  first issue, with the members and cover the authorisation grants (:mod:`enrolment_station.authorisation`).
  A split first LOWERS the original card's cover on its chip, under central's SPLIT card authorisations
  (one per scheme, checked by the card): a card-signed balance-setting record per scheme that central sees
  in the card's ledger; the split is refused when the original card is not presented or does not carry the
  cover. A replacement records the lost card as superseded in the journal (central blacklists it).
* Renewal rewrites the card in the reader for a new policy year under central's RENEW_POLICY card
  authorisation (``cardsvc.beneficiary.protocol.Authorisation``; the card checks it): AUTHORISE opens the
  renewal, the station stages the new profile (new period and cover), the FKO card certifies it (a new card
  certificate with the new content digest, on the FKO ledger), and COMMIT RENEWAL swaps profile,
  certificate, committed hashes and wallet in ONE card transaction. Every step is journaled (card_steps
  ``renewal.<serial>.<step>``) so a tear at any APDU resumes: the card is the old valid card or the new
  valid card, never a mixture a terminal accepts. The station checks everything first, offline, so the
  operator hears why it is refused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from cardsvc.beneficiary import protocol as ben
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.transport import CardConnection, CardRemovedError
from cardsvc.formats.profile import ContentHashes, HouseholdProfile, OfflineLimits, SchemeCover
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.cvc import CvCertificate, build_body
from cardsvc.pki.errors import PkiError
from cardsvc.pki.rights import Right, Role
from enrolment_station.authorisation import (
    AuthKind,
    SignedAuthorisation,
    StationAuthorisation,
    authority_point,
    check_signature,
)
from enrolment_station.errors import AuthorisationError, CardMismatchError, HouseholdError
from enrolment_station.fko import FkoSession
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
    original: CardConnection | None = None,
    lowering: Sequence[ben.Authorisation] = (),
) -> CardResult:
    """A split or replacement card on the blank card in the reader; the authorisation is used once.

    A split needs the ORIGINAL card (``original``, e.g. the same reader before the blank card goes in) and
    central's SPLIT card authorisations for it (``lowering``: one per scheme the station authorisation
    grants, value = the cover moved): its cover is lowered on its chip first, then the new card is issued.
    """
    if kind is AuthKind.RENEW:
        raise AuthorisationError("renewal rewrites the existing card: use renew()")
    plan, _ = _authorised_plan(service, signed, kind, card_id, now=now)
    assert isinstance(fko, FkoSession)
    lowered: list[TransactionRecord] = []
    if kind is AuthKind.SPLIT:
        lowered = lower_original(service, original, signed.authorisation, lowering, now=now)
    if BeneficiarySession(connection).status().card_id == card_id:
        raise AuthorisationError(f"the reader still holds card {card_id}: insert the blank card")
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
                "original_lowered": [[r.scheme_id, r.counter, r.balance_after] for r in lowered],
            },
        )
        if kind is AuthKind.REPLACE:
            journal.db.execute("UPDATE cards SET state = ? WHERE card_id = ?", (CardState.ABANDONED, card_id))
            journal.event("card.superseded", card_id, {"by": result.card_id, "reason": "lost"})
    return result


def lower_original(
    service: PersonalisationService,
    original: CardConnection | None,
    grant: StationAuthorisation,
    lowering: Sequence[ben.Authorisation],
    *,
    now: datetime,
) -> list[TransactionRecord]:
    """Lower the original card's cover by what the split card carries, on its chip, under central's SPLIT
    card authorisations; journaled (``split.<auth id>.lowered``) so a re-run after a tear or crash does not
    lower it twice. Every check is made before the first record, so a refusal leaves the card unchanged."""
    card_id, journal = grant.card_id, service.journal
    step = f"split.{grant.auth_id}.lowered"
    done = journal.steps(card_id).get(step)
    if done is not None:
        return [TransactionRecord.parse(bytes.fromhex(r)) for r in done["records"]]
    if original is None:
        raise AuthorisationError(
            f"a split lowers the cover of card {card_id} on its chip: present that card first"
        )
    wanted = sorted((g.scheme_id, g.cover_paise) for g in grant.schemes)
    if sorted((a.scheme_id, a.value) for a in lowering) != wanted:
        raise AuthorisationError(
            f"central's SPLIT card authorisations must lower exactly what the split card carries: {wanted}"
        )
    for auth in lowering:
        if auth.kind is not ben.AuthKind.SPLIT or auth.card_id != card_id:
            raise AuthorisationError(
                f"a {auth.kind.name} authorisation for {auth.card_id} is not a SPLIT of {card_id}"
            )
        verify_card_authorisation(service, auth, now=now)
    try:
        session = BeneficiarySession(original)
        status = session.status()
    except CardRemovedError:
        raise AuthorisationError(f"no card in the reader: present card {card_id} first") from None
    if status.card_id != card_id:
        raise AuthorisationError(f"the reader holds card {status.card_id}, the split lowers {card_id}")
    if status.lifecycle is not ben.Lifecycle.ACTIVATED:
        raise AuthorisationError(f"card {card_id} is {status.lifecycle.name}: its cover cannot be split")
    pending = [a for a in sorted(lowering, key=lambda a: a.serial) if a.serial > status.auth_serial]
    for auth in pending:
        try:
            balance = status.wallet(auth.scheme_id).balance
        except KeyError:
            raise AuthorisationError(f"card {card_id} carries no scheme {auth.scheme_id}") from None
        if balance < auth.value:
            raise AuthorisationError(
                f"card {card_id} carries {balance} paise of scheme {auth.scheme_id}, the split moves "
                f"{auth.value}: refused"
            )
    identity = service.identity
    session.terminal_authenticate(identity.chain, identity.terminal, card_id)
    public = session.read_public(status)
    key = public.card_certificate.public_point if public.card_certificate else None
    records: list[TransactionRecord] = []
    for auth in sorted(lowering, key=lambda a: a.serial):
        if auth.serial <= status.auth_serial:  # made before a tear: the card's log has it
            found = [r for r in session.read_log(1, card_key=key)
                     if r.record_type is RecordType.SPLIT and r.reference == auth.serial]  # fmt: skip
            if not found:
                raise AuthorisationError(f"serial {auth.serial} was already used on card {card_id}")
            records.append(found[-1])
            continue
        records.append(session.split_cover(
            auth, time=int(now.timestamp()), operator_id=chr_id(identity.chr), card_key=key,
        ))  # fmt: skip
    with journal.transaction():
        journal.event(
            "card.split.lowered",
            card_id,
            {"authorisation": grant.auth_id,
             "records": [[r.scheme_id, r.counter, r.balance_after] for r in records]},
        )  # fmt: skip
    journal.step_done(card_id, step, {
        "records": [r.encode().hex() for r in records], "card_key": (key or b"").hex(),
    })  # fmt: skip
    return records


def verify_card_authorisation(
    service: PersonalisationService, auth: ben.Authorisation, *, now: datetime
) -> None:
    """The card's own checks, made first by the station (offline): signer chains to the root, signature."""
    try:
        chain = (CvCertificate.parse(auth.chain),) if auth.chain else ()
    except PkiError as exc:
        raise AuthorisationError(f"the authorisation's signer certificate cannot be read: {exc}") from None
    identity = service.identity
    point = authority_point(identity.anchor, chain, now=now, revocations=identity.revocations)
    check_signature(point, auth.signed_bytes(), auth.signature, f"the {auth.kind.name} authorisation")


# ---------------------------------------------------------------------------------------------- renewal
@dataclass
class RenewalResult:
    card_id: str
    certificate: CvCertificate
    profile: HouseholdProfile
    records: list[TransactionRecord]
    recovered: str = ""  # "", "resumed", "completed"
    apdus: int = 0  # on the beneficiary card in the last call (SELECTs included)
    #: committed ahead of its year: the card keeps its current year until this day and makes the RENEWAL
    #: records then (``records`` is empty); None when the new year is already in force
    takes_effect: date | None = None


def _step(serial: int, name: str) -> str:
    return f"renewal.{serial}.{name}"


def renew(
    service: PersonalisationService,
    connection: CardConnection,
    auth: ben.Authorisation,
    *,
    now: datetime,
    fko: FkoSession,
    station_authorisation: SignedAuthorisation | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> RenewalResult:
    """Renew the card in the reader for a new policy year (central's RENEW_POLICY, checked here and by the
    card); call again after a tear (:func:`renew_until_done`): the journal and the card decide.

    ``station_authorisation``: central's RENEW for this station (JSON, checked offline and used once) when
    central issued one beside the card's RENEW_POLICY; it must grant the same period and cover.
    """
    if auth.kind is not ben.AuthKind.RENEW_POLICY or auth.policy is None:
        raise AuthorisationError(f"a {auth.kind.name} authorisation does not renew a card's policy year")
    verify_card_authorisation(service, auth, now=now)
    journal, identity = service.journal, service.identity
    session = BeneficiarySession(connection)
    status = session.status()
    card_id, (start, end) = status.card_id, auth.policy
    if auth.card_id != card_id:
        raise AuthorisationError(f"the renewal is for card {auth.card_id}, the reader holds {card_id}")
    steps = journal.steps(card_id)
    done = steps.get(_step(auth.serial, "committed"))
    if done is not None:
        return _renewal_result(card_id, done, "already renewed")
    opened_on_card = status.renewal_open == auth.serial
    if status.auth_serial >= auth.serial and not opened_on_card:
        certified = steps.get(_step(auth.serial, "certified"))
        on_card = status.renewal_scheduled == (auth.serial, start, end) or (
            status.policy_start, status.policy_end) == (start, end)  # fmt: skip
        if certified is None or not on_card:
            raise AuthorisationError(f"renewal serial {auth.serial} was already used on this card")
        session.terminal_authenticate(identity.chain, identity.terminal, card_id)  # committed, answer lost
        public = session.read_public(status)
        held = public.card_certificate  # a scheduled renewal's certificate stays inside the card till its day
        if held is None or (
            status.renewal_scheduled is None and held.encode().hex() != certified["certificate"]
        ):
            raise CardMismatchError(f"card {card_id} holds a renewal certificate this journal did not record")
        if station_authorisation is not None:
            profile = HouseholdProfile.parse(bytes.fromhex(certified["profile"]))
            _check_station_renew(service, station_authorisation, auth, profile, now=now)
        first = int(steps[_step(auth.serial, "opened")]["counter"]) + 1
        records = [r for r in session.read_log(first, card_key=held.public_point)
                   if r.record_type is RecordType.RENEWAL and r.reference == auth.serial]  # fmt: skip
        done_now = _commit_done(
            service, card_id, auth, station_authorisation, certified, records, "completed"
        )
        done_now.apdus = session.counter.apdus
        return done_now
    if status.lifecycle is not ben.Lifecycle.ACTIVATED:
        raise AuthorisationError(f"card {card_id} is {status.lifecycle.name}: only an activated card renews")
    if not opened_on_card and any(w.held for w in status.wallets):
        raise AuthorisationError(
            f"card {card_id} has an open admission (held cover): discharge or release it before the renewal"
        )
    _check_renewal_period(status, start, end, today=now.date())
    session.terminal_authenticate(identity.chain, identity.terminal, card_id)
    old, _ = session.read_profile(status)
    if station_authorisation is not None:
        _check_station_renew(service, station_authorisation, auth, old, now=now)
    public = session.read_public(status)
    if public.card_certificate is None:
        raise AuthorisationError(f"card {card_id} holds no certificate")
    point = public.card_certificate.public_point
    recovered = "resumed" if any(k.startswith(_step(auth.serial, "")) for k in steps) else ""
    if not opened_on_card:
        session.open_renewal(auth)
        journal.step_done(card_id, _step(auth.serial, "opened"), {"counter": status.counter})
    elif _step(auth.serial, "opened") not in steps:  # opened, answer lost before the journal heard it
        journal.step_done(card_id, _step(auth.serial, "opened"), {"counter": status.counter})
    total = sum(c for _, c in auth.covers)
    new = replace(
        old, district=fko.officer_cert.car, fko_id=fko.fko_chr, policy_start=start, policy_end=end,
        schemes=tuple(SchemeCover(s, c) for s, c in auth.covers),
        limits=OfflineLimits(old.limits.max_count, min(old.limits.max_amount, total)),
    )  # fmt: skip
    raw = new.encode()
    session.write_next_profile(new)
    journal.step_done(card_id, _step(auth.serial, "staged"), {"sha256": _h(raw), "profile": raw.hex()})
    attested = session.internal_authenticate(rng(16), card_id, point)
    digest = ContentHashes(hashlib.sha256(raw).digest(), attested.hashes.templates, attested.hashes.photos)
    certified = journal.steps(card_id).get(_step(auth.serial, "certified"))
    if certified is None or certified["profile_sha256"] != _h(raw):
        requested = journal.steps(card_id).get(_step(auth.serial, "requested"))
        if requested is not None:  # an FKO signature that will never reach the card: the ledger has it
            with journal.transaction():
                journal.event("card.activation.void", card_id, {
                    "body_sha256": requested["body_sha256"], "why": "renewal profile changed before commit",
                })  # fmt: skip
        body = build_body(
            car=fko.fko_chr, chr=card_id, public_point=point, role=Role.BENEFICIARY_CARD, rights=Right.NONE,
            effective=start, expiry=end, content_digest=digest.digest(),
        )  # fmt: skip
        journal.step_done(
            card_id, _step(auth.serial, "requested"), {"body_sha256": _h(body), "fko": fko.fko_chr}
        )
        cert = fko.activate(body)
        certified = {
            "certificate": cert.encode().hex(), "fko_certificate": fko.officer_cert.encode().hex(),
            "body_sha256": _h(body), "profile_sha256": _h(raw), "profile": raw.hex(),
        }  # fmt: skip
        journal.step_done(card_id, _step(auth.serial, "certified"), certified)
    records = session.commit_renewal(
        CvCertificate.parse(bytes.fromhex(certified["certificate"])),
        CvCertificate.parse(bytes.fromhex(certified["fko_certificate"])),
        time=int(now.timestamp()), operator_id=chr_id(identity.chr),
    )  # fmt: skip
    result = _commit_done(service, card_id, auth, station_authorisation, certified, records, recovered)
    result.apdus = session.counter.apdus
    return result


def _check_renewal_period(status: ben.CardStatus, start: date, end: date, *, today: date) -> None:
    """The card's own rules, checked first so the operator hears why: a renewal camp may run up to
    RENEWAL_WINDOW before the new year starts; a year starting later than today begins after the current
    one ends (the card keeps the current year until then) and extends it."""
    if status.renewal_scheduled is not None:
        serial, s, e = status.renewal_scheduled
        raise AuthorisationError(f"the card already holds renewal {serial} for {s} to {e}, not yet started")
    current_end = status.policy_end
    if current_end is not None and end <= current_end:
        raise AuthorisationError(f"the renewal to {end} does not extend the policy (it ends {current_end})")
    if start <= today:
        return
    window = ben.RENEWAL_WINDOW
    if start > today + window:
        raise AuthorisationError(
            f"the new policy year starts {start}, more than {window.days} days after today ({today}): "
            f"renew at a camp from {start - window} on"
        )
    if current_end is not None and start <= current_end:
        raise AuthorisationError(
            f"the new policy year starts {start}, inside the current one (ends {current_end})"
        )


def _check_station_renew(
    service: PersonalisationService,
    signed: SignedAuthorisation,
    auth: ben.Authorisation,
    profile: HouseholdProfile,
    *,
    now: datetime,
) -> StationAuthorisation:
    granted = signed.verify(
        service.identity.anchor, now=now, revocations=service.identity.revocations, kind=AuthKind.RENEW,
        card_id=auth.card_id, household_id=profile.household_id,
    )  # fmt: skip
    if service.journal.authorisation_used(granted.auth_id):
        raise AuthorisationError(f"authorisation {granted.auth_id} was already used")
    covers = tuple(sorted((g.scheme_id, g.cover_paise) for g in granted.schemes))
    if (granted.policy_start, granted.policy_end, covers) != (*(auth.policy or (None, None)), auth.covers):
        raise AuthorisationError(
            "the card's RENEW_POLICY and the station's RENEW grant a different period or cover"
        )
    return granted


def _commit_done(
    service: PersonalisationService,
    card_id: str,
    auth: ben.Authorisation,
    station_authorisation: SignedAuthorisation | None,
    certified: dict[str, str],
    records: Sequence[TransactionRecord],
    recovered: str,
) -> RenewalResult:
    """Journal the committed renewal: the card row takes the new certificate, profile, period and cover."""
    journal = service.journal
    profile = HouseholdProfile.parse(bytes.fromhex(certified["profile"]))
    scheduled = "" if records else profile.policy_start.isoformat()  # records come when the year starts
    details = {"certificate": certified["certificate"], "profile": certified["profile"],
               "records": [r.encode().hex() for r in records], "takes_effect": scheduled}  # fmt: skip
    journal.step_done(card_id, _step(auth.serial, "committed"), details)
    with journal.transaction() as db:
        if station_authorisation is not None:
            journal.use_authorisation(station_authorisation.authorisation.auth_id, card_id)
        db.execute(
            "UPDATE cards SET certificate = ?, profile = ?, policy_start = ?, policy_end = ?,"
            " cover_paise = ?, scheme_id = ?, fko_chr = ? WHERE card_id = ?",
            (bytes.fromhex(certified["certificate"]), bytes.fromhex(certified["profile"]),
             profile.policy_start.isoformat(), profile.policy_end.isoformat(),
             sum(s.cover_paise for s in profile.schemes), profile.schemes[0].scheme_id, profile.fko_id,
             card_id),
        )  # fmt: skip
        journal.event("card.renew", card_id, {
            "serial": auth.serial,
            "policy": [profile.policy_start.isoformat(), profile.policy_end.isoformat()],
            "cover": [[s.scheme_id, s.cover_paise] for s in profile.schemes],
            "records": [[r.scheme_id, r.counter, r.balance_after] for r in records], "recovered": recovered,
            "takes_effect": scheduled,
        })  # fmt: skip
    return _renewal_result(card_id, details, recovered)


def _renewal_result(card_id: str, committed: Mapping[str, object], recovered: str) -> RenewalResult:
    records = committed["records"]
    assert isinstance(records, list)
    takes_effect = str(committed.get("takes_effect") or "")
    return RenewalResult(
        card_id,
        CvCertificate.parse(bytes.fromhex(str(committed["certificate"]))),
        HouseholdProfile.parse(bytes.fromhex(str(committed["profile"]))),
        [TransactionRecord.parse(bytes.fromhex(r)) for r in records],
        recovered,
        takes_effect=date.fromisoformat(takes_effect) if takes_effect else None,
    )


def renew_until_done(
    service: PersonalisationService,
    connection: CardConnection,
    auth: ben.Authorisation,
    *,
    now: datetime,
    fko: FkoSession,
    station_authorisation: SignedAuthorisation | None = None,
    reinsert_wait: float = 60.0,
    attempts: int = 5,
) -> RenewalResult:
    """Renew; when the card is pulled, wait for it to come back and resume from the journal and the card."""
    for _ in range(attempts):
        try:
            result = renew(
                service, connection, auth, now=now, fko=fko, station_authorisation=station_authorisation
            )
        except CardRemovedError:
            service.progress("card removed: put the same card back in the reader")
            reconnect = getattr(connection, "reconnect", None)
            if reconnect is None:
                raise
            reconnect(wait=reinsert_wait)
            continue
        return result
    raise AuthorisationError(f"the card was pulled {attempts} times; renewal {auth.serial} not finished")


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
