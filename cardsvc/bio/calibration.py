"""Mapping of the raw LSS-R similarity to a calibrated score, -10 * log10(FMR).

The table (calibration_mcc.json, beside this module) holds raw-score knots and the impostor false-match rate
at each, measured on impostor comparisons (`cardsvc bio calibrate`, see docs/biometrics.md); between knots
the score is interpolated linearly, beyond the last knot it follows the fitted exponential tail.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

TABLE_FILE = "calibration_mcc.json"
MAX_SCORE = 120.0  # FMR 1e-12: far beyond anything measured; the extrapolated tail stops here


@dataclass(frozen=True)
class Calibration:
    raw: tuple[float, ...]  # increasing raw similarities
    score: tuple[float, ...]  # -10 log10(FMR) at each raw knot, non-decreasing
    tail_slope: float = 0.0  # score per unit raw above the last knot (exponential tail of the FMR)
    source: str = ""

    def score_of(self, raw: float) -> float:
        if not self.raw:
            return raw * 100.0
        if raw <= self.raw[0]:
            return self.score[0]
        if raw <= self.raw[-1]:  # linear between knots (bisect: a tenth of np.interp's call overhead)
            i = bisect.bisect_left(self.raw, raw)
            r0, r1 = self.raw[i - 1], self.raw[i]
            s0, s1 = self.score[i - 1], self.score[i]
            return s0 + (s1 - s0) * (raw - r0) / (r1 - r0) if r1 > r0 else s1
        return min(MAX_SCORE, self.score[-1] + self.tail_slope * (raw - self.raw[-1]))

    def to_json(self) -> dict[str, Any]:
        return {"raw": list(self.raw), "score": list(self.score), "tail_slope": self.tail_slope,
                "source": self.source}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        raw = tuple(float(v) for v in data["raw"])
        score = tuple(float(v) for v in data["score"])
        if len(raw) != len(score) or any(b < a for a, b in itertools.pairwise(raw)):
            raise ValueError("calibration table: raw knots must increase and pair with scores")
        return cls(raw, score, float(data.get("tail_slope", 0.0)), str(data.get("source", "")))

    @classmethod
    def fit(cls, impostor_raw: np.ndarray, *, knots: int = 60, source: str = "") -> Calibration:
        """Fit the table on impostor raw scores: FMR(t) = share of impostors scoring >= t."""
        s = np.sort(np.asarray(impostor_raw, dtype=np.float64))
        n = s.size
        if n < 100:
            raise ValueError(f"need at least 100 impostor scores to calibrate, got {n}")
        # knots at FMR decades down to a few impostors
        fmrs = np.logspace(0, math.log10(max(5.0 / n, 1e-9)), knots)
        raw_knots, scores = [0.0], [0.0]
        for f in fmrs[1:]:
            t = float(s[min(n - 1, math.ceil(n * (1 - f)))])
            if t > raw_knots[-1] + 1e-6:
                raw_knots.append(t)
                scores.append(-10.0 * math.log10(f))
        # exponential tail: fit log10 FMR ~ linear in raw on the top 2% of impostors
        top = s[int(n * 0.98) :]
        ranks = (n - np.arange(int(n * 0.98), n)) / n  # FMR at each of the top scores
        slope = 0.0
        if top.size > 10 and np.ptp(top) > 0:
            a, _ = np.polyfit(top, -10.0 * np.log10(ranks), 1)
            slope = max(float(a), 1.0)
        return cls(
            tuple(round(v, 6) for v in raw_knots), tuple(round(v, 3) for v in scores), round(slope, 3), source
        )


def lower_envelope(a: Calibration, b: Calibration, *, source: str = "") -> Calibration:
    """The pointwise lower of two tables: every score is the more conservative of the two estimates.

    Used with a table fitted on same-sensor impostors (realistic, but read only down to FMR ~4e-4) and one
    fitted on many more cross-sensor impostors (reaches further, but such pairs score lower).
    """
    last = max(a.raw[-1], b.raw[-1])
    knots = sorted(set(a.raw) | set(b.raw))
    scores = [min(a.score_of(r), b.score_of(r)) for r in knots]
    # continue past the shorter table's last knot with the lower tail, then the lower slope beyond both
    slope = min(a.tail_slope, b.tail_slope)
    raw = tuple(round(r, 6) for r in knots if r <= last)
    return Calibration(raw, tuple(round(v, 3) for v in scores[: len(raw)]), round(slope, 3), source)


def load_default_calibration() -> Calibration:
    """The packaged table; without one (before `cardsvc bio calibrate` ran) raw * 100."""
    try:
        text = resources.files("cardsvc.bio").joinpath(TABLE_FILE).read_text()
    except FileNotFoundError:
        return Calibration((), ())
    return Calibration.from_json(json.loads(text))
