"""The station screens over the real device stack: the production hardware adapter of ``enrol serve``
(PcscStationHardware) with the FKO card (slot 1) and a blank card (slot 0) served through pcscd + vpcd, and
the sensor simulator on a pty driven by pyfingerprint; served as ``enrol serve`` serves it (CampThread).
One household from the FKO's sign-in to hand-over; the card then verifies offline through pcscd."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cardsvc.card.pcsc import PcscConnection
from enrolment_station.journal import CardState
from enrolment_station.journal import Journal as StationJournal
from enrolment_station.web.serve import PcscStationHardware
from hardware_sims.sensor.simulator import SensorSimulator
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.screens import LiveServer, Screens, serve_app
from tests.fixtures.station import FKO_PIN, TERMINAL_PASSPHRASE, PinnedClock, StationWorld, verify_issued

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]

LISTING = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0101,204101,1,Kamla Devi,F,1968,HEAD
HH-0101,204101,2,Raju,M,2023,SON
"""


@dataclass
class LiveStation:
    server: LiveServer
    fko: ServedCard
    slot: ServedCard
    world: StationWorld


@pytest.fixture
def live_station(
    station_world: StationWorld,
    station_clock: PinnedClock,
    sensor_sim: SensorSimulator,
    serve_card: Callable[..., ServedCard],
    tmp_path: Path,
) -> Iterator[LiveStation]:
    from cardsvc.bio.capture import FingerprintSensor
    from enrolment_station.camp import Camp
    from enrolment_station.fingers import SensorFingerReader
    from enrolment_station.web import CampThread, RecordingReader, StationContext, create_app
    from enrolment_station.web.station import StationProgress

    fko = serve_card(slot=1, card=station_world.fko_card)
    slot = serve_card(slot=0, card=station_world.blank_card())
    sensor = FingerprintSensor(sensor_sim.port)
    sensor.open()
    fingers = SensorFingerReader(sensor, placer=sensor_sim)  # the simulator's control places each finger
    hardware = PcscStationHardware(fko.reader, slot.reader, sensor_sim.port, fingers)

    def build() -> tuple[Any, Callable[[], None]]:  # as enrol serve: on the camp thread
        recorder, progress = RecordingReader(fingers), StationProgress()
        camp = Camp(station_world.home, passphrase=TERMINAL_PASSPHRASE, operator="op-meera",
                    camp_id="CAMP-PCSC-01", reader=recorder, progress=progress,
                    now=station_world.now)  # fmt: skip
        context = StationContext(
            camp, hardware, recorder, imports_dir=tmp_path / "imports", progress=progress
        )

        def cleanup() -> None:
            if hardware._fko is not None:
                hardware._fko.close()
            camp.close()

        return create_app(context, {"SECRET_KEY": b"pcsc"}), cleanup

    def start() -> Any:
        wsgi = CampThread(build)
        return wsgi, wsgi.close

    server = serve_app(start, threaded=True)
    try:
        yield LiveStation(server, fko, slot, station_world)
    finally:
        server.stop()
        sensor.close()


def test_one_household_to_hand_over_through_pcscd_vpcd_and_the_sensor(
    live_station: LiveStation, screens: Screens, tmp_path: Path
) -> None:
    s, page = live_station, screens.page
    page.goto(s.server.url + "/signin?lang=en")
    page.wait_for_selector("[data-status-key=card].ok")  # pcscd reports the blank card in its reader
    page.wait_for_selector("[data-status-key=sensor].ok")  # the sensor's serial port is there
    page.fill("#pin", FKO_PIN)
    page.click("#signin")
    page.wait_for_selector("#households")
    listing = tmp_path / "list.csv"
    listing.write_text(LISTING)
    page.set_input_files("#listing", str(listing))
    page.click("#import")
    page.click("#hh-HH-0101 a.button")
    page.select_option("#way_out_2", "child")
    page.click("#capture")
    page.wait_for_selector("#write-card")
    assert page.locator("img.finger-image").count() >= 2, "the sensor's images are shown"
    page.click("#write-card")
    page.wait_for_selector("#card-face")
    assert page.locator("#steps li.ok").count() == 6, "every personalisation step done on the real card"
    screens.shot("en", "station-card-face-pcsc")
    page.select_option("#received_by", "1")
    page.check("#confirm")
    page.click("#handover")
    page.wait_for_selector("#households")
    assert "Kamla Devi" in page.inner_text("#hh-HH-0101")

    journal = StationJournal(s.world.home / "journal.sqlite", now=lambda: None, operator="test")
    try:
        [card] = journal.cards(state=CardState.HANDED_OVER)
        assert card["handed_to"] == "Kamla Devi"
    finally:
        journal.close()
    with PcscConnection(s.slot.reader) as conn:  # what any terminal sees, offline, through pcscd
        verified = verify_issued(s.world, conn)
    assert verified.card_id == card["card_id"]  # type: ignore[attr-defined]
    s.slot.remove()
    page.goto(s.server.url + "/households")
    page.wait_for_selector("[data-status-key=card].warn")  # the card taken away is seen through pcscd
