"""One home for benchmark figures: a measured value beside the bound it is judged against.

Every benchmark (``bench/``, ``cardsvc bench ...``, ``keymgmt bench``, ``enrol bench``, ``pos bench verify``)
builds :class:`Figure` values and prints them with :meth:`Figure.line`, so ``cardsvc bench all`` reads them
back with :func:`parse_line` and shows every figure the same way, with its ratio to its bound. A figure is
either a cost held under a ceiling (milliseconds, APDUs, bytes) or a rate held over a floor
(``higher_is_better``: comparisons per second, records per second); a figure without a bound is shown and
not judged. ``Figure.to_json`` gives the same keys in every benchmark's ``--json`` output.

The printed line (columns separated by at least two spaces; the verdict first: ok, OVER a ceiling, UNDER a
floor, or - when not judged)::

    ok    short APDU, median of 1000      0.1490 ms       ceiling 1 ms             0.15 x ceiling
    UNDER 1:1 comparisons/s                1,542 per s    floor 2,000 per s        0.77 x floor  (wall 1,402)
    -     wall_ms                          1,360 ms       no ceiling
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Width the name column is padded to (longer names push the rest of the line right).
NAME_WIDTH = 44


def median_ms(action: Callable[[], object], rounds: int, warmup: int = 20) -> float:
    """Median wall time of ``action`` in ms over ``rounds`` calls, after ``warmup`` untimed calls."""
    if rounds < 1:
        raise FigureError(f"rounds must be at least 1, not {rounds}")
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        action()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


class FigureError(ValueError):
    """A figure that cannot be judged or printed (bad name, value or bound)."""


def format_number(value: float) -> str:
    """A value for a figure line: whole numbers with thousands separators, others to 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    decimals = min(9, max(0, 3 - magnitude))
    return f"{value:,.{decimals}f}"


