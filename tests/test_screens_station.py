"""Browser test of the enrolment station's screens: Chromium (Playwright) against the real station app and
camp service with simulated cards and synthetic fingers — a camp of two households from the FKO's sign-in to
hand-over and the upload, in English and in Hindi, with screenshots of every screen."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from enrolment_station.journal import CardState, HouseholdStatus
from enrolment_station.journal import Journal as StationJournal
from tests.fixtures.screens import VIEWPORT, LiveServer, Screens, SimStationHardware, serve_app
from tests.fixtures.station import FKO_PIN, TERMINAL_PASSPHRASE, PinnedClock, StationWorld

pytestmark = pytest.mark.slow

CAMP_LIST = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0001,123456,1,Ramesh Kumar,M,1971,HEAD
HH-0001,123456,2,Sita Devi,F,1975,SPOUSE
HH-0002,123456,1,Lakshmi Bai,F,1960,HEAD
HH-0002,123456,2,Chhotu,M,2024,SON
"""


def hindi(text: str) -> bool:
    return any("\u0900" <= ch <= "\u097f" for ch in text)


def in_language(text: str, lang: str, english: str) -> bool:
    """``english`` exactly on an English screen; Hindi with no Latin letter on a Hindi one."""
    import re

    return text == english if lang == "en" else (hindi(text) and not re.search("[A-Za-z]", text))


def assert_file_picker(page: Any, input_id: str, lang: str, button: str) -> None:
    """A file picker the operator can read: a touch-sized button (the input's label) and "no file chosen" in
    the page's language; the native control, which Chromium words in the browser's language ("Choose File"),
    is not drawn but is still there for the form (not display:none) with its attributes."""
    page.wait_for_load_state("load")  # the style sheet applied: measure the styled page
    label = page.locator(f"label.file-button[for={input_id}]")
    box = label.bounding_box()
    assert box is not None and box["height"] >= 48, f"#{input_id}: the picker is a button at least 48 px high"
    assert in_language(label.inner_text(), lang, button), f"#{input_id}: {label.inner_text()!r}"
    line = page.locator(f"#{input_id}-name")
    line.wait_for()  # the page's script shows the line
    assert in_language(line.inner_text(), lang, "No file chosen"), f"#{input_id}: {line.inner_text()!r}"
    native = page.locator(f"#{input_id}")
    drawn = native.bounding_box()
    assert drawn is not None and drawn["width"] <= 1 and drawn["height"] <= 1, "Chromium's own control unseen"
    assert native.evaluate("e => getComputedStyle(e).display") != "none"


def assert_file_shown(page: Any, input_id: str, name: str) -> None:
    """The chosen file's name is on the line below the picker, marked as data (not a word to translate)."""
    line = page.locator(f"#{input_id}-name")
    page.wait_for_function(
        "([id, name]) => document.getElementById(id).textContent === name", arg=[f"{input_id}-name", name]
    )
    assert line.get_attribute("translate") == "no"


@dataclass
class SlowReader:
    """Synthetic fingers at a human pace (0.3 s a capture), so the live image can be seen mid-capture."""

    inner: Any

    def capture(self, household_id: str, member_no: int, finger: int, attempt: int) -> Any:
        import time

        time.sleep(0.3)
        return self.inner.capture(household_id, member_no, finger, attempt)


@dataclass
class StationScreens:
    server: LiveServer
    hw: SimStationHardware
    world: StationWorld
    tmp: Path

    def url(self, path: str) -> str:
        return self.server.url + path

    def journal(self) -> StationJournal:
        return StationJournal(self.world.home / "journal.sqlite", now=lambda: None, operator="test")


@pytest.fixture
def station_screens(
    station_world: StationWorld, station_clock: PinnedClock, tmp_path: Path
) -> Iterator[StationScreens]:
    """The station's app served live over the real camp service, on the world's pinned clock."""
    from enrolment_station.camp import Camp
    from enrolment_station.fingers import SyntheticFingerReader
    from enrolment_station.web import CampThread, RecordingReader, StationContext, create_app
    from enrolment_station.web.station import StationProgress

    fingers = SyntheticFingerReader()
    hw = SimStationHardware(station_world.fko_card, fingers.officer_probe)

    def build() -> Any:
        recorder = RecordingReader(SlowReader(fingers))
        progress = StationProgress()
        camp = Camp(station_world.home, passphrase=TERMINAL_PASSPHRASE, operator="op-anita",
                    camp_id="CAMP-PAT-01", reader=recorder, progress=progress,
                    now=station_world.now)  # fmt: skip
        context = StationContext(camp, hw, recorder, imports_dir=tmp_path / "imports", progress=progress)
        return create_app(context, {"SECRET_KEY": b"screens-test"}), camp.close

    def start() -> Any:
        wsgi = CampThread(build)
        return wsgi, wsgi.close

    server = serve_app(start, threaded=True)
    yield StationScreens(server, hw, station_world, tmp_path)
    server.stop()


