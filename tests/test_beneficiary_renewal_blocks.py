"""An admission open when a held renewal takes effect (docs/card-layout.md, "Renewal camps before the year
starts"): it is paid from the year it started in. Its SETTLE pays the claim from that year's hold and
its RELEASE gives the hold back to that year: neither credits the new year's wallet, which stays at the
new cover less the new year's own debits. A SETTLE torn at every write is the open admission or the
settled one, never a credited wallet."""

from __future__ import annotations

import dataclasses
import random
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.errors import BalanceError
from cardsvc.beneficiary.session import BeneficiarySession, sign_authorisation
from cardsvc.bio.iso19794 import encode_compact, wrap_verify_template
from cardsvc.card.errors import ReferenceNotFoundError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.transport import CardConnection
from cardsvc.formats.profile import ContentHashes, SchemeCover
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.cvc import build_body
from cardsvc.pki.officer_card import OfficerCardSession
from cardsvc.pki.rights import Right, Role
from hardware_sims.card.apps.officer import OfficerApplication
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import CardTorn
from hardware_sims.card.faults import FaultInjector
from tests.fixtures.beneficiary import (
    CARD_ID,
    COVER,
    FKO_CHR,
    OFFICER_FINGER,
    OFFICER_PIN,
    POLICY_END,
    SCHEME_HEALTH,
    SCHEME_PENSION,
    BeneficiaryWorld,
    impression,
)

CAMP_DAY = datetime(2027, 10, 2, 12, 0, tzinfo=UTC)  # the renewal camp, 29 days before the new year
NEW_START, NEW_END = date(2027, 11, 1), date(2028, 10, 31)
NEW_YEAR_DAY = datetime(2027, 11, 5, 12, 0, tzinfo=UTC)
NEW_COVER = 3_000_000  # the new year's health cover (as the old one)
NEW_COVERS = ((SCHEME_HEALTH, NEW_COVER), (SCHEME_PENSION, 500_000))
HELD = 1_000_000  # the admission's block, opened in the old year

Connect = Callable[[SimulatedCard], CardConnection]
"""How the terminals reach the beneficiary card: in-process here; through pcscd + vpcd + pyscard in
tests/test_beneficiary_renewal_blocks_pcsc.py, which drives this story with these helpers."""


class Clock:
    """The card's (and the FKO card's) clock, moved by the test: no wall time."""

    def __init__(self, at: datetime) -> None:
        self.at = at.timestamp()

    def __call__(self) -> float:
        return self.at


def _pos(world: BeneficiaryWorld, card: SimulatedCard, connect: Connect = InProcessConnection
         ) -> BeneficiarySession:  # fmt: skip
    s = BeneficiarySession(connect(card))
    s.terminal_authenticate(world.pos.chain, world.pos.holder.signer, CARD_ID)
    s.read_public()
    return s


