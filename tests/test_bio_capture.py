"""The capture driver end to end over the simulator's pty, and its error paths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cardsvc.bio.capture import (
    CaptureCancelled,
    CaptureProgress,
    CaptureResult,
    CaptureStage,
    FingerprintSensor,
    NoFingerTimeout,
    PoorQualityError,
    SensorError,
    capture_finger,
)
from cardsvc.bio.template import FingerTemplate
from hardware_sims.sensor.simulator import SensorSimulator

NOISE = np.random.default_rng(0).integers(0, 256, (288, 256), dtype=np.uint8)  # a smudge, not a finger


class FakeClock:
    """Time that advances only when the driver sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_capture_over_the_pty_raises_baud_and_returns_a_template(sensor_sim: SensorSimulator) -> None:
    events: list[CaptureProgress] = []
    sensor_sim.place(3, 0)
    with FingerprintSensor(sensor_sim.port) as sensor:
        assert sensor.baud == 115_200
        result = capture_finger(sensor, on_progress=events.append)
    assert sensor_sim.device.params.baud == 115_200  # the module itself was switched
    assert isinstance(result.template, FingerTemplate)
    assert 20 <= len(result.template.minutiae) <= 90
    assert result.quality == result.template.quality >= 35 and result.attempts == 1
    assert result.image.shape == (288, 256)
    assert [e.stage for e in events] == [
        CaptureStage.WAITING,
        CaptureStage.PLACED,
        CaptureStage.CAPTURED,
        CaptureStage.QUALITY,
    ]
    assert events[-1].quality == result.quality and "quality" in events[-1].message


def test_poor_capture_asks_to_lift_and_place_again(sensor_sim: SensorSimulator) -> None:
    sensor_sim.place(NOISE)
    seen: list[CaptureProgress] = []

    def screen(progress: CaptureProgress) -> None:
        seen.append(progress)
        if progress.stage is CaptureStage.RETRY:  # the screen's cue: the holder lifts ...
            sensor_sim.lift()
        elif progress.stage is CaptureStage.WAITING and progress.attempt > 1:  # ... and places again
            sensor_sim.place(4, 1)

    with FingerprintSensor(sensor_sim.port) as sensor:
        result = capture_finger(sensor, min_quality=30, on_progress=screen, poll_interval=0.01)
    assert result.attempts == 2
    retry = next(p for p in seen if p.stage is CaptureStage.RETRY)
    assert (retry.attempt, retry.max_attempts) == (2, 3) and "lift" in retry.message


def test_every_attempt_poor_raises_with_attempts_and_best_quality(sensor_sim: SensorSimulator) -> None:
    counter = itertools.count(1)

    def screen(progress: CaptureProgress) -> None:
        if progress.stage is CaptureStage.RETRY:
            sensor_sim.lift()
        elif progress.stage is CaptureStage.WAITING and progress.attempt > 1:
            sensor_sim.place(5, next(counter))

    sensor_sim.place(5, 0)
    with FingerprintSensor(sensor_sim.port) as sensor, pytest.raises(PoorQualityError) as err:
        capture_finger(sensor, min_quality=100, max_attempts=2, on_progress=screen, poll_interval=0.01)
    assert err.value.attempts == 2
    assert err.value.best is not None and 0 < err.value.best_quality == err.value.best.quality < 100
    assert "below the threshold 100" in str(err.value)


def test_no_finger_times_out_and_cancel_stops_waiting(fingerprint_sensor: FingerprintSensor) -> None:
    clock = FakeClock()
    with pytest.raises(NoFingerTimeout) as err:
        capture_finger(fingerprint_sensor, timeout=2.0, clock=clock, sleep=clock.sleep, poll_interval=0.5)
    assert err.value.timeout == 2.0 and clock.now == pytest.approx(2.0)
    calls = itertools.count()
    with pytest.raises(CaptureCancelled):
        capture_finger(fingerprint_sensor, cancel=lambda: next(calls) >= 3, sleep=lambda s: None)


def test_sensor_errors_name_the_port_and_the_step() -> None:
    with pytest.raises(SensorError, match="/dev/nonexistent-sensor"):
        FingerprintSensor("/dev/nonexistent-sensor").open()
    with pytest.raises(SensorError, match="multiple of 9600"):
        FingerprintSensor("/dev/null", baud=10_000)
    with pytest.raises(SensorError, match="not opened"):
        FingerprintSensor("/dev/null").finger_present()


def test_wrong_password_is_a_sensor_error(sensor_sim: SensorSimulator) -> None:
    sensor_sim.device.params.password = 0x1234
    with pytest.raises(SensorError, match="refused the password"):
        FingerprintSensor(sensor_sim.port, password=0x4321).open()
    with FingerprintSensor(sensor_sim.port, password=0x1234, max_baud=57_600) as sensor:
        assert sensor.baud == 57_600 and not sensor.finger_present()


def test_unit_extraction_failure_counts_as_quality_zero(mocker) -> None:
    """One layer only: a fake module stands in for pyfingerprint; extraction always fails."""
    from cardsvc.bio.errors import ExtractionError

    module = mocker.Mock()
    module.verifyPassword.return_value = True
    module.getSystemParameters.return_value = (0, 0, 1000, 3, 0xFFFFFFFF, 2, 12)
    module.readImage.return_value = True

    def save(path: str) -> None:
        from PIL import Image

        Image.fromarray(NOISE).save(path)

    module.downloadImage.side_effect = save
    module.readImage.side_effect = itertools.cycle([True, False])  # placed, lifted, placed ...
    sensor = FingerprintSensor("fake", factory=lambda *a: module)
    sensor.open()
    module.setBaudRate.assert_not_called()  # already at 115,200

    def fail(image: np.ndarray) -> FingerTemplate:
        raise ExtractionError("no ridges")

    with pytest.raises(PoorQualityError) as err:
        capture_finger(sensor, max_attempts=2, extract=fail, sleep=lambda s: None)
    assert (err.value.attempts, err.value.best_quality, err.value.best) == (2, 0, None)


def test_unit_too_few_minutiae_is_poor_even_with_good_nfiq2(mocker) -> None:
    from cardsvc.bio.template import Minutia

    module = mocker.Mock()
    module.verifyPassword.return_value = True
    module.getSystemParameters.return_value = (0, 0, 1000, 3, 0xFFFFFFFF, 2, 6)
    module.readImage.side_effect = itertools.cycle([True, False])
    module.downloadImage.side_effect = lambda path: __import__("PIL.Image").Image.fromarray(NOISE).save(path)
    sensor = FingerprintSensor("fake", factory=lambda *a: module)
    sensor.open()
    module.setBaudRate.assert_called_once_with(115_200)  # the module was at 57,600
    few = FingerTemplate(tuple(Minutia(10 * i, 10 * i, 0.0) for i in range(8)), 256, 288, quality=80)
    with pytest.raises(PoorQualityError) as err:
        capture_finger(sensor, max_attempts=1, extract=lambda image: few, sleep=lambda s: None)
    assert err.value.best_quality == 80 and err.value.best is not None
    result = capture_finger(sensor, min_minutiae=8, extract=lambda image: few, sleep=lambda s: None)
    assert result.template is few


def test_capture_result_repr_carries_neither_image_nor_minutiae() -> None:
    """A capture result in a log line or traceback must not dump the finger image or its template."""
    image = np.full((288, 256), 173, dtype=np.uint8)
    result = CaptureResult(FingerTemplate(()), quality=55, attempts=2, image=image)
    text = repr(result)
    assert "173" not in text and "array" not in text
    assert "quality=55" in text and "attempts=2" in text
