"""Members' photos go onto the card at personalisation: each journal photo becomes a small JPEG
(enrolment_station.photos.card_photo) written before the activation, so the FKO-certified content digest
covers it; the card reads back exactly those photos and a terminal's verification accepts the card. A
household without photos gets a card without a photo set, as before."""

from __future__ import annotations

import io
import random

from PIL import Image

from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.inprocess import InProcessConnection
from enrolment_station.camp import Camp
from enrolment_station.photos import CARD_PHOTO_BYTES, CARD_PHOTO_SIZE, card_photo, record_photo
from tests.fixtures.station import OpenCamp, StationWorld, verify_issued


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


def test_the_activated_card_carries_the_members_photos(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    camp.capture_household("HH-0001")
    kept = {
        1: record_photo(camp.journal, "HH-0001", 1, face(1)),
        2: record_photo(camp.journal, "HH-0001", 2, face(2)),
    }
    card = station_world.blank_card()
    result = camp.personalise(InProcessConnection(card), "HH-0001")
    with InProcessConnection(card) as c:
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