def _bound_text(value: float) -> str:
    """A bound for a figure line: round numbers as they were written (1, 0.5, 4,096)."""
    text = format_number(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Figure:
    """A measured value, its unit, and the bound it is compared with.

    ``ceiling`` is the bound: the most a cost may be, or (``higher_is_better``) the least a rate may be;
    ``None`` shows the figure without judging it. ``note`` is shown in brackets (e.g. the wall-clock value
    of a figure judged on CPU time).
    """

    name: str
    value: float
    unit: str
    ceiling: float | None
    higher_is_better: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        for field_name in ("name", "unit", "note"):
            text = getattr(self, field_name)
            if "  " in text or "\n" in text or text != text.strip():
                raise FigureError(f"figure {field_name} {text!r}: no double spaces, new lines or edge spaces")
        if not self.name:
            raise FigureError("a figure needs a name")
        if isinstance(self.value, bool) or not math.isfinite(self.value):
            raise FigureError(f"figure {self.name!r}: value {self.value!r} is not a finite number")
        if self.ceiling is not None and (not math.isfinite(self.ceiling) or self.ceiling <= 0):
            raise FigureError(f"figure {self.name!r}: bound {self.ceiling!r} must be a positive number")

    @property
    def bound_word(self) -> str:
        """ "floor" for a rate that must reach its bound, "ceiling" for a cost that must stay under it."""
        return "floor" if self.higher_is_better else "ceiling"

    @property
    def ratio(self) -> float | None:
        """value / bound (within: <= 1 for a ceiling, >= 1 for a floor); None without a bound."""
        return None if self.ceiling is None else self.value / self.ceiling

    @property
    def ok(self) -> bool:
        if self.ceiling is None:
            return True
        return self.value >= self.ceiling if self.higher_is_better else self.value <= self.ceiling

    @property
    def verdict(self) -> str:
        if self.ceiling is None:
            return "-"
        if self.ok:
            return "ok"
        return "UNDER" if self.higher_is_better else "OVER"

    def _bound(self) -> str:
        return (
            "no ceiling"
            if self.ceiling is None
            else f"{self.bound_word} {_bound_text(self.ceiling)}{self._unit}"
        )

    @property
    def _unit(self) -> str:
        return f" {self.unit}" if self.unit else ""

    def line(self, width: int = NAME_WIDTH, *, unit_width: int = 8, bound_width: int = 22) -> str:
        """The figure, its bound and their ratio on one line (read back by :func:`parse_line`); the widths
        pad the name, unit and bound columns (:func:`aligned` pads a list of figures to one table)."""
        head = f"{self.verdict:<5} {self.name.ljust(width)}  {format_number(self.value):>10}"
        head += self._unit.ljust(unit_width)
        if self.ratio is None:
            tail = "  no ceiling"
        else:
            tail = f"  {self._bound().ljust(bound_width)}  {self.ratio:5.2f} x {self.bound_word}"
        note = f"  ({self.note})" if self.note else ""
        return f"{head}{tail}{note}"

    def to_json(self) -> dict[str, Any]:
        """Keys shared by every benchmark's JSON: name, value, unit, ceiling, higher_is_better, ratio, ok."""
        out: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "ceiling": self.ceiling,
            "higher_is_better": self.higher_is_better,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "ok": self.ok,
        }
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figure:
        """A figure from :meth:`to_json` output (the derived keys ratio and ok are recomputed)."""
        try:
            return cls(
                str(data["name"]),
                float(data["value"]),
                str(data.get("unit", "")),
                None if data.get("ceiling") is None else float(data["ceiling"]),
                bool(data.get("higher_is_better", False)),
                str(data.get("note", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FigureError(f"not a figure: {dict(data)!r} ({exc})") from exc


_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_LINE = re.compile(
    rf"^(?P<verdict>ok|OVER|UNDER|-)\s+(?P<name>\S(?:.*?\S)?)\s{{2,}}(?P<value>{_NUMBER})"
    r"(?: (?P<unit>\S(?:.*?\S)?))?\s{2,}"
    rf"(?:no ceiling|(?P<word>ceiling|floor) (?P<bound>{_NUMBER})(?: \S(?:.*?\S)?)?\s{{2,}}"
    rf"{_NUMBER} x (?:ceiling|floor))"
    r"(?:\s{2,}\((?P<note>.*)\))?$"
)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse_line(line: str) -> Figure | None:
    """The figure a :meth:`Figure.line` printed (values to the printed precision), or None for other text."""
    m = _LINE.match(line.strip())
    if m is None:
        return None
    try:
        return Figure(
            m["name"],
            _number(m["value"]),
            m["unit"] or "",
            None if m["bound"] is None else _number(m["bound"]),
            m["word"] == "floor",
            m["note"] or "",
        )
    except FigureError:
        return None


def aligned(figures: Iterable[Figure], name_width: int | None = None) -> list[str]:
    """Each figure's line, the columns of all of them aligned (names padded to the longest unless
    ``name_width`` is given)."""
    listed = list(figures)
    if not listed:
        return []
    width = max(len(f.name) for f in listed) if name_width is None else name_width
    unit_width = max(len(f._unit) for f in listed)
    bound_width = max(len(f._bound()) for f in listed)
    return [f.line(width, unit_width=unit_width, bound_width=bound_width) for f in listed]


def report(
    figures: Iterable[Figure], out: Callable[[str], None] = print, *, width: int | None = None
) -> bool:
    """Print each figure's line (aligned), then one verdict line; True when every figure is within its
    bound."""
    listed = list(figures)
    for line in aligned(listed, width):
        out(line)
    judged = [f for f in listed if f.ceiling is not None]
    outside = [f.name for f in judged if not f.ok]
    shown = f" ({len(listed) - len(judged)} shown, not judged)" if len(judged) < len(listed) else ""
    if outside:
        out(f"{len(outside)} of {len(judged)} figures OUTSIDE their bounds{shown}: {'; '.join(outside)}")
    elif len(judged) == 1:
        out(f"the figure is within its bound{shown}")
    else:
        out(f"all {len(judged)} figures within their bounds{shown}")
    return not outside


def payload(benchmark: str, figures: Iterable[Figure], **extra: Any) -> dict[str, Any]:
    """A benchmark's JSON document: its name, ok, any extra keys, and every figure's :meth:`to_json`."""
    listed = list(figures)
    return {"benchmark": benchmark, "ok": all(f.ok for f in listed), **extra,
            "figures": [f.to_json() for f in listed]}  # fmt: skip
