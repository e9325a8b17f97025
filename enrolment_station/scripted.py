"""The scripted camp (``enrol camp``): import the list, open the FKO session, enrol every listed household
one card after another, read back the FKO ledger, build the upload. Unattended for the demo: fingers are
placed through the sensor simulator's control socket, and ``simulate_cards`` serves blank simulated cards
in the reader's vpcd slot (the next one inserted after each hand-over)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.pcscd import VPCD_PORTS, wait_for_card_state
from enrolment_station.camp import Camp
from enrolment_station.eligibility import parse_eligibility
from enrolment_station.errors import CaptureError, HouseholdError, PersonalisationError
from enrolment_station.journal import HouseholdStatus


class SimulatedCardFeeder:
    """Blank simulated beneficiary cards served one after another in a vpcd slot."""

    def __init__(self, camp: Camp, reader: str, directory: Path) -> None:
        from hardware_sims.card.vpcd import VpcdCardServer

        self.camp = camp
        self.reader = reader
        self.directory = directory
        slot = int(reader.split()[-1]) if reader.split()[-1].isdigit() else 0
        self._numbers = itertools.count(int(time.time()) * 100)
        self.server = VpcdCardServer(self._blank(), port=VPCD_PORTS[slot])
        self.server.start()
        wait_for_card_state(reader, present=True, timeout=15)

    def _blank(self) -> Any:
        from hardware_sims.card.apps.beneficiary import BeneficiaryApplication
        from hardware_sims.card.cardos import SimulatedCard

        number = next(self._numbers)
        state = self.directory / f"CARD-{number}"
        state.mkdir(parents=True)
        app = BeneficiaryApplication(card_id=f"CARD-{number}", anchor=self.camp.identity.anchor)
        return SimulatedCard(state, applications=[app])

    def next(self) -> None:
        self.server.remove()
        wait_for_card_state(self.reader, present=False, timeout=15)
        self.server.card = self._blank()
        self.server.insert()
        wait_for_card_state(self.reader, present=True, timeout=15)

    def stop(self) -> None:
        self.server.stop()


@contextmanager
def _feeder(camp: Camp, reader: str, simulate: bool) -> Iterator[SimulatedCardFeeder | None]:
    feeder = SimulatedCardFeeder(camp, reader, camp.home / "simcards") if simulate else None
    try:
        yield feeder
    finally:
        if feeder is not None:
            feeder.stop()


def run_camp(
    camp: Camp,
    list_file: Path,
    *,
    fingers: Any,
    fko_reader: str,
    reader: str,
    pin: str,
    simulate_cards: int = 0,
    upload_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    listing = parse_eligibility(
        list_file.read_text(encoding="utf-8-sig"), current_year=camp.now().year, known_households=()
    )
    known = set(camp.journal.household_ids())
    if not {h.household_id for h in listing.households} <= known:
        camp.import_list(list_file)
    fko_conn = PcscConnection(fko_reader, exclusive=True, wait=30)
    camp.open_session(fko_conn, pin=pin, fingerprint=fingers.officer_probe)
    todo = [h.household_id for h in listing.households
            if camp.journal.household_status(h.household_id) is HouseholdStatus.LISTED]  # fmt: skip
    if simulate_cards:
        todo = todo[:simulate_cards]
    issued, refused = [], []
    t0 = time.perf_counter()
    with _feeder(camp, reader, bool(simulate_cards)) as feeder:
        for i, hid in enumerate(todo, start=1):
            if feeder is not None and i > 1:
                feeder.next()
            elif feeder is None:
                echo(f"[{i}/{len(todo)}] insert a blank card for {hid}")
            try:
                with PcscConnection(reader, exclusive=True, wait=120) as conn:
                    result = camp.enrol_household(hid, conn)
            except (CaptureError, HouseholdError, PersonalisationError) as exc:
                refused.append(f"{hid}: {exc}")
                echo(f"[{i}/{len(todo)}] {hid} REFUSED: {exc}")
                continue
            issued.append(result.card_id)
            took = time.perf_counter() - t0
            echo(f"[{i}/{len(todo)}] {hid}: card {result.card_id} handed over ({took:.0f} s)")
    check = camp.ledger()
    echo(check.describe())
    batches = camp.upload_batches(upload_dir)
    fko_conn.close()
    return (
        f"camp {camp.camp_id}: {len(issued)} card(s) issued, {len(refused)} household(s) refused, "
        f"ledger {'matches' if check.matches else 'DOES NOT MATCH'}, {len(batches)} batch(es) queued"
    )
