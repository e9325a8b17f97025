"""The demo's district: one key ceremony, one station, one POS terminal, one central service, on disk in a
work directory. Thin wiring over the services (keymgmt, enrolment_station, point_of_service, central); no
service logic lives here.

Names and secrets are demo constants: the demo's keys are throwaway keys in a temporary directory.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.pcscd import VPCD_PORTS, PcscdHandle, wait_for_card_state
from enrolment_station.eligibility import COLUMNS

ROOT = "INROOT00001"
DISTRICT = "INDKMA-PATNA1"
STATION = "INTRM-ENR-0001"
POS = "INTRM-POS-0001"
FKO = "INFKO-PAT-0007"
HOSPITAL_CLERK = "INFOP-HOSP-0042"
PAYPOINT_CLERK = "INFOP-PAY-0011"
STRUCK_OFF_CLERK = "INFOP-HOSP-0666"  # the facility whose empanelment the district withdraws
FKO_PIN = "482916"
CLERK_PIN = "246810"
ROOT_SECRET = "demo-root-secret"
DISTRICT_SECRET = "demo-district-secret"
STATION_PASSPHRASE = b"demo-station-passphrase"
POS_PASSPHRASE = b"demo-pos-passphrase"
DEDUP_PASSPHRASE = b"demo-central-dedup-passphrase"  # central's de-duplication key file
FACILITY_ID = 17
HOSPITAL_CLERK_FINGER = 9101
PAYPOINT_CLERK_FINGER = 9102
STRUCK_OFF_FINGER = 9103
SCHEME_HEALTH = 1
SCHEME_PENSION = 2
HEALTH_COVER = 3_000_000  # Rs 30,000 floater, in paise
PENSION_COVER = 500_000
PACKAGES = (
    (301, "Normal delivery", 450_000, "obstetrics"),
    (512, "Cataract surgery", 700_000, "ophthalmology"),
)

NAMES = [
    "Asha",
    "Bharat",
    "Chandni",
    "Devraj",
    "Esha",
    "Farhan",
    "Gauri",
    "Hari",
    "Indu",
    "Jatin",
    "Kavita",
    "Lalit",
    "Meena",
    "Naresh",
    "Omvati",
    "Prakash",
    "Rani",
    "Sunil",
    "Tara",
    "Umesh",
    "Vimla",
]
SPOUSES = ["Ramesh", "Sita", "Mohan", "Geeta", "Kishan", "Radha"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def household_id(i: int) -> str:
    return f"HH-{i:04d}"


def eligibility_csv(households: int) -> str:
    """The district's list: every household has a head; every third one a spouse as well."""
    rows = [",".join(COLUMNS)]
    for i in range(1, households + 1):
        name = f"{NAMES[(i - 1) % len(NAMES)]} {'Yadav' if i <= len(NAMES) else 'Paswan'}"
        gender = "F" if i % 2 else "M"
        rows.append(f"{household_id(i)},204101,1,{name},{gender},{1950 + i % 40},HEAD")
        if i % 3 == 0:
            spouse = f"{SPOUSES[i % len(SPOUSES)]} {'Yadav' if i <= len(NAMES) else 'Paswan'}"
            rows.append(
                f"{household_id(i)},204101,2,{spouse},{'M' if gender == 'F' else 'F'},{1952 + i % 40},SPOUSE"
            )
    return "\n".join(rows) + "\n"


@dataclass
class Slot:
    """A vpcd slot: serves one simulated card at a time to pcscd (insert, pull, swap)."""

    pcscd: PcscdHandle
    index: int
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    server: Any = None

    @property
    def reader(self) -> str:
        return self.pcscd.reader(self.index)

    def serve(self, card: Any) -> None:
        """Put ``card`` in the reader (pulling whatever card was there) and wait until pcscd sees it."""
        from hardware_sims.card.vpcd import VpcdCardServer

        if self.server is None:
            self.server = self.stack.enter_context(VpcdCardServer(card, port=VPCD_PORTS[self.index]))
        else:
            self.pull()
            self.server.card = card
            self.server.insert()
        wait_for_card_state(self.reader, present=True, timeout=15)

    def pull(self) -> None:
        if self.server is not None:
            self.server.remove()
            wait_for_card_state(self.reader, present=False, timeout=15)

    def reinsert(self) -> None:
        self.server.insert()
        wait_for_card_state(self.reader, present=True, timeout=15)

    def close(self) -> None:
        self.stack.close()
        with contextlib.suppress(Exception):
            wait_for_card_state(self.reader, present=False, timeout=15)

    @contextlib.contextmanager
    def connect(self, *, exclusive: bool = True) -> Iterator[PcscConnection]:
        with PcscConnection(self.reader, exclusive=exclusive) as conn:
            yield conn


class CentralServer:
    """Central's WSGI app on a real HTTP socket (127.0.0.1, a free port) in a thread, on SQLite in the work
    directory: the terminals upload over HTTP exactly as in the field."""

    def __init__(self, database: Path) -> None:
        from werkzeug.serving import make_server

        from cardsvc.central.app import create_app

        self.url_db = f"sqlite:///{database}"
        self.app = create_app({"DATABASE_URL": self.url_db})
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="central", daemon=True)

    def __enter__(self) -> CentralServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        from cardsvc.central.extensions import get_db

        get_db(self.app).dispose()

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        from cardsvc.central.extensions import get_db

        with get_db(self.app).sessions() as session:
            yield session


_card_numbers = itertools.count(4_000_000_001)


def new_card_number() -> int:
    return next(_card_numbers)


def timed(clock: Callable[[], float], fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = clock()
    out = fn()
    return out, clock() - t0