def wait_for_live_stage(page: Any, url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the live personalisation stage beside the pending request until the service reports one."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = page.request.get(url).json()
        if data.get("number"):
            return dict(data)
        time.sleep(0.1)
    raise AssertionError("no personalisation stage while the card was written")


def wait_for_live_image(page: Any, url: str, timeout: float = 15.0) -> dict[str, Any]:
    """Poll the live endpoint beside the pending capture request (the page itself is mid-navigation)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = page.request.get(url).json()
        if data.get("image") and "·" in data.get("text", ""):
            return dict(data)
        time.sleep(0.1)
    raise AssertionError("no live finger image while capturing")


def head_photo() -> bytes:
    """A plain red portrait-sized image (what `enrol photo` keeps: PNG)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (300, 400), (210, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def face_image(page: Any) -> Any:
    """The card face the hand-over screen shows (an inline PNG), decoded."""
    import base64
    import io

    from PIL import Image

    src = page.locator("#card-face").get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_camp_of_two_households_from_sign_in_to_hand_over(
    station_screens: StationScreens, screens: Screens, lang: str
) -> None:
    s, page = station_screens, screens.page
    screens.hindi_only = True  # every Hindi screenshot: no English outside names and codes
    page.goto(s.url(f"/signin?lang={lang}"))
    page.wait_for_selector("[data-status-key=sensor].ok")
    screens.shot(lang, "station-signin")
    page.fill("#pin", "000000")
    page.click("#signin")
    page.wait_for_selector(".refusal[data-reason]")  # a wrong PIN is refused in plain words
    page.fill("#pin", FKO_PIN)
    page.click("#signin")
    page.wait_for_selector("#households")
    assert_file_picker(page, "listing", lang, "Choose a file")
    listing = s.tmp / "camp-list.csv"
    listing.write_text(CAMP_LIST)
    page.set_input_files("#listing", str(listing))
    assert_file_shown(page, "listing", "camp-list.csv")
    page.click("#import")
    page.wait_for_selector("#hh-HH-0002")
    assert page.locator("#households tbody tr").count() == 2
    page.fill("#q", "lakshmi")
    page.click("#filter")
    page.wait_for_url("**/households?q=lakshmi*")  # the filtered page itself, not the one before it
    assert page.locator("#households tbody tr").count() == 1, "search by a member's name"
    page.fill("#q", "")
    page.select_option("#status", "listed")
    page.click("#filter")
    page.wait_for_url("**status=listed*")
    assert page.locator("#households tbody tr").count() == 2
    screens.shot(lang, "station-households")
    photo, notes = s.tmp / "ramesh.png", s.tmp / "notes.txt"
    photo.write_bytes(head_photo())
    notes.write_text("not a photo")

    for hid, blank_shot in (("HH-0001", True), ("HH-0002", False)):
        page.click(f"#hh-{hid} a.button")
        page.wait_for_selector("#capture")
        if hid == "HH-0001":  # the photo step: a text file is refused in words, the head's photo is kept
            assert_file_picker(page, "photo-file-2", lang, "Take a photo")
            page.focus("#missing_2")  # by keyboard: Tab reaches the hidden input, Space opens the chooser
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "photo-file-2"
            focus_ring = "e => getComputedStyle(e).outlineStyle"
            assert page.locator("label[for=photo-file-2]").evaluate(focus_ring) == "solid", "focus is seen"
            with page.expect_file_chooser() as chooser:
                page.keyboard.press("Space")
            chooser.value.set_files(str(notes))
            assert_file_shown(page, "photo-file-2", "notes.txt")
            page.click("#photo-save-2")
            page.wait_for_selector("#photo-step-2 .refusal[data-reason=photo]")
            assert hindi(page.inner_text("#photo-step-2 .refusal")) == (lang == "hi"), "the reason in words"
            assert page.locator("img.member-photo").count() == 0
            assert_file_picker(page, "photo-file-1", lang, "Take a photo")
            with page.expect_file_chooser() as chooser:  # with the mouse (or a finger): the button opens it
                page.click("label[for=photo-file-1]")
            chooser.value.set_files(str(photo))
            assert_file_shown(page, "photo-file-1", "ramesh.png")
            page.click("#photo-save-1")
            page.wait_for_selector("#photo-1")
            assert page.locator("#photo-file-1").get_attribute("capture") == "user"
            assert (page.locator("#photo-file-1").get_attribute("accept") or "").startswith("image/")
            assert page.locator("#photo-file-1").get_attribute("required") is not None
            assert_file_picker(page, "photo-file-1", lang, "Retake the photo")
            screens.shot(lang, "station-photo")
        if hid == "HH-0001":
            page.select_option("#missing_1", "2")  # Ramesh has lost his right index: another finger
            screens.shot(lang, "station-capture")
        page.click("#capture", no_wait_after=True)
        if hid == "HH-0001":  # the live image and quality are served while the capture request runs
            live = wait_for_live_image(page, s.url("/live/capture.json"))
            assert live["member"] in (1, 2) and live["text"]
            page.wait_for_timeout(900)  # the page's own poll (every 0.4 s) shows it too
            screens.shot_while_waiting(lang, "station-capture-live")
        page.wait_for_selector("#write-card")
        assert page.locator("img.finger-image").count() >= 2, "the captured images are shown"
        if hid == "HH-0001":
            assert page.locator("#member-1 .badge.warn").count() >= 1, "the missing finger is recorded"
            screens.shot(lang, "station-captured")
        else:
            assert page.locator("#member-2 .badge.warn").count() == 1, "the child has no fingerprints"
        s.hw.blank = s.world.blank_card()
        if blank_shot:  # a card at a real card's pace: the live panel names each stage while it is written
            s.hw.apdu_delay = 0.2
            page.click("#write-card", no_wait_after=True)
            stage = wait_for_live_stage(page, s.url("/live/card.json"))
            assert stage["number"] >= 1 and hindi(stage["text"]) == (lang == "hi")
            page.wait_for_timeout(500)  # the page's own poll (every 0.4 s) shows it too
            screens.shot_while_waiting(lang, "station-personalisation")
            s.hw.apdu_delay = 0.0
        else:
            page.click("#write-card")
        page.wait_for_selector("#card-face")
        stage = page.request.get(s.url("/live/card.json")).json()
        assert (stage["stage"], stage["number"], stage["of"]) == ("activating", 5, 5), (
            "the service's last stage"
        )
        assert ("5" in stage["text"]) and (hindi(stage["text"]) == (lang == "hi")), "named in the language"
        assert page.locator("#steps li.ok").count() == (7 if hid == "HH-0001" else 6), "photos: only with one"
        face = face_image(page)
        assert face.size == (1011, 638), "the printed face (CR80 at 300 dpi) is what the screen shows"
        r, g, b = face.getpixel((160, 285))  # type: ignore[misc]  # the middle of the photo box
        assert (hid == "HH-0001") == (r > 180 and g < 80 and b < 80), "the head's photo, taken at the screen"
        if blank_shot:
            screens.shot(lang, "station-card-face")
        page.check("#confirm")
        page.click("#handover")
        page.wait_for_selector("#households")
        s.hw.blank = None

    page.select_option("#status", "handed_over")
    page.click("#filter")
    page.wait_for_url("**status=handed_over*")
    assert page.locator("#households tbody tr").count() == 2
    page.click("#nav-summary")
    page.click("#read-ledger")
    page.wait_for_selector("#ledger-match.ok")
    page.click("#upload-now")
    page.wait_for_selector(".flash.ok")
    assert "2" in page.inner_text("#counts")
    screens.shot(lang, "station-summary")
    journal = s.journal()
    try:
        assert journal.household_status("HH-0001") is HouseholdStatus.HANDED_OVER
        assert journal.household_status("HH-0002") is HouseholdStatus.HANDED_OVER
        assert len(journal.cards(state=CardState.HANDED_OVER)) == 2
        assert len(journal.pending_uploads()) == 2, "camp batch and FKO ledger batch wait for the network"
    finally:
        journal.close()


def test_file_pickers_work_without_javascript(station_screens: StationScreens, chromium_browser: Any) -> None:
    """With scripts off the pickers are still the operator's way in: the button (the input's label) opens the
    chooser, the file posts with its form; the file-name line stays hidden rather than say "no file chosen"
    after a file was chosen."""
    s = station_screens
    context = chromium_browser.new_context(viewport=VIEWPORT, java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(s.url("/signin?lang=hi"))
        page.fill("#pin", FKO_PIN)
        page.click("#signin")
        page.wait_for_selector("#households")
        listing = s.tmp / "camp-list.csv"
        listing.write_text(CAMP_LIST)
        with page.expect_file_chooser() as chooser:
            page.click("label[for=listing]")
        chooser.value.set_files(str(listing))
        assert page.locator("#listing-name").is_hidden(), "no line that cannot follow the choice"
        page.click("#import")
        page.wait_for_selector("#hh-HH-0002")
        page.click("#hh-HH-0001 a.button")
        page.wait_for_selector("#capture")
        photo = s.tmp / "ramesh.png"
        photo.write_bytes(head_photo())
        with page.expect_file_chooser() as chooser:
            page.click("label[for=photo-file-1]")
        chooser.value.set_files(str(photo))
        page.click("#photo-save-1")
        page.wait_for_selector("#photo-1")
    finally:
        context.close()
