"""The fingerprint matcher other layers call: MCC-LSSR with a score that reads as a false-match rate.

`Matcher.compare` returns -10 * log10(FMR): the score an impostor comparison reaches with probability FMR
(20 means 1 in 100, 40 means 1 in 10,000). The table that maps the raw LSS-R similarity to it was fitted on
impostor scores (see docs/biometrics.md and `cardsvc.bio.calibration`). Accuracy must be measured on what a
card stores, so `quantise_for_card` (compact card format, 0.1 mm and 5.625 degrees) is applied to both sides
of 1:1 verification against card templates.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
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
    """A gallery identity whose score cleared the search threshold (similarity: raw LSS-R, breaks ties)."""

    identity: Hashable
    score: float
    similarity: float


TemplateLike = FingerTemplate | EncodedTemplate


@dataclass
class Matcher:
    """MCC-LSSR matcher: encode once, compare many times."""

    params: mcc.MccParams = field(default_factory=mcc.MccParams)
    calibration: Calibration = field(default_factory=load_default_calibration)

    def encode(self, template: FingerTemplate) -> EncodedTemplate:
        """Precompute a template's cylinders (store the result with the gallery; bytes via to_bytes())."""
        with mcc.single_threaded_blas():
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
        shortlist: int | None = None,
    ) -> list[SearchHit]:
        """1:N search: hits whose score clears the threshold raised for the gallery size, best first.

        The threshold is fmr_to_threshold(target_fmr / N): the whole search then has false-hit
        probability about target_fmr.
        """
        if not isinstance(gallery, Gallery):
            gallery = Gallery.build(self, gallery)
        return gallery.search(self, probe, target_fmr=target_fmr, shortlist=shortlist)

    def gallery(self, templates: Mapping[Hashable, TemplateLike]) -> Gallery:
        """Precompute a gallery once; search it many times."""
        return Gallery.build(self, templates)


@dataclass
class Gallery:
    """Encoded templates of N identities, with a pre-filter index for 1:N search.

    Memory: only packed cylinders (about 8 KB a template) and 64-d pre-filter features (about 10 KB) are
    kept; a shortlisted template is unpacked for its full comparison and dropped again.
    """

    identities: list[Hashable]
    encoded: list[EncodedTemplate]
    features: np.ndarray  # (C, 66) float32: pre-filter rows of all cylinders, template after template
    offsets: np.ndarray  # (N,) first row of each template
    counts: np.ndarray  # (N,) cylinders of each template

    @classmethod
    def build(cls, matcher: Matcher, templates: Mapping[Hashable, TemplateLike]) -> Gallery:
        ids = list(templates)
        encoded = [matcher._encoded(templates[i]).detached() for i in ids]
        with mcc.single_threaded_blas():
            feats = [mcc.prefilter_features(e, matcher.params) for e in encoded]
        counts = np.array([f.shape[0] for f in feats], dtype=np.intp)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp) if ids else counts
        width = mcc.PREFILTER_DIMS + 2
        features = np.concatenate(feats) if feats else np.zeros((0, width), np.float32)
        return cls(ids, encoded, features, offsets, counts)

    def __len__(self) -> int:
        return len(self.identities)

    def shortlist_size(self, shortlist: int | None) -> int:
        """How many pre-filter candidates get the full comparison: 1% of the gallery, at least 50."""
        n = len(self)
        if shortlist is None:
            shortlist = max(50, math.ceil(0.01 * n))
        return max(0, min(n, shortlist))

    def candidates(
        self, matcher: Matcher, probe: EncodedTemplate, shortlist: int | None = None
    ) -> np.ndarray:
        """Indices of the templates the pre-filter ranks highest (all of them for a small gallery)."""
        n = len(self)
        size = self.shortlist_size(shortlist)
        if size >= n:
            return np.arange(n)
        pf = mcc.prefilter_features(probe, matcher.params)
        scores = np.empty(n, np.float32)
        chunk = 2048  # templates per product: bounds the (P x rows) similarity matrix to about 30 MB
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            first = int(self.offsets[start])
            last = int(self.offsets[stop - 1] + self.counts[stop - 1])
            scores[start:stop] = mcc.prefilter_scores(
                pf, self.features[first:last], self.offsets[start:stop] - first, self.counts[start:stop]
            )
        return np.argpartition(-scores, size - 1)[:size]

    def search(
        self,
        matcher: Matcher,
        probe: TemplateLike,
        *,
        target_fmr: float = 1e-3,
        shortlist: int | None = None,
    ) -> list[SearchHit]:
        """Hits above the threshold for target_fmr / N, best first; `shortlist` = full comparisons made."""
        n = len(self)
        if n == 0:
            return []
        threshold = fmr_to_threshold(target_fmr / n)
        p = matcher._encoded(probe)
        hits = []
        with mcc.single_threaded_blas():
            for k in self.candidates(matcher, p, shortlist):
                raw = matcher.similarity(p, self.encoded[k].detached())
                s = matcher.calibration.score_of(raw)
                if s >= threshold:
                    hits.append(SearchHit(self.identities[k], s, raw))
        hits.sort(key=lambda h: (-h.score, -h.similarity))
        return hits


__all__ = [
    "DEFAULT_THRESHOLD",
    "EncodedTemplate",
    "Gallery",
    "MatchResult",
    "Matcher",
    "SearchHit",
    "fmr_to_threshold",
]
