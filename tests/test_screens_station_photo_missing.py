"""The photo step saved with no photo chosen: the station screen says so beside the picker, in the page's
language, and posts nothing (Chromium's own "Please select a file" would be worded in the browser's
language, over a picker the operator cannot see). Choosing the photo then saves it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.screens import Screens
from tests.fixtures.station import FKO_PIN
from tests.test_screens_station import (  # noqa: F401  (station_screens is a fixture)
    CAMP_LIST,
    StationScreens,
    head_photo,
    hindi,
    station_screens,
)

pytestmark = pytest.mark.slow

MISSING = {"en": "Take or choose the photo first.", "hi": "पहले फ़ोटो लें या चुनें।"}


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_saving_the_photo_step_without_a_photo_says_so_in_the_page_language(
    station_screens: StationScreens,  # noqa: F811
    screens: Screens,
    lang: str,
) -> None:
    s, page = station_screens, screens.page
    page.goto(s.url(f"/signin?lang={lang}"))
    page.fill("#pin", FKO_PIN)
    page.click("#signin")
    page.wait_for_selector("#households")
    listing = s.tmp / "camp-list.csv"
    listing.write_text(CAMP_LIST)
    page.set_input_files("#listing", str(listing))
    page.click("#import")
    page.wait_for_selector("#hh-HH-0001")
    page.click("#hh-HH-0001 a.button")
    page.wait_for_selector("#capture")
    page.wait_for_load_state("load")  # screens.js has wired the pickers
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)

    page.click("#photo-save-1")
    line = page.locator("#photo-file-1-name")
    line.wait_for(state="visible")
    assert line.inner_text() == MISSING[lang] and hindi(line.inner_text()) == (lang == "hi")
    assert "missing" in (line.get_attribute("class") or ""), "shown as a problem, not as a file name"
    message: Any = page.eval_on_selector("#photo-file-1", "i => i.validationMessage")
    assert message == MISSING[lang], "the browser's own bubble, if it shows, says the same"
    assert posted == [] and s.journal().photo("HH-0001", 1) is None, "nothing was sent"

    photo = s.tmp / "ramesh.png"
    photo.write_bytes(head_photo())
    page.set_input_files("#photo-file-1", str(photo))
    assert line.inner_text() == "ramesh.png" and "missing" not in (line.get_attribute("class") or "")
    page.click("#photo-save-1")
    page.wait_for_selector("#photo-1")
    assert s.journal().photo("HH-0001", 1) is not None, "the photo chosen afterwards is saved"
