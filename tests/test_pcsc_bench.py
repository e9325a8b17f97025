"""`cardsvc bench apdu` end to end through pcscd + vpcd (figures checked for shape, never for time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardsvc.card.pcscd import PcscdHandle
from cardsvc.cli import main

pytestmark = pytest.mark.pcsc


def test_bench_apdu_reports_every_figure_beside_its_ceiling(pcscd: PcscdHandle, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "apdu", "--rounds", "20", "--json", str(out)])
    assert result.exit_code in (0, 1), result.output  # 1 = over a ceiling: a finding, not a crash
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
    assert len(figures) == 6
    assert all("ceiling" in line for line in result.output.splitlines()[1:7])
    counts = {name: f["value"] for name, f in figures.items() if f["unit"] == "APDUs"}
    assert counts == {
        "read 8 KB, extended-length card: APDUs": 1,
        "read 8 KB, short-APDU card: APDUs": 32,
    }