def _renew_held(world: BeneficiaryWorld, card: SimulatedCard, clock: Clock, tmp: Path,
                connect: Connect = InProcessConnection) -> None:  # fmt: skip
    """What the station does at a camp a month before the year: the card holds the renewal. (The FKO's
    officer card stays in-process: it is not the card under test.)"""
    holder = world.pki.issue(world.pki.district, "INTRM-ENR-RENEW", Role.ENROLMENT_TERMINAL,
                             rights=Right.ENROL | Right.READ_PROFILE | Right.RENEW)  # fmt: skip
    s = BeneficiarySession(connect(card))
    s.terminal_authenticate([world.pki.district.cert, holder.cert], holder.signer, CARD_ID)
    s.read_public()
    old, _ = s.read_profile()
    auth = fmt.Authorisation(fmt.AuthKind.RENEW_POLICY, CARD_ID, 1, 0, 0, policy=(NEW_START, NEW_END),
                             covers=NEW_COVERS)  # fmt: skip
    s.open_renewal(sign_authorisation(world.pki.district.signer, auth, world.pki.district.cert))
    new = dataclasses.replace(old, policy_start=NEW_START, policy_end=NEW_END,
                              schemes=tuple(SchemeCover(sid, c) for sid, c in NEW_COVERS))  # fmt: skip
    s.write_next_profile(new)
    assert s.card_certificate is not None
    point = s.card_certificate.public_point
    att = s.internal_authenticate(bytes(range(16)), CARD_ID, point)
    digest = ContentHashes(ContentHashes.of(new.encode(), b"", b"").profile, att.hashes.templates,
                           att.hashes.photos).digest()  # fmt: skip
    body = build_body(car=FKO_CHR, chr=CARD_ID, public_point=point, role=Role.BENEFICIARY_CARD,
                      rights=Right.NONE, effective=NEW_START, expiry=NEW_END,
                      content_digest=digest)  # fmt: skip
    state = tmp / f"officer-{random.random():.12f}"
    shutil.copytree(world.officer_state, state)
    officer_card = SimulatedCard(state, applications=[OfficerApplication()], clock=clock)
    officer = OfficerCardSession(InProcessConnection(officer_card))
    officer.verify_pin_code(OFFICER_PIN)
    officer.verify_fingerprint(wrap_verify_template(encode_compact(impression(OFFICER_FINGER, 3))))
    cert = officer.activate_card(body)
    officer_card.power_off()
    assert s.commit_renewal(cert, world.fko_certificate, time=int(clock()), operator_id=9) == []  # held


@dataclasses.dataclass
class Renewed:
    """A card in its new year with an admission of the old year still open (block ``block``)."""

    card: SimulatedCard
    faults: FaultInjector
    clock: Clock
    block: int


def _renewed_with_open_admission(world: BeneficiaryWorld, tmp: Path, name: str,
                                 connect: Connect = InProcessConnection) -> Renewed:  # fmt: skip
    dest = tmp / name
    shutil.copytree(world.templates["activated"], dest)
    faults, clock = FaultInjector(), Clock(CAMP_DAY)
    card = world.new_card(dest, faults=faults, rng=random.Random(77), clock=clock)
    _renew_held(world, card, clock, tmp, connect)
    # admitted between the camp and the new year: the old year's card blocks it
    pos = _pos(world, card, connect)
    block = pos.debit(RecordType.BLOCK, scheme_id=SCHEME_HEALTH, amount=HELD, time=int(clock()),
                      operator_id=1, facility_id=2, reference=301)  # fmt: skip
    clock.at = NEW_YEAR_DAY.timestamp()
    pos = _pos(world, card, connect)  # the card's first command of the new year: the renewal takes effect
    status = pos.status()
    assert (status.policy_start, status.policy_end) == (NEW_START, NEW_END)
    health = status.wallet(SCHEME_HEALTH)
    assert (health.balance, health.held) == (NEW_COVER, HELD)  # the full new cover; the old year's hold
    return Renewed(card, faults, clock, block.counter)


def _wallet(world: BeneficiaryWorld, card: SimulatedCard, connect: Connect = InProcessConnection
            ) -> tuple[int, int]:  # fmt: skip
    health = _pos(world, card, connect).status().wallet(SCHEME_HEALTH)
    return health.balance, health.held


