"""`cardsvc bench all`: each benchmark in its own process; status from its exit code; every figure read back
and printed the same way (benchfig line, ratio to its bound), whether the benchmark printed it with
cardsvc.benchfig or the old way."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardsvc import bench_all
from cardsvc.bench_all import (
    REPO,
    BenchResult,
    benches,
    legacy_figure,
    print_table,
    read_figures,
    run_bench,
    status_of,
)
from cardsvc.benchfig import Figure, parse_line
from cardsvc.cli import main

FAKE_BENCH = """
import sys
from cardsvc.benchfig import Figure, report
figures = [
    Figure("short APDU round trip", 3.0, "ms", 1.0),
    Figure("comparisons (one core)", 2712.4, "per s", 2000, higher_is_better=True, note="wall 1,542"),
]
print("waiting for another user of the vpcd slots")
sys.exit(0 if report(figures) else 1)
"""


@pytest.mark.parametrize(
    ("line", "ratio", "floor"),
    [
        ("short APDU round trip, raw, median of 1000   0.477 ms   ceiling   1.000 ms   ok", 0.477, False),
        ("ingest 12,000 records/s ceiling 8,000 records/s", 1.5, False),
        ("wall time (median)   47.17 ms   (ceiling 100)", 0.4717, False),
        ("paypoint: extract + 2 comparisons       0.072 s      (wall 0.149)  ceiling 0.1 s  OK", 0.72, False),
        ("1:1 comparisons (one core)   2712.411 per s  (wall 1542.439)  floor 2000 per s  OK", 1.356, True),
        ("capture                        4.103 s per household   ceiling  12.0 s   ok", 0.342, False),
        ("in-process READ BINARY 250 B                        0.027 ms   (ceiling 0.5 ms) ok", 0.054, False),
    ],
)
def test_a_figure_printed_the_old_way_is_read_with_its_ratio(line: str, ratio: float, floor: bool) -> None:
    figure = legacy_figure(line)
    assert figure is not None
    assert figure.ratio == pytest.approx(ratio, abs=1e-3), "the figure, not the note beside it"
    assert figure.higher_is_better is floor
    assert f"x {'floor' if floor else 'ceiling'}" in figure.line()


def test_benchfig_lines_and_old_lines_are_read_other_text_is_not() -> None:
    new = Figure("short APDU round trip", 0.149, "ms", 1.0)
    out = "\n".join(
        [
            "starting",
            "waiting for another user of the vpcd slots",
            "  " + new.line(),
            "match 2.0 ms ceiling 4.0 ms ok",
            "all 2 figures within their bounds",
            "postgresql: 3,000 records/s, target: 0.5",
            "done",
        ]
    )
    figures, unparsed = read_figures(out)
    assert [(f.name, f.value, f.ceiling) for f in figures] == [
        ("short APDU round trip", 0.149, 1.0),
        ("match", 2.0, 4.0),
    ]
    assert unparsed == ["postgresql: 3,000 records/s, target: 0.5"], "a bound not understood is kept"


def test_status_from_exit_code() -> None:
    assert [status_of(c) for c in (0, 1, 2, None)] == [
        "within ceilings", "OVER a ceiling", "failed (exit 2)", "timed out",
    ]  # fmt: skip
    crashed = "Traceback (most recent call last):\n  ...\nValueError: x\n"
    assert status_of(1, crashed) == "failed (exit 1, exception)", "a crash is not a figure over its ceiling"


def test_a_benchmark_over_its_ceiling_is_reported_with_its_figures(tmp_path: Path) -> None:
    script = tmp_path / "bench_fake.py"
    script.write_text(FAKE_BENCH)
    echoed: list[str] = []
    result = run_bench("fake", (str(script),), "fake", timeout=60, echo=echoed.append, python=sys.executable)
    assert result.status == "OVER a ceiling" and not result.ok
    assert [(f.name, f.verdict, f.note) for f in result.figures] == [
        ("short APDU round trip", "OVER", ""),
        ("comparisons (one core)", "ok", "wall 1,542"),
    ]
    assert [round(f.ratio or 0, 2) for f in result.figures] == [3.0, 1.36]
    assert echoed[0] == "  [fake] waiting for another user of the vpcd slots", "output is shown as it comes"


def test_the_table_prints_every_figure_the_same_way_with_its_ratio() -> None:
    old_way = legacy_figure("capture   4.103 s per household   ceiling  12.0 s   ok")
    assert old_way is not None
    results = [
        BenchResult("apdu", "APDU round trip", "OVER a ceiling", 3.2, 1,
                    [Figure("short APDU round trip, raw", 3.0, "ms", 1.0)]),
        BenchResult("station", "station time", "within ceilings", 40.0, 0, [old_way]),
        BenchResult("ingest", "ingest", "within ceilings", 9.0, 0,
                    [Figure("sqlite: ingested", 6000, "records/s", 3000, True)], ["odd target: 5 x"]),
        BenchResult("gone", "missing one", "missing", 0.0, None),
    ]  # fmt: skip
    lines: list[str] = []
    print_table(results, lines.append)
    figure_lines = [line for line in lines if parse_line(line) is not None]
    assert [parse_line(line).ratio for line in figure_lines] == [  # type: ignore[union-attr]
        pytest.approx(3.0), pytest.approx(4.103 / 12, abs=1e-3), pytest.approx(2.0),
    ]  # fmt: skip
    assert len({line.index(" x ") for line in figure_lines}) == 1, "one table: ratios in one column"
    assert "      (as printed) odd target: 5 x" in lines
    assert any(line.startswith("  gone") and "missing" in line for line in lines)


def test_json_has_the_shared_figure_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "bench_fake.py"
    script.write_text(FAKE_BENCH)
    monkeypatch.setattr(bench_all, "benches", lambda: [("fake", (str(script),), "a fake benchmark")])
    out = tmp_path / "all.json"
    result = CliRunner().invoke(main, ["bench", "all", "--json", str(out)])
    assert result.exit_code == 1, result.output
    [entry] = json.loads(out.read_text())
    assert (entry["name"], entry["status"], entry["exit_code"]) == ("fake", "OVER a ceiling", 1)
    assert [f["name"] for f in entry["figures"]] == ["short APDU round trip", "comparisons (one core)"]
    assert all(
        set(f) >= {"name", "value", "unit", "ceiling", "higher_is_better", "ratio", "ok"}
        for f in entry["figures"]
    )
    assert [f["ok"] for f in entry["figures"]] == [False, True]


def test_registered_in_the_bench_group_and_knows_every_script() -> None:
    help_text = CliRunner().invoke(main, ["bench", "all", "--help"]).output
    assert "--only" in help_text and "--json" in help_text
    scripts = {args[0] for _, args, _ in benches() if args[0] != "-m"}
    on_disk = {f"bench/{p.name}" for p in (REPO / "bench").glob("bench_*.py")}
    assert on_disk <= scripts, f"benchmarks not run by `bench all`: {sorted(on_disk - scripts)}"
    refused = CliRunner().invoke(main, ["bench", "all", "--only", "nope"])
    assert refused.exit_code == 2 and "unknown benchmark(s): nope" in refused.output


def test_a_benchmark_added_later_is_run_too(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench_new_thing.py").write_text('"""New thing: figures beside ceilings."""\n')
    added = benches(tmp_path)[-1]
    assert added == ("new_thing", ("bench/bench_new_thing.py",), "New thing: figures beside ceilings")


def test_a_real_benchmark_is_read_back_whole(tmp_path: Path) -> None:
    """The card simulator benchmark (in-process, a few seconds): every figure it prints reaches the table."""
    from bench.bench_card_sim import CEILINGS_MS

    out = tmp_path / "all.json"
    result = CliRunner().invoke(main, ["bench", "all", "--only", "card_sim", "--json", str(out)])
    [entry] = json.loads(out.read_text())
    assert entry["status"] in ("within ceilings", "OVER a ceiling"), result.output
    assert {f["name"]: f["ceiling"] for f in entry["figures"]} == CEILINGS_MS
    assert entry["unparsed"] == []
    assert result.exit_code == (0 if entry["status"] == "within ceilings" else 1)
