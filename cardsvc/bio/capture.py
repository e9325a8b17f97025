"""Fingerprint capture from a ZhianTec ZFM / R30x sensor through pyfingerprint, with quality gating.

The sensor's own characteristics are proprietary and its scores uncalibrated, so the host takes the IMAGE
(readImage + downloadImage) and extracts ISO minutiae itself (`cardsvc.bio.extract`). An image is 36,864
bytes on the serial line, about 6.4 s at the factory 57,600 baud: `FingerprintSensor.open()` raises the
module to the fastest rate allowed (115,200 by default, 3.2 s) and reopens the port at that rate.

    with FingerprintSensor("/dev/ttyUSB0") as sensor:
        result = capture_finger(sensor, min_quality=35, max_attempts=3, on_progress=screen.show)
        result.template, result.quality

Progress events (for the operator's screen): WAITING (put the finger on), PLACED, CAPTURED,
QUALITY (with the NFIQ2 score), RETRY (lift the finger and place it again; attempt k of n).
"""

from __future__ import annotations

import enum
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
from PIL import Image

from cardsvc.bio.errors import BiometricError, ExtractionError
from cardsvc.bio.template import FingerTemplate

log = logging.getLogger(__name__)

FACTORY_BAUD = 57_600
MAX_BAUD = 115_200  # the highest rate R30x modules (and pyfingerprint) accept
SENSOR_PPI = 500
DEFAULT_MIN_QUALITY = 35  # NFIQ2: below this a capture is retried
DEFAULT_ATTEMPTS = 3
DEFAULT_MIN_MINUTIAE = 12  # fewer: too little of the finger touched the glass, whatever NFIQ2 says
DEFAULT_TIMEOUT = 15.0  # seconds to wait for a finger (or for it to be lifted)


class SensorError(BiometricError):
    """The sensor cannot be reached or answered something unexpected (the message says what)."""


class NoFingerTimeout(SensorError):
    """No finger was placed (or lifted, when asked) within the timeout."""

    def __init__(self, timeout: float, waiting_for: str = "a finger") -> None:
        super().__init__(f"waited {timeout:g} s for {waiting_for} on the sensor")
        self.timeout = timeout


class CaptureCancelled(SensorError):
    """The operator cancelled the capture."""


class PoorQualityError(SensorError):
    """Every attempt stayed below the quality threshold; `best` is the best capture, for a fallback."""

    def __init__(self, attempts: int, best_quality: int, threshold: int, best: CaptureResult | None) -> None:
        super().__init__(
            f"{attempts} capture(s), best quality {best_quality} is below the threshold {threshold}: "
            "clean the glass and the finger, or try another finger"
        )
        self.attempts = attempts
        self.best_quality = best_quality
        self.threshold = threshold
        self.best = best


class CaptureStage(enum.StrEnum):
    WAITING = "waiting"  # place the finger
    PLACED = "placed"  # finger seen, image being read
    CAPTURED = "captured"  # image on the host
    QUALITY = "quality"  # quality computed (see .quality)
    RETRY = "retry"  # quality too low: lift the finger and place it again


@dataclass(frozen=True, slots=True)
class CaptureProgress:
    stage: CaptureStage
    attempt: int  # 1-based
    max_attempts: int
    quality: int | None = None

    @property
    def message(self) -> str:
        """A line for the operator's screen."""
        n = f"attempt {self.attempt} of {self.max_attempts}"
        return {
            CaptureStage.WAITING: f"Place the finger on the sensor ({n})",
            CaptureStage.PLACED: "Finger detected, hold still",
            CaptureStage.CAPTURED: "Image captured",
            CaptureStage.QUALITY: f"Image quality {self.quality}",
            CaptureStage.RETRY: f"Quality too low: lift the finger and place it again ({n})",
        }[self.stage]


@dataclass(frozen=True, slots=True)
class CaptureResult:
    template: FingerTemplate
    quality: int  # NFIQ2 0-100
    attempts: int
    image: np.ndarray = field(repr=False)  # uint8 grey, 288 x 256 (16 grey levels); never in a repr


class SensorModule(Protocol):
    """What capture uses of pyfingerprint's PyFingerprint (its camelCase names); tests may fake it."""

    def verifyPassword(self) -> bool: ...
    def getSystemParameters(self) -> tuple[int, ...]: ...
    def setBaudRate(self, baudRate: int) -> None: ...
    def readImage(self) -> bool: ...
    def downloadImage(self, imageDestination: str) -> None: ...


SensorFactory = Callable[[str, int, int, int], SensorModule]


IMAGE_WIDTH, IMAGE_HEIGHT = 256, 288  # R30x image: 4 bits per pixel on the wire, two pixels a byte
_HEADER = 9  # start code (2), address (4), packet type (1), length (2) = payload + checksum


