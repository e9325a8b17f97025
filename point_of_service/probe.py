"""Turn a captured finger into what cards match against: compact minutiae wrapped in 7F2E (one home for
the POS; the codec itself is cardsvc.bio.iso19794). A probe never enters the journal or a log."""

from __future__ import annotations

from collections.abc import Callable

from cardsvc.bio.iso19794 import encode_compact, minutiae_fitting_short_apdu, wrap_verify_template
from cardsvc.bio.template import FingerTemplate

#: Captures one live finger (the sensor driver in production, a synthetic finger in tests).
CaptureFn = Callable[[], FingerTemplate]


def probe_bytes(template: FingerTemplate) -> bytes:
    """``7F2E {81 compact}`` with as many best-quality minutiae as fit in one short APDU."""
    return wrap_verify_template(encode_compact(template, max_minutiae=minutiae_fitting_short_apdu()))


def sensor_capture(port: str, *, timeout: float = 30.0) -> CaptureFn:
    """A capture function on a ZFM sensor at ``port`` (image to the host, extraction without NFIQ2)."""

    def capture() -> FingerTemplate:
        from cardsvc.bio.capture import FingerprintSensor, capture_finger
        from cardsvc.bio.extract import extract_template

        with FingerprintSensor(port) as sensor:
            result = capture_finger(
                sensor,
                min_quality=0,
                max_attempts=1,
                timeout=timeout,
                extract=lambda image: extract_template(image, quality=False),
            )
        return result.template

    return capture
