"""The clerk's screens over the real device stack: the production hardware adapter of ``pos serve``
(PcscPosHardware) with the operator card and the patient's card served through pcscd + vpcd and the
sensor simulator on a pty driven by pyfingerprint. Sign-in, verification, admission, a card pulled out."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hardware_sims.sensor.simulator import SensorSimulator
from point_of_service.catalogue import Catalogue, Package
from point_of_service.journal import Journal
from point_of_service.web import PosTerminal, create_app
from point_of_service.web.serve import PcscPosHardware
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.pos import OPERATOR_FINGER, OPERATOR_PIN, POS_CARD_NOW, PosWorld
from tests.fixtures.screens import LiveServer, Screens, serve_one_thread

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]


@pytest.fixture
def live_pos(
    pos_world: PosWorld, tmp_path: Path, serve_card: Any, sensor_sim: SensorSimulator
) -> Iterator[tuple[LiveServer, ServedCard, SensorSimulator]]:
    operator = serve_card(slot=1, card=pos_world.officer_card(tmp_path / "operator"))
    patient = serve_card(slot=0, card=pos_world.beneficiary_card(tmp_path / "ben", "wide"))
    pki = pos_world.pki
    catalogue = Catalogue(1, pki.district.chr, POS_CARD_NOW - 86_400, POS_CARD_NOW - 86_400,
                          (Package(301, "Normal delivery", 450_000, "obstetrics"),))  # fmt: skip
    signed = catalogue.sign(pki.district.signer, [pki.district.cert])
    hardware = PcscPosHardware(operator.reader, patient.reader, sensor_sim.port)
    rng = random.Random(3)

    def build() -> Any:
        journal = Journal(tmp_path / "journal.sqlite")
        trust = pos_world.trust(journal)
        trust.install_catalogue(signed, now=datetime.fromtimestamp(POS_CARD_NOW, UTC))
        terminal = PosTerminal(journal, pos_world.identity(), trust, hardware, now=lambda: POS_CARD_NOW,
                               rng=rng.randbytes)  # fmt: skip

        def cleanup() -> None:
            if hardware._patient is not None:
                hardware._patient.close()
            journal.close()

        return create_app(terminal, {"SECRET_KEY": b"pcsc"}), cleanup

    server = serve_one_thread(build)  # as pos serve: one worker thread, live answers beside it
    yield server, patient, sensor_sim
    server.stop()


def test_admission_through_pcscd_vpcd_and_the_sensor(live_pos: Any, screens: Screens) -> None:
    server, patient, sensor = live_pos
    page = screens.page
    page.goto(server.url + "/signin?lang=en")
    page.wait_for_selector("[data-status-key=card].ok")  # pcscd reports the card in the patient reader
    sensor.place(OPERATOR_FINGER, 1)
    page.fill("#pin", OPERATOR_PIN)
    page.click("#signin")
    page.wait_for_selector("#read-card")
    sensor.lift()
    page.click("#read-card")
    page.wait_for_selector("#member-0")
    assert page.locator("ol.steps li.ok").count() == 8
    sensor.place(3, 1)  # member 0's right index
    page.click("#member-0 button[type=submit]")
    page.wait_for_selector("#verified")
    sensor.lift()
    page.click("#go-hospital")
    page.click("#admit-301")
    page.wait_for_selector(".flash.ok")
    assert "4,500.00" in page.inner_text("#admission-1, [id^=admission-]")
    screens.shot("en", "pos-hospital-admitted-pcsc")
    patient.remove()
    page.click("#nav-card")
    page.click("#read-card")
    page.wait_for_selector("[data-reason=card-missing]")
    page.wait_for_selector("[data-status-key=card].warn")
