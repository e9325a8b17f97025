"""The demo's own HTML page: what central's report does not cover, linked to central's report.

Coverage and use (by district, scheme, gender, age band) are central's report
(cardsvc.central.services.reports, written by the demo into ``central/``); this page holds only the demo's
own figures: the summary table (attacks, recoveries, reconciliation, stage timings) and two charts
(attacks refused or recovered, station time per household), with a link to central's page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Protocol


class _Summary(Protocol):
    rows: list[tuple[str, str]]
    figures: dict[str, Any]


def _bar(path: Path, title: str, labels: list[str], values: list[float], ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.bar(labels, values, color="#3a7bd5")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(summary: _Summary, out_dir: Path, *, central_report: Path | None = None) -> Path:
    """Write ``index.html`` and its charts into ``out_dir``; returns the page's path. ``central_report``:
    central's coverage and use page, linked relative to ``out_dir`` (None: the page says it is absent)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    f = summary.figures
    charts: list[tuple[str, str]] = []
    attempts: dict[str, int] = f.get("attacks_attempted", {})
    if attempts:
        refused = {
            "impostor": f.get("impostors_refused", 0),
            "clone": f.get("clones_refused", 0),
            "tampered": f.get("tampered_refused", 0),
            "revoked": f.get("revoked_refused", 0),
            "torn": f.get("torn_debits_recovered", 0),
            "crash": f.get("terminal_crashes_recovered", 0),
        }
        labels = sorted(attempts)
        _bar(
            out_dir / "attacks.png",
            "Attacks and faults: refused or recovered",
            labels,
            [refused.get(k, 0) for k in labels],
            "count",
        )
        charts.append(("attacks.png", "Every attack attempted, counted from the system's refusal reasons"))
    station: dict[str, float] = f.get("station_seconds", {})
    if station:
        _bar(
            out_dir / "station.png", "Station time per household", list(station), list(station.values()), "s"
        )
        charts.append(("station.png", "Capture, personalisation, activation and hand-over per household"))
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary.rows)
    images = "\n".join(
        f'<figure><img src="{name}" alt="{html.escape(caption)}"><figcaption>'
        f"{html.escape(caption)}</figcaption></figure>"
        for name, caption in charts
    )
    if central_report is not None:
        href = html.escape(central_report.resolve().relative_to(out_dir.resolve()).as_posix())
        link = (
            f'<p>Coverage and use by district, scheme, gender and age band: <a href="{href}">central\'s '
            "report</a> (with its CSV files beside it).</p>"
        )
    else:
        link = "<p>Central's coverage and use report was not written (the central stage did not run).</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>District pilot: demo report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
td{{padding:.2em 1em;border-bottom:1px solid #ddd}}
figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>District pilot on simulated hardware</h1>
<p>Key ceremony, enrolment camp, hospital and paypoint, attacks, upload and reconciliation, all through
pcscd + vpcd + pyscard and the fingerprint sensor simulator.</p>
{link}
<table>{rows}</table>
{images}
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
