"""Extraction (mindtct through nbis-py) and NFIQ2 quality on real images; typed errors on unusable ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cardsvc.bio.errors import ExtractionError
from cardsvc.bio.extract import extract_template, image_quality, load_image


@pytest.fixture(scope="module")
def fvc_image(fvc_dir: Path) -> np.ndarray:
    return load_image(str(fvc_dir / "DB1_B" / "101_1.tif"))


@pytest.mark.fvc
def test_extracts_minutiae_inside_the_image_with_geometry_and_quality(fvc_image: np.ndarray) -> None:
    t = extract_template(fvc_image, finger_position=2)
    h, w = fvc_image.shape
    assert (t.width, t.height, t.resolution_ppcm, t.finger_position) == (w, h, 197, 2)
    assert 20 <= len(t.minutiae) <= 80
    assert all(0 <= m.x < w and 0 <= m.y < h and 0 <= m.angle < 360 for m in t.minutiae)
    assert all(1 <= m.quality <= 100 for m in t.minutiae)
    assert 1 <= t.quality <= 100  # NFIQ2
    assert t.quality == image_quality(fvc_image)
    assert extract_template(fvc_image, quality=False).quality == 0


@pytest.mark.fvc
def test_angles_turn_with_the_finger_counter_clockwise_as_iso_wants(fvc_image: np.ndarray) -> None:
    """Rotating the image 30 degrees counter-clockwise (as seen) adds about 30 degrees to every angle."""
    phi = 30.0
    rotated = np.asarray(Image.fromarray(fvc_image).rotate(phi, resample=Image.BICUBIC, fillcolor=255))
    a = extract_template(fvc_image, quality=False)
    b = extract_template(rotated, quality=False)
    h, w = fvc_image.shape
    cx, cy = w / 2, h / 2
    t = np.radians(phi)
    shifts = []
    for m in a.minutiae:
        x = cx + np.cos(t) * (m.x - cx) + np.sin(t) * (m.y - cy)
        y = cy - np.sin(t) * (m.x - cx) + np.cos(t) * (m.y - cy)
        d = [np.hypot(n.x - x, n.y - y) for n in b.minutiae]
        j = int(np.argmin(d))
        if d[j] < 6:
            shifts.append((b.minutiae[j].angle - m.angle + 180) % 360 - 180)
    assert len(shifts) >= 0.5 * len(a.minutiae)
    assert abs(float(np.median(shifts)) - phi) <= 12


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((300, 300, 3), np.uint8), "2-D grey"),
        (np.zeros((300, 300), np.float32), "uint8"),
        (np.full((300, 300), 200, np.uint8), "blank"),
        (np.zeros((20, 300), np.uint8), "too small"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_unusable_images_raise_extraction_error(image: object, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        extract_template(image)  # type: ignore[arg-type]
    with pytest.raises(ExtractionError, match=message):
        image_quality(image)  # type: ignore[arg-type]


def test_noise_without_ridges_gives_no_template() -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (300, 300), dtype=np.uint8)
    try:
        t = extract_template(noise, quality=False)
    except ExtractionError as exc:
        assert "no minutiae" in str(exc)
    else:  # mindtct may find a few spurious points in noise, never a finger's worth of ridges
        assert len(t.minutiae) < 200


def test_bad_arguments_are_refused() -> None:
    image = np.tile((np.sin(np.arange(300) / 1.6) * 100 + 128).astype(np.uint8), (300, 1))
    with pytest.raises(ExtractionError, match="finger position 11"):
        extract_template(image, finger_position=11)
    with pytest.raises(ExtractionError, match="resolution"):
        extract_template(image, ppi=20)
