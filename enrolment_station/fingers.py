"""Finger readers: the real capture driver, optionally fed by the sensor simulator for scripted camps.

:class:`SensorFingerReader` captures through ``cardsvc.bio.capture`` (pyfingerprint on a serial port).
With a ``placer`` (the simulator's control socket, ``hardware_sims.sensor.control.ControlClient``, or the
in-process ``SensorSimulator``), it first places the synthetic finger that belongs to the member, so a
demo camp runs unattended. Which synthetic finger a member has is :func:`finger_seed` (stable), unless the
script overrides it (tests give two members the same finger to check duplicate refusal).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Protocol

from cardsvc.bio.capture import CaptureResult, FingerprintSensor, capture_finger
from cardsvc.bio.iso19794 import encode_compact, wrap_verify_template

FKO_FINGER_SEED = 9001


class FingerPlacer(Protocol):
    def place(self, finger: int, impression: int = 0, quality: str = "good") -> object: ...

    def lift(self) -> object: ...


def finger_seed(household_id: str, member_no: int, finger: int) -> int:
    """The synthetic finger of a member's finger in scripted camps (stable across runs and processes)."""
    digest = hashlib.sha256(f"{household_id}/{member_no}/{finger}".encode()).digest()
    return 100_000 + int.from_bytes(digest[:4], "big") % 10_000_000


class SensorFingerReader:
    """One capture per call (the station runs the retries), placing the scripted finger first if asked."""

    def __init__(
        self,
        sensor: FingerprintSensor,
        *,
        placer: FingerPlacer | None = None,
        seeds: Mapping[tuple[str, int, int], int] | None = None,
        quality: Callable[[str, int, int, int], str] = lambda h, m, f, a: "good",
        min_quality: int = 35,
        min_minutiae: int = 12,
        timeout: float = 15.0,
    ) -> None:
        self.sensor = sensor
        self.placer = placer
        self.seeds = dict(seeds or {})
        self.quality = quality
        self.min_quality = min_quality
        self.min_minutiae = min_minutiae
        self.timeout = timeout

    def capture(self, household_id: str, member_no: int, finger: int, attempt: int) -> CaptureResult:
        if self.placer is not None:
            seed = self.seeds.get(
                (household_id, member_no, finger), finger_seed(household_id, member_no, finger)
            )
            _place(self.placer, seed, attempt, self.quality(household_id, member_no, finger, attempt))
        try:
            return capture_finger(
                self.sensor,
                min_quality=self.min_quality,
                min_minutiae=self.min_minutiae,
                max_attempts=1,
                timeout=self.timeout,
            )
        finally:
            if self.placer is not None:
                self.placer.lift()

    def officer_probe(self, seed: int = FKO_FINGER_SEED, impression: int = 1) -> bytes:
        """Capture the FKO's finger for match-on-card: 7F2E-wrapped compact minutiae."""
        if self.placer is not None:
            _place(self.placer, seed, impression, "good")
        try:
            result = capture_finger(
                self.sensor, min_quality=self.min_quality, max_attempts=1, timeout=self.timeout
            )
        finally:
            if self.placer is not None:
                self.placer.lift()
        return wrap_verify_template(encode_compact(result.template, max_minutiae=60))


def _place(placer: FingerPlacer, seed: int, impression: int, quality: str) -> None:
    placer.place(seed, impression, quality)  # ControlClient and SensorSimulator take the same arguments


class SyntheticFingerReader:
    """No sensor: the member's synthetic impression goes straight to the host extractor (benchmarks of the
    station's own time, and fast tests of later steps; the sensor path is tested with SensorFingerReader)."""

    def __init__(self, seeds: Mapping[tuple[str, int, int], int] | None = None) -> None:
        self.seeds = dict(seeds or {})

    def _capture(self, seed: int, attempt: int) -> CaptureResult:
        from cardsvc.bio.extract import extract_template
        from hardware_sims.fingers.impression import impression

        image = impression(seed, attempt, "good")
        template = extract_template(image)
        return CaptureResult(template, int(template.quality), 1, image)

    def capture(self, household_id: str, member_no: int, finger: int, attempt: int) -> CaptureResult:
        seed = self.seeds.get((household_id, member_no, finger), finger_seed(household_id, member_no, finger))
        return self._capture(seed, attempt)

    def officer_probe(self, seed: int = FKO_FINGER_SEED, impression: int = 1) -> bytes:
        result = self._capture(seed, impression)
        return wrap_verify_template(encode_compact(result.template, max_minutiae=60))
