"""The FKO session: bound to the terminal, the camp and the day (both signatures verify), refused without
the right card, PIN or fingerprint, and closed by the day's end and by inactivity (time injected)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.pki import officer as fmt
from cardsvc.pki.signer import verify_signature
from enrolment_station.camp import Camp
from enrolment_station.errors import SessionClosedError, SessionError
from enrolment_station.fingers import SyntheticFingerReader
from tests.fixtures.station import FKO, FKO_PIN, TERMINAL_PASSPHRASE, PinnedClock, StationWorld

LIST = (
    "household_id,village_code,member_no,name,gender,year_of_birth,relation\n"
    "HH-0700,111111,1,Ram Devi,F,1960,HEAD\n"
)


class Clock:
    """09:00 of the world's pinned day, moved only by the test."""

    def __init__(self, day: PinnedClock) -> None:
        self.t = day().replace(hour=9, minute=0)

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def clocked(
    station_world: StationWorld, station_clock: PinnedClock, tmp_path: Path
) -> tuple[Camp, Clock, SyntheticFingerReader]:
    clock = Clock(station_clock)
    reader = SyntheticFingerReader()
    camp = Camp(
        station_world.home,
        passphrase=TERMINAL_PASSPHRASE,
        operator="op-x",
        camp_id="CAMP-S",
        reader=reader,
        now=clock,
    )
    (tmp_path / "l.csv").write_text(LIST)
    camp.import_list(tmp_path / "l.csv")
    return camp, clock, reader


def test_binding_is_signed_by_the_terminal_and_the_fko_card(clocked, station_world: StationWorld) -> None:
    camp, clock, reader = clocked
    fko = camp.open_session(
        InProcessConnection(station_world.fko_card), pin=FKO_PIN, fingerprint=reader.officer_probe
    )
    row = camp.journal.session_row(fko.session_id)
    binding = bytes.fromhex(row["binding"])
    assert binding.startswith(b"RSBY-CAMP-SESSION\x01INTRM-ENR-0001\x00" + FKO.encode() + b"\x00CAMP-S\x00")
    assert clock().date().isoformat().encode() in binding
    verify_signature(camp.identity.terminal.public_key(), binding, bytes.fromhex(row["terminal_sig"]))
    # the FKO card signed a ledger statement over SHA-256(binding): only that card, for this binding
    count, head = 0, bytes(32)  # a fresh card: empty ledger
    statement = fmt.ledger_statement(FKO, count, head, hashlib.sha256(binding).digest())
    verify_signature(fko.officer_cert.public_point, statement, bytes.fromhex(row["fko_sig"]))


def test_wrong_fingerprint_is_refused(clocked, station_world: StationWorld) -> None:
    camp, _, reader = clocked
    with pytest.raises(SessionError, match="fingerprint does not match the card; 4 tries left"):
        camp.open_session(
            InProcessConnection(station_world.fko_card),
            pin=FKO_PIN,
            fingerprint=lambda: reader.officer_probe(seed=4242),
        )
    assert camp.journal.events("session.refused")[0]["details"]["why"].startswith("fingerprint mismatch")


def test_a_non_officer_card_is_refused(clocked, station_world: StationWorld) -> None:
    camp, _, reader = clocked
    with pytest.raises(SessionError, match="no FKO card answers"):
        camp.open_session(
            InProcessConnection(station_world.blank_card()), pin=FKO_PIN, fingerprint=reader.officer_probe
        )


@pytest.mark.parametrize(
    ("advance", "reason"), [(timedelta(minutes=31), "idle"), (timedelta(days=1), "day ended")]
)
def test_session_closes_after_idle_time_and_at_the_end_of_the_day(
    clocked, station_world: StationWorld, advance: timedelta, reason: str
) -> None:
    camp, clock, reader = clocked
    camp.open_session(
        InProcessConnection(station_world.fko_card), pin=FKO_PIN, fingerprint=reader.officer_probe
    )
    clock.t += timedelta(minutes=29)
    camp.session()  # still open, and the idle timer starts again
    clock.t += advance
    with pytest.raises(SessionClosedError, match=reason):
        camp.capture_household("HH-0700")
    assert camp.journal.events("session.close")[-1]["details"]["reason"].startswith(reason)
    assert camp.journal.captures("HH-0700") == []


def test_a_full_fko_ledger_closes_the_session_saying_why(
    station_world: StationWorld, station_clock: PinnedClock, tmp_path: Path
) -> None:
    from enrolment_station.rehearsal import build_world

    small = tmp_path / "small"
    small.mkdir()
    world = build_world(small, now=station_clock)
    world.fko_card.applications[0].ledger_capacity = 1  # a nearly full officer card
    reader = SyntheticFingerReader()
    camp = Camp(world.home, passphrase=TERMINAL_PASSPHRASE, operator="op-x", camp_id="CAMP-F", reader=reader,
                now=world.now)  # fmt: skip
    (tmp_path / "l.csv").write_text(LIST + "HH-0701,111111,1,Shyam Lal,M,1961,HEAD\n")
    camp.import_list(tmp_path / "l.csv")
    camp.open_session(InProcessConnection(world.fko_card), pin=FKO_PIN, fingerprint=reader.officer_probe)
    camp.enrol_household("HH-0700", InProcessConnection(world.blank_card()))
    with pytest.raises(SessionClosedError, match="ledger is full"):
        camp.enrol_household("HH-0701", InProcessConnection(world.blank_card()))
    assert camp.journal.events("session.close")[-1]["details"]["reason"] == "FKO card ledger full"
    camp.close()
