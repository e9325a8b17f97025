"""De-duplication benchmark: new camp cards searched against a district gallery through central's service,
beside the matcher alone doing the same searches (the ceiling; target: half of it).

Run: ``.venv/bin/python bench/bench_ingest_dedup.py [--gallery-cards N] [--new-cards K] [--json]``. The
measuring code lives in ``cardsvc/central/benchmark_dedup.py``.
"""

from __future__ import annotations

import argparse
import sys

from cardsvc.central.benchmark_dedup import run_dedup_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gallery-cards", type=int, default=200)
    parser.add_argument("--new-cards", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    return 0 if run_dedup_benchmark(args.gallery_cards, args.new_cards, as_json=args.json) else 1


if __name__ == "__main__":
    sys.exit(main())
