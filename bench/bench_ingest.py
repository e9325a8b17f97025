"""Ingest benchmark: transactions ingested + verified + reconciled per second on SQLite and PostgreSQL,
beside the raw ECDSA P-256 verification rate measured in the same run (the ceiling; target: half of it).

Run: ``.venv/bin/cardsvc bench ingest [--json]`` or ``.venv/bin/python bench/bench_ingest.py [--json]``.
PostgreSQL: DATABASE_URL or the local server (a temporary database is created and dropped). The measuring
code lives in ``cardsvc/central/benchmark.py`` so the installed ``cardsvc`` command can run it; this script
prints its figures as ``cardsvc.benchfig`` lines: each backend's rate beside its floor, the target fraction
of the raw verification rate (``--json`` prints the measuring code's own JSON unchanged).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any

from cardsvc.benchfig import Figure, format_number, report
from cardsvc.central.benchmark import run_ingest_benchmark


def figures_of(results: dict[str, Any]) -> tuple[list[Figure], list[str]]:
    """One figure per measured backend (records/s over the floor target x raw verify rate); skip notes."""
    target = float(results["target_fraction"])
    figures, skipped = [], []
    for backend, measured in results["backends"].items():
        if "skipped" in measured:
            skipped.append(f"{backend} skipped: {measured['skipped']}")
            continue
        raw = float(measured["ceiling_verify_per_second"])
        figures.append(
            Figure(
                f"{backend}: ingested + verified + reconciled",
                float(measured["per_second"]),
                "records/s",
                target * raw,
                higher_is_better=True,
                note=f"{measured['fraction_of_ceiling']:.2f} of raw P-256 verify {format_number(raw)}/s "
                f"on 1 core, target {target:g}",
            )
        )
    return figures, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.json:
        ok = run_ingest_benchmark(args.records, args.batch_size, args.repeats, as_json=True)
        return 0 if ok else 1
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        ok = run_ingest_benchmark(args.records, args.batch_size, args.repeats, as_json=True)
    text = captured.getvalue()
    results = json.loads(text[text.index("{") :])
    print(
        f"central ingest: {results['records']} records in batches of {results['batch_size']}, median of "
        f"{results['repeats']} runs a backend (load average {results['load_average_1min_before']} on "
        f"{results['cpus']} CPUs before the run); floor = target fraction of the raw verification rate"
    )
    figures, skipped = figures_of(results)
    for line in skipped:
        print(line)
    within = report(figures)
    return 0 if ok and within else 1


if __name__ == "__main__":
    sys.exit(main())
