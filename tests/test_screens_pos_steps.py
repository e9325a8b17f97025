"""The clerk's verification steps without a browser: which step is ticked, failed, being checked or still
to come for each kind of reading, and the live endpoint answering only the page that started the reading."""

from __future__ import annotations

from unittest.mock import MagicMock

from point_of_service.web.terminal import CardReading
from point_of_service.web.views import step_states

PROBLEM = {"code": "x", "problem": "p", "next_step": "n"}


def states(reading: CardReading, verified: bool = False) -> list[str]:
    return [s["state"] for s in step_states(reading, verified)]


def test_while_reading_the_passed_steps_are_ticked_and_the_next_is_being_checked() -> None:
    reading = CardReading(passed=["present", "activated", "chain"])
    assert states(reading) == ["ok", "ok", "ok", "current", "pending", "pending", "pending", "pending"]


def test_a_refusal_stops_at_its_step_and_nothing_after_it_is_ticked() -> None:
    reading = CardReading(passed=["present", "activated", "chain", "revocation", "policy"])
    reading.refused("challenge", PROBLEM)
    assert states(reading) == ["ok", "ok", "ok", "ok", "ok", "failed", "pending", "pending"]


def test_centrals_register_refusing_after_the_card_steps_unticks_the_later_ones() -> None:
    reading = CardReading(passed=["present", "activated", "chain", "revocation", "policy", "challenge",
                                  "terminal-auth", "profile"])  # fmt: skip
    reading.refused("revocation", PROBLEM)  # central blacklisted the card: checked after the card's steps
    assert states(reading) == ["ok", "ok", "ok", "failed", "pending", "pending", "pending", "pending"]


def test_a_card_error_mid_way_fails_the_step_it_happened_in() -> None:
    reading = CardReading(passed=["present", "activated"])
    reading.refused("card", PROBLEM)
    assert states(reading) == ["ok", "ok", "failed", "pending", "pending", "pending", "pending", "pending"]


def test_a_refusal_before_the_card_facility_revoked_ticks_nothing_and_fails_no_card_step() -> None:
    reading = CardReading()
    reading.refused("facility", PROBLEM)
    assert states(reading) == ["pending"] * 8


def test_a_verified_card_has_every_step_ticked() -> None:
    assert states(CardReading(), verified=True) == ["ok"] * 8


def test_the_live_steps_answer_only_the_page_that_started_the_reading() -> None:
    from point_of_service.web import create_app

    terminal = MagicMock()
    terminal.reading = CardReading(token="page1", passed=["present"])
    client = create_app(terminal, {"SECRET_KEY": b"t"}).test_client()
    mine = client.get("/live/steps.json?token=page1").get_json()
    assert [s["state"] for s in mine["steps"]][:2] == ["ok", "current"] and not mine["done"]
    other = client.get("/live/steps.json?token=page2").get_json()
    assert [s["state"] for s in other["steps"]] == ["current"] + ["pending"] * 7, (
        "an older reading is not shown"
    )
    terminal.reading.refused("activated", PROBLEM)
    done = client.get("/live/steps.json?token=page1").get_json()
    assert done["done"] and done["problem"] == PROBLEM
