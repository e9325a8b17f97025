"""The package catalogue: hospital packages and their prices, versioned (a price change is a new version,
old versions stay, so a claim is always judged by the price valid when it was made).

A new version of the whole list is uploaded by staff as CSV (``parse_catalogue_upload``: every bad line
named at once), compared with the packages valid now (``plan_catalogue_version``) and written as new package
versions (``apply_catalogue_version``) before ``services.publish.publish_catalogue`` signs it."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.central.errors import MalformedError
from cardsvc.central.models import Package


def add_package_version(
    session: Session, code: int, name: str, price_paise: int, valid_from: int, category: str = "general"
) -> Package:
    """Add the next version of package ``code`` (version 1 if new)."""
    if not 0 <= code <= 0xFFFF_FFFF:
        raise ValueError(f"package code {code} does not fit the record's 4-byte reference")
    if price_paise < 0:
        raise ValueError(f"package {code}: price {price_paise} is negative")
    if not name.strip():
        raise ValueError(f"package {code}: name is empty")
    latest = session.execute(select(func.max(Package.version)).where(Package.code == code)).scalar_one()
    package = Package(
        code=code, version=(latest or 0) + 1, name=name, price_paise=price_paise, valid_from=valid_from,
        category=category,
    )  # fmt: skip
    session.add(package)
    return package


def catalogue(session: Session) -> list[dict[str, Any]]:
    """Every version of every package, by code then version."""
    rows = session.execute(select(Package).order_by(Package.code, Package.version)).scalars().all()
    return [
        {
            "code": p.code,
            "version": p.version,
            "name": p.name,
            "price_paise": p.price_paise,
            "valid_from": p.valid_from,
            "category": p.category,
        }
        for p in rows
    ]


# ------------------------------------------------------------------------------------------ a new version
#: Columns of an uploaded catalogue (CSV, one package a line; a first line naming them is skipped).
UPLOAD_COLUMNS = ("code", "name", "rate", "category")
MAX_UPLOAD_PACKAGES = 5000  # what a terminal accepts (point_of_service.catalogue.MAX_PACKAGES)
_RATE = re.compile(r"^(?:₹\s*)?(\d{1,3}(?:,\d{2})*,\d{3}|\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?$")


@dataclass(frozen=True, slots=True)
class PackageLine:
    """One package of an uploaded catalogue version, as staff wrote it (rate already in paise)."""

    line: int
    code: int
    name: str
    price_paise: int
    category: str


@dataclass(frozen=True, slots=True)
class UploadProblem:
    """Why one line of an upload is refused: ``field`` (a column of ``UPLOAD_COLUMNS``, or ``"line"``),
    ``problem`` (a stable code: bad_columns, bad_code, duplicate_code, missing_name, name_too_long,
    bad_rate, bad_category, empty), the value as written, and for a duplicate the line it repeats."""

    line: int
    field: str
    problem: str
    value: str = ""
    first_line: int = 0


class CatalogueUploadError(MalformedError):
    """An uploaded catalogue version with bad lines; nothing of it is kept."""

    def __init__(self, problems: list[UploadProblem]) -> None:
        super().__init__("catalogue_upload_invalid", f"{len(problems)} problem(s) in the uploaded catalogue")
        self.problems = tuple(problems)


def parse_rate(text: str) -> int | None:
    """Rupees as staff write them ("12,500", "12500.50", "₹ 1,20,000", Indian or international grouping)
    -> paise; None when it is not an amount greater than zero that fits a record (2^32-1 paise)."""
    match = _RATE.match(text.strip())
    if match is None:
        return None
    paise = int(match.group(1).replace(",", "")) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    return paise if 1 <= paise <= 0xFFFF_FFFF else None


def parse_catalogue_upload(text: str) -> list[PackageLine]:
    """The packages of an uploaded version (CSV: code, name, rate in rupees, category; blank lines and a
    first line naming the columns are skipped). Every bad line is reported at once
    (:class:`CatalogueUploadError`), so staff fix the file in one go."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    problems: list[UploadProblem] = []
    packages: list[PackageLine] = []
    first_seen: dict[int, int] = {}
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if number == 1 and cells and cells[0].lower() == UPLOAD_COLUMNS[0]:
            continue  # the header
        if len(cells) != len(UPLOAD_COLUMNS):
            problems.append(UploadProblem(number, "line", "bad_columns", ",".join(cells)[:80]))
            continue
        code_text, name, rate_text, category = cells
        before = len(problems)
        code = int(code_text) if code_text.isdigit() else 0
        if not 1 <= code <= 0xFFFF_FFFF:
            problems.append(UploadProblem(number, "code", "bad_code", code_text[:40]))
        elif code in first_seen:
            problems.append(UploadProblem(number, "code", "duplicate_code", code_text, first_seen[code]))
        else:
            first_seen[code] = number
        if not name:
            problems.append(UploadProblem(number, "name", "missing_name"))
        elif len(name) > 200:
            problems.append(UploadProblem(number, "name", "name_too_long", name[:40]))
        price = parse_rate(rate_text)
        if price is None:
            problems.append(UploadProblem(number, "rate", "bad_rate", rate_text[:40]))
        category = category or "general"
        if len(category) > 60:
            problems.append(UploadProblem(number, "category", "bad_category", category[:40]))
        if len(problems) == before and price is not None:
            packages.append(PackageLine(number, code, name, price, category))
    if not problems and not packages:
        problems.append(UploadProblem(0, "line", "empty"))
    if len(packages) > MAX_UPLOAD_PACKAGES:
        problems.append(UploadProblem(0, "line", "too_many", str(len(packages))))
    if problems:
        raise CatalogueUploadError(problems)
    return packages