def test_settle_of_an_old_year_admission_credits_nothing_to_the_new_year(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path
) -> None:
    w = beneficiary_world
    r = _renewed_with_open_admission(w, tmp_path, "card")
    pos = _pos(w, r.card)
    cash = pos.debit(RecordType.CASH, scheme_id=SCHEME_HEALTH, amount=100_000, time=int(r.clock()),
                     operator_id=1, facility_id=2)  # a new-year debit  # fmt: skip
    assert cash.balance_after == NEW_COVER - 100_000
    with pytest.raises(BalanceError):  # more than the old year's hold: not taken from the new year
        pos.debit(RecordType.SETTLE, scheme_id=SCHEME_HEALTH, amount=HELD + 1, time=int(r.clock()),
                  operator_id=1, facility_id=2, reference=r.block)  # fmt: skip
    settle = pos.debit(RecordType.SETTLE, scheme_id=SCHEME_HEALTH, amount=800_000, time=int(r.clock()),
                       operator_id=1, facility_id=2, reference=r.block)  # fmt: skip
    assert (settle.amount, settle.balance_after) == (800_000, NEW_COVER - 100_000)  # the claim is paid
    assert _wallet(w, r.card) == (NEW_COVER - 100_000, 0)
    # an admission of the new year settles against the new wallet as before
    block = pos.debit(RecordType.BLOCK, scheme_id=SCHEME_HEALTH, amount=300_000, time=int(r.clock()),
                      operator_id=1, facility_id=2, reference=12)  # fmt: skip
    settle = pos.debit(RecordType.SETTLE, scheme_id=SCHEME_HEALTH, amount=200_000, time=int(r.clock()),
                       operator_id=1, facility_id=2, reference=block.counter)  # fmt: skip
    assert settle.balance_after == NEW_COVER - 100_000 - 200_000


def test_release_of_an_old_year_admission_credits_nothing_to_the_new_year(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path
) -> None:
    w = beneficiary_world
    r = _renewed_with_open_admission(w, tmp_path, "card")
    pos = _pos(w, r.card)
    release = pos.debit(RecordType.RELEASE, scheme_id=SCHEME_HEALTH, amount=0, time=int(r.clock()),
                        operator_id=1, facility_id=2, reference=r.block)  # fmt: skip
    assert release.balance_after == NEW_COVER
    assert _wallet(w, r.card) == (NEW_COVER, 0)
    with pytest.raises(ReferenceNotFoundError):  # closed: not released twice
        pos.debit(RecordType.RELEASE, scheme_id=SCHEME_HEALTH, amount=0, time=int(r.clock()),
                  operator_id=1, facility_id=2, reference=r.block)  # fmt: skip
    log = pos.read_log()
    assert [(x.record_type, x.balance_after) for x in log if x.scheme_id == SCHEME_HEALTH] == [
        (RecordType.BLOCK, COVER - HELD), (RecordType.RENEWAL, NEW_COVER), (RecordType.RELEASE, NEW_COVER),
    ]  # fmt: skip
    assert POLICY_END < NEW_START


@pytest.mark.parametrize("torn_write", [False, True], ids=["lost-write", "half-write"])
def test_settle_of_an_old_year_admission_torn_at_every_write(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path, torn_write: bool
) -> None:
    """Before the tear's write the admission is open and the wallet the new cover; after it the claim is
    settled with the wallet unchanged: a SETTLE sent again after a tear settles once, crediting nothing."""
    w = beneficiary_world

    def settle(r: Renewed) -> TransactionRecord:
        return _pos(w, r.card).debit(RecordType.SETTLE, scheme_id=SCHEME_HEALTH, amount=800_000,
                                     time=int(r.clock()), operator_id=1, facility_id=2,
                                     reference=r.block, nonce=bytes(fmt.NONCE_LENGTH))  # fmt: skip

    r = _renewed_with_open_admission(w, tmp_path, "count")
    r.faults.reset_counters()
    settle(r)
    total = r.faults.writes
    assert total > 0
    seen = set()
    for n in range(1, total + 1):
        r = _renewed_with_open_admission(w, tmp_path, f"run{n}")
        r.faults.arm(after_writes=n, torn_write=torn_write)
        with pytest.raises(CardTorn):
            settle(r)
        r.faults.disarm()
        r.card.power_on()
        view = _wallet(w, r.card)
        assert view in ((NEW_COVER, HELD), (NEW_COVER, 0)), (n, view)
        seen.add(view)
        record = settle(r)  # the POS sends it again: settled once, the wallet is the new cover
        assert (record.record_type, record.balance_after) == (RecordType.SETTLE, NEW_COVER)
        assert _wallet(w, r.card) == (NEW_COVER, 0)
        log = _pos(w, r.card).read_log()
        assert [x.record_type for x in log].count(RecordType.SETTLE) == 1
    assert seen == {(NEW_COVER, HELD), (NEW_COVER, 0)}