def _bulk_module() -> type:
    """pyfingerprint's PyFingerprint with a packet reader that reads each packet in two serial reads.

    pyfingerprint 1.5 reads every byte with its own ``serial.read()`` and draws the image pixel by pixel
    through PIL into a file: about 450 ms of CPU per 36,864-byte image, several times the rest of a
    verification (bench/bench_fingers_capture.py). The subclass keeps pyfingerprint's commands and replaces
    only its private packet reader (``__readPacket``, name-mangled; pyfingerprint is pinned in
    pyproject.toml), and adds :meth:`download_image_array`, which decodes the nibbles with numpy. The
    checks are pyfingerprint's own: start code, checksum, packet types; errors are its bare Exceptions."""
    from pyfingerprint import pyfingerprint as pf

    start_code = pf.FINGERPRINT_STARTCODE.to_bytes(2, "big")

    class BulkPyFingerprint(pf.PyFingerprint):
        def _PyFingerprint__readPacket(self) -> tuple[int, list[int]]:
            port = self._PyFingerprint__serial
            header = port.read(_HEADER)
            if len(header) < _HEADER:
                raise Exception(f"the sensor sent {len(header)} of a packet's {_HEADER} header bytes")
            if header[:2] != start_code:
                raise Exception("The received packet do not begin with a valid header!")
            length = int.from_bytes(header[7:9], "big")
            body = port.read(length)
            if length < 2 or len(body) < length:
                raise Exception(f"the sensor sent {len(body)} of a packet's {length} bytes")
            payload = body[:-2]
            checksum = (header[6] + header[7] + header[8] + sum(payload)) & 0xFFFF
            if int.from_bytes(body[-2:], "big") != checksum:
                raise Exception("The received packet is corrupted (the checksum is wrong)!")
            return header[6], list(payload)

        def download_image_array(self) -> np.ndarray:
            """The image in the sensor's buffer as uint8 (288 x 256, 16 grey levels scaled to 0-255)."""
            self._PyFingerprint__writePacket(pf.FINGERPRINT_COMMANDPACKET, (pf.FINGERPRINT_DOWNLOADIMAGE,))
            kind, payload = self._PyFingerprint__readPacket()
            if kind != pf.FINGERPRINT_ACKPACKET:
                raise Exception("The received packet is no ack packet!")
            if payload[:1] != [pf.FINGERPRINT_OK]:
                raise Exception(f"Could not download image (code {payload[:1]})")
            chunks = []
            while kind != pf.FINGERPRINT_ENDDATAPACKET:
                kind, payload = self._PyFingerprint__readPacket()
                if kind not in (pf.FINGERPRINT_DATAPACKET, pf.FINGERPRINT_ENDDATAPACKET):
                    raise Exception("The received packet is no data packet!")
                chunks.append(bytes(payload))
            packed = np.frombuffer(b"".join(chunks), dtype=np.uint8)
            if packed.size != IMAGE_WIDTH * IMAGE_HEIGHT // 2:
                raise Exception(f"the image is {packed.size} bytes, not {IMAGE_WIDTH * IMAGE_HEIGHT // 2}")
            pixels = np.empty(packed.size * 2, dtype=np.uint8)
            pixels[0::2] = packed >> 4
            pixels[1::2] = packed & 0x0F
            return (pixels * 17).reshape(IMAGE_HEIGHT, IMAGE_WIDTH)

    return BulkPyFingerprint


def _pyfingerprint(port: str, baud: int, address: int, password: int) -> SensorModule:
    module: SensorModule = _bulk_module()(port, baud, address, password)
    return module


