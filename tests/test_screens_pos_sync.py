"""The "Sync now" button of the clerk's screen against the real central app (Flask + SQLite served on a
real socket, reached by the POS's own HttpTransport): the batch goes up, the sync status shows the fresh
time, and central's sync acknowledgement comes down and renews the card's offline limits at its next
reading."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from cardsvc.central.app import create_app as create_central
from cardsvc.central.extensions import get_db
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from point_of_service.catalogue import Catalogue, Package
from point_of_service.journal import Journal
from point_of_service.services.sync import HttpTransport, SyncService
from point_of_service.web import PosTerminal, create_app
from tests.fixtures.pos import OPERATOR_FINGER, OPERATOR_PIN, POS_CARD_NOW, POS_FACILITY_ID, PosWorld
from tests.fixtures.screens import LiveServer, Screens, SimPosHardware, serve_app, serve_one_thread

pytestmark = pytest.mark.slow

NOW = POS_CARD_NOW
DAY = 86_400


@dataclass
class Central:
    app: Flask
    server: LiveServer
    camp: SimTerminal
    district: str

    def register_card(self, card_id: int, card_key: bytes) -> None:
        """The station's camp upload: central knows the card and its key before it acknowledges it."""
        sim = SimCard.new(card_id, random.Random(card_id & 0xFFFF))
        camp = dataclasses.replace(
            sim.camp_card(self.district, NOW - 100 * DAY, NOW + 265 * DAY, 0xF0), card_key=card_key
        )
        body = self.camp.batch(BatchKind.CAMP, [camp], NOW)
        headers = self.camp.headers("POST", "/api/v1/batches", body, NOW)
        answer = self.app.test_client().post("/api/v1/batches", data=body, headers=headers)
        assert answer.status_code == 201, answer.get_json()


@pytest.fixture
def central(pos_world: PosWorld, tmp_path: Path) -> Iterator[Central]:
    pki = pos_world.pki
    key = CentralKey(pki.district.signer, pki.district.chr, (pki.district.cert,))
    config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}", "CLOCK": FixedClock(float(NOW)),
              "TESTING": True, "CENTRAL_KEY": key}  # fmt: skip
    app = create_central(config)
    camp = SimTerminal.new(0x5E_CA, random.Random(3))
    identity = pos_world.identity()
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), identity.certificate.public_point)
    with get_db(app).sessions() as session:
        add_facility(session, POS_FACILITY_ID, "Patna Hospital", pki.district.chr, 25.6, 85.1)
        session.flush()
        register_terminal(session, identity.terminal_id, point, NOW - DAY, POS_FACILITY_ID)
        register_terminal(session, camp.terminal_id, camp.key.public_key(), NOW - DAY)
        session.commit()
    server = serve_app(lambda: app, threaded=True)
    yield Central(app, server, camp, pki.district.chr)
    server.stop()
    get_db(app).dispose()


@pytest.fixture
def pos(pos_world: PosWorld, central: Central, tmp_path: Path) -> Iterator[tuple[LiveServer, SimPosHardware]]:
    pki = pos_world.pki
    catalogue = Catalogue(
        1, pki.district.chr, NOW - DAY, NOW - DAY, (Package(55, "Fever", 90_000, "general"),)
    )
    signed = catalogue.sign(pki.district.signer, [pki.district.cert])
    hw = SimPosHardware(operator=pos_world.officer_card(tmp_path / "operator"))
    rng = random.Random(8)

    def build() -> Any:
        journal = Journal(tmp_path / "journal.sqlite")
        trust = pos_world.trust(journal)
        trust.install_catalogue(signed, now=datetime.fromtimestamp(NOW, UTC))
        identity = pos_world.identity()
        sync = SyncService(journal, identity, trust, HttpTransport(central.server.url), now=lambda: NOW)
        terminal = PosTerminal(journal, identity, trust, hw, now=lambda: NOW, rng=rng.randbytes, sync=sync)
        return create_app(terminal, {"SECRET_KEY": b"sync-test"}), journal.close

    server = serve_one_thread(build)
    yield server, hw
    server.stop()


