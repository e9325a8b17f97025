"""Fingerprint matcher speed: 1:1 comparisons/s (one core), 1:N search of 10,000, paypoint verification.

Run: ``.venv/bin/cardsvc bench matcher [--json out.json]`` or ``.venv/bin/python bench/bench_matcher.py``.
Each figure is printed beside its limit; the exit status is 1 when one is missed. The measurement code
lives in ``cardsvc/bio/bench.py`` so the installed ``cardsvc`` command can run it.
"""

from __future__ import annotations

import argparse
import sys

from cardsvc.bio.bench import run_matcher_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args(argv)
    return 0 if run_matcher_benchmark(json_path=args.json_path) else 1


if __name__ == "__main__":
    sys.exit(main())
