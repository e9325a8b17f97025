"""POS verification cost through pcscd + vpcd with the fingerprint step (same as ``pos bench verify``).

Run: ``.venv/bin/python bench/bench_pos.py [--rounds 5] [--json out.json]``. Prints APDUs, bytes read,
terminal CPU ms, sensor-driver CPU ms and wall ms, each beside its ceiling (20 APDUs, 4 KB, 100 ms CPU);
exit status 1 if one is over. Code: point_of_service/bench.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from point_of_service.cli import main

if __name__ == "__main__":
    main(["bench", "verify", *sys.argv[1:]])
