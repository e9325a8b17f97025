"""Ingest benchmark: transactions ingested + verified + reconciled per second on SQLite and PostgreSQL,
beside the raw ECDSA P-256 verification rate measured in the same run (the ceiling; target: half of it).

Run: ``.venv/bin/cardsvc bench ingest [--json]`` or ``.venv/bin/python bench/bench_ingest.py [--json]``.
PostgreSQL: DATABASE_URL or the local server (a temporary database is created and dropped). The measuring
code lives in ``cardsvc/central/benchmark.py`` so the installed ``cardsvc`` command can run it.
"""

from __future__ import annotations

import argparse
import sys

from cardsvc.central.benchmark import run_ingest_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    ok = run_ingest_benchmark(args.records, args.batch_size, args.repeats, as_json=args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
