"""The station tests' time: the FKO session still ends when the UTC date changes, and the station fixtures
(``station_camp``, ``station_client``) run on REHEARSAL_DAY at 12:00 UTC plus the time elapsed, so none of
their sessions meets midnight, whatever hour CI runs at."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cardsvc.card.inprocess import InProcessConnection
from enrolment_station.camp import Camp
from enrolment_station.errors import SessionClosedError
from enrolment_station.fingers import SyntheticFingerReader
from tests.fixtures.station import (
    FKO_PIN,
    REHEARSAL_DAY,
    TERMINAL_PASSPHRASE,
    PinnedClock,
    StationWorld,
    build_world,
)

LIST = (
    "household_id,village_code,member_no,name,gender,year_of_birth,relation\n"
    "HH-0800,222222,1,Savitri Devi,F,1958,HEAD\n"
)
NOON = datetime(REHEARSAL_DAY.year, REHEARSAL_DAY.month, REHEARSAL_DAY.day, 12, tzinfo=UTC)


class SetClock:
    """A clock the test sets: the station, the FKO card and the blank cards all read it."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def test_a_session_opened_before_midnight_is_refused_after_it(tmp_path: Path) -> None:
    clock = SetClock(NOON)
    world = build_world(tmp_path, now=clock)
    reader = SyntheticFingerReader()
    with Camp(world.home, passphrase=TERMINAL_PASSPHRASE, operator="op-x", camp_id="CAMP-MID", reader=reader,
              now=world.now) as camp:  # fmt: skip
        (tmp_path / "l.csv").write_text(LIST)
        camp.import_list(tmp_path / "l.csv")
        fko = InProcessConnection(world.fko_card)
        clock.t = NOON.replace(hour=23, minute=59, second=59)
        camp.open_session(fko, pin=FKO_PIN, fingerprint=reader.officer_probe)
        camp.session()  # open on the pinned day
        clock.t += timedelta(seconds=2)  # 00:00:01 the next day: two seconds, far from the idle timeout
        with pytest.raises(SessionClosedError, match="day ended"):
            camp.capture_household("HH-0800")
        assert camp.journal.events("session.close")[-1]["details"]["reason"] == "day ended"
        assert camp.journal.captures("HH-0800") == []
        # the officer opens the camp again: the new session is bound to the new day
        reopened = camp.open_session(fko, pin=FKO_PIN, fingerprint=reader.officer_probe)
        assert reopened.day == (REHEARSAL_DAY + timedelta(days=1)).isoformat()
        camp.session()


@pytest.mark.parametrize("fixture", ["station_camp", "station_client"])
def test_the_station_fixtures_run_at_noon_of_the_pinned_day(
    fixture: str, station_world: StationWorld, station_clock: PinnedClock, request: pytest.FixtureRequest
) -> None:
    """(``station_clock`` asked for by name: the fixture is looked up only once the world exists.)"""
    opened = request.getfixturevalue(fixture)
    camp = opened.camp if fixture == "station_camp" else opened[1]
    assert isinstance(camp, Camp)
    assert NOON <= station_world.now() < NOON + timedelta(hours=1)  # 11 hours from midnight, at any wall time
    assert camp.session().day == REHEARSAL_DAY.isoformat()
    assert NOON <= camp.now() < NOON + timedelta(hours=1)
    for card in (station_world.fko_card, station_world.blank_card()):  # the cards' clocks agree with it
        assert datetime.fromtimestamp(card.clock(), UTC).date() == REHEARSAL_DAY


def test_the_pinned_clock_moves_on_with_the_time_elapsed() -> None:
    clock = PinnedClock(NOON, origin=time.monotonic() - 90)  # made 90 s ago
    assert NOON + timedelta(seconds=90) <= clock() < NOON + timedelta(hours=1)
