"""Bar charts as inline SVG, drawn on the server in the page's language.

Why not the report's PNGs (services/reports.py ``charts``): their titles and legends are English text baked
into pixels. SVG text is laid out by the browser, so Hindi is shaped correctly with the page's Devanagari
font, the labels come from the message catalogue and the values are in the local number format. No script,
no inline style (the CSP forbids both): geometry and colours are SVG attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

COLOURS = ("#0a3a80", "#b35900", "#0b6b2b", "#6a1b9a")
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 20, 20, 56, 44


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    value_text: Callable[[float], str],
    *,
    chart_id: str,
) -> Markup:
    """Grouped bars: one group per category, one bar per series, each bar labelled with its value."""
    if any(len(s.values) != len(categories) for s in series):
        raise ValueError(f"chart {chart_id}: every series needs one value per category")
    top = max([v for s in series for v in s.values] + [0.0]) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(1, len(categories))
    bar_w = group_w * 0.8 / max(1, len(series))
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff" stroke="#555"/>',
        f'<text x="{LEFT}" y="24" font-size="18" font-weight="700" fill="#111">{escape(title)}</text>',
    ]
    x_legend = LEFT
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<rect x="{x_legend}" y="34" width="14" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{x_legend + 20}" y="46" font-size="14" fill="#111">{escape(s.name)}</text>')
        x_legend += 40 + 9 * len(s.name)
    base = TOP + plot_h
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#111"/>')
    for c, category in enumerate(categories):
        x0 = LEFT + c * group_w + group_w * 0.1
        for i, s in enumerate(series):
            value = float(s.values[c])
            h = (plot_h - 18) * value / top
            x = x0 + i * bar_w
            colour = COLOURS[i % len(COLOURS)]
            parts.append(
                f'<rect class="chart-bar" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w * 0.92:.1f}" '
                f'height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(s.name)}: {escape(value_text(value))}</title></rect>'
            )
            parts.append(
                f'<text x="{x + bar_w * 0.46:.1f}" y="{base - h - 4:.1f}" font-size="12" '
                f'text-anchor="middle" '
                f'fill="#111">{escape(value_text(value))}</text>'
            )
        parts.append(
            f'<text x="{LEFT + (c + 0.5) * group_w:.1f}" y="{base + 22}" font-size="15" text-anchor="middle" '
            f'fill="#111">{escape(category)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