def translated(text: str | tuple[str, str], lang: str, **values: Any) -> str:
    """The catalogue's ``text`` (or plural pair, by ``num``) in ``lang``, as the clerk reads it."""
    from flask_babel import Babel, force_locale, gettext, ngettext

    from cardsvc.web.i18n import LOCALES, usable_translations

    app = Flask(__name__)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(usable_translations())
    Babel(app)
    with app.app_context(), force_locale(LOCALES[lang]):
        if isinstance(text, tuple):
            return str(ngettext(text[0], text[1], values.pop("num"), **values))
        return str(gettext(text, **values))


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_sync_now_reaches_central_and_renews_the_cards_offline_limits(
    pos: tuple[LiveServer, SimPosHardware],
    central: Central,
    pos_world: PosWorld,
    screens: Screens,
    tmp_path: Path,
    lang: str,
) -> None:
    server, hw = pos
    page = screens.page
    screens.hindi_only = True
    page.goto(server.url + f"/signin?lang={lang}")
    hw.finger = OPERATOR_FINGER
    page.fill("#pin", OPERATOR_PIN)
    page.press("#pin", "Enter")
    hw.patient = pos_world.beneficiary_card(tmp_path / "card", "wide")
    page.click("#read-card")
    page.wait_for_selector("#member-0")
    hw.finger = 3  # member 0's right index
    page.click("#member-0 button[type=submit]")
    page.wait_for_selector("#verified")
    page.click("#go-paypoint")
    page.fill("#amount", "1500")
    page.click("#pay")
    page.wait_for_selector(".flash.ok")

    journal = Journal(tmp_path / "journal.sqlite")
    try:
        [(record, card_key)] = journal.unbatched_records(10)
    finally:
        journal.close()
    central.register_card(record.card_id, card_key)

    page.click("#nav-journal")
    page.wait_for_selector("#sync-status")
    assert "—" in page.inner_text("#last-sync"), "never synchronised before"
    used = translated("This card: %(c)s of %(mc)s offline debits, %(a)s of %(ma)s", lang, c="1", mc="1,000",
                      a="₹\u00a01,500.00", ma="₹\u00a050,00,000.00")  # fmt: skip
    assert used in page.inner_text("#card-limits"), "the card's own counters before the sync"
    page.click("#sync-now")
    page.wait_for_selector(".flash.ok")
    assert translated("Synchronised: %(n)s records sent.", lang, n=1) in page.inner_text(".flash.ok")
    assert "—" not in page.inner_text("#last-sync"), "the sync status shows the time of this sync"
    fresh = translated(
        "Offline for %(d)s", lang, d=translated(("%(num)s minute", "%(num)s minutes"), lang, num=0)
    )
    assert fresh in page.inner_text("#sync-status"), "offline for 0 minutes: just synchronised"
    page.wait_for_selector("[data-status-key=sync].ok")
    screens.shot(lang, "pos-journal-synced")
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        assert journal.batch_status() == {"acked": 1}, "central took the batch"
        assert journal.events(kind="sync")[-1].outcome == "ok"
    finally:
        journal.close()

    page.click("#nav-card")  # the card's next reading presents central's acknowledgement
    page.click("#end-visit")
    page.click("#read-card")
    page.wait_for_selector("#member-0")
    renewed = translated("Offline use: %(c)s of %(mc)s debits, %(a)s of %(ma)s", lang, c="0", mc="1,000",
                         a="₹\u00a00.00", ma="₹\u00a050,00,000.00")  # fmt: skip
    assert renewed in page.inner_text("#offline-limits"), (
        "the offline limits renewed by central's acknowledgement"
    )
    screens.shot(lang, "pos-card-limits-renewed")
