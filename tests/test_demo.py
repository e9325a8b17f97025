"""`cardsvc demo` runs on the real PC/SC stack and writes its JSON summary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.pcsc
def test_demo_runs_through_pcsc_and_writes_json(pcscd, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    exe = Path(sys.executable).parent / "cardsvc"
    env = dict(os.environ)
    proc = subprocess.run([str(exe), "demo", "--json", str(out)], capture_output=True, text=True, timeout=600,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Summary" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["atr"].startswith("3B")
    assert summary["apdu_round_trip_ms"] > 0
