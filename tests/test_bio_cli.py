"""`cardsvc bio iso-dump`, `cardsvc bio evaluate` and the error-rate arithmetic behind the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardsvc.bio.evaluate import error_rates, protocol_pairs, scan_fvc
from cardsvc.bio.iso19794 import encode_compact, wrap_verify_template
from cardsvc.bio.template import FingerTemplate, Minutia
from cardsvc.cli import main


def test_error_rates_of_separated_and_overlapping_scores() -> None:
    perfect = error_rates([5, 6, 7, 8], [1, 2, 3, 4])
    assert perfect.eer == 0.0 and perfect.fnmr_at[1e-2] == 0.0
    # one impostor (of 4) above one genuine (of 4): the curves cross at 25%
    mixed = error_rates([2.5, 6, 7, 8], [1, 2, 3, 4])
    assert mixed.eer == pytest.approx(0.25)
    # FMR <= 1% needs the threshold above every impostor: one genuine of four falls below
    assert mixed.fnmr_at[1e-2] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both genuine and impostor"):
        error_rates([], [1])


def test_fvc_protocol_pair_counts(tmp_path: Path) -> None:
    for finger in (101, 102, 103):
        for impression in range(1, 9):
            (tmp_path / f"{finger}_{impression}.tif").write_bytes(b"")
    images = scan_fvc(tmp_path)[tmp_path.name]
    genuine, impostor = protocol_pairs(images)
    assert len(genuine) == 3 * 28 and len(impostor) == 3 * 8 * 8


@pytest.mark.fvc
def test_iso_dump_prints_a_vendor_record(fvc_dir: Path) -> None:
    record = fvc_dir / "DB1_B" / "101_1.iso"
    out = CliRunner().invoke(main, ["bio", "iso-dump", str(record), "--json"])
    assert out.exit_code == 0, out.output
    dumped = json.loads(out.output)
    assert dumped["header"]["width"] == 300 and dumped["header"]["x_resolution_ppcm"] == 197
    assert len(dumped["views"][0]["minutiae"]) == 25
    table = CliRunner().invoke(main, ["bio", "iso-dump", str(record)])
    assert table.exit_code == 0 and "view 0:" in table.output and "bifurcation" in table.output


def test_iso_dump_reads_card_templates_and_refuses_garbage(tmp_path: Path) -> None:
    t = FingerTemplate(minutiae=(Minutia(100, 120, 45.0), Minutia(150, 80, 200.0)), width=300, height=400)
    card = tmp_path / "card.bin"
    card.write_bytes(wrap_verify_template(encode_compact(t)))
    out = CliRunner().invoke(main, ["bio", "iso-dump", str(card), "--json"])
    assert out.exit_code == 0, out.output
    assert [m["x"] for m in json.loads(out.output)["views"][0]["minutiae"]] == [100, 150]
    bad = tmp_path / "bad.iso"
    bad.write_bytes(b"FMR\x00 20\x00\x00\x00\x00\x10")
    out = CliRunner().invoke(main, ["bio", "iso-dump", str(bad)])
    assert out.exit_code != 0 and "truncated record" in out.output


@pytest.mark.fvc
def test_evaluate_prints_figures_writes_json_and_det(fvc_dir: Path, tmp_path: Path) -> None:
    subset = tmp_path / "fvc" / "DB1_B"
    subset.mkdir(parents=True)
    for finger in (101, 102, 103):
        for impression in range(1, 9):
            name = f"{finger}_{impression}.tif"
            (subset / name).symlink_to(fvc_dir / "DB1_B" / name)
    args = [
        "bio",
        "evaluate",
        str(tmp_path / "fvc"),
        "--matchers",
        "mcc,bozorth3",
        "--cache",
        str(tmp_path / "c"),
    ]
    out = CliRunner().invoke(
        main, [*args, "--json", str(tmp_path / "r.json"), "--det", str(tmp_path / "d.png")]
    )
    assert out.exit_code == 0, out.output
    figures = json.loads((tmp_path / "r.json").read_text())
    db = figures["databases"]["DB1_B"]
    assert set(db) == {"mcc", "bozorth3"} and db["mcc"]["comparisons"] == 3 * 28 + 3 * 64
    assert 0 <= db["mcc"]["eer_pct"] <= 20
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert "mean" in out.output and "EER %" in out.output
    assert len(list((tmp_path / "c").glob("*.iso"))) == 24  # minutiae cached for the next run


def test_evaluate_refuses_a_folder_without_images(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["bio", "evaluate", str(tmp_path)])
    assert out.exit_code != 0 and "no <finger>_<impression>.tif images" in out.output
