"""Minutiae extraction (NIST mindtct) and image quality (NIST NFIQ2) through the `nbis-py` wheel.

Only the extractor and NFIQ2 of nbis-py are used; its ISO/IEC 19794-2 writer is broken (resolution 0, reads 0
minutiae from vendor records) so records are made by `cardsvc.bio.iso19794`. nbis-py reports positions in
image pixels (y down) and angles counter-clockwise as seen on the image, which is the ISO convention of
`cardsvc.bio.template` (checked by tests/test_bio_extract.py with a rotated image).
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
from PIL import Image

from cardsvc.bio.errors import ExtractionError
from cardsvc.bio.template import FingerTemplate, Minutia, MinutiaKind

MIN_SIDE = 64  # pixels: below this mindtct's block analysis has nothing to work on
PPCM_PER_PPI = 1 / 2.54


@functools.lru_cache(maxsize=8)
def _extractor(ppi: int, nfiq2: bool) -> Any:
    import nbis

    settings = nbis.NbisExtractorSettings(
        min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=nfiq2, ppi=float(ppi)
    )
    return nbis.new_nbis_extractor(settings)


def _png(image: np.ndarray) -> bytes:
    """Validate a grey image and encode it as PNG, the cheapest container nbis-py decodes."""
    if not isinstance(image, np.ndarray):
        raise ExtractionError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ExtractionError(f"image must be 2-D grey (H x W), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ExtractionError(f"image must be uint8 grey, got dtype {image.dtype}")
    height, width = image.shape
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ExtractionError(f"image {width}x{height} px is too small (at least {MIN_SIDE}x{MIN_SIDE})")
    if int(image.max()) - int(image.min()) < 16:
        raise ExtractionError("image is blank (contrast below 16 grey levels): no finger on the sensor?")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _run(image: np.ndarray, ppi: int, nfiq2: bool) -> Any:
    if not 100 <= ppi <= 2000:
        raise ExtractionError(f"resolution {ppi} ppi is outside 100-2000")
    data = _png(image)
    try:
        return _extractor(ppi, nfiq2).extract_minutiae(data)
    except Exception as exc:  # nbis raises its own NbisError kinds with terse messages
        raise ExtractionError(f"mindtct could not process the image: {exc!r}") from exc


def _nfiq2_score(result: Any) -> int:
    try:
        score = int(result.quality().score)
    except Exception as exc:
        raise ExtractionError(f"NFIQ2 could not rate the image: {exc!r}") from exc
    return max(0, min(100, score))


def extract_template(
    image: np.ndarray, *, ppi: int = 500, finger_position: int = 0, quality: bool = True
) -> FingerTemplate:
    """Extract one finger's minutiae from a grey image (uint8, H x W, dark ridges on light background).

    With `quality=True` the template's quality is the NFIQ2 score (0-100); NFIQ2 costs about as much again
    as mindtct, so a paypoint that only verifies passes `quality=False`. Raises ExtractionError for an
    unusable image (wrong shape or type, blank, no minutiae found).
    """
    if not 0 <= finger_position <= 10:
        raise ExtractionError(f"finger position {finger_position} is outside the ISO range 0-10")
    result = _run(image, ppi, quality)
    height, width = image.shape
    minutiae = []
    for m in result.get():
        x, y = int(m.x()), int(m.y())
        if not (0 <= x < width and 0 <= y < height):
            continue
        kind = MinutiaKind.BIFURCATION if m.kind().value == 2 else MinutiaKind.ENDING
        q = round(100 * float(m.reliability()))
        minutiae.append(Minutia(x, y, float(m.angle()) % 360.0, kind, max(1, min(100, q))))
    if not minutiae:
        raise ExtractionError("no minutiae found in the image (no ridges, or far too poor a print)")
    return FingerTemplate(
        minutiae=tuple(minutiae),
        width=width,
        height=height,
        resolution_ppcm=round(ppi * PPCM_PER_PPI),
        finger_position=finger_position,
        quality=_nfiq2_score(result) if quality else 0,
    )


def image_quality(image: np.ndarray, *, ppi: int = 500) -> int:
    """NFIQ2 quality of a grey image, 0 (unusable) to 100; enrolment retries captures below its threshold."""
    return _nfiq2_score(_run(image, ppi, True))


def load_image(path: str) -> np.ndarray:
    """Read an image file (TIFF, PNG, BMP ...) as a uint8 grey array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8)
