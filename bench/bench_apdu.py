"""APDU round trip and 8 KB read through pcscd + vpcd + pyscard, each figure beside its ceiling.

Run: ``.venv/bin/cardsvc bench apdu [--json out.json]`` or ``.venv/bin/python bench/bench_apdu.py``.
Needs root (to start pcscd) or a running pcscd with the vsmartcard-vpcd readers. The measurement code
lives in ``cardsvc/card/bench.py`` so the installed ``cardsvc`` command can run it.
"""

from __future__ import annotations

import argparse
import sys

from cardsvc.card.bench import run_apdu_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000, help="short APDUs timed for the median")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args(argv)
    return 0 if run_apdu_benchmark(rounds=args.rounds, json_path=args.json_path) else 1


if __name__ == "__main__":
    sys.exit(main())
