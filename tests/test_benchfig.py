"""cardsvc.benchfig: one figure type for every benchmark; the line it prints reads back as the same figure."""

from __future__ import annotations

import json
import math
import re

import pytest

from cardsvc.benchfig import Figure, FigureError, format_number, median_ms, parse_line, payload, report

FIGURES = [
    Figure("short APDU round trip, raw, median of 1000", 0.149, "ms", 1.0),
    Figure("read 8 KB, short-APDU card: APDUs", 32, "APDUs", 32),
    Figure("1:1 comparisons (one core)", 2712.411, "per s", 2000, higher_is_better=True, note="wall 1,542"),
    Figure("1:N search, N=10,000 (median)", 0.133, "s", 0.5, note="wall 0.2 (load 5.1)"),
    Figure("capture", 4.103, "s per household", 12),
    Figure("apdus", 17, "", 20),
    Figure("wall_ms", 1360.2, "ms", None),
    Figure("revocation list size, 10000 card entries", 312.6, "KiB", 351.5625),
    Figure("sqlite: ingested + verified + reconciled", 6000.4, "records/s", 2900.0, True),
    Figure("build + sign a 10000-entry list", 2186.0, "ms", 1500),
]


def test_verdict_and_ratio_for_ceilings_and_floors() -> None:
    over = Figure("build + sign", 2186.0, "ms", 1500)
    assert not over.ok and over.verdict == "OVER" and over.ratio == pytest.approx(1.457, abs=1e-3)
    assert over.line().startswith("OVER ") and "1.46 x ceiling" in over.line()
    at = Figure("APDUs", 32, "APDUs", 32)
    assert at.ok and at.ratio == 1.0, "a figure equal to its ceiling is within it"
    slow = Figure("comparisons", 1500, "per s", 2000, higher_is_better=True)
    assert not slow.ok and slow.verdict == "UNDER" and "0.75 x floor" in slow.line()
    fast = Figure("comparisons", 2712.4, "per s", 2000, higher_is_better=True)
    assert fast.ok and "1.36 x floor" in fast.line() and "floor 2,000 per s" in fast.line()
    shown = Figure("wall_ms", 1360.2, "ms", None)
    assert shown.ok and shown.ratio is None and shown.line().startswith("-") and "no ceiling" in shown.line()


@pytest.mark.parametrize("figure", FIGURES, ids=[f.name for f in FIGURES])
def test_printed_line_reads_back_as_the_same_figure(figure: Figure) -> None:
    back = parse_line("   " + figure.line() + "  ")
    assert back is not None, figure.line()
    assert (back.name, back.unit, back.higher_is_better, back.note) == (
        figure.name, figure.unit, figure.higher_is_better, figure.note,
    )  # fmt: skip
    assert back.value == pytest.approx(figure.value, rel=1e-3), "to the printed precision (4 digits)"
    if figure.ceiling is None:
        assert back.ceiling is None
    else:
        assert back.ceiling == pytest.approx(figure.ceiling, rel=1e-3)
        assert back.ok == figure.ok


def test_other_text_is_not_a_figure() -> None:
    for text in (
        "waiting for another user of the vpcd slots",
        "all 3 figures within their bounds",
        "APDU benchmark: pcscd (pid 123) + vpcd + pyscard, simulated card, loopback",
        "short APDU round trip 0.477 ms ceiling 1.000 ms ok",  # the old single-space layout
        "",
    ):
        assert parse_line(text) is None, text


def test_numbers_are_printed_so_a_reader_can_compare_them() -> None:
    assert [format_number(v) for v in (17, 4096, 2712.411, 86.8, 4.103, 0.149, 0.0279)] == [
        "17", "4,096", "2,712", "86.80", "4.103", "0.1490", "0.02790",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "needs a name"),
        ({"name": "two  spaces"}, "double spaces"),
        ({"unit": "ms\n"}, "new lines"),
        ({"value": math.nan}, "not a finite number"),
        ({"value": math.inf}, "not a finite number"),
        ({"ceiling": 0.0}, "positive"),
        ({"ceiling": -1.0}, "positive"),
    ],
)
def test_bad_figures_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "wall time", "value": 1.0, "unit": "ms", "ceiling": 2.0} | kwargs
    with pytest.raises(FigureError, match=message):
        Figure(**args)  # type: ignore[arg-type]


def test_every_figure_has_the_same_json_keys_and_reads_back() -> None:
    documents = [f.to_json() for f in FIGURES]
    base = {"name", "value", "unit", "ceiling", "higher_is_better", "ratio", "ok"}
    assert all(set(d) - {"note"} == base for d in documents)
    assert [Figure.from_json(json.loads(json.dumps(d))) for d in documents] == FIGURES
    over = Figure("build + sign", 2186.0, "ms", 1500).to_json()
    assert (over["ratio"], over["ok"]) == (pytest.approx(1.4573, abs=1e-4), False)
    with pytest.raises(FigureError, match="not a figure"):
        Figure.from_json({"value": 1.0})


def test_report_prints_every_line_and_names_what_is_outside() -> None:
    lines: list[str] = []
    assert report(FIGURES, lines.append) is False
    assert [parse_line(line) is not None for line in lines] == [True] * len(FIGURES) + [False]
    assert lines[-1] == (
        "1 of 9 figures OUTSIDE their bounds (1 shown, not judged): build + sign a 10000-entry list"
    )
    bounds = [re.search(r"  (ceiling |floor |no ceiling$)", line) for line in lines[:-1]]
    columns = {m.start() if m else -1 for m in bounds}
    assert len(columns) == 1, "the bounds stand in one column"
    lines.clear()
    assert report(FIGURES[:3], lines.append) is True
    assert lines[-1] == "all 3 figures within their bounds"


def test_payload_carries_the_overall_verdict() -> None:
    document = payload("apdu", FIGURES[:2], rounds=20)
    assert document["benchmark"] == "apdu" and document["ok"] is True and document["rounds"] == 20
    assert [f["name"] for f in document["figures"]] == [FIGURES[0].name, FIGURES[1].name]
    assert payload("pki", FIGURES)["ok"] is False


def test_median_ms_times_every_round_after_the_warm_up() -> None:
    calls: list[int] = []
    assert median_ms(lambda: calls.append(1), 7, warmup=3) >= 0
    assert len(calls) == 10
    with pytest.raises(FigureError, match="at least 1"):
        median_ms(lambda: None, 0)
