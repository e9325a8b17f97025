"""Tearing: pull the beneficiary card at EVERY APDU of one personalisation, re-insert it, let the station
recover, and check that a verifier accepts only complete cards, never a half-written one.

Each APDU k is torn twice: before the card sees it, and after the card processed it but before the answer
reached the station (the worst case: the card changed, the station does not know). The household carries
a photo, so the photo set's ALLOCATE PHOTOS and writes are torn too. In-process cards keep the sweep fast;
one tear through pcscd + vpcd is in test_station_pcsc.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.beneficiary.verify import CardRefusedError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.transport import CardRemovedError
from enrolment_station.camp import Camp
from enrolment_station.fingers import SyntheticFingerReader
from enrolment_station.journal import HouseholdStatus
from enrolment_station.photos import card_photo, record_photo
from hardware_sims.card.cardos import SimulatedCard
from tests.fixtures.station import FKO_PIN, TERMINAL_PASSPHRASE, PinnedClock, StationWorld, verify_issued

LIST = (
    "household_id,village_code,member_no,name,gender,year_of_birth,relation\n"
    "HH-0100,654321,1,Kamla Devi,F,1965,HEAD\n"
)


class TearingConnection:
    """An in-process connection that pulls the card at APDU number ``k`` (1-based), once."""

    def __init__(self, card: SimulatedCard, k: int | None, *, after: bool) -> None:
        self.card = card
        self.k = k
        self.after = after
        self.sent = 0
        self.torn = False
        self.inner = InProcessConnection(card)

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent += 1
        if not self.torn and self.sent == self.k:
            self.torn = True
            if self.after:
                self.inner.send_and_receive(apdu)
            self.card.power_off()
            raise CardRemovedError(f"card pulled at APDU {self.k}")
        return self.inner.send_and_receive(apdu)

    def reconnect(self, wait: float = 0.0) -> None:
        """The card is back: check what a terminal would make of it at this moment, then carry on."""
        self.on_reinsert()
        self.inner = InProcessConnection(self.card)

    def on_reinsert(self) -> None:
        pass

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def captured(station_world: StationWorld, station_clock: PinnedClock, tmp_path: Path):
    """HH-0100 captured (synthetic impressions straight to the extractor) with a photo; FKO session open; on
    the world's pinned clock (the sweep is long: its session never meets midnight)."""
    reader = SyntheticFingerReader()
    camp = Camp(
        station_world.home,
        passphrase=TERMINAL_PASSPHRASE,
        operator="op-ravi",
        camp_id="CAMP-T",
        reader=reader,
        now=station_world.now,
    )
    (tmp_path / "l.csv").write_text(LIST)
    camp.import_list(tmp_path / "l.csv")
    fko = InProcessConnection(station_world.fko_card)
    camp.open_session(fko, pin=FKO_PIN, fingerprint=reader.officer_probe)
    camp.capture_household("HH-0100")
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((240, 300)).convert("RGB").save(buf, format="PNG")
    record_photo(camp.journal, "HH-0100", 1, buf.getvalue())
    yield camp
    camp.close()


def _next_card(camp: Camp) -> None:
    """Let the same captured household take another blank card (a test-only shortcut)."""
    with camp.journal.transaction():
        camp.journal.set_household_status("HH-0100", HouseholdStatus.CAPTURED)


def test_tear_at_every_apdu_of_personalisation(captured: Camp, station_world: StationWorld) -> None:
    camp = captured
    clean = TearingConnection(station_world.blank_card(), None, after=False)
    camp.personalise(clean, "HH-0100")
    total = clean.sent
    photo = card_photo(camp.journal.photo("HH-0100", 1) or b"")
    assert total >= 12, f"a personalisation should take a dozen APDUs or more, took {total}"
    outcomes: dict[str, int] = {}
    for k in range(1, total + 1):
        for after in (False, True):
            _next_card(camp)
            card = station_world.blank_card()
            conn = TearingConnection(card, k, after=after)
            seen: list[str] = []

            def check(card: SimulatedCard = card, seen: list[str] = seen) -> None:
                """At re-insertion a terminal must refuse the card unless it is complete."""
                with InProcessConnection(card) as c:
                    try:
                        verified = verify_issued(station_world, c)
                    except CardRefusedError as exc:
                        seen.append(exc.reason.value)
                        return
                seen.append("accepted")
                assert verified.profile.household_id == "HH-0100"  # type: ignore[attr-defined]
                assert len(verified.profile.members) == 1  # type: ignore[attr-defined]

            conn.on_reinsert = check  # type: ignore[method-assign]
            result = camp.personalise(conn, "HH-0100")
            assert conn.torn, f"APDU {k} was never sent"
            assert seen and seen[0] in ("accepted", "not-activated"), (k, after, seen)
            with InProcessConnection(card) as c:
                final = verify_issued(station_world, c)
                assert final.card_id == result.card_id  # type: ignore[attr-defined]
                stored = BeneficiarySession(c).read_photos()
            assert [(p.member_index, p.jpeg) for p in stored] == [(0, photo)], (k, after)
            outcomes[result.recovered or "none"] = outcomes.get(result.recovered or "none", 0) + 1
    print(f"{total} APDUs, outcomes {outcomes}")
    # every torn card ended complete; both recovery paths were exercised
    assert sum(outcomes.values()) == 2 * total
    assert any("wiped" in k for k in outcomes) and any("completed" in k for k in outcomes), outcomes
    ledger = camp.ledger()
    assert ledger.matches, ledger.describe()
