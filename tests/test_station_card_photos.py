"""Members' photos go onto the card at personalisation: each journal photo becomes a small JPEG
(enrolment_station.photos.card_photo) written before the activation, so the FKO-certified content digest
covers it; the card reads back exactly those photos and a terminal's verification accepts the card. A
household without photos gets a card without a photo set, as before; five members' busy photos fit."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.transport import CardConnection
from enrolment_station.camp import Camp
from enrolment_station.fingers import SyntheticFingerReader
from enrolment_station.photos import CARD_PHOTO_BYTES, CARD_PHOTO_SIZE, card_photo, record_photo
from tests.fixtures.station import (
    FKO_PIN,
    TERMINAL_PASSPHRASE,
    OpenCamp,
    PinnedClock,
    StationWorld,
    verify_issued,
)


def face(seed: int, size: tuple[int, int] = (480, 600)) -> bytes:
    """A busy image (noise compresses badly: the worst case for the card budget)."""
    rnd = random.Random(seed)
    im = Image.new("RGB", size)
    im.putdata(
        [(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(size[0] * size[1])]
    )
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_a_card_photo_is_a_small_jpeg_of_the_card_shape() -> None:
    for data in (face(1), face(2, (600, 450))):
        jpeg = card_photo(data)
        assert len(jpeg) <= CARD_PHOTO_BYTES
        with Image.open(io.BytesIO(jpeg)) as im:
            assert (im.format, im.size) == ("JPEG", CARD_PHOTO_SIZE)
        assert card_photo(data) == jpeg, "the same photo gives the same bytes (a recovery rewrites them)"


@pytest.mark.parametrize("via", ["in-process", "pcscd"])
def test_the_activated_card_carries_the_members_photos(
    station_camp: OpenCamp, station_world: StationWorld, request: pytest.FixtureRequest, via: str
) -> None:
    """Written, certified, read back and verified in-process, and through pcscd + vpcd + pyscard (the
    photo set's extended-length writes and reads over the real PC/SC stack)."""
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    camp.capture_household("HH-0001")
    kept = {
        1: record_photo(camp.journal, "HH-0001", 1, face(1)),
        2: record_photo(camp.journal, "HH-0001", 2, face(2)),
    }
    card = station_world.blank_card()
    served = request.getfixturevalue("serve_card")(slot=0, card=card) if via == "pcscd" else None

    def connect() -> CardConnection:
        if served is None:
            return InProcessConnection(card)
        return PcscConnection(served.reader, exclusive=True)

    with connect() as c:
        result = camp.personalise(c, "HH-0001")
    with connect() as c:
        verified = verify_issued(station_world, c)  # the terminal check the POS runs
        assert verified.card_id == result.card_id  # type: ignore[attr-defined]
        photos = BeneficiarySession(c).read_photos()
    # member index 0 is the head (list member 1), 1 the spouse (list member 2)
    assert [(p.member_index, p.jpeg) for p in photos] == [(0, card_photo(kept[1])), (1, card_photo(kept[2]))]


def test_a_household_without_photos_gets_no_photo_set(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    camp.capture_household("HH-0002")
    card = station_world.blank_card()
    camp.personalise(InProcessConnection(card), "HH-0002")
    with InProcessConnection(card) as c:
        verify_issued(station_world, c)
        assert BeneficiarySession(c).read_photos() == ()


FIVE = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0500,123456,1,Mohan Lal,M,1970,HEAD
HH-0500,123456,2,Geeta Devi,F,1974,SPOUSE
HH-0500,123456,3,Ravi Kumar,M,1995,SON
HH-0500,123456,4,Pooja Kumari,F,1998,DAUGHTER
HH-0500,123456,5,Kamla Devi,F,1948,MOTHER
"""


def test_five_members_with_busy_photos_fit_the_card(
    station_world: StationWorld, station_clock: PinnedClock, tmp_path: Path
) -> None:
    reader = SyntheticFingerReader()
    camp = Camp(
        station_world.home,
        passphrase=TERMINAL_PASSPHRASE,
        operator="op-anita",
        camp_id="CAMP-P5",
        reader=reader,
        now=station_world.now,
    )
    try:
        (tmp_path / "five.csv").write_text(FIVE)
        camp.import_list(tmp_path / "five.csv")
        camp.open_session(
            InProcessConnection(station_world.fko_card), pin=FKO_PIN, fingerprint=reader.officer_probe
        )
        camp.capture_household("HH-0500")
        for n in range(1, 6):
            record_photo(camp.journal, "HH-0500", n, face(10 + n))
        card = station_world.blank_card()
        camp.personalise(InProcessConnection(card), "HH-0500")
        with InProcessConnection(card) as c:
            verify_issued(station_world, c)
            assert [p.member_index for p in BeneficiarySession(c).read_photos()] == [0, 1, 2, 3, 4]
    finally:
        camp.close()
