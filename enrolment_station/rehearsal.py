"""A rehearsal world for benchmarks, demos and tests: a key ceremony in a scratch keymgmt home (file
custody), the station home installed from it, and a personalised FKO card whose officer finger is the
synthetic finger FKO_FINGER_SEED. Nothing here is used by a production station.

Time is the world's ``clock`` (the wall clock unless ``build_world(now=...)`` says otherwise): the key
ceremony, ``now()``, the FKO card and every blank card read it. Tests pass ``pinned_clock()``: a fixed day at
noon UTC plus the time elapsed since, so a test never meets midnight (the FKO session's day end) whenever it
runs, while durations (idle timeouts) still advance."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cardsvc.bio.extract import extract_template
from cardsvc.bio.iso19794 import encode_compact, wrap_verify_template
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.pki.chain import TrustAnchor
from cardsvc.pki.officer_card import OfficerCardSession
from cardsvc.pki.rights import Role
from cardsvc.pki.signer import ScryptCost
from enrolment_station.fingers import FKO_FINGER_SEED
from enrolment_station.keys import StationIdentity, install
from keymgmt.service import FileCustody, KeyManager

ROOT = "INROOT00001"
DISTRICT = "INDKMA-PATNA1"
TERMINAL = "INTRM-ENR-0001"
FKO = "INFKO-PAT-0007"
FKO_PIN = "482916"
ROOT_SECRET = "root-secret-1"
DISTRICT_SECRET = "district-secret-1"
TERMINAL_PASSPHRASE = b"terminal-passphrase-1"
#: The station tests' day, at noon: the PKI and card fixtures' PKI_NOW and CARD_NOW (tests/fixtures).
REHEARSAL_DAY = date(2026, 11, 23)
_card_numbers = itertools.count(1_000_000_001)


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PinnedClock:
    """``start`` plus the monotonic time elapsed since ``origin``: a day that never depends on the wall
    clock, with durations that still advance."""

    start: datetime
    origin: float = field(default_factory=time.monotonic)

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.origin)


def pinned_clock(day: date = REHEARSAL_DAY) -> PinnedClock:
    """A clock at 12:00 UTC of ``day`` now, moving on with the monotonic clock (12 hours before midnight)."""
    return PinnedClock(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))


@dataclass
class RehearsalWorld:
    """A keymgmt home, an installed station home, the FKO card and a factory of blank cards."""

    tmp: Path
    km: KeyManager
    home: Path
    fko_card: Any
    anchor: TrustAnchor
    cards: list[Any] = field(default_factory=list)
    clock: Callable[[], datetime] = wall_clock

    def now(self) -> datetime:
        return self.clock()

    def timestamp(self) -> float:
        """The world's time in seconds since the epoch: the clock of its simulated cards (and of central)."""
        return self.clock().timestamp()

    def identity(self) -> StationIdentity:
        return StationIdentity.load(self.home, TERMINAL_PASSPHRASE, now=self.now())

    def blank_card(self, **kwargs: Any) -> Any:
        """A blank beneficiary card on the world's clock unless ``clock=`` is given."""
        from hardware_sims.card.apps.beneficiary import BeneficiaryApplication
        from hardware_sims.card.cardos import SimulatedCard

        number = next(_card_numbers)
        state = self.tmp / f"card-{number}-{uuid.uuid4().hex[:4]}"
        state.mkdir()
        app = BeneficiaryApplication(card_id=f"CARD-{number}", anchor=self.anchor)
        kwargs.setdefault("clock", self.timestamp)
        card = SimulatedCard(state, applications=[app], **kwargs)
        self.cards.append(card)
        return card

    @staticmethod
    def card_id(card: Any) -> str:
        return str(card.applications[0].card_id)


def fko_template_probe(seed: int = FKO_FINGER_SEED, k: int = 0) -> bytes:
    """An impression of the FKO's synthetic finger as the officer card stores it (7F2E compact)."""
    from hardware_sims.fingers.impression import impression

    template = extract_template(impression(seed, k, "good"))
    return wrap_verify_template(encode_compact(template, max_minutiae=60))


def build_world(tmp: Path, *, now: Callable[[], datetime] = wall_clock) -> RehearsalWorld:
    """The ceremony, the station home and the FKO card, all on the clock ``now`` (tests: ``pinned_clock()``;
    benchmarks keep the wall clock)."""
    from hardware_sims.card.apps.officer import OfficerApplication
    from hardware_sims.card.cardos import SimulatedCard

    cost = ScryptCost(n=2**10)
    km = KeyManager(tmp / "keymgmt", actor="dkma", now=now, scrypt_cost=cost)
    km.init_root(ROOT, FileCustody(ROOT_SECRET.encode()))
    km.add_district(DISTRICT, FileCustody(DISTRICT_SECRET.encode()), root_secret=ROOT_SECRET)
    km.register_terminal(
        TERMINAL, district=DISTRICT, role=Role.ENROLMENT_TERMINAL, district_secret=DISTRICT_SECRET,
        terminal_passphrase=TERMINAL_PASSPHRASE,  # the ceremony's default rights: ENROL ... RENEW
    )  # fmt: skip
    chain_file = tmp / "terminal.chain"
    chain_file.write_bytes(b"".join(c.encode() for c in [km.store.root_certificate(), *km.chain(TERMINAL)]))
    km.export_bundle(tmp / "bundle")
    home = tmp / "station"
    install(
        home,
        key_file=km.store.holder_dir(TERMINAL) / "key.enc",
        chain_file=chain_file,
        bundle_dir=tmp / "bundle",
    )
    fko_state = tmp / f"fko-{uuid.uuid4().hex[:6]}"
    fko_state.mkdir()
    fko_card = SimulatedCard(
        fko_state, applications=[OfficerApplication(anchor=km.anchor())], clock=lambda: now().timestamp()
    )
    with InProcessConnection(fko_card) as conn:
        km.personalise_officer_card(
            OfficerCardSession(conn), FKO, district=DISTRICT, role=Role.FIELD_KEY_OFFICER,
            district_secret=DISTRICT_SECRET, pin=FKO_PIN, templates=[fko_template_probe(k=0)],
        )  # fmt: skip
    return RehearsalWorld(tmp, km, home, fko_card, km.anchor(), clock=now)
