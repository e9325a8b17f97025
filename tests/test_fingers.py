"""Synthetic fingers: reproducible, shaped like the R30x window, and realistic enough for mindtct."""

from __future__ import annotations

import numpy as np
import pytest

from hardware_sims.fingers import (
    SENSOR_HEIGHT,
    SENSOR_WIDTH,
    FingerClass,
    SkinQuality,
    impression,
    impression_with_touch,
    master_finger,
)
from hardware_sims.fingers.orientation import Singularities, orientation_field, pick_class


def test_same_seed_same_master_and_same_impression(finger_masters) -> None:
    fresh = master_finger.__wrapped__(3)  # grown again, not taken from the cache
    cached = master_finger(3)
    assert np.array_equal(fresh.ridges, cached.ridges) and fresh.finger_class == cached.finger_class
    assert np.array_equal(impression(3, 2), impression(3, 2))
    assert np.array_equal(impression(3, 2, "dry"), impression(3, 2, SkinQuality.DRY))


def test_different_seeds_impressions_and_skins_differ(finger_masters) -> None:
    base = impression(3, 0)
    for other in (impression(4, 0), impression(3, 1), impression(3, 0, "wet")):
        assert np.mean(np.abs(base.astype(int) - other.astype(int))) > 10


def test_image_is_the_sensor_window_with_dark_ridges_on_light_background(finger_masters) -> None:
    image, touch = impression_with_touch(4, 0)
    assert image.dtype == np.uint8 and image.shape == (SENSOR_HEIGHT, SENSOR_WIDTH) == (288, 256)
    assert np.median(image[:8, :8]) > 180 or np.median(image[-8:, -8:]) > 180  # background corner
    cx, cy = (int(v) for v in touch.contact_centre)
    centre = image[cy - 20 : cy + 20, cx - 20 : cx + 20]
    assert centre.min() < 90 and centre.max() > 150  # ridges and valleys in the contact centre


def test_partial_touch_covers_less_of_the_window(finger_masters) -> None:
    def ridge_area(img: np.ndarray) -> float:
        blocks = img[:288, :256].reshape(18, 16, 16, 16).astype(float)
        return float((blocks.std(axis=(1, 3)) > 18).mean())

    full = np.mean([ridge_area(impression(5, k)) for k in range(3)])
    partial = np.mean([ridge_area(impression(5, k, "partial")) for k in range(3)])
    assert partial < 0.6 * full


def test_dry_skin_prints_thinner_ridges_and_wet_skin_thicker(finger_masters) -> None:
    def dark_share(img: np.ndarray) -> float:
        return float((img < 128).mean())

    good, dry, wet = (dark_share(impression(6, 0, q)) for q in ("good", "dry", "wet"))
    assert dry < good < wet


@pytest.mark.parametrize(
    ("cls", "sing"),
    [
        (FingerClass.LEFT_LOOP, Singularities(((150.0, 150.0),), ((230.0, 240.0),))),
        (FingerClass.WHORL, Singularities(((160.0, 150.0), (160.0, 175.0)), ((80.0, 250.0), (240.0, 250.0)))),
    ],
)
def test_orientation_field_has_the_singularities_it_was_given(cls: FingerClass, sing: Singularities) -> None:
    theta = orientation_field(sing, 320, 352)

    def poincare(x: float, y: float, r: float = 12.0) -> float:
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = [theta[round(y + r * np.sin(a)), round(x + r * np.cos(a))] for a in angles]
        total = 0.0
        for a, b in zip(pts, pts[1:] + pts[:1], strict=True):
            d = b - a
            d = (d + np.pi / 2) % np.pi - np.pi / 2  # orientations are modulo pi
            total += d
        return total / (2 * np.pi)

    for core in sing.cores:
        assert poincare(*core) == pytest.approx(0.5, abs=0.05)
    for delta in sing.deltas:
        assert poincare(*delta) == pytest.approx(-0.5, abs=0.05)
    assert poincare(60.0, 60.0) == pytest.approx(0.0, abs=0.05)


def test_every_class_occurs_with_plausible_frequency() -> None:
    rng = np.random.default_rng(1)
    drawn = [pick_class(rng) for _ in range(3000)]
    share = {c: drawn.count(c) / len(drawn) for c in FingerClass}
    assert all(share[c] > 0.01 for c in FingerClass)
    assert share[FingerClass.LEFT_LOOP] + share[FingerClass.RIGHT_LOOP] > 0.55


def test_mindtct_finds_a_sensible_number_of_minutiae_and_fingers_separate(finger_masters) -> None:
    from cardsvc.bio.evaluate import bozorth3_factory
    from cardsvc.bio.extract import extract_template

    load = bozorth3_factory()
    templates = {(s, k): extract_template(impression(s, k), quality=False) for s in (3, 4, 5) for k in (0, 1)}
    counts = [len(t.minutiae) for t in templates.values()]
    assert all(18 <= c <= 80 for c in counts) and 25 <= np.mean(counts) <= 60
    loaded = {key: load(t) for key, t in templates.items()}
    genuine = [loaded[(s, 0)].compare(loaded[(s, 1)]) for s in (3, 4, 5)]
    impostor = [
        loaded[(a, 0)].compare(loaded[(b, k)]) for a in (3, 4, 5) for b in (3, 4, 5) for k in (0, 1) if a != b
    ]
    assert min(genuine) > max(impostor)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        impression(-1, 0)
    with pytest.raises(ValueError):
        impression(1, 0, "greasy")


def test_a_fresh_process_draws_the_same_impression(finger_masters) -> None:
    """Nothing leaks in from process state (global RNGs, caches): another interpreter agrees byte for byte."""
    import hashlib
    import subprocess
    import sys

    code = (
        "import hashlib; from hardware_sims.fingers import impression; "
        "print(hashlib.sha256(impression(3, 1, 'wet').tobytes()).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == hashlib.sha256(impression(3, 1, "wet").tobytes()).hexdigest()


def test_different_fingers_do_not_look_alike_to_the_matcher() -> None:
    """A district's dedup search compares every finger with every other: synthetic impostor scores must
    stay near what the calibration (fitted on real fingers) promises, or honest people get flagged as
    duplicates. Thirty fingers, 435 impostor pairs: calibrated, about 0.4 should reach 30 (1 in 1,000) and
    none 47 (the 1:N threshold of a 50-finger gallery). The zero-pole field alone gave 90."""
    import itertools

    from cardsvc.bio.extract import extract_template
    from cardsvc.bio.matcher import Matcher

    matcher = Matcher()
    encoded = [matcher.encode(extract_template(impression(1000 + s * 7919, 0))) for s in range(30)]
    scores = [matcher.compare(a, b) for a, b in itertools.combinations(encoded, 2)]
    assert max(scores) < 47.0
    assert sum(s >= 30.0 for s in scores) <= 4
    genuine = matcher.compare(encoded[0], matcher.encode(extract_template(impression(1000, 1))))
    assert genuine >= 60.0
