"""The fingerprint matcher other layers call: MCC-LSSR with a score that reads as a false-match rate.

`Matcher.compare` returns -10 * log10(FMR): the score an impostor comparison reaches with probability FMR
(20 means 1 in 100, 40 means 1 in 10,000). The table that maps the raw LSS-R similarity to it was fitted on
impostor scores (see docs/biometrics.md and `cardsvc.bio.calibration`). Accuracy must be measured on what a
card stores, so `quantise_for_card` (compact card format, 0.1 mm and 5.625 degrees) is applied to both sides
of 1:1 verification against card templates.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cardsvc.bio import mcc
from cardsvc.bio.calibration import Calibration, load_default_calibration
from cardsvc.bio.iso19794 import quantise_for_card
from cardsvc.bio.template import FingerTemplate

EncodedTemplate = mcc.EncodedTemplate
DEFAULT_THRESHOLD = 40.0  # FMR 1 in 10,000 per comparison


def fmr_to_threshold(fmr: float) -> float:
    """The calibrated score threshold for a target false-match rate."""
    if not 0 < fmr <= 1:
        raise ValueError(f"false-match rate {fmr} must lie in (0, 1]")
    return -10.0 * math.log10(fmr)


@dataclass(frozen=True)
class MatchResult:
    """The outcome of a 1:1 verification: `matched` is score >= threshold."""

    matched: bool
    score: float
    threshold: float

    @property
    def estimated_fmr(self) -> float:
        return 10.0 ** (-self.score / 10.0)


@dataclass(frozen=True)
class SearchHit:
    identity: Hashable
    score: float


TemplateLike = FingerTemplate | EncodedTemplate


@dataclass
class Matcher:
    """MCC-LSSR matcher: encode once, compare many times."""

    params: mcc.MccParams = field(default_factory=mcc.MccParams)
    calibration: Calibration = field(default_factory=load_default_calibration)

    def encode(self, template: FingerTemplate) -> EncodedTemplate:
        """Precompute a template's cylinders (store the result with the gallery; bytes via to_bytes())."""
        return mcc.encode(template, self.params)

    def _encoded(self, t: TemplateLike) -> EncodedTemplate:
        return t if isinstance(t, EncodedTemplate) else self.encode(t)

    def similarity(self, a: TemplateLike, b: TemplateLike) -> float:
        """The raw LSS-R similarity in [0, 1] (uncalibrated)."""
        with mcc.single_threaded_blas():
            return mcc.lssr_score(self._encoded(a), self._encoded(b), self.params)

    def compare(self, a: TemplateLike, b: TemplateLike) -> float:
        """Calibrated score: -10 * log10(FMR)."""
        return self.calibration.score_of(self.similarity(a, b))

    def verify(
        self,
        probe: FingerTemplate,
        reference: FingerTemplate,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        card: bool = True,
    ) -> MatchResult:
        """1:1 verification of a live probe against an enrolled reference.

        With `card=True` (the default: references live on cards) both sides are quantised to the compact
        card format first, so the decision is the one a match-on-card or card-read terminal makes.
        """
        if card:
            probe, reference = quantise_for_card(probe), quantise_for_card(reference)
        score = self.compare(probe, reference)
        return MatchResult(score >= threshold, score, threshold)

    def search(
        self,
        probe: TemplateLike,
        gallery: Gallery | Mapping[Hashable, TemplateLike],
        *,
        target_fmr: float = 1e-3,
    ) -> list[SearchHit]:
        """1:N search: hits whose score clears the threshold raised for the gallery size, best first.

        The threshold is fmr_to_threshold(target_fmr / N): the whole search then has false-hit
        probability about target_fmr.
        """
        if not isinstance(gallery, Gallery):
            gallery = Gallery.build(self, gallery)
        return gallery.search(self, probe, target_fmr=target_fmr)


@dataclass
class Gallery:
    """Encoded templates of N identities, with a cheap pre-filter index for 1:N search."""

    identities: list[Hashable]
    encoded: list[EncodedTemplate]

    @classmethod
    def build(cls, matcher: Matcher, templates: Mapping[Hashable, TemplateLike]) -> Gallery:
        ids = list(templates)
        return cls(ids, [matcher._encoded(templates[i]) for i in ids])

    def __len__(self) -> int:
        return len(self.identities)

    def search(
        self, matcher: Matcher, probe: TemplateLike, *, target_fmr: float = 1e-3, shortlist: int = 0
    ) -> list[SearchHit]:
        n = len(self)
        if n == 0:
            return []
        threshold = fmr_to_threshold(target_fmr / n)
        p = matcher._encoded(probe)
        candidates: Sequence[int] = range(n)
        hits = []
        for k in candidates:
            s = matcher.compare(p, self.encoded[k])
            if s >= threshold:
                hits.append(SearchHit(self.identities[k], s))
        hits.sort(key=lambda h: -h.score)
        return hits


__all__ = [
    "DEFAULT_THRESHOLD",
    "EncodedTemplate",
    "Gallery",
    "MatchResult",
    "Matcher",
    "SearchHit",
    "fmr_to_threshold",
    "np",
]