class FingerprintSensor:
    """One R30x module on a serial port: open (password, baud), poll for a finger, fetch the image."""

    def __init__(
        self,
        port: str,
        baud: int = FACTORY_BAUD,
        *,
        address: int = 0xFFFFFFFF,
        password: int = 0,
        max_baud: int = MAX_BAUD,
        factory: SensorFactory = _pyfingerprint,
    ) -> None:
        for name, rate in (("baud", baud), ("max_baud", max_baud)):
            if rate % 9600 or not 9600 <= rate <= MAX_BAUD:
                raise SensorError(f"{name} {rate} is not a multiple of 9600 between 9600 and {MAX_BAUD}")
        self.port = port
        self.baud = baud
        self.max_baud = max_baud
        self._address = address
        self._password = password
        self._factory = factory
        self._module: SensorModule | None = None

    def __enter__(self) -> FingerprintSensor:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except SensorError:
            raise
        except Exception as exc:  # pyfingerprint raises bare Exception; pyserial its SerialException
            raise SensorError(f"sensor on {self.port}: {what} failed: {exc}") from exc

    def _connect(self, baud: int) -> SensorModule:
        module = self._call(
            f"opening at {baud} baud", self._factory, self.port, baud, self._address, self._password
        )
        if not self._call("verifyPassword", module.verifyPassword):
            raise SensorError(f"sensor on {self.port} refused the password")
        return module

    def open(self) -> None:
        """Connect, check the password, and move the link to the fastest allowed baud rate."""
        module = self._connect(self.baud)
        params = self._call("getSystemParameters", module.getSystemParameters)
        target = self.max_baud
        if int(params[6]) * 9600 != target:
            self._call(f"setting the baud rate to {target}", module.setBaudRate, target)
        if target != self.baud:
            self._close_module(module)
            module = self._connect(target)
            self.baud = target
        log.info("sensor on %s ready at %d baud", self.port, self.baud)
        self._module = module

    @staticmethod
    def _close_module(module: SensorModule) -> None:
        # pyfingerprint has no close(): release its pyserial port so it can be reopened at another rate
        serial = getattr(module, "_PyFingerprint__serial", None)
        if serial is not None:
            serial.close()

    def close(self) -> None:
        if self._module is not None:
            self._close_module(self._module)
            self._module = None

    @property
    def module(self) -> SensorModule:
        if self._module is None:
            raise SensorError("sensor not opened: call open() first")
        return self._module

    def finger_present(self) -> bool:
        """Try to capture: True (and the image is in the sensor's buffer) when a finger is on the glass."""
        return bool(self._call("readImage", self.module.readImage))

    def download_image(self) -> np.ndarray:
        """Fetch the last captured image as a uint8 array (288 high x 256 wide)."""
        bulk = getattr(self.module, "download_image_array", None)
        if bulk is not None:
            image: np.ndarray = self._call("downloadImage", bulk)
            return image
        with tempfile.TemporaryDirectory(prefix="fpimg-") as tmp:
            path = str(Path(tmp) / "capture.png")
            self._call("downloadImage", self.module.downloadImage, path)
            with Image.open(path) as img:
                return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def _wait(
    sensor: FingerprintSensor,
    present: bool,
    timeout: float,
    cancel: Callable[[], bool] | None,
    poll_interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Poll readImage until the finger is (present=True) or is no longer (present=False) on the glass."""
    deadline = clock() + timeout
    while True:
        if cancel is not None and cancel():
            raise CaptureCancelled("capture cancelled by the operator")
        if sensor.finger_present() == present:
            return
        if clock() >= deadline:
            raise NoFingerTimeout(timeout, "a finger" if present else "the finger to be lifted")
        sleep(poll_interval)


def _default_extract(image: np.ndarray) -> FingerTemplate:
    from cardsvc.bio.extract import extract_template

    return extract_template(image, ppi=SENSOR_PPI)


def capture_finger(
    sensor: FingerprintSensor,
    *,
    min_quality: int = DEFAULT_MIN_QUALITY,
    min_minutiae: int = DEFAULT_MIN_MINUTIAE,
    max_attempts: int = DEFAULT_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT,
    cancel: Callable[[], bool] | None = None,
    on_progress: Callable[[CaptureProgress], None] | None = None,
    poll_interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    extract: Callable[[np.ndarray], FingerTemplate] = _default_extract,
) -> CaptureResult:
    """Capture one finger: wait for it, read the image, extract on the host, retry while quality is low.

    A capture is good when its NFIQ2 score reaches `min_quality` and it has at least `min_minutiae`
    minutiae (a small partial touch can score well on NFIQ2 yet carry too few to match). Raises
    NoFingerTimeout, CaptureCancelled, PoorQualityError(attempts, best_quality) or SensorError.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if not 0 <= min_quality <= 100:
        raise ValueError(f"min_quality must be 0-100, got {min_quality}")

    def emit(stage: CaptureStage, attempt: int, quality: int | None = None) -> None:
        if on_progress is not None:
            on_progress(CaptureProgress(stage, attempt, max_attempts, quality))

    best: CaptureResult | None = None
    for attempt in range(1, max_attempts + 1):
        emit(CaptureStage.WAITING, attempt)
        _wait(sensor, True, timeout, cancel, poll_interval, clock, sleep)
        emit(CaptureStage.PLACED, attempt)
        image = sensor.download_image()
        emit(CaptureStage.CAPTURED, attempt)
        try:
            template = extract(image)
            quality = int(template.quality)
        except ExtractionError as exc:
            log.info("capture attempt %d: no usable template (%s)", attempt, exc)
            template, quality = None, 0
        emit(CaptureStage.QUALITY, attempt, quality)
        if template is not None:
            result = CaptureResult(template, quality, attempt, image)
            if quality >= min_quality and len(template.minutiae) >= min_minutiae:
                return result
            if best is None or quality > best.quality:
                best = result
        if attempt < max_attempts:
            emit(CaptureStage.RETRY, attempt + 1, quality)
            _wait(sensor, False, timeout, cancel, poll_interval, clock, sleep)
    raise PoorQualityError(max_attempts, best.quality if best else 0, min_quality, best)
