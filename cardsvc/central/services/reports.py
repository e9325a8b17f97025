"""Reports: coverage and use by district, scheme, gender and age band (CSV, PNG charts, one HTML page).

One services function builds the figures (:func:`build_report`); :func:`write_report` writes them as
``coverage.csv``, ``use.csv``, PNG charts (matplotlib, Agg backend) and ``report.html``, a self-contained
page (charts embedded as data URIs, inline CSS, no external asset). Used by ``cardsvc central report``, the
dashboard and the demo.

Coverage counts households (cards) and persons (members, by gender and age band at ``now``). Use counts
the verified card records: admissions (BLOCK), claims (SETTLE, paise), cash (CASH, paise) and proofs of
life, attributed to the member the record names (gender, age band), and the cards used at least once.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.central.models import Card, TransactionRow
from cardsvc.formats.transaction import RecordType

AGE_BANDS: Final = ((0, 17, "0-17"), (18, 39, "18-39"), (40, 59, "40-59"), (60, 200, "60+"))
GENDERS: Final = ("F", "M", "O")
#: (district, scheme_id, gender, age band)
Key = tuple[str, int, str, str]
COVERAGE_COLUMNS: Final = ("district", "scheme_id", "gender", "age_band", "households", "persons")
USE_COLUMNS: Final = (
    "district", "scheme_id", "gender", "age_band", "admissions", "claims", "claimed_paise", "cash_payments",
    "cash_paise", "proofs_of_life", "cards_used",
)  # fmt: skip


def age_band(birth_year: int, year: int) -> str:
    age = year - birth_year
    for low, high, label in AGE_BANDS:
        if low <= age <= high:
            return label
    return AGE_BANDS[0][2] if age < 0 else AGE_BANDS[-1][2]


@dataclass
class Use:
    admissions: int = 0
    claims: int = 0
    claimed_paise: int = 0
    cash_payments: int = 0
    cash_paise: int = 0
    proofs_of_life: int = 0
    cards: set[str] = field(default_factory=set)

    def row(self) -> list[int]:
        return [self.admissions, self.claims, self.claimed_paise, self.cash_payments, self.cash_paise,
                self.proofs_of_life, len(self.cards)]  # fmt: skip


@dataclass
class Report:
    """The figures of one report, keyed by (district, scheme, gender, age band)."""

    generated_at: int
    households: Counter[Key] = field(default_factory=Counter)
    persons: Counter[Key] = field(default_factory=Counter)
    use: defaultdict[Key, Use] = field(default_factory=lambda: defaultdict(Use))
    unattributed_records: int = 0  # records of cards no camp has reported

    def districts(self) -> list[str]:
        return sorted({k[0] for k in self.persons} | {k[0] for k in self.use})

    def total(self, by: int, counter: Iterable[tuple[Key, int]]) -> Counter[str]:
        out: Counter[str] = Counter()
        for key, n in counter:
            out[str(key[by])] += n
        return out

    def coverage_rows(self) -> list[list[Any]]:
        return [[*k, self.households[k], self.persons[k]] for k in sorted(self.persons)]

    def use_rows(self) -> list[list[Any]]:
        return [[*k, *self.use[k].row()] for k in sorted(self.use)]

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "coverage": [dict(zip(COVERAGE_COLUMNS, r, strict=True)) for r in self.coverage_rows()],
            "use": [dict(zip(USE_COLUMNS, r, strict=True)) for r in self.use_rows()],
            "unattributed_records": self.unattributed_records,
        }


def build_report(session: Session, now: int) -> Report:
    """Coverage from the camps' cards and use from the verified records (one pass over each)."""
    year = datetime.fromtimestamp(now, UTC).year
    report = Report(now)
    members: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for card_id, district, scheme, schemes, people in session.execute(
        select(Card.card_id, Card.district, Card.scheme_id, Card.schemes, Card.members)
    ):
        persons = [(str(m["gender"]), age_band(int(m["birth_year"]), year)) for m in people]
        members[card_id] = (district, persons)
        head = persons[0]
        # Coverage counts the household under every scheme the card carries (the camp's list when it sent
        # one, else the card's single scheme).
        card_schemes = sorted({int(x["scheme_id"]) for x in schemes or ()} or {scheme})
        for card_scheme in card_schemes:
            report.households[(district, card_scheme, *head)] += 1
            for person in persons:
                report.persons[(district, card_scheme, *person)] += 1
    query = select(TransactionRow.card_id, TransactionRow.scheme_id, TransactionRow.record_type,
                   TransactionRow.amount, TransactionRow.member_index)  # fmt: skip
    for card_id, scheme, record_type, amount, member_index in session.execute(query):
        card = members.get(card_id)
        if card is None:
            report.unattributed_records += 1
            continue
        if record_type == RecordType.SPLIT:
            continue  # cover moved to a split card by central's authorisation: not use of the cover
        district, persons = card
        person = persons[member_index] if member_index < len(persons) else persons[0]
        # Use is filed under the scheme the card debited (a pension payment under the pension scheme).
        use = report.use[(district, scheme, *person)]
        use.cards.add(card_id)
        if record_type == RecordType.BLOCK:
            use.admissions += 1
        elif record_type == RecordType.SETTLE:
            use.claims += 1
            use.claimed_paise += amount
        elif record_type == RecordType.CASH:
            use.cash_payments += 1
            use.cash_paise += amount
        elif record_type == RecordType.PROOF_OF_LIFE:
            use.proofs_of_life += 1
    return report


