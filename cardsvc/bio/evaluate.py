"""Accuracy evaluation on FVC-style folders (DIR/<db>/<finger>_<impression>.tif), the FVC protocol.

Genuine pairs: every pair of impressions of the same finger (28 per finger of 8 impressions). Impostor pairs:
every pair of impressions of different fingers. Reported per database and as the mean: EER and FNMR at
FMR = 1%, 0.1%, 0.01%, for our matcher on the full record, on card-quantised templates (both sides, as the
card stores them) and for NIST bozorth3 on the same mindtct minutiae. Extracted minutiae are cached as
ISO records (our codec) so re-runs skip mindtct.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cardsvc.bio.extract import extract_template, load_image
from cardsvc.bio.iso19794 import decode_template, encode_template, quantise_for_card
from cardsvc.bio.template import FingerTemplate

IMAGE_NAME = re.compile(r"^(?P<finger>\d+)_(?P<impression>\d+)\.(tif|tiff|png|bmp)$", re.IGNORECASE)
FMR_POINTS = (1e-2, 1e-3, 1e-4)
CACHE_VERSION = b"mindtct-nbis-py-0.1.3/1"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cardsvc" / "minutiae"


@dataclass(frozen=True)
class FvcImage:
    database: str
    finger: int
    impression: int
    path: Path


def scan_fvc(root: Path) -> dict[str, list[FvcImage]]:
    """Images by database; `root` may hold database folders or be one database folder itself."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    found: dict[str, list[FvcImage]] = {}
    for folder in folders:
        images = []
        for p in sorted(folder.iterdir()):
            m = IMAGE_NAME.match(p.name)
            if m and p.is_file():
                images.append(FvcImage(folder.name, int(m["finger"]), int(m["impression"]), p))
        if images:
            found[folder.name] = images
    if not found:
        raise FileNotFoundError(f"no <finger>_<impression>.tif images under {root}")
    return found


class TemplateCache:
    """mindtct templates keyed by the image's SHA-256, stored as ISO/IEC 19794-2 records."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def get(self, path: Path) -> FingerTemplate:
        data = path.read_bytes()
        key = hashlib.sha256(CACHE_VERSION + data).hexdigest()[:40]
        file = self.directory / f"{key}.iso" if self.directory is not None else None
        if file is not None and file.is_file():
            return decode_template(file.read_bytes())
        template = extract_template(load_image(str(path)), quality=False)
        if file is not None:
            tmp = file.with_suffix(".tmp")
            tmp.write_bytes(encode_template(template))
            tmp.replace(file)
        return template


def protocol_pairs(images: Sequence[FvcImage]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(genuine, impostor) index pairs of the FVC protocol (all pairs, unordered)."""
    genuine: list[tuple[int, int]] = []
    impostor: list[tuple[int, int]] = []
    for i, j in combinations(range(len(images)), 2):
        (genuine if images[i].finger == images[j].finger else impostor).append((i, j))
    return genuine, impostor


@dataclass
class ErrorRates:
    eer: float
    fnmr_at: dict[float, float]
    det_fmr: NDArray[np.float64] = field(repr=False)
    det_fnmr: NDArray[np.float64] = field(repr=False)


