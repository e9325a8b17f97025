"""Card personalisation as a resumable step machine recorded in the journal.

Steps (``card_steps``; each recorded only after the card answered)::

    key        GENERATE KEY on the card (the private key never leaves it); the public point is recorded
    profile    WRITE OBJECT profile (household, members, policy, cover per scheme); its SHA-256 recorded
    templates  WRITE OBJECT templates (compact card format, fitted to the card's template file)
    photos     ALLOCATE PHOTOS + WRITE OBJECT photos, only when members have photos in the journal (each
               a small JPEG, enrolment_station.photos.card_photo); its SHA-256 recorded
    requested  the certificate body about to go to the FKO card (its SHA-256 identifies the ledger entry)
    certified  the FKO card signed it (ACTIVATE CARD; the FKO ledger now lists the card): certificate kept
    activated  PUT CERTIFICATE accepted; the card is ACTIVATED and usable by terminals

Recovery after a tear or crash (the same card re-inserted):

* the card says ACTIVATED and holds the certificate the journal kept: the card is complete;
* ``certified`` recorded and the card still attests the same key and the same profile, templates and photos:
  PUT CERTIFICATE again (complete the same card: the FKO ledger entry is used, not wasted);
* anything else: WIPE and restart from ``key`` (a requested-but-lost FKO signature is recorded as a void
  activation so the ledger read-back still reconciles). A card is never ACTIVATED unless complete, and
  every terminal refuses a card that is not ACTIVATED.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from cardsvc.beneficiary.protocol import FILE_SIZES, FileId, Lifecycle
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.bio.iso19794 import encode_compact
from cardsvc.card.transport import CardConnection, CardRemovedError
from cardsvc.formats.profile import (
    Gender,
    HouseholdProfile,
    Member,
    OfflineLimits,
    Relation,
    SchemeCover,
    StoredPhoto,
    StoredTemplate,
    encode_photos,
    encode_templates,
)
from cardsvc.pki.cvc import CvCertificate, build_body
from cardsvc.pki.rights import Right, Role
from enrolment_station.capture import CaptureService
from enrolment_station.eligibility import Household
from enrolment_station.eligibility import Relation as ListRelation
from enrolment_station.errors import CardMismatchError, PersonalisationError
from enrolment_station.fko import FkoSession
from enrolment_station.journal import CardState, HouseholdStatus, Journal
from enrolment_station.keys import StationIdentity
from enrolment_station.photos import card_photo

log = logging.getLogger(__name__)

MAX_MINUTIAE_ON_CARD = 60
TEMPLATE_OVERHEAD = 18  # 72 / 80 / 81 / 7F2E / 81 headers of one stored template, at most


class Step(StrEnum):
    KEY = "key"
    PROFILE = "profile"
    TEMPLATES = "templates"
    PHOTOS = "photos"
    REQUESTED = "requested"
    CERTIFIED = "certified"
    ACTIVATED = "activated"


class Stage(StrEnum):
    """What the personalisation is doing now, as its ``progress`` callback is told (screens name it in the
    operator's language; nothing parses the English line)."""

    COMPLETING = "completing"  # a torn card the FKO already certified: PUT CERTIFICATE again
    WIPING = "wiping"  # a partly written card is wiped before the restart
    KEY = "key"
    PROFILE = "profile"
    TEMPLATES = "templates"
    CERTIFYING = "certifying"  # the FKO card signs the card certificate
    ACTIVATING = "activating"
    REMOVED = "removed"  # the card was pulled: the same card must come back


#: The stages of a normal run, numbered from 1 (``Progress.number`` of ``len(RUN_STAGES)``).
RUN_STAGES = (Stage.KEY, Stage.PROFILE, Stage.TEMPLATES, Stage.CERTIFYING, Stage.ACTIVATING)


class Progress(str):
    """A progress line: the English text (CLI, logs) that also carries its stage, the stage's number in a
    normal run (0 outside it), the card and, for templates, how many (``items``); screens read these."""

    stage: Stage
    card_id: str
    items: int | None

    def __new__(cls, stage: Stage, text: str, card_id: str = "", items: int | None = None) -> Progress:
        line = super().__new__(cls, text)
        line.stage, line.card_id, line.items = stage, card_id, items
        return line

    @property
    def number(self) -> int:
        return RUN_STAGES.index(self.stage) + 1 if self.stage in RUN_STAGES else 0


class CardKind(StrEnum):
    NEW = "new"
    SPLIT = "split"
    REPLACEMENT = "replacement"


_RELATIONS = {
    ListRelation.HEAD: Relation.HEAD, ListRelation.SPOUSE: Relation.SPOUSE, ListRelation.SON: Relation.CHILD,
    ListRelation.DAUGHTER: Relation.CHILD, ListRelation.FATHER: Relation.PARENT,
    ListRelation.MOTHER: Relation.PARENT, ListRelation.OTHER: Relation.OTHER,
}  # fmt: skip


@dataclass(frozen=True)
class Policy:
    """What a new card carries: cover per scheme, the policy period and the offline limits."""

    schemes: tuple[SchemeCover, ...] = (SchemeCover(1, 3_000_000),)  # Rs 30,000 floater
    years: int = 1
    max_offline_debits: int = 10
    max_offline_paise: int = 3_000_000

    def period(self, start: date) -> tuple[date, date]:
        end = date(start.year + self.years, start.month, min(start.day, 28)) - timedelta(days=1)
        return start, end


@dataclass
class CardResult:
    card_id: str
    household_id: str
    certificate: CvCertificate
    profile: HouseholdProfile
    recovered: str = ""  # "", "completed" or "wiped and restarted"
    apdus: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CardPlan:
    """Everything a card will carry, fixed before the first write so a recovery writes the same bytes."""

    kind: CardKind
    household_id: str
    member_numbers: tuple[int, ...]  # list member numbers carried, head (or the split member) first
    policy_start: date
    policy_end: date
    schemes: tuple[SchemeCover, ...]
    limits: OfflineLimits
    supersedes: str | None = None
    authorisation: str | None = None

    def to_json(self) -> str:
        return json.dumps({
            "kind": self.kind.value, "household_id": self.household_id, "members": list(self.member_numbers),
            "policy_start": self.policy_start.isoformat(), "policy_end": self.policy_end.isoformat(),
            "schemes": [[s.scheme_id, s.cover_paise] for s in self.schemes],
            "limits": [self.limits.max_count, self.limits.max_amount], "supersedes": self.supersedes,
            "authorisation": self.authorisation,
        }, sort_keys=True)  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> CardPlan:
        d = json.loads(text)
        return cls(
            CardKind(d["kind"]), d["household_id"], tuple(d["members"]),
            date.fromisoformat(d["policy_start"]),
            date.fromisoformat(d["policy_end"]), tuple(SchemeCover(s, c) for s, c in d["schemes"]),
            OfflineLimits(*d["limits"]), d["supersedes"], d["authorisation"],
        )  # fmt: skip


class PersonalisationService:
    """Writes, activates and recovers beneficiary cards for captured households."""

    def __init__(
        self,
        journal: Journal,
        identity: StationIdentity,
        capture: CaptureService,
        *,
        now: Callable[[], datetime],
        policy: Policy | None = None,
        progress: Callable[[str], None] = lambda msg: None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.journal = journal
        self.identity = identity
        self.capture = capture
        self._now = now
        self.policy = policy or Policy()
        self.progress = progress
        self.rng = rng

    # -- what goes on the card ---------------------------------------------------------------------
    def plan_new(self, household_id: str, fko: FkoSession) -> CardPlan:
        household = self.journal.household(household_id)
        start, end = self.policy.period(date.fromisoformat(fko.day))
        head = household.head.member_no
        members = (head, *(m.member_no for m in household.members if m.member_no != head))
        return CardPlan(
            CardKind.NEW,
            household_id,
            members,
            start,
            end,
            self.policy.schemes,
            OfflineLimits(self.policy.max_offline_debits, self.policy.max_offline_paise),
        )

    def build_profile(self, plan: CardPlan, card_id: str, fko: FkoSession | str) -> HouseholdProfile:
        household = self.journal.household(plan.household_id)
        fko_chr = fko if isinstance(fko, str) else fko.fko_chr
        district = self.identity.chain[0].chr if isinstance(fko, str) else fko.officer_cert.car
        members = []
        for index, number in enumerate(plan.member_numbers):
            m = household.member(number)
            relation = _RELATIONS[m.relation] if index or m.relation is ListRelation.HEAD else Relation.HEAD
            members.append(Member(index, m.name, Gender(ord(m.gender.value)), m.year_of_birth, relation))
        return HouseholdProfile(
            card_id=card_id, household_id=plan.household_id, village=household.village_code,
            district=district,
            fko_id=fko_chr, policy_start=plan.policy_start, policy_end=plan.policy_end, limits=plan.limits,
            members=tuple(members), schemes=plan.schemes,
        )  # fmt: skip

    def build_templates(self, plan: CardPlan) -> list[StoredTemplate]:
        captured = self.capture.member_templates(plan.household_id)
        chosen = [(index, finger, t) for index, number in enumerate(plan.member_numbers)
                  for finger, t in captured.get(number, [])]  # fmt: skip
        if not chosen:
            raise PersonalisationError(
                f"household {plan.household_id} has no captured finger: a card needs at least one"
            )
        budget = FILE_SIZES[FileId.TEMPLATES] - 2
        per = min(MAX_MINUTIAE_ON_CARD, (budget // len(chosen) - TEMPLATE_OVERHEAD) // 3)
        return [
            StoredTemplate(index, finger, encode_compact(t, max_minutiae=per)) for index, finger, t in chosen
        ]

    def build_photos(self, plan: CardPlan) -> list[StoredPhoto]:
        """The members' journal photos as the card stores them (none when no member has a photo)."""
        out = []
        for index, number in enumerate(plan.member_numbers):
            png = self.journal.photo(plan.household_id, number)
            if png is not None:
                out.append(StoredPhoto(index, card_photo(png)))
        return out

    # -- the step machine --------------------------------------------------------------------------
    def personalise(
        self, connection: CardConnection, household_id: str, fko: FkoSession, *, plan: CardPlan | None = None
    ) -> CardResult:
        """Write and activate the card in the reader for ``household_id`` (or finish the one it holds).

        Raises CardRemovedError when the card is pulled: call again once it is back and the journal decides
        whether to complete or wipe. Raises PersonalisationError / CardMismatchError with a reason.
        """
        fko.check()
        session = BeneficiarySession(connection)
        status = session.status()
        card_id = status.card_id
        row = self.journal.card(card_id)
        if row is not None and row["household_id"] != household_id:
            raise CardMismatchError(
                f"card {card_id} belongs to household {row['household_id']} "
                f"({row['state']}), not {household_id}"
            )
        if row is not None and row["state"] in (CardState.ACTIVATED, CardState.HANDED_OVER):
            result = self._result(card_id)
            result.recovered = "already activated"
            return result
        if row is None:
            if status.lifecycle in (Lifecycle.ACTIVATED, Lifecycle.BLOCKED, Lifecycle.SUPERSEDED):
                raise CardMismatchError(
                    f"card {card_id} is {status.lifecycle.name} and was not issued by this "
                    "station: use a blank card"
                )
            plan = plan or self.plan_new(household_id, fko)
            status_now = self.journal.household_status(household_id)
            if plan.kind is CardKind.NEW and status_now is not HouseholdStatus.CAPTURED:
                raise PersonalisationError(f"household {household_id} is {status_now.value}, not captured")
            self.journal.start_card(
                card_id,
                household_id,
                plan.kind.value,
                session_id=fko.session_id,
                supersedes=plan.supersedes,
                authorisation=plan.authorisation,
            )
            self.journal.update_card(
                card_id, "card.plan", {"plan": json.loads(plan.to_json())}, members=plan.to_json()
            )
            recovered = ""
        else:
            plan = CardPlan.from_json(row["members"])
            recovered = "resumed"
        session.terminal_authenticate(self.identity.chain, self.identity.terminal, card_id)
        result = self._run(session, status.lifecycle, card_id, plan, fko)
        if recovered and not result.recovered:
            result.recovered = recovered
        result.apdus = session.counter.apdus
        return result

    def _run(
        self, session: BeneficiarySession, lifecycle: Lifecycle, card_id: str, plan: CardPlan, fko: FkoSession
    ) -> CardResult:
        steps = self.journal.steps(card_id)
        recovered = ""
        if lifecycle is Lifecycle.ACTIVATED:
            public = session.read_public()
            kept = steps.get(Step.CERTIFIED, {}).get("certificate")
            if (
                public.card_certificate is None
                or kept is None
                or public.card_certificate.encode().hex() != kept
            ):
                raise CardMismatchError(
                    f"card {card_id} is activated with a certificate this journal did not record"
                )
            return self._finish(card_id, plan, steps, "completed (already activated)")
        if Step.CERTIFIED in steps:
            if self._same_content(session, card_id, steps):
                self.progress(Progress(Stage.COMPLETING, f"{card_id}: completing the activation", card_id))
                self._put_certificate(session, card_id, steps)
                return self._finish(card_id, plan, self.journal.steps(card_id), "completed")
            self._void(card_id, steps, "the card no longer holds what the FKO certified")
        elif Step.REQUESTED in steps:
            self._void(card_id, steps, "the FKO signature was requested but not received")
        if lifecycle is not Lifecycle.BLANK or steps:
            self.progress(Progress(Stage.WIPING, f"{card_id}: wiping a partly written card", card_id))
            session.wipe()
            self.journal.clear_steps(card_id)
            recovered = "wiped and restarted" if steps or lifecycle is not Lifecycle.BLANK else ""
        profile = self.build_profile(plan, card_id, fko)
        templates = self.build_templates(plan)
        photos = self.build_photos(plan)
        self.progress(Progress(Stage.KEY, f"{card_id}: generating the card key", card_id))
        point = session.generate_key()
        self.journal.step_done(card_id, Step.KEY, {"public_key": point.hex()})
        self.progress(Progress(Stage.PROFILE, f"{card_id}: writing the household profile", card_id))
        profile_raw = profile.encode()
        session.write_profile(profile)
        self.journal.step_done(
            card_id, Step.PROFILE, {"sha256": _h(profile_raw), "profile": profile_raw.hex()}
        )
        n = len(templates)
        self.progress(
            Progress(Stage.TEMPLATES, f"{card_id}: writing {n} fingerprint template(s)", card_id, n)
        )
        session.write_templates(templates)
        template_set = encode_templates(templates)
        self.journal.step_done(card_id, Step.TEMPLATES, {
            "sha256": _h(template_set), "count": len(templates),
            # sealed (station key): the upload seals them again, to central's de-duplication key
            "sealed": self.identity.seal(template_set, f"card-templates/{card_id}").hex(),
        })  # fmt: skip
        if photos:
            self.progress(Progress(Stage.PROFILE, f"{card_id}: writing {len(photos)} photo(s)", card_id))
            session.write_photos(photos)
            self.journal.step_done(
                card_id, Step.PHOTOS, {"sha256": _h(encode_photos(photos)), "count": len(photos)}
            )
        body = build_body(
            car=fko.fko_chr,
            chr=card_id,
            public_point=point,
            role=Role.BENEFICIARY_CARD,
            rights=Right.NONE,
            effective=plan.policy_start,
            expiry=plan.policy_end,
            content_digest=profile.content_digest(templates, photos),
        )
        self.journal.step_done(card_id, Step.REQUESTED, {"body_sha256": _h(body), "fko": fko.fko_chr})
        self.progress(Progress(Stage.CERTIFYING, f"{card_id}: FKO card certifies the card", card_id))
        cert = fko.activate(body)
        self.journal.step_done(card_id, Step.CERTIFIED, {
            "certificate": cert.encode().hex(), "fko_certificate": fko.officer_cert.encode().hex(),
            "body_sha256": _h(body),
        })  # fmt: skip
        self.journal.update_card(
            card_id,
            "card.certified",
            {"fko": fko.fko_chr},
            fko_chr=fko.fko_chr,
            certificate=cert.encode(),
            card_key=point,
        )
        self._put_certificate(session, card_id, self.journal.steps(card_id))
        return self._finish(card_id, plan, self.journal.steps(card_id), recovered)

    def _same_content(
        self, session: BeneficiarySession, card_id: str, steps: dict[str, dict[str, str]]
    ) -> bool:
        """The card still holds the key, profile, templates and photos the FKO certified (by attestation)."""
        try:
            point = bytes.fromhex(steps[Step.KEY]["public_key"])
            att = session.internal_authenticate(self.rng(16), card_id, point)
        except CardRemovedError:
            raise
        except Exception as exc:  # a different key or no key: the card cannot be completed
            log.info("card %s cannot be completed: %s", card_id, exc)
            return False
        return (att.hashes.profile.hex(), att.hashes.templates.hex(), att.hashes.photos.hex()) == (
            steps[Step.PROFILE]["sha256"],
            steps[Step.TEMPLATES]["sha256"],
            steps.get(Step.PHOTOS, {}).get("sha256", _h(b"")),
        )

    def _put_certificate(
        self, session: BeneficiarySession, card_id: str, steps: dict[str, dict[str, str]]
    ) -> None:
        cert = CvCertificate.parse(bytes.fromhex(steps[Step.CERTIFIED]["certificate"]))
        fko_cert = CvCertificate.parse(bytes.fromhex(steps[Step.CERTIFIED]["fko_certificate"]))
        self.progress(Progress(Stage.ACTIVATING, f"{card_id}: activating", card_id))
        session.put_certificate(cert, fko_cert)
        status = session.status()
        if status.lifecycle is not Lifecycle.ACTIVATED:
            raise PersonalisationError(
                f"card {card_id} did not activate (life cycle {status.lifecycle.name})"
            )
        self.journal.step_done(card_id, Step.ACTIVATED, {})

    def _void(self, card_id: str, steps: dict[str, dict[str, str]], why: str) -> None:
        """Record an FKO activation that will never reach a card (the ledger has it; the journal must too)."""
        body_hash = (steps.get(Step.CERTIFIED) or steps.get(Step.REQUESTED) or {}).get("body_sha256", "")
        with self.journal.transaction():
            self.journal.event("card.activation.void", card_id, {"body_sha256": body_hash, "why": why})

    def _finish(
        self, card_id: str, plan: CardPlan, steps: dict[str, dict[str, str]], recovered: str
    ) -> CardResult:
        cert_raw = bytes.fromhex(steps[Step.CERTIFIED]["certificate"])
        profile_raw = bytes.fromhex(steps[Step.PROFILE]["profile"])
        if Step.ACTIVATED not in steps:
            self.journal.step_done(card_id, Step.ACTIVATED, {"by": "recovery"})
        cover = sum(s.cover_paise for s in plan.schemes)
        with self.journal.transaction():
            self.journal.db.execute(
                "UPDATE cards SET state = ?, certificate = ?, profile = ?, card_key = ?, policy_start = ?, "
                "policy_end = ?, cover_paise = ?, scheme_id = ?, activated_at = ? WHERE card_id = ?",
                (CardState.ACTIVATED, cert_raw, profile_raw, bytes.fromhex(steps[Step.KEY]["public_key"]),
                 plan.policy_start.isoformat(), plan.policy_end.isoformat(), cover, plan.schemes[0].scheme_id,
                 self.journal.now(), card_id),
            )  # fmt: skip
            self.journal.event(
                "card.activated",
                card_id,
                {"household": plan.household_id, "kind": plan.kind.value, "recovered": recovered},
            )
            if plan.kind is CardKind.NEW:
                self.journal.set_household_status(plan.household_id, HouseholdStatus.PERSONALISED)
        result = self._result(card_id)
        result.recovered = recovered
        return result

    def _result(self, card_id: str) -> CardResult:
        row = self.journal.card(card_id)
        assert row is not None
        return CardResult(
            card_id,
            row["household_id"],
            CvCertificate.parse(bytes(row["certificate"])),
            HouseholdProfile.parse(bytes(row["profile"])),
        )

    def personalise_until_done(
        self,
        connection: CardConnection,
        household_id: str,
        fko: FkoSession,
        *,
        reinsert_wait: float = 60.0,
        plan: CardPlan | None = None,
        attempts: int = 5,
    ) -> CardResult:
        """Personalise; when the card is pulled, wait for it to come back and recover (complete or wipe)."""
        for _ in range(attempts):
            try:
                return self.personalise(connection, household_id, fko, plan=plan)
            except CardRemovedError:
                self.progress(Progress(Stage.REMOVED, "card removed: put the same card back in the reader"))
                reconnect = getattr(connection, "reconnect", None)
                if reconnect is None:
                    raise
                reconnect(wait=reinsert_wait)
        raise PersonalisationError(f"the card was pulled {attempts} times; giving up on {household_id}")


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def household_members(household: Household) -> Sequence[int]:
    return [m.member_no for m in household.members]
