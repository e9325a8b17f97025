"""Station time per household of five members (excluding waiting for fingers), each part and the total
beside its ceiling (the ceilings are justified in enrolment_station/bench.py).

Run: ``.venv/bin/enrol bench [--households 3] [--json out.json]``
or ``.venv/bin/python bench/bench_station.py``.
Needs root (to start pcscd) or a running pcscd with the vsmartcard-vpcd readers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from enrolment_station.bench import main as run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=3)
    parser.add_argument("--json", dest="json_out", type=Path, default=None)
    args = parser.parse_args(argv)
    return run(households=args.households, json_out=args.json_out)


if __name__ == "__main__":
    sys.exit(main())
