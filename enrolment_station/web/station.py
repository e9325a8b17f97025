"""What the station screens stand on: the camp service, the devices behind one small interface, and a
recorder of the last capture of each finger (image, quality, attempts) for the capture screen.

The station serves its screens to the operator's own browser on 127.0.0.1 and works with no network; the
camp's SQLite journal belongs to the server thread, so ``enrol serve`` runs one request at a time.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cardsvc.bio.capture import CaptureResult
from cardsvc.card.transport import CardConnection
from cardsvc.web.worker import OneThreadApp
from enrolment_station.camp import Camp
from enrolment_station.capture import FingerReader
from enrolment_station.personalise import RUN_STAGES, Progress


class StationHardware(Protocol):
    """The station's devices: the FKO card reader, the personalisation reader, the sensor."""

    def fko_card(self) -> CardConnection:
        """The FKO's card (raises a TransportError when the reader is empty)."""
        ...

    def beneficiary_card(self) -> CardConnection:
        """The blank card in the personalisation reader (raises a TransportError when empty)."""
        ...

    def officer_probe(self) -> bytes:
        """The FKO's live finger as a match-on-card probe (7F2E)."""
        ...

    def devices(self) -> dict[str, bool]:
        """Presence of ``fko_reader``, ``card_reader``, ``card``, ``sensor``."""
        ...


@dataclass(frozen=True)
class LastCapture:
    quality: int
    attempts: int
    png: bytes  # the image as the sensor sent it, for the operator's eye; never stored


@dataclass(frozen=True)
class LiveCapture:
    """What the capture screen polls while a household is being captured (read by another thread)."""

    household_id: str
    member_no: int
    finger: int
    attempt: int
    quality: int | None = None
    png: bytes | None = None


@dataclass
class RecordingReader:
    """A FingerReader that keeps the last image of each (household, member, finger) in memory only, and the
    capture in progress (``live``) for the screen to poll."""

    inner: FingerReader
    last: dict[tuple[str, int, int], LastCapture] = field(default_factory=dict)
    retries: dict[tuple[str, int, int], int] = field(default_factory=dict)
    live: LiveCapture | None = None

    def capture(self, household_id: str, member_no: int, finger: int, attempt: int) -> CaptureResult:
        key = (household_id, member_no, finger)
        self.retries[key] = self.retries.get(key, 0) + 1
        previous = self.live.png if self.live is not None and self.live.household_id == household_id else None
        self.live = LiveCapture(household_id, member_no, finger, self.retries[key], None, previous)
        result = self.inner.capture(household_id, member_no, finger, attempt)
        png = _png(result.image)
        self.last[key] = LastCapture(result.quality, self.retries[key], png)
        self.live = LiveCapture(household_id, member_no, finger, self.retries[key], result.quality, png)
        return result

    def forget(self, household_id: str) -> None:
        self.live = None
        for key in [k for k in self.last if k[0] == household_id]:
            self.last.pop(key, None)
            self.retries.pop(key, None)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


@dataclass
class StationProgress:
    """The camp's ``progress`` callback: keeps the personalisation's current stage for ``/live/card.json``
    (memory only). It reads the structured :class:`~enrolment_station.personalise.Progress` the service
    sends (stage, number, templates); other lines (camp opened, capture hints) are for the CLI only."""

    stage: str | None = None
    number: int = 0
    of: int = len(RUN_STAGES)
    items: int | None = None

    def __call__(self, message: str) -> None:
        if isinstance(message, Progress):
            self.stage, self.number, self.items = message.stage.value, message.number, message.items

    def reset(self) -> None:
        self.stage, self.number, self.items = None, 0, None


@dataclass
class StationContext:
    """Everything the station screens need; built by ``enrol serve`` or the tests, in the server thread."""

    camp: Camp
    hardware: StationHardware
    recorder: RecordingReader
    imports_dir: Path
    send_upload: Callable[[], list[str]] | None = None  # posts pending batches when a network appears
    progress: StationProgress = field(default_factory=StationProgress)  # pass it to Camp(progress=...)


class CampThread(OneThreadApp):
    """WSGI wrapper: every request runs on ONE worker thread that also built the app (the camp's SQLite
    journal belongs to it), except ``/live/`` requests, answered at once from memory by the HTTP thread.
    So the screen can show the live finger image while a long capture request is still running."""

    def __init__(
        self, factory: Callable[[], tuple[Any, Callable[[], None]]], live_prefix: str = "/live/"
    ) -> None:
        super().__init__(factory, live_prefix, name="camp")
