"""De-duplication benchmark: new camp cards searched against a district gallery through central's service,
beside the matcher alone doing the same searches (the ceiling; target: half of it).

Run: ``.venv/bin/python bench/bench_ingest_dedup.py [--gallery-cards N] [--new-cards K] [--json]``. The
measuring code lives in ``cardsvc/central/benchmark_dedup.py``; this script prints its figure as a
``cardsvc.benchfig`` line (``--json`` prints the measuring code's own JSON unchanged).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any

from cardsvc.benchfig import Figure, format_number, report
from cardsvc.central.benchmark_dedup import run_dedup_benchmark


def figure_of(results: dict[str, Any]) -> Figure:
    """Cards/s through the service over the floor target x the matcher-alone rate."""
    rate, alone = float(results["cards_per_second"]), float(results["ceiling_cards_per_second"])
    target = float(results["target_fraction"])
    return Figure(
        "de-duplication through the service",
        rate,
        "cards/s",
        target * alone,
        higher_is_better=True,
        note=f"{rate / alone:.2f} of the matcher alone {format_number(alone)}/s, target {target:g}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gallery-cards", type=int, default=200)
    parser.add_argument("--new-cards", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.json:
        return 0 if run_dedup_benchmark(args.gallery_cards, args.new_cards, as_json=True) else 1
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        ok = run_dedup_benchmark(args.gallery_cards, args.new_cards, as_json=True)
    text = captured.getvalue()
    results = json.loads(text[text.index("{") :])
    print(
        f"de-duplication: {results['new_cards']} new cards against {results['gallery_templates']} templates "
        "(service: open sealed boxes, build the gallery, search, store flags)"
    )
    within = report([figure_of(results)])
    print(f"likely-duplicate pairs among unrelated synthetic fingers: {results['false_pairs']}")
    if within and not ok:
        print("OVER: the service did not search every new card")
    return 0 if ok and within else 1


if __name__ == "__main__":
    sys.exit(main())
