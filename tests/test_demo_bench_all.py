"""`cardsvc bench all`: each benchmark in its own process; status from its exit code, ratio per line."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from cardsvc.bench_all import REPO, benches, figure_lines, run_bench, status_of, with_ratio
from cardsvc.cli import main


def test_ratio_of_a_figure_to_its_ceiling() -> None:
    line = "short APDU round trip, raw, median of 1000   0.477 ms   ceiling   1.000 ms   ok"
    assert with_ratio(line).endswith("[0.48 x ceiling]")
    assert with_ratio("ingest 12,000 records/s ceiling 8,000 records/s").endswith("[1.50 x ceiling]")
    assert with_ratio("wall time (median)   47.17 ms   (ceiling 100)").endswith("[0.47 x ceiling]")
    matcher = "paypoint: extract + 2 comparisons       0.072 s      (wall 0.149)  ceiling 0.1 s  OK"
    assert with_ratio(matcher).endswith("[0.72 x ceiling]"), "the figure, not the note beside it"
    floor = "1:1 comparisons (one core)   2712.411 per s  (wall 1542.439)  floor 2000 per s  OK"
    assert with_ratio(floor).endswith("[1.36 x floor]")
    station = "capture                        4.103 s per household   ceiling  12.0 s   ok"
    assert with_ratio(station).endswith("[0.34 x ceiling]")
    card = "in-process READ BINARY 250 B                        0.027 ms   (ceiling 0.5 ms) ok"
    assert with_ratio(card).endswith("[0.05 x ceiling]")
    waiting = "waiting for another user of the vpcd slots"
    assert with_ratio(waiting) == waiting


def test_only_lines_naming_a_ceiling_are_kept() -> None:
    out = "starting\nwaiting for another user of the vpcd slots\nmatch 2.0 ms ceiling 4.0 ms ok\ndone\n"
    assert figure_lines(out) == ["match 2.0 ms ceiling 4.0 ms ok   [0.50 x ceiling]"]


def test_status_from_exit_code() -> None:
    assert [status_of(c) for c in (0, 1, 2, None)] == [
        "within ceilings", "OVER a ceiling", "failed (exit 2)", "timed out",
    ]  # fmt: skip
    crashed = "Traceback (most recent call last):\n  ...\nValueError: x\n"
    assert status_of(1, crashed) == "failed (exit 1, exception)", "a crash is not a figure over its ceiling"


def test_a_benchmark_over_its_ceiling_is_reported_with_its_lines(tmp_path: Path) -> None:
    script = tmp_path / "bench_fake.py"
    script.write_text("import sys\nprint('apdu 3.0 ms ceiling 1.0 ms OVER')\nsys.exit(1)\n")
    echoed: list[str] = []
    result = run_bench("fake", (str(script),), "fake", timeout=60, echo=echoed.append, python=sys.executable)
    assert result.status == "OVER a ceiling" and not result.ok
    assert result.figures == ["apdu 3.0 ms ceiling 1.0 ms OVER   [3.00 x ceiling]"]
    assert echoed == ["  [fake] apdu 3.0 ms ceiling 1.0 ms OVER"], "output is shown as it comes"


def test_missing_benchmark_is_reported_not_run(tmp_path: Path) -> None:
    result = run_bench("gone", (str(tmp_path / "nope.py"),), "x", timeout=5, echo=lambda _: None)
    assert result.status == "missing" and result.exit_code is None


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