def error_rates(genuine: Sequence[float], impostor: Sequence[float]) -> ErrorRates:
    """EER and FNMR at fixed FMRs; a comparison matches when score >= threshold."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    if g.size == 0 or i.size == 0:
        raise ValueError("need both genuine and impostor scores")
    thresholds = np.unique(np.concatenate([g, i, [np.inf]]))
    fmr = 1.0 - np.searchsorted(i, thresholds, side="left") / i.size
    fnmr = np.searchsorted(g, thresholds, side="left") / g.size
    k = int(np.argmax(fmr <= fnmr))  # first threshold where FNMR has caught up with FMR
    if k == 0:
        eer = float((fmr[0] + fnmr[0]) / 2)
    else:
        # FVC: the EER lies between the bracketing thresholds; take the tighter bracket's midpoint
        if fmr[k - 1] + fnmr[k - 1] <= fmr[k] + fnmr[k]:
            low, high = fnmr[k - 1], fmr[k - 1]
        else:
            low, high = fmr[k], fnmr[k]
        eer = float((low + high) / 2)
    at = {}
    for target in FMR_POINTS:
        ok = np.nonzero(fmr <= target + 1e-12)[0]
        at[target] = float(fnmr[ok[0]]) if ok.size else 1.0
    return ErrorRates(eer, at, fmr, fnmr)


def nbis_dialect(template: FingerTemplate) -> bytes:
    """The (non-conformant) layout nbis-py's loader accepts: resolution 0, no view header but a 2-byte count.

    Used only to hand our cached minutiae to bozorth3; never written anywhere.
    """
    record = encode_template(template)
    n = len(template.minutiae)
    body = record[28 : 28 + 6 * n]
    return record[:8] + struct.pack(">I", 26 + 6 * n) + record[12:18] + bytes(6) + struct.pack(">H", n) + body


def bozorth3_factory() -> Callable[[FingerTemplate], Any]:
    import nbis

    settings = nbis.NbisExtractorSettings(
        min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=False, ppi=500.0
    )
    extractor = nbis.new_nbis_extractor(settings)

    def load(template: FingerTemplate) -> Any:
        return extractor.load_iso_19794_2_2005(nbis_dialect(template))

    return load


@dataclass
class MatcherResult:
    rates: ErrorRates
    comparisons: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.comparisons / self.seconds if self.seconds > 0 else float("inf")


def run_pairs(
    prepared: Sequence[Any], pairs: Sequence[tuple[int, int]], compare: Callable[[Any, Any], float]
) -> tuple[list[float], float]:
    from cardsvc.bio.mcc import single_threaded_blas

    start = time.perf_counter()
    with single_threaded_blas():
        scores = [compare(prepared[i], prepared[j]) for i, j in pairs]
    return scores, time.perf_counter() - start


MATCHERS = ("mcc", "mcc-card", "bozorth3")


def evaluate_database(
    images: Sequence[FvcImage],
    cache: TemplateCache,
    matchers: Sequence[str] = MATCHERS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, MatcherResult]:
    """Run the FVC protocol on one database for each named matcher."""
    from cardsvc.bio.matcher import Matcher

    templates = [cache.get(img.path) for img in images]
    genuine, impostor = protocol_pairs(images)
    results: dict[str, MatcherResult] = {}
    matcher = Matcher()
    for name in matchers:
        if progress:
            progress(f"{images[0].database}: {name}")
        compare: Callable[[Any, Any], float]
        if name == "mcc":
            prepared: list[Any] = [matcher.encode(t) for t in templates]
            compare = matcher.compare
        elif name == "mcc-card":
            prepared = [matcher.encode(quantise_for_card(t)) for t in templates]
            compare = matcher.compare
        elif name == "bozorth3":
            load = bozorth3_factory()
            prepared = [load(t) for t in templates]

            def compare(a: Any, b: Any) -> float:
                return float(a.compare(b))
        else:
            raise ValueError(f"unknown matcher {name!r} (known: {', '.join(MATCHERS)})")
        g, tg = run_pairs(prepared, genuine, compare)
        i, ti = run_pairs(prepared, impostor, compare)
        results[name] = MatcherResult(error_rates(g, i), len(g) + len(i), tg + ti)
    return results


def summarise(per_db: dict[str, dict[str, MatcherResult]]) -> dict[str, Any]:
    """JSON-ready figures per database and their mean (percentages)."""
    out: dict[str, Any] = {"databases": {}, "mean": {}}
    names = sorted({n for r in per_db.values() for n in r}, key=lambda n: MATCHERS.index(n))
    for db, results in per_db.items():
        out["databases"][db] = {n: _figures(r) for n, r in results.items()}
    for n in names:
        rows = [per_db[db][n] for db in per_db if n in per_db[db]]
        out["mean"][n] = {
            "eer_pct": float(np.mean([r.rates.eer for r in rows]) * 100),
            **{
                f"fnmr_at_fmr_{p:g}_pct": float(np.mean([r.rates.fnmr_at[p] for r in rows]) * 100)
                for p in FMR_POINTS
            },
            "comparisons_per_second": float(
                sum(r.comparisons for r in rows) / max(sum(r.seconds for r in rows), 1e-9)
            ),
        }
    return out


def _figures(r: MatcherResult) -> dict[str, float]:
    return {
        "eer_pct": r.rates.eer * 100,
        **{f"fnmr_at_fmr_{p:g}_pct": r.rates.fnmr_at[p] * 100 for p in FMR_POINTS},
        "comparisons_per_second": r.per_second,
        "comparisons": r.comparisons,
    }


def plot_det(per_db: dict[str, dict[str, MatcherResult]], path: Path) -> None:
    """DET curves (FNMR against FMR, log axes) of every matcher on every database, one panel per database."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(per_db)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.5 * rows), squeeze=False)
    for ax, (db, results) in zip(axes.ravel(), per_db.items(), strict=False):
        for name, r in results.items():
            fmr = np.clip(r.rates.det_fmr, 1e-5, 1)
            fnmr = np.clip(r.rates.det_fnmr, 1e-5, 1)
            ax.plot(fmr, fnmr, label=f"{name} (EER {r.rates.eer * 100:.2f}%)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set_ylim(1e-3, 1)
        ax.set_xlabel("FMR")
        ax.set_ylabel("FNMR")
        ax.set_title(db)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def impostor_raw_scores(
    root: Path,
    cache: TemplateCache,
    *,
    card: bool = True,
    across: bool = False,
    progress: Callable[[str], None] | None = None,
) -> NDArray[np.float64]:
    """Raw LSS-R scores of every impostor pair within each database under `root` (and across, if asked).

    Pairs within one sensor score higher than pairs of different sensors (FMR twice as high at 1%
    on FVC2002 B), so the calibration uses within-database pairs by default: a conservative table.
    `card=True` quantises both sides as a card stores them.
    """
    from cardsvc.bio.matcher import Matcher
    from cardsvc.bio.mcc import lssr_score, single_threaded_blas

    images = [img for imgs in scan_fvc(root).values() for img in imgs]
    matcher = Matcher()
    encoded = []
    for img in images:
        t = cache.get(img.path)
        encoded.append(matcher.encode(quantise_for_card(t) if card else t))
    scores = []
    with single_threaded_blas():
        for i in range(len(images)):
            if progress and i % 40 == 0:
                progress(f"impostor scores: image {i}/{len(images)}")
            a = images[i]
            for j in range(i + 1, len(images)):
                b = images[j]
                if a.database == b.database and a.finger == b.finger:
                    continue
                if a.database != b.database and not across:
                    continue
                scores.append(lssr_score(encoded[i], encoded[j], matcher.params))
    return np.asarray(scores, dtype=np.float64)