def current_packages(session: Session, now: int) -> list[Package]:
    """The newest version of each package valid at ``now`` (what a catalogue published now carries)."""
    newest = (
        select(Package.code, func.max(Package.version).label("version"))
        .where(Package.valid_from <= now)
        .group_by(Package.code)
        .subquery()
    )
    query = select(Package).join(
        newest, (Package.code == newest.c.code) & (Package.version == newest.c.version)
    )
    return list(session.execute(query.order_by(Package.code)).scalars().all())


class ChangeKind(StrEnum):
    NEW = "new"
    RATE = "rate"  # the rate changed (maybe the name or category too)
    RENAMED = "renamed"  # the name or category changed, the rate did not
    SAME = "same"


@dataclass(frozen=True, slots=True)
class PackageChange:
    kind: ChangeKind
    package: PackageLine
    old_price_paise: int | None = None
    old_name: str | None = None


def plan_catalogue_version(session: Session, packages: list[PackageLine], now: int) -> list[PackageChange]:
    """What publishing ``packages`` would change against the packages valid at ``now``; a package left out
    of the upload stays as it is (a code is never taken away from terminals)."""
    current = {p.code: p for p in current_packages(session, now)}
    changes = []
    for line in packages:
        old = current.get(line.code)
        if old is None:
            changes.append(PackageChange(ChangeKind.NEW, line))
        elif old.price_paise != line.price_paise:
            changes.append(PackageChange(ChangeKind.RATE, line, old.price_paise, old.name))
        elif old.name != line.name or old.category != line.category:
            changes.append(PackageChange(ChangeKind.RENAMED, line, old.price_paise, old.name))
        else:
            changes.append(PackageChange(ChangeKind.SAME, line, old.price_paise, old.name))
    return changes


def apply_catalogue_version(session: Session, packages: list[PackageLine], now: int) -> list[PackageChange]:
    """Add a new version, valid from ``now``, of every package the upload changes or adds (not committed:
    the caller publishes and commits)."""
    changes = plan_catalogue_version(session, packages, now)
    for change in changes:
        if change.kind is not ChangeKind.SAME:
            p = change.package
            add_package_version(session, p.code, p.name, p.price_paise, now, p.category)
    session.flush()
    return changes


def catalogue_csv(packages: list[Package]) -> str:
    """Packages as an upload would give them (the starting point for the next version)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(UPLOAD_COLUMNS)
    for p in packages:
        rupees, paise = divmod(p.price_paise, 100)
        writer.writerow([p.code, p.name, f"{rupees}.{paise:02d}" if paise else str(rupees), p.category])
    return out.getvalue()