def _csv(columns: Iterable[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def _bar_chart(title: str, labels: list[str], series: dict[str, list[float]], ylabel: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def charts(report: Report) -> dict[str, bytes]:
    """PNG charts: persons covered by district, persons by age band and gender, use by district."""
    districts = report.districts() or ["-"]
    persons = report.total(0, report.persons.items())
    households = report.total(0, report.households.items())
    bands = [b[2] for b in AGE_BANDS]
    by_gender_band: dict[str, list[float]] = {}
    for g in GENDERS:
        by_gender_band[g] = [float(sum(n for k, n in report.persons.items() if k[2] == g and k[3] == b))
                             for b in bands]  # fmt: skip
    claimed = report.total(0, ((k, u.claimed_paise) for k, u in report.use.items()))
    cash = report.total(0, ((k, u.cash_paise) for k, u in report.use.items()))
    coverage = {
        "households": [float(households[d]) for d in districts],
        "persons": [float(persons[d]) for d in districts],
    }
    return {
        "coverage_by_district.png": _bar_chart("Coverage by district", districts, coverage, "enrolled"),
        "persons_by_age_gender.png": _bar_chart(
            "Persons by age band and gender", bands, by_gender_band, "persons"
        ),
        "use_by_district.png": _bar_chart(
            "Use by district (rupees)", districts,
            {"claims": [claimed[d] / 100 for d in districts], "cash": [cash[d] / 100 for d in districts]},
            "rupees",
        ),
    }  # fmt: skip


def _table(columns: Iterable[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report, pngs: dict[str, bytes]) -> str:
    """One self-contained page: inline CSS, charts as data URIs, no script, no external asset."""
    when = datetime.fromtimestamp(report.generated_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode("ascii")}"></figure>'
        for name, data in pngs.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Coverage and use</title>'
        "<style>body{font-family:sans-serif;margin:1.5em;color:#111}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #999;padding:.25em .6em;text-align:right}th{background:#eee}"
        "figure{display:inline-block;margin:.5em}</style></head><body>"
        f"<h1>Coverage and use</h1><p>Generated {html.escape(when)}. Amounts in paise. "
        f"Records of cards no camp has reported: {report.unattributed_records}.</p>"
        f"{images}<h2>Coverage</h2>{_table(COVERAGE_COLUMNS, report.coverage_rows())}"
        f"<h2>Use</h2>{_table(USE_COLUMNS, report.use_rows())}</body></html>\n"
    )


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write coverage.csv, use.csv, the PNG charts and report.html into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = charts(report)
    files: dict[str, bytes] = {
        "coverage.csv": _csv(COVERAGE_COLUMNS, report.coverage_rows()).encode(),
        "use.csv": _csv(USE_COLUMNS, report.use_rows()).encode(),
        **pngs,
        "report.html": render_html(report, pngs).encode(),
    }
    paths = {}
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
        paths[name] = out_dir / name
    return paths
