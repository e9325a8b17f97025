"""The station screens' refusals without a browser (Flask's test client, the real camp service): a bad
eligibility list names every bad row and imports nothing; writing a card with no card in the reader says so;
the live endpoints answer from memory."""

from __future__ import annotations

from typing import Any

from enrolment_station.journal import HouseholdStatus

GOOD = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0001,123456,1,Ramesh Kumar,M,1971,HEAD
"""
BAD = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0009,123456,1,Test,M,1971,HEAD
HH-0010,123456,1,Meena Devi,Q,1990,HEAD
"""


def upload(client: Any, text: str, name: str = "list.csv") -> Any:
    import io

    return client.post("/import", data={"listing": (io.BytesIO(text.encode()), name)},
                       content_type="multipart/form-data", follow_redirects=True)  # fmt: skip


def test_bad_list_names_every_bad_row_and_imports_nothing(station_client: tuple[Any, Any]) -> None:
    client, camp = station_client
    page = upload(client, BAD).get_data(as_text=True)
    assert "The eligibility list was refused; nothing was imported." in page
    assert "Line 2, name:" in page and "Line 3, gender:" in page, "the dummy name and the bad gender"
    assert camp.journal.household_ids() == []
    assert client.get("/households?lang=hi").status_code == 200  # the operator switches to Hindi
    page = upload(client, BAD).get_data(as_text=True)
    assert "पंक्ति 3, लिंग:" in page, "where the row is wrong, in the operator's language"
    client.get("/households?lang=en")
    assert "1 households imported." in upload(client, GOOD).get_data(as_text=True)


def test_writing_a_card_with_no_card_in_the_reader_is_refused_in_words(
    station_client: tuple[Any, Any],
) -> None:
    client, camp = station_client
    upload(client, GOOD)
    assert client.post("/household/HH-0001/capture").status_code == 302
    assert camp.journal.household_status("HH-0001") is HouseholdStatus.CAPTURED
    live = client.get("/live/capture.json").get_json()
    assert live["image"].startswith("data:image/png;base64,") and live["member"] == 1
    page = client.post("/household/HH-0001/card").get_data(as_text=True)
    assert "No card in the reader." in page and "Insert the card and try again." in page
    assert camp.journal.household_status("HH-0001") is HouseholdStatus.CAPTURED


def test_steps_need_the_fko_session(station_client: tuple[Any, Any]) -> None:
    client, _ = station_client
    client.post("/signout")
    response = client.get("/households")
    assert response.status_code == 302 and response.headers["Location"].endswith("/signin")
