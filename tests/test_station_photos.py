"""Member photos: the one check the CLI (`enrol photo`) and the station screen share — refusals of a
non-image, an oversized upload and an image too small to see a face; the resize to the kept size; a refused
photo leaves the journal as it was; the screen's photo step (CSRF-free test client, real camp service)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from enrolment_station.errors import HouseholdError, PhotoError
from enrolment_station.journal import Journal
from enrolment_station.photos import MAX_SIDE, MAX_UPLOAD_BYTES, prepare_photo, record_photo

LISTING = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0001,123456,1,Ramesh Kumar,M,1971,HEAD
HH-0001,123456,2,Sita Devi,F,1975,SPOUSE
"""


def image(size: tuple[int, int], colour: tuple[int, int, int] = (210, 30, 30), fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def test_a_large_camera_photo_is_kept_as_png_at_most_600_px() -> None:
    png = prepare_photo(image((1200, 1600)))
    with Image.open(io.BytesIO(png)) as kept:
        assert kept.format == "PNG" and kept.size == (450, MAX_SIDE), "shrunk, proportions kept"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"name,village\nRamesh,123456\n", "not_image"),
        (b"", "not_image"),
        (image((1200, 1600))[:200], "not_image"),  # a photo cut short in transfer
        (image((100, 150)), "too_small"),
        (b"\xff" * (MAX_UPLOAD_BYTES + 1), "too_large"),
    ],
)
def test_refusals_say_why(data: bytes, why: str) -> None:
    with pytest.raises(PhotoError) as refused:
        prepare_photo(data)
    assert refused.value.why == why and refused.value.reason == "photo"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    from datetime import UTC, datetime

    from enrolment_station.eligibility import parse_eligibility

    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    j = Journal(tmp_path / "journal.sqlite", now=lambda: now, operator="op-test")
    j.import_list(parse_eligibility(LISTING, current_year=2026, known_households=[]), "list.csv")
    yield j
    j.close()


def test_a_refused_photo_keeps_what_was_recorded_and_a_retake_replaces(journal: Journal) -> None:
    first = record_photo(journal, "HH-0001", 1, image((300, 400), (210, 30, 30)))
    record_photo(journal, "HH-0001", 2, image((300, 400), (30, 30, 210)))
    with pytest.raises(PhotoError):
        record_photo(journal, "HH-0001", 1, b"not a photo")
    assert journal.photo("HH-0001", 1) == first, "the refused photo replaced nothing"
    retake = record_photo(journal, "HH-0001", 1, image((300, 400), (30, 210, 30)))
    assert journal.photo("HH-0001", 1) == retake != first
    assert journal.photo("HH-0001", 2) is not None, "the other member's photo stays"
    with pytest.raises(HouseholdError):
        record_photo(journal, "HH-0001", 9, image((300, 400)))


@pytest.fixture
def client(station_client: tuple[Any, Any]) -> tuple[Any, Any]:
    """The station's app with the listing imported."""
    c, camp = station_client
    c.post("/import", data={"listing": (io.BytesIO(LISTING.encode()), "list.csv")},
           content_type="multipart/form-data")  # fmt: skip
    return c, camp


def post_photo(c: Any, member: int, data: bytes, name: str) -> Any:
    return c.post(f"/household/HH-0001/photo/{member}", data={"photo": (io.BytesIO(data), name)},
                  content_type="multipart/form-data", follow_redirects=True)  # fmt: skip


def test_the_screen_shows_the_photo_and_refuses_a_text_file_in_words(client: tuple[Any, Any]) -> None:
    c, camp = client
    assert c.post("/household/HH-0001/capture").status_code == 302  # fingers first: a photo loses none
    captured = camp.journal.captures("HH-0001")
    assert captured
    page = post_photo(c, 1, image((300, 400)), "face.jpg").get_data(as_text=True)
    assert 'id="photo-1"' in page and "data:image/png;base64," in page, "the preview"
    page = post_photo(c, 2, b"hello", "notes.txt").get_data(as_text=True)
    assert "This file is not a photo." in page and 'data-reason="photo"' in page
    assert camp.journal.photo("HH-0001", 2) is None and camp.journal.photo("HH-0001", 1) is not None
    assert camp.journal.captures("HH-0001") == captured, "the fingers captured are kept"
    c.get("/households?lang=hi")
    page = post_photo(c, 2, image((100, 100)), "tiny.png").get_data(as_text=True)
    assert "चेहरा" in page, "the reason in Hindi"


def _write_card(c: Any, station_world: Any) -> str:
    """Put a blank card in the personalisation reader, write the household's card, open its page."""
    c.application.extensions["station"].hardware.blank = station_world.blank_card()
    response = c.post("/household/HH-0001/card")
    assert response.status_code == 302, response.get_data(as_text=True)[-2000:]
    page: str = c.get(response.headers["Location"]).get_data(as_text=True)
    return page


def test_the_card_checklist_ticks_the_photos_written(client: tuple[Any, Any], station_world: Any) -> None:
    c, camp = client
    assert c.post("/household/HH-0001/capture").status_code == 302
    post_photo(c, 1, image((300, 400)), "face.jpg")
    page = _write_card(c, station_world)
    assert '<li class="ok" data-step="photos">Photos written</li>' in page
    steps = page.split('id="steps">', 1)[1].split("</ol>", 1)[0]
    assert steps.count('class="ok"') == 7 and "pending" not in steps, "every step, photos too"
    [card] = camp.journal.cards(household_id="HH-0001")
    c.get("/households?lang=hi")
    assert "फ़ोटो लिखी गईं" in c.get(f"/card/{card['card_id']}").get_data(as_text=True), "the step in Hindi"


def test_a_card_without_photos_shows_no_photos_step(client: tuple[Any, Any], station_world: Any) -> None:
    c, _ = client
    assert c.post("/household/HH-0001/capture").status_code == 302
    page = _write_card(c, station_world)
    assert 'data-step="photos"' not in page, "no step the card will never reach"
    steps = page.split('id="steps">', 1)[1].split("</ol>", 1)[0]
    assert steps.count('class="ok"') == 6 and "pending" not in steps
