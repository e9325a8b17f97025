"""Synthetic fingers: generation speed against its ceiling, and how well matchers separate them.

Run: ``.venv/bin/python bench/bench_fingers.py [--fingers 20] [--impressions 4] [--quality good]``

Prints seconds per master finger (fresh, uncached) and per impression against the ceilings, the mindtct
minutia counts and NFIQ2 of the impressions, then genuine vs impostor score distributions (every pair of
impressions: same finger = genuine, different fingers = impostor) for NIST bozorth3 and for the team's
MCC-LSSR matcher (card-quantised, calibrated score), with EER and FNMR at fixed FMRs.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

import numpy as np

from cardsvc.benchfig import Figure, report

#: Field-like mix for --quality mixed: most touches fine, some dry, wet, partial or smudged.
QUALITY_MIX = {"good": 0.6, "dry": 0.15, "wet": 0.1, "partial": 0.1, "smudged": 0.05}
_MIX_HELP = ", ".join(f"{q} {100 * p:.0f}%" for q, p in QUALITY_MIX.items())
MASTER_CEILING_S = 1.0  # per finger: "enrol a village" (the brief: well under 1 s)
IMPRESSION_CEILING_S = 0.25  # per impression: impressions must be cheap next to a master


def _summary(name: str, scores: list[float]) -> str:
    a = np.asarray(scores, dtype=float)
    return (
        f"  {name:9s} n={a.size:5d}  min {a.min():7.1f}  p5 {np.percentile(a, 5):7.1f}  "
        f"median {np.median(a):7.1f}  p95 {np.percentile(a, 95):7.1f}  max {a.max():7.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingers", type=int, default=20)
    parser.add_argument("--impressions", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument(
        "--quality",
        default="good",
        help="good, dry, wet, partial, smudged, or mixed (each impression drawn: " + _MIX_HELP + ")",
    )
    parser.add_argument("--no-mcc", action="store_true", help="skip the MCC matcher (bozorth3 only)")
    args = parser.parse_args(argv)

    from cardsvc.bio.errors import ExtractionError
    from cardsvc.bio.evaluate import bozorth3_factory, error_rates
    from cardsvc.bio.extract import extract_template
    from hardware_sims.fingers import impression, master_finger

    seeds = list(range(args.first_seed, args.first_seed + args.fingers))

    t0 = time.perf_counter()
    for seed in seeds:
        master_finger.__wrapped__(seed)  # uncached: the real cost
    per_master = (time.perf_counter() - t0) / len(seeds)
    for seed in seeds:
        master_finger(seed)  # fill the cache for the impressions below
    speed = [Figure("master finger (fresh, uncached)", per_master, "s per finger", MASTER_CEILING_S)]

    t0 = time.perf_counter()
    mix = np.random.default_rng(args.first_seed)
    qualities = list(QUALITY_MIX)
    weights = np.array(list(QUALITY_MIX.values()))

    def quality_of() -> str:
        if args.quality != "mixed":
            return str(args.quality)
        return qualities[int(mix.choice(len(qualities), p=weights / weights.sum()))]

    images = {(s, k): impression(s, k, quality_of()) for s in seeds for k in range(args.impressions)}
    per_imp = (time.perf_counter() - t0) / len(images)
    speed.append(Figure("impression", per_imp, "s per impression", IMPRESSION_CEILING_S))
    ok = report(speed)

    templates = {}
    failed = 0
    t0 = time.perf_counter()
    for key, image in images.items():
        try:
            templates[key] = extract_template(image, ppi=500)
        except ExtractionError:
            failed += 1
    per_extract = (time.perf_counter() - t0) / len(images)
    counts = [len(t.minutiae) for t in templates.values()]
    nfiq = [t.quality for t in templates.values()]
    in_range = sum(25 <= c <= 60 for c in counts) / max(1, len(counts))
    print(
        f"mindtct minutiae   mean {statistics.mean(counts):.1f}  min {min(counts)}  max {max(counts)}  "
        f"in 25-60: {100 * in_range:.0f}%   NFIQ2 mean {statistics.mean(nfiq):.1f} "
        f"(min {min(nfiq)}, max {max(nfiq)})   failed {failed}   ({per_extract * 1000:.0f} ms/image)"
    )

    keys = sorted(templates)
    pairs = list(itertools.combinations(keys, 2))
    genuine_pairs = [(a, b) for a, b in pairs if a[0] == b[0]]
    impostor_pairs = [(a, b) for a, b in pairs if a[0] != b[0]]
    print(f"pairs              {len(genuine_pairs)} genuine, {len(impostor_pairs)} impostor")

    matchers: list[tuple[str, object]] = []
    load = bozorth3_factory()
    loaded = {k: load(t) for k, t in templates.items()}
    matchers.append(("bozorth3", lambda a, b: float(loaded[a].compare(loaded[b]))))
    if not args.no_mcc:
        from cardsvc.bio.iso19794 import quantise_for_card
        from cardsvc.bio.matcher import Matcher

        matcher = Matcher()
        encoded = {k: matcher.encode(quantise_for_card(t)) for k, t in templates.items()}
        matchers.append(("MCC-LSSR", lambda a, b: float(matcher.compare(encoded[a], encoded[b]))))

    for name, score in matchers:
        assert callable(score)
        t0 = time.perf_counter()
        genuine = [score(a, b) for a, b in genuine_pairs]
        impostor = [score(a, b) for a, b in impostor_pairs]
        per_cmp = (time.perf_counter() - t0) / len(pairs)
        rates = error_rates(genuine, impostor)
        g, i = np.asarray(genuine), np.asarray(impostor)
        dprime = abs(g.mean() - i.mean()) / np.sqrt((g.var() + i.var()) / 2)
        print(f"{name}: {per_cmp * 1000:.2f} ms/comparison")
        print(_summary("genuine", genuine))
        print(_summary("impostor", impostor))
        fnmr = "  ".join(f"FNMR@FMR={k:g}: {100 * v:.2f}%" for k, v in sorted(rates.fnmr_at.items()))
        print(f"  EER {100 * rates.eer:.2f}%   {fnmr}   d' {dprime:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
