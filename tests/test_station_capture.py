"""Capture rules with synthetic impressions (no sensor; the sensor path is in test_station_flow): the quality
gate retries, the ways out are recorded (never a silent skip), duplicates inside a household are stopped."""

from __future__ import annotations

import dataclasses

import pytest

from cardsvc.bio.capture import CaptureResult
from enrolment_station.camp import Camp
from enrolment_station.capture import Finger
from enrolment_station.errors import DuplicateFingerError, PersonalisationError
from enrolment_station.fingers import SyntheticFingerReader, finger_seed
from enrolment_station.journal import CaptureStatus, HouseholdStatus, MemberException
from tests.fixtures.station import OpenCamp, StationWorld


class PoorFirst(SyntheticFingerReader):
    """The first ``poor`` captures of every finger come back below the quality gate."""

    def __init__(self, poor: int) -> None:
        super().__init__()
        self.poor = poor
        self.calls: list[tuple[str, int, int, int]] = []

    def capture(self, household_id: str, member_no: int, finger: int, attempt: int) -> CaptureResult:
        self.calls.append((household_id, member_no, finger, attempt))
        result = super().capture(household_id, member_no, finger, attempt)
        return dataclasses.replace(result, quality=10) if attempt <= self.poor else result


def _camp(station_camp: OpenCamp) -> Camp:
    assert isinstance(station_camp.camp, Camp)
    return station_camp.camp


def test_quality_gate_retries_then_takes_the_finger(station_camp: OpenCamp) -> None:
    camp = _camp(station_camp)
    reader = PoorFirst(poor=1)
    camp.capture.reader = reader
    outcome = camp.capture_household("HH-0002")
    assert sorted(outcome[0].captured) == [Finger.RIGHT_INDEX, Finger.LEFT_INDEX]
    assert [c[3] for c in reader.calls] == [1, 2, 1, 2]
    rows = camp.journal.captures("HH-0002")
    assert [r.status for r in rows] == [CaptureStatus.CAPTURED] * 2


def test_worn_fingers_fall_back_and_are_recorded(station_camp: OpenCamp) -> None:
    camp = _camp(station_camp)
    camp.capture.reader = PoorFirst(poor=3)  # every attempt of every finger fails the gate
    (outcome,) = camp.capture_household("HH-0002")
    assert outcome.captured == {}
    assert set(outcome.exceptions.values()) == {MemberException.WORN_FINGERPRINTS}
    assert len(outcome.exceptions) == 6  # both index fingers and all four fallbacks were tried
    assert camp.journal.member_statuses("HH-0002")[1] == ("exception", "worn_fingerprints")
    with pytest.raises(PersonalisationError, match="no captured finger"):
        camp.personaliser.build_templates(camp.personaliser.plan_new("HH-0002", camp.session()))


def test_ways_out_are_recorded_with_the_operator(station_camp: OpenCamp) -> None:
    camp = _camp(station_camp)
    outcomes = camp.capture_household(
        "HH-0001",
        member_exceptions={2: MemberException.ABSENT},
        unavailable={1: {Finger.RIGHT_INDEX: MemberException.INJURED_FINGER}},
    )
    head, spouse = outcomes
    assert head.exceptions == {Finger.RIGHT_INDEX: MemberException.INJURED_FINGER}
    assert sorted(head.captured) == [Finger.RIGHT_THUMB, Finger.LEFT_INDEX]  # the next finger was taken
    assert spouse.member_exception is MemberException.ABSENT and spouse.captured == {}
    events = {(e["action"], e["subject"]): e for e in camp.journal.events()}
    assert events[("capture.exception", "HH-0001/1")]["details"]["reason"] == "injured_finger"
    assert events[("member.exception", "HH-0001/2")]["details"]["reason"] == "absent"
    assert {
        e["operator"] for e in camp.journal.events() if e["action"].startswith(("capture", "member"))
    } == {"op-anita"}
    assert camp.journal.household_status("HH-0001") is HouseholdStatus.CAPTURED


def test_same_finger_twice_in_one_household_is_stopped(
    station_camp: OpenCamp, station_world: StationWorld
) -> None:
    camp = _camp(station_camp)
    reader = SyntheticFingerReader(
        {("HH-0001", 2, Finger.RIGHT_INDEX): finger_seed("HH-0001", 1, Finger.LEFT_INDEX)}
    )
    camp.capture.reader = reader
    with pytest.raises(DuplicateFingerError, match="this household") as exc:
        camp.capture_household("HH-0001")
    assert exc.value.match == "HH-0001/1/7" and exc.value.score >= 60
    assert camp.journal.household_status("HH-0001") is HouseholdStatus.LISTED
