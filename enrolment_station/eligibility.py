"""Eligibility list import: the one home of the CSV schema (docs/station.md, "Eligibility list").

One row per member. Every row is validated; if any row is bad the whole file is refused with every problem
(line and reason) and nothing is imported, so an operator never works from a half-imported list.
Free-text fields are checked for the dummy values operators type to get past a form ("xxx", "test", "na").
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from enrolment_station.errors import EligibilityError, RowProblem

COLUMNS = ("household_id", "village_code", "member_no", "name", "gender", "year_of_birth", "relation")
MAX_MEMBERS = 5
HOUSEHOLD_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{3,23}")
VILLAGE_CODE = re.compile(r"\d{6}")
NAME = re.compile(r"[^\W\d_][^\W\d_ .'-]*(?:[ .'-]+[^\W\d_]+)*\.?")
DUMMY_NAMES = frozenset(
    {"test", "dummy", "na", "n/a", "none", "nil", "null", "unknown", "abc", "xyz", "asdf", "qwerty", "name",
     "xxx", "no name", "sample"}
)  # fmt: skip
MIN_HEAD_AGE = 16


class Gender(StrEnum):
    FEMALE = "F"
    MALE = "M"
    OTHER = "O"


class Relation(StrEnum):
    """Relation to the head of household (the head's own row says HEAD)."""

    HEAD = "HEAD"
    SPOUSE = "SPOUSE"
    SON = "SON"
    DAUGHTER = "DAUGHTER"
    FATHER = "FATHER"
    MOTHER = "MOTHER"
    OTHER = "OTHER"


@dataclass(frozen=True)
class Member:
    member_no: int
    name: str
    gender: Gender
    year_of_birth: int
    relation: Relation
    line: int = 0

    def age(self, year: int) -> int:
        return year - self.year_of_birth


@dataclass(frozen=True)
class Household:
    household_id: str
    village_code: str
    members: tuple[Member, ...]

    @property
    def head(self) -> Member:
        return next(m for m in self.members if m.relation is Relation.HEAD)

    def member(self, member_no: int) -> Member:
        for m in self.members:
            if m.member_no == member_no:
                return m
        raise KeyError(member_no)


@dataclass(frozen=True)
class EligibilityList:
    households: tuple[Household, ...]
    rows: int
    sha256: str


def _is_dummy(name: str) -> bool:
    low = name.lower().strip()
    return low in DUMMY_NAMES or len(set(low.replace(" ", ""))) <= 1


def parse_eligibility(
    text: str, *, current_year: int, known_households: Iterable[str] = ()
) -> EligibilityList:
    """Parse and validate a whole list; raises EligibilityError naming every bad row (nothing returned)."""
    problems: list[RowProblem] = []
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise EligibilityError([RowProblem(1, "header", "the file is empty")]) from None
    header = [h.strip().lower() for h in header]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    if tuple(header) != COLUMNS:
        missing = [c for c in COLUMNS if c not in header]
        extra = [c for c in header if c not in COLUMNS]
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing)}")
        if extra:
            detail.append(f"unknown {', '.join(extra)}")
        if not detail:
            detail.append("columns out of order")
        raise EligibilityError(
            [RowProblem(1, "header", f"expected {','.join(COLUMNS)}: {'; '.join(detail)}")]
        )
    known = set(known_households)
    groups: dict[str, list[tuple[int, str, Member]]] = {}
    rows = 0
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        rows += 1
        if len(row) != len(COLUMNS):
            problems.append(RowProblem(line, "row", f"has {len(row)} fields, expected {len(COLUMNS)}"))
            continue
        cells = dict(zip(COLUMNS, (c.strip() for c in row), strict=True))
        before = len(problems)
        hid = cells["household_id"]
        if not HOUSEHOLD_ID.fullmatch(hid):
            problems.append(
                RowProblem(line, "household_id", f"{hid!r} is not 4-24 of A-Z 0-9 - (upper case)")
            )
        elif hid in known:
            problems.append(RowProblem(line, "household_id", f"household {hid} was already imported"))
        village = cells["village_code"]
        if not VILLAGE_CODE.fullmatch(village):
            problems.append(RowProblem(line, "village_code", f"{village!r} is not a 6-digit village code"))
        member_no = 0
        if not cells["member_no"].isdigit() or not 1 <= int(cells["member_no"]) <= MAX_MEMBERS:
            problems.append(RowProblem(line, "member_no", f"{cells['member_no']!r} is not 1-{MAX_MEMBERS}"))
        else:
            member_no = int(cells["member_no"])
        name = " ".join(cells["name"].split())
        if not 2 <= len(name.encode("utf-8")) <= 48 or not NAME.fullmatch(name):
            problems.append(
                RowProblem(line, "name", f"{name!r} is not a name (2-48 bytes of letters, spaces, . ' -)")
            )
        elif _is_dummy(name):
            problems.append(RowProblem(line, "name", f"{name!r} looks like a placeholder, not a name"))
        gender: Gender | None = None
        try:
            gender = Gender(cells["gender"].upper())
        except ValueError:
            problems.append(RowProblem(line, "gender", f"{cells['gender']!r} is not one of F, M, O"))
        yob = 0
        if not cells["year_of_birth"].isdigit() or not 1900 <= int(cells["year_of_birth"]) <= current_year:
            problems.append(
                RowProblem(
                    line, "year_of_birth", f"{cells['year_of_birth']!r} is not a year 1900-{current_year}"
                )
            )
        else:
            yob = int(cells["year_of_birth"])
        relation: Relation | None = None
        try:
            relation = Relation(cells["relation"].upper())
        except ValueError:
            problems.append(
                RowProblem(
                    line,
                    "relation",
                    f"{cells['relation']!r} is not one of {', '.join(r.value for r in Relation)}",
                )
            )
        if len(problems) == before and gender is not None and relation is not None:
            groups.setdefault(hid, []).append(
                (line, village, Member(member_no, name, gender, yob, relation, line))
            )
        elif HOUSEHOLD_ID.fullmatch(hid):
            groups.setdefault(hid, [])  # household-level checks still run on its good rows
    households: list[Household] = []
    for hid, entries in groups.items():
        if not entries:
            continue
        first_line = entries[0][0]
        villages = {v for _, v, _ in entries}
        if len(villages) > 1:
            problems.append(
                RowProblem(
                    entries[-1][0],
                    "village_code",
                    f"household {hid} lists villages {', '.join(sorted(villages))}",
                )
            )
        numbers = [m.member_no for _, _, m in entries]
        for line, _, m in entries:
            if numbers.count(m.member_no) > 1 and line != next(
                ln for ln, _, x in entries if x.member_no == m.member_no
            ):
                problems.append(RowProblem(line, "member_no", f"member {m.member_no} of {hid} appears twice"))
        if len(entries) > MAX_MEMBERS:
            problems.append(
                RowProblem(
                    entries[MAX_MEMBERS][0],
                    "member_no",
                    f"household {hid} has more than {MAX_MEMBERS} members",
                )
            )
        heads = [(ln, m) for ln, _, m in entries if m.relation is Relation.HEAD]
        if not heads:
            problems.append(RowProblem(first_line, "relation", f"household {hid} has no HEAD"))
        for ln, _m in heads[1:]:
            problems.append(RowProblem(ln, "relation", f"household {hid} has more than one HEAD"))
        for ln, m in heads[:1]:
            if m.age(current_year) < MIN_HEAD_AGE:
                age = m.age(current_year)
                problems.append(
                    RowProblem(ln, "year_of_birth", f"head of {hid} is {age}, under {MIN_HEAD_AGE}")
                )
        households.append(
            Household(
                hid, entries[0][1], tuple(sorted((m for _, _, m in entries), key=lambda m: m.member_no))
            )
        )
    if rows == 0:
        problems.append(RowProblem(1, "file", "no member rows after the header"))
    if problems:
        problems.sort(key=lambda p: (p.line, p.column))
        raise EligibilityError(problems)
    return EligibilityList(tuple(households), rows, digest)
