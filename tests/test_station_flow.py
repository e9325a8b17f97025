"""Station flows end to end with in-process cards (fast) and the sensor simulator over pyfingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardsvc.beneficiary.protocol import Lifecycle
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.bio.capture import FingerprintSensor
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.batch import BatchKind
from cardsvc.pki.chain import validate_chain
from enrolment_station.camp import Camp
from enrolment_station.errors import DuplicateFingerError, SessionError
from enrolment_station.fingers import SensorFingerReader
from enrolment_station.journal import CardState, HouseholdStatus
from hardware_sims.sensor.simulator import SensorSimulator
from tests.fixtures.station import FKO_PIN, TERMINAL_PASSPHRASE, PinnedClock, StationWorld

LIST = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0001,123456,1,Ramesh Kumar,M,1971,HEAD
HH-0001,123456,2,Sita Devi,F,1975,SPOUSE
HH-0002,123456,1,Lakshmi Bai,F,1960,HEAD
HH-0003,123456,1,Mohan Lal,M,1980,HEAD
HH-0003,123456,2,Geeta Lal,F,1984,SPOUSE
"""


@pytest.fixture
def camp(
    station_world: StationWorld, station_clock: PinnedClock, sensor_sim: SensorSimulator, tmp_path: Path
):
    """A camp on the world's pinned clock (its FKO session never meets midnight)."""
    sensor = FingerprintSensor(sensor_sim.port)
    sensor.open()
    reader = SensorFingerReader(sensor, placer=sensor_sim)
    c = Camp(station_world.home, passphrase=TERMINAL_PASSPHRASE, operator="op-anita", camp_id="CAMP-PAT-01",
             reader=reader, now=station_world.now)  # fmt: skip
    c.reader = reader  # type: ignore[attr-defined]
    listing = tmp_path / "list.csv"
    listing.write_text(LIST)
    c.import_list(listing)
    yield c
    c.close()
    sensor.close()


def open_session(camp: Camp, world: StationWorld, pin: str = FKO_PIN) -> InProcessConnection:
    conn = InProcessConnection(world.fko_card)
    camp.open_session(conn, pin=pin, fingerprint=camp.reader.officer_probe)  # type: ignore[attr-defined]
    return conn


def verifier_accepts(world: StationWorld, card) -> bool:
    """What any terminal checks offline: ACTIVATED, chain to the root, the chip's key, committed content."""
    with InProcessConnection(card) as conn:
        session = BeneficiarySession(conn)
        status = session.status()
        if status.lifecycle is not Lifecycle.ACTIVATED:
            return False
        public = session.read_public(status)
        assert public.card_certificate is not None and public.fko_certificate is not None
        district = world.km.store.certificate(public.fko_certificate.car)
        validate_chain([district, public.fko_certificate, public.card_certificate], world.anchor,
                       now=world.now())
        att = session.internal_authenticate(b"12345678abcdefgh", status.card_id,
                                            public.card_certificate.public_point)
        return att.lifecycle is Lifecycle.ACTIVATED
    return False


def test_household_enrolled_activated_handed_over_and_uploaded(camp: Camp, station_world: StationWorld,
                                                                tmp_path: Path) -> None:
    fko_conn = open_session(camp, station_world)
    card = station_world.blank_card()
    result = camp.enrol_household("HH-0001", InProcessConnection(card))
    assert result.card_id == station_world.card_id(card)
    assert [m.name for m in result.profile.members] == ["Ramesh Kumar", "Sita Devi"]
    assert verifier_accepts(station_world, card)
    assert camp.journal.household_status("HH-0001") is HouseholdStatus.HANDED_OVER
    assert (camp.faces_dir / f"{result.card_id}.png").read_bytes()[:4] == b"\x89PNG"
    assert (camp.faces_dir / f"{result.card_id}.pdf").read_bytes()[:4] == b"%PDF"
    check = camp.ledger()
    assert check.matches and check.ledger_count == 1
    batches = camp.upload_batches(tmp_path / "out")
    kinds = sorted(b.batch.kind for b in batches)
    assert kinds == [BatchKind.CAMP, BatchKind.FKO_LEDGER]
    camp_batch = next(b for b in batches if b.batch.kind is BatchKind.CAMP)
    assert len(camp_batch.batch.items) == 1
    # idempotent: nothing new, the same stored batches again
    again = camp.upload_batches()
    assert [b.content_hash() for b in again] == [b.content_hash() for b in batches]
    fko_conn.close()


def test_duplicate_finger_of_another_member_is_refused(camp: Camp, station_world: StationWorld) -> None:
    open_session(camp, station_world)
    reader = camp.reader  # type: ignore[attr-defined]
    from enrolment_station.fingers import finger_seed

    reader.seeds[("HH-0003", 2, 2)] = finger_seed("HH-0002", 1, 2)  # Geeta presents Lakshmi's right index
    camp.capture_household("HH-0002")
    with pytest.raises(DuplicateFingerError, match="HH-0002") as exc:
        camp.capture_household("HH-0003")
    assert exc.value.match == "HH-0002/1/2"
    assert camp.journal.household_status("HH-0003") is HouseholdStatus.LISTED
    assert camp.journal.events("capture.duplicate")[0]["details"]["matches"] == "HH-0002/1/2"


def test_session_refused_with_wrong_pin_and_closes_when_fko_card_is_pulled(
    camp: Camp, station_world: StationWorld
) -> None:
    with pytest.raises(SessionError, match="wrong FKO PIN; 2 tries left"):
        open_session(camp, station_world, pin="000000")
    with pytest.raises(SessionError, match="no FKO session"):
        camp.session()
    conn = open_session(camp, station_world)
    camp.session()
    conn.close()  # unpowers the FKO card: PIN and fingerprint state are gone with it
    with pytest.raises(SessionError, match="closed"):
        camp.capture_household("HH-0002")
    assert camp.journal.events("session.close")[-1]["details"]["reason"].startswith("FKO card")
    assert camp.journal.cards(state=CardState.ACTIVATED) == []
