"""Acceptance: a test camp of 20 households through pcscd + vpcd (FKO card in slot 1, beneficiary cards one
after another in slot 0) and the sensor simulator over pyfingerprint. Bad rows and a duplicate finger are
refused with reasons; 20 activated cards verify offline; the FKO ledger equals the journal; a tear through
the real stack is recovered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cardsvc.bio.capture import FingerprintSensor
from cardsvc.card.pcsc import PcscConnection
from cardsvc.demo_world import NAMES  # the demo district's household heads
from cardsvc.formats.batch import BatchKind
from enrolment_station.camp import Camp
from enrolment_station.errors import DuplicateFingerError, EligibilityError
from enrolment_station.fingers import SensorFingerReader, finger_seed
from enrolment_station.journal import CardState, HouseholdStatus, MemberException
from hardware_sims.sensor.simulator import SensorSimulator
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.station import FKO_PIN, TERMINAL_PASSPHRASE, PinnedClock, StationWorld, verify_issued

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]

HEADER = "household_id,village_code,member_no,name,gender,year_of_birth,relation\n"


def camp_list() -> str:
    rows = [
        f"HH-{i:04d},204101,1,{name} Yadav,{'F' if i % 2 else 'M'},{1960 + i},HEAD"
        for i, name in enumerate(NAMES, start=1)
    ]
    rows.insert(3, "HH-0003,204101,2,Pinky Yadav,F,2024,DAUGHTER")  # a child: no fingers, recorded
    return HEADER + "\n".join(rows) + "\n"


BAD_LIST = HEADER + (
    "HH-0001,204101,1,Asha Yadav,F,1961,HEAD\n"
    "HH-0002,2041,1,Bharat Yadav,M,1962,HEAD\n"  # line 3: village code
    "HH-0003,204101,1,xxx,F,1963,HEAD\n"  # line 4: placeholder name
    "HH-0004,204101,1,Devraj Yadav,Q,1964,HEAD\n"  # line 5: gender
    "HH-0005,204101,1,Esha Yadav,F,1965,SPOUSE\n"  # line 6: no head in HH-0005
)


def test_camp_of_20_households_through_pcscd(
    station_world: StationWorld,
    station_clock: PinnedClock,
    sensor_sim: SensorSimulator,
    serve_card: Callable[..., ServedCard],
    tmp_path: Path,
) -> None:
    world = station_world
    fko_slot = serve_card(slot=1, card=world.fko_card)
    slot = serve_card(slot=0, card=world.blank_card())
    with FingerprintSensor(sensor_sim.port) as sensor:
        reader = SensorFingerReader(sensor, placer=sensor_sim)
        # the 21st household's head presents the first household's right index: refused as a duplicate
        reader.seeds[("HH-0021", 1, 2)] = finger_seed("HH-0001", 1, 2)
        camp = Camp(
            world.home,
            passphrase=TERMINAL_PASSPHRASE,
            operator="op-meera",
            camp_id="CAMP-PAT-11",
            reader=reader,
            now=world.now,
        )
        bad = tmp_path / "bad.csv"
        bad.write_text(BAD_LIST)
        with pytest.raises(EligibilityError) as refused:
            camp.import_list(bad)
        problems = [(p.line, p.column) for p in refused.value.problems]
        assert problems == [(3, "village_code"), (4, "name"), (5, "gender"), (6, "relation")]
        assert camp.journal.household_ids() == []  # nothing half-imported
        good = tmp_path / "camp.csv"
        good.write_text(camp_list())
        camp.import_list(good)
        fko_conn = PcscConnection(fko_slot.reader, exclusive=True)
        camp.open_session(fko_conn, pin=FKO_PIN, fingerprint=reader.officer_probe)
        issued: list[str] = []
        for i in range(1, 22):
            hid = f"HH-{i:04d}"
            if i > 1:  # the next blank card goes into the reader
                slot.remove()
                slot.server.card = world.blank_card()
                slot.insert()
            if hid == "HH-0021":
                with pytest.raises(DuplicateFingerError, match="HH-0001"):
                    camp.capture_household(hid)
                continue
            exceptions = {2: MemberException.CHILD} if hid == "HH-0003" else None
            with PcscConnection(slot.reader, exclusive=True) as conn:
                result = camp.enrol_household(hid, conn, member_exceptions=exceptions)
            with PcscConnection(slot.reader) as conn:  # what any terminal sees, offline
                verified = verify_issued(world, conn)
            assert verified.card_id == result.card_id  # type: ignore[attr-defined]
            issued.append(result.card_id)
        assert len(set(issued)) == 20
        assert len(camp.journal.cards(state=CardState.HANDED_OVER)) == 20
        assert camp.journal.household_status("HH-0021") is HouseholdStatus.LISTED
        assert camp.journal.member_statuses("HH-0003")[2] == ("exception", "child")
        check = camp.ledger()
        assert check.matches and check.ledger_count == 20 == check.journal_activated, check.describe()
        batches = camp.upload_batches(tmp_path / "upload")
        camp_batch = next(b for b in batches if b.batch.kind is BatchKind.CAMP)
        assert len(camp_batch.batch.items) == 20
        camp.close()
        fko_conn.close()


class PullingConnection:
    """A PC/SC connection whose card is pulled out of the vpcd reader right after the card processed APDU
    ``k`` (the answer never reaches the station), and put back when the station asks for it."""

    def __init__(self, slot: ServedCard, k: int) -> None:
        self.slot = slot
        self.k = k
        self.sent = 0
        self.inner = PcscConnection(slot.reader, exclusive=True)

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent += 1
        answer = self.inner.send_and_receive(apdu)
        if self.sent == self.k:
            self.slot.remove()
            return self.inner.send_and_receive(bytes.fromhex("80100000FF"))  # the dead handle says "removed"
        return answer

    def reconnect(self, wait: float | None = None) -> None:
        self.slot.insert()
        self.inner.reconnect(wait=wait)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    ("k", "recovery"), [(13, "wiped and restarted"), (14, "completed (already activated)")]
)
def test_card_pulled_through_pcscd_is_recovered(
    station_world: StationWorld,
    station_clock: PinnedClock,
    serve_card: Callable[..., ServedCard],
    tmp_path: Path,
    k: int,
    recovery: str,
) -> None:
    """APDU 13 is WRITE OBJECT templates (the card is wiped and restarted), 14 PUT CERTIFICATE (the card
    activated but the station never heard: it finds the card complete)."""
    from enrolment_station.fingers import SyntheticFingerReader

    world = station_world
    fko_slot = serve_card(slot=1, card=world.fko_card)
    card = world.blank_card()
    slot = serve_card(slot=0, card=card)
    reader = SyntheticFingerReader()
    camp = Camp(
        world.home,
        passphrase=TERMINAL_PASSPHRASE,
        operator="op-tear",
        camp_id="CAMP-TEAR",
        reader=reader,
        now=world.now,
    )
    (tmp_path / "l.csv").write_text(HEADER + "HH-0900,204101,1,Sunita Devi,F,1970,HEAD\n")
    camp.import_list(tmp_path / "l.csv")
    with PcscConnection(fko_slot.reader, exclusive=True) as fko_conn:
        camp.open_session(fko_conn, pin=FKO_PIN, fingerprint=reader.officer_probe)
        camp.capture_household("HH-0900")
        conn = PullingConnection(slot, k)
        result = camp.personalise(conn, "HH-0900", reinsert_wait=10)
        conn.close()
        assert conn.sent > k and result.recovered == recovery, result
        with PcscConnection(slot.reader) as c:
            assert verify_issued(world, c).card_id == world.card_id(card)  # type: ignore[attr-defined]
        assert camp.ledger().matches
    camp.close()
