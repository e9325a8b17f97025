"""Eligibility list import: every row validated, every bad row reported with line and reason, nothing
half-imported; the journal records who imported what."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrolment_station.eligibility import COLUMNS, Relation, parse_eligibility
from enrolment_station.errors import EligibilityError, HouseholdError
from enrolment_station.journal import HouseholdStatus, Journal

HEADER = ",".join(COLUMNS) + "\n"
GOOD = HEADER + (
    "HH-0001,123456,1,Ramesh Kumar,M,1971,HEAD\n"
    "HH-0001,123456,2,Sita Devi,F,1975,spouse\n"
    "HH-0001,123456,3,Raju,M,2019,SON\n"
    "HH-0002,123457,1,Anjali O'Neil-Rao,F,1990,HEAD\n"
)


def problems(text: str, **kw: object) -> list[tuple[int, str]]:
    with pytest.raises(EligibilityError) as exc:
        parse_eligibility(text, current_year=2026, **kw)  # type: ignore[arg-type]
    return [(p.line, p.column) for p in exc.value.problems]


def test_a_good_list_parses_into_households() -> None:
    listing = parse_eligibility(GOOD, current_year=2026)
    assert [h.household_id for h in listing.households] == ["HH-0001", "HH-0002"]
    h1 = listing.households[0]
    assert h1.head.name == "Ramesh Kumar" and [m.relation for m in h1.members][1] is Relation.SPOUSE
    assert listing.rows == 4


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("hh-1,123456,1,Asha Devi,F,1970,HEAD", "household_id", "is not 4-24"),
        ("HH-0009,12345,1,Asha Devi,F,1970,HEAD", "village_code", "6-digit"),
        ("HH-0009,123456,6,Asha Devi,F,1970,HEAD", "member_no", "is not 1-5"),
        ("HH-0009,123456,1,test,F,1970,HEAD", "name", "placeholder"),
        ("HH-0009,123456,1,aaaa,F,1970,HEAD", "name", "placeholder"),
        ("HH-0009,123456,1,Asha 2,F,1970,HEAD", "name", "is not a name"),
        ("HH-0009,123456,1,Asha Devi,X,1970,HEAD", "gender", "F, M, O"),
        ("HH-0009,123456,1,Asha Devi,F,2031,HEAD", "year_of_birth", "1900-2026"),
        ("HH-0009,123456,1,Asha Devi,F,1970,COUSIN", "relation", "is not one of"),
        ("HH-0009,123456,1,Asha Devi,F,2015,HEAD", "year_of_birth", "under 16"),
        ("HH-0009,123456,1,Asha Devi,F,1970", "row", "has 6 fields"),
    ],
)
def test_each_bad_field_is_reported_with_its_line_and_reason(row: str, column: str, reason: str) -> None:
    with pytest.raises(EligibilityError) as exc:
        parse_eligibility(GOOD + row + "\n", current_year=2026)
    (p,) = exc.value.problems
    assert (p.line, p.column) == (6, column) and reason in p.reason, str(p)


def test_household_rules_and_every_problem_at_once() -> None:
    text = HEADER + (
        "HH-0001,123456,1,Ramesh Kumar,M,1971,HEAD\n"
        "HH-0001,123999,2,Sita Devi,F,1975,SPOUSE\n"  # 3: another village
        "HH-0002,123456,1,Anil Rao,M,1980,SON\n"  # 4: HH-0002 has no head
        "HH-0003,123456,1,Asha Rao,F,1980,HEAD\n"
        "HH-0003,123456,1,Usha Rao,F,1982,HEAD\n"  # 6: member 1 twice, second head
    )
    assert problems(text) == [(3, "village_code"), (4, "relation"), (6, "member_no"), (6, "relation")]


def test_header_and_empty_files_are_refused() -> None:
    assert problems("") == [(1, "header")]
    assert problems("household,village\n") == [(1, "header")]
    assert problems(HEADER) == [(1, "file")]


def test_a_household_already_imported_is_refused() -> None:
    assert problems(GOOD, known_households=["HH-0002"]) == [(5, "household_id")]


def test_journal_imports_all_or_nothing_and_records_the_operator(tmp_path: Path) -> None:
    journal = Journal(
        tmp_path / "j.sqlite", now=lambda: datetime(2026, 11, 23, 9, tzinfo=UTC), operator="op-1"
    )
    journal.import_list(parse_eligibility(GOOD, current_year=2026), "list.csv")
    assert journal.household_ids() == ["HH-0001", "HH-0002"]
    assert journal.household_status("HH-0001") is HouseholdStatus.LISTED
    assert journal.household("HH-0001").members[2].name == "Raju"
    (event,) = journal.events("eligibility.import")
    assert event["operator"] == "op-1" and event["details"]["households"] == 2
    with pytest.raises(HouseholdError, match="already imported"):
        journal.import_list(parse_eligibility(GOOD, current_year=2026), "again.csv")
    assert len(journal.events("eligibility.import")) == 1


_cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_cell, min_size=0, max_size=9), max_size=8))
def test_any_text_either_parses_cleanly_or_is_refused_with_reasons(rows: list[list[str]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    try:
        listing = parse_eligibility(buf.getvalue(), current_year=2026)
    except EligibilityError as exc:
        assert exc.problems and all(p.line >= 1 and p.reason for p in exc.problems)
    else:
        assert all(1 <= len(h.members) <= 5 for h in listing.households)
