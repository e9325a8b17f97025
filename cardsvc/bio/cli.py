"""`cardsvc bio ...` and `cardsvc bench matcher`: thin commands over cardsvc.bio services."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def register(main: click.Group) -> None:
    """Attach the biometric commands to the existing `bio` and `bench` groups of `cardsvc`."""
    bio = main.commands.get("bio")
    bench = main.commands.get("bench")
    if not isinstance(bio, click.Group) or not isinstance(bench, click.Group):
        raise RuntimeError(
            "cardsvc must define the `bio` and `bench` groups before cardsvc.bio.cli registers"
        )
    bio.add_command(iso_dump)
    bio.add_command(evaluate)
    bio.add_command(calibrate)
    bench.add_command(bench_matcher)


@click.command("iso-dump")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def iso_dump(file: Path, as_json: bool) -> None:
    """Print an ISO/IEC 19794-2:2005 record's header and minutiae (or a compact/7F2E card template)."""
    from cardsvc.bio.errors import TemplateFormatError
    from cardsvc.bio.iso19794 import IsoRecord, decode_compact, describe, unwrap_verify_template

    data = file.read_bytes()
    try:
        if data[:4] == b"FMR\x00":
            record = IsoRecord.parse(data)
            header = {
                "format": "ISO/IEC 19794-2:2005 record",
                "length": len(data),
                "capture_device": record.capture_device,
                "width": record.width,
                "height": record.height,
                "x_resolution_ppcm": record.x_resolution,
                "y_resolution_ppcm": record.y_resolution,
                "views": len(record.views),
            }
            views = describe([v.template for v in record.views])
            for view, raw in zip(views, record.views, strict=True):
                view["view_number"] = raw.view_number
                view["extended_data_bytes"] = len(raw.extended_data)
        else:
            compact = unwrap_verify_template(data) if data[:2] == b"\x7f\x2e" else data
            header = {"format": "ISO/IEC 19794-2 compact card (0.1 mm units, shown in pixels at 197/cm)",
                      "length": len(data)}  # fmt: skip
            views = describe([decode_compact(compact)])
    except TemplateFormatError as exc:
        raise click.ClickException(f"{file}: {exc}") from exc
    if as_json:
        click.echo(json.dumps({"header": header, "views": views}, indent=2))
        return
    for key, value in header.items():
        click.echo(f"{key:<20} {value}")
    for index, view in enumerate(views):
        minutiae = view.pop("minutiae")
        assert isinstance(minutiae, list)
        click.echo(f"view {index}: " + ", ".join(f"{k}={v}" for k, v in view.items()))
        click.echo(f"  {'#':>3} {'x':>5} {'y':>5} {'angle':>8} {'kind':<12} quality")
        for i, m in enumerate(minutiae):
            click.echo(f"  {i:>3} {m['x']:>5} {m['y']:>5} {m['angle']:>8.2f} {m['kind']:<12} {m['quality']}")


@click.command("evaluate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the figures as JSON here.")
@click.option("--det", "det_path", type=click.Path(dir_okay=False), help="Write DET curves (PNG) here.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Minutiae cache folder [default: ~/.cache/cardsvc/minutiae].")  # fmt: skip
@click.option("--no-cache", is_flag=True, help="Extract every image again.")
@click.option("--matchers", default="mcc,mcc-card,bozorth3", show_default=True,
              help="Comma-separated: mcc (full record), mcc-card (card-quantised), bozorth3.")  # fmt: skip
def evaluate(
    directory: Path,
    json_path: str | None,
    det_path: str | None,
    cache_dir: Path | None,
    no_cache: bool,
    matchers: str,
) -> None:
    """Accuracy on an FVC-style folder (DIR/<db>/<finger>_<impression>.tif), FVC protocol."""
    from cardsvc.bio.evaluate import (
        FMR_POINTS,
        TemplateCache,
        default_cache_dir,
        evaluate_database,
        plot_det,
        scan_fvc,
        summarise,
    )

    names = [n.strip() for n in matchers.split(",") if n.strip()]
    cache = TemplateCache(None if no_cache else (cache_dir or default_cache_dir()))
    try:
        databases = scan_fvc(directory)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    per_db = {}
    for db, images in databases.items():
        try:
            per_db[db] = evaluate_database(images, cache, names, progress=lambda m: click.echo(m, err=True))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    summary = summarise(per_db)
    cols = ["EER %"] + [f"FNMR@{p * 100:g}% %" for p in FMR_POINTS] + ["cmp/s"]
    click.echo(f"{'database':<10} {'matcher':<9} " + " ".join(f"{c:>13}" for c in cols))
    rows = [(db, summary["databases"][db]) for db in summary["databases"]] + [("mean", summary["mean"])]
    for db, results in rows:
        for name, fig in results.items():
            values = [fig["eer_pct"]] + [fig[f"fnmr_at_fmr_{p:g}_pct"] for p in FMR_POINTS]
            click.echo(
                f"{db:<10} {name:<9} " + " ".join(f"{v:>13.2f}" for v in values)
                + f" {fig['comparisons_per_second']:>13.0f}"
            )  # fmt: skip
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2))
    if det_path:
        plot_det(per_db, Path(det_path))
        click.echo(f"DET curves written to {det_path}", err=True)


@click.command("calibrate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Table to write [default: the packaged cardsvc/bio/calibration_mcc.json].")  # fmt: skip
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path))
def calibrate(directory: Path, out: Path | None, cache_dir: Path | None) -> None:
    """Fit the score calibration on every impostor pair of an FVC-style folder (card-quantised)."""
    from cardsvc.bio.calibration import TABLE_FILE, Calibration, lower_envelope
    from cardsvc.bio.evaluate import TemplateCache, default_cache_dir, impostor_raw_scores

    cache = TemplateCache(cache_dir or default_cache_dir())
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    within = impostor_raw_scores(directory, cache, card=True, progress=say)
    everything = impostor_raw_scores(directory, cache, card=True, across=True, progress=say)
    table = lower_envelope(
        Calibration.fit(within),
        Calibration.fit(everything),
        source=f"MCC-LSSR raw scores of impostor pairs of {directory.name} (mindtct minutiae, both sides "
        f"card-quantised): lower envelope of the table fitted on the {within.size:,} pairs of different "
        f"fingers within each database and the one fitted on all {everything.size:,} pairs of different "
        "fingers within and across databases; cardsvc bio calibrate",
    )
    target = out or Path(__file__).with_name(TABLE_FILE)
    target.write_text(json.dumps(table.to_json(), indent=1) + "\n")
    click.echo(f"{len(table.raw)} knots, tail slope {table.tail_slope:.0f}/unit, written to {target}")


@click.command("matcher")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures here.")
def bench_matcher(json_path: str | None) -> None:
    """1:1 comparisons/s, 1:N search of 10,000, paypoint verification time, each beside its limit."""
    from cardsvc.bio.bench import run_matcher_benchmark

    if not run_matcher_benchmark(json_path=json_path):
        sys.exit(1)
