"""The simulated R30x on a pseudo-terminal, with a control socket to put fingers on it.

    with SensorSimulator(tmp_path) as sim:          # sim.start() returns the pty path, e.g. /dev/pts/5
        sim.place(7, impression=0)                  # synthetic finger 7, first impression
        f = PyFingerprint(sim.port, 57600)          # pyfingerprint, unchanged
        assert f.verifyPassword() and f.readImage()

The serial side is a raw pty served by one thread; the optional byte-rate model (`serial_timing=True`) makes
every answer take as long as it would at the module's configured baud rate (10 bits a byte), so an image
upload at 57,600 baud takes about 6.4 s as on real hardware. The control socket speaks JSON lines
(docs/sensor.md): {"op": "place", "finger": 7, "impression": 0, "quality": "good"}, {"op": "lift"},
{"op": "status"}; each request gets one JSON line back with "ok".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pty
import random
import select
import socket
import threading
import time
import tty
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from hardware_sims.fingers import SkinQuality, impression
from hardware_sims.sensor import characteristics as chars
from hardware_sims.sensor.device import SensorDevice
from hardware_sims.sensor.protocol import Packet, PacketReader

log = logging.getLogger(__name__)


class SensorSimulatorError(RuntimeError):
    """The simulator could not start, or was used before start()."""


class SensorSimulator:
    """A ZFM/R30x module behind a pty; see the module docstring."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        control_path: str | os.PathLike[str] | None = None,
        serial_timing: bool = False,
        rng: random.Random | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        self.device = SensorDevice(
            state_dir=Path(state_dir) if state_dir is not None else None,
            rng=rng if rng is not None else random.SystemRandom(),
        )
        self.control_path = Path(control_path) if control_path is not None else None
        self.serial_timing = serial_timing
        self._sleep = sleep
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None

    # ---- life cycle ------------------------------------------------------------------------------------
    @property
    def port(self) -> str:
        if self._port is None:
            raise SensorSimulatorError("simulator not started: call start() first")
        return self._port

    def start(self) -> str:
        """Open the pty (and the control socket), start serving; returns the pty path for the host."""
        if self._port is not None:
            return self._port
        chars.warm_up()
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._port = os.ttyname(slave)
        self._stop.clear()
        self._spawn(self._serve_serial, "sensor-serial")
        if self.control_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(self.control_path))
            server.listen(8)
            server.settimeout(0.2)
            self._server = server
            self._spawn(self._serve_control, "sensor-control")
        log.info("sensor simulator on %s", self._port)
        return self._port

    def stop(self) -> None:
        """Stop serving and close the pty and the control socket (the library stays in the state dir)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
            if self.control_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.control_path.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self._port = None

    def __enter__(self) -> SensorSimulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    # ---- the finger ------------------------------------------------------------------------------------
    def place(
        self, finger: int | np.ndarray, impression_no: int = 0, quality: SkinQuality | str = SkinQuality.GOOD
    ) -> None:
        """Put a finger on the glass: a synthetic finger seed (and impression), or a ready image."""
        if isinstance(finger, np.ndarray):
            self.device.place(finger)
        else:
            self.device.place(impression(int(finger), impression_no, quality))

    def lift(self) -> None:
        """Take the finger off the glass."""
        self.device.lift()

    # ---- serial ----------------------------------------------------------------------------------------
    def _serve_serial(self) -> None:
        reader = PacketReader()
        assert self._master is not None
        master = self._master
        while not self._stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                break
            for packet in reader.feed(data):
                for answer in self.device.handle(packet):
                    if not self._send(answer):
                        return

    def _send(self, packet: Packet) -> bool:
        """Write one packet, paced by the byte-rate model if enabled; False once stopped."""
        data = memoryview(packet.encode())
        baud = self.device.params.baud  # read per packet: a baud change applies after its ack
        started = time.monotonic()
        assert self._master is not None
        while data:
            if self._stop.is_set():
                return False
            _, writable, _ = select.select([], [self._master], [], 0.1)
            if not writable:
                continue
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                continue
            except OSError:
                return False
            data = data[written:]
        if self.serial_timing:
            remaining = len(packet.encode()) * 10 / baud - (time.monotonic() - started)
            if remaining > 0:
                self._sleep(remaining)
        return True

    # ---- control socket --------------------------------------------------------------------------------
    def _serve_control(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._spawn(lambda c=conn: self._control_session(c), "sensor-control-conn")

    def _control_session(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        reply = self.control(line)
                        conn.sendall(json.dumps(reply).encode() + b"\n")

    def control(self, line: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """Execute one control request (a JSON line or its dict); returns the reply dict."""
        try:
            request = line if isinstance(line, dict) else json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
            op = request.get("op")
            if op == "place":
                finger = request.get("finger")
                if not isinstance(finger, int) or isinstance(finger, bool) or finger < 0:
                    raise ValueError(f"'finger' must be a non-negative integer seed, got {finger!r}")
                k = request.get("impression", 0)
                if not isinstance(k, int) or k < 0:
                    raise ValueError(f"'impression' must be a non-negative integer, got {k!r}")
                quality = str(request.get("quality", "good"))
                try:
                    skin = SkinQuality(quality)
                except ValueError:
                    names = ", ".join(q.value for q in SkinQuality)
                    raise ValueError(f"unknown quality {quality!r} (one of {names})") from None
                self.place(finger, k, skin)
                return {"ok": True, "finger": finger, "impression": k, "quality": skin.value}
            if op == "lift":
                self.lift()
                return {"ok": True}
            if op == "status":
                return {
                    "ok": True,
                    "port": self._port,
                    "finger_present": self.device.finger is not None,
                    "templates": len(self.device.library),
                    "baud": self.device.params.baud,
                    "security_level": self.device.params.security_level,
                }
            raise ValueError(f"unknown op {op!r} (place, lift, status)")
        except (ValueError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
