"""Serve a simulated card to the real PC/SC stack through the vsmartcard vpcd reader driver.

vpcd (loaded by pcscd) listens on TCP 35963 + slot; the card is the client. Wire format both ways: 2-byte
big-endian length, then payload. A 1-byte payload from the reader is a control byte (00 power off, 01
power on, 02 reset, 04 "send your ATR"); a longer one is a command APDU, answered with one framed
response APDU. A connected socket *is* an inserted card: closing it pulls the card.

Latency trap (HARDWARE.md): vpcd writes the length and the APDU in two sends; with delayed ACKs and Nagle
that costs ~44 ms per APDU. TCP_QUICKACK is not sticky, so it is set before EVERY recv; TCP_NODELAY once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from types import TracebackType
from typing import NoReturn

from .cardos import SimulatedCard
from .errors import CardSimError, CardTorn

log = logging.getLogger(__name__)

VPCD_BASE_PORT = 35963
VPCD_MAX_MESSAGE = 0xFFFF


class VpcdControl:
    """Control bytes sent by vpcd."""

    POWER_OFF = 0x00
    POWER_ON = 0x01
    RESET = 0x02
    GET_ATR = 0x04


class _Closed(Exception):
    """The connection ended (peer closed, card removed or server stopping)."""


class VpcdCardServer:
    """Runs one card as a vpcd client: a background thread (``with`` / start()) or the calling thread
    (serve_forever(), used by ``hwsim card serve``). Reconnects with back-off when vpcd is not there yet
    or pcscd restarts. A fault-injected tear pulls the card; insert() puts it back.
    """

    def __init__(self, card: SimulatedCard, host: str = "127.0.0.1", port: int = VPCD_BASE_PORT, *,
                 backoff_min: float = 0.05, backoff_max: float = 2.0, io_timeout: float = 0.5,
                 quickack: bool = True, min_out_time: float = 0.8) -> None:
        self.card = card
        self.quickack = quickack
        self.min_out_time = min_out_time
        """A pulled card stays out at least this long, so that pcscd (polling every 0.4 s) sees it go."""
        self._out_since = 0.0
        """False only to measure the latency trap (bench/bench_card_sim.py)."""
        self.host = host
        self.port = port
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.io_timeout = io_timeout
        # vpcd frames carry at most 65,535 bytes: the card must not promise more over this link.
        card.max_command_apdu = min(card.max_command_apdu, VPCD_MAX_MESSAGE)
        card.max_response_apdu = min(card.max_response_apdu, VPCD_MAX_MESSAGE)
        self._stop = threading.Event()
        self._inserted = threading.Event()
        self._inserted.set()
        self.connected = threading.Event()
        """Set while the card is connected to vpcd (inserted in the reader)."""
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.apdus = 0
        self.connections = 0

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> VpcdCardServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Serve in a background thread (daemon) until stop()."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self.serve_forever, name=f"vpcd-card-{self.port}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Pull the card and end the serving loop."""
        self._stop.set()
        self._inserted.set()  # wake a waiting loop
        self._close_socket()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._thread = None

    def request_stop(self) -> None:
        """Signal-handler safe: ask serve_forever() to return."""
        self._stop.set()
        self._inserted.set()
        self._close_socket()

    def remove(self) -> None:
        """Pull the card out of the reader (vpcd sees the client disconnect)."""
        self._inserted.clear()
        self._close_socket()

    def insert(self) -> None:
        """Put the card back; the loop reconnects to vpcd."""
        self._inserted.set()

    def _close_socket(self) -> None:
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ loop
    def serve_forever(self) -> None:
        """Connect, serve, reconnect with back-off; returns after stop()/request_stop()."""
        backoff = self.backoff_min
        while not self._stop.is_set():
            if not self._inserted.is_set():
                self._inserted.wait()
                continue
            out_for = time.monotonic() - self._out_since
            if out_for < self.min_out_time:
                self._stop.wait(self.min_out_time - out_for)
                continue
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.io_timeout)
            except OSError as exc:
                log.debug("vpcd %s:%d not reachable (%s); retry in %.2fs", self.host, self.port, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            backoff = self.backoff_min
            with self._lock:
                self._sock = sock
            if self._stop.is_set() or not self._inserted.is_set():
                sock.close()
                with self._lock:
                    self._sock = None
                continue
            self.connections += 1
            self.connected.set()
            log.info("card inserted in vpcd %s:%d", self.host, self.port)
            try:
                self._serve_connection(sock)
            except _Closed:
                pass
            except OSError as exc:
                log.info("vpcd connection lost: %s", exc)
            except Exception:  # never let one bad exchange end the serving loop: drop it, reconnect
                log.exception("vpcd connection %s:%d failed; reconnecting", self.host, self.port)
            finally:
                self.connected.clear()
                with self._lock:
                    self._sock = None
                sock.close()
                self.card.power_off()
                self._out_since = time.monotonic()
                log.info("card removed from vpcd %s:%d", self.host, self.port)

    def _serve_connection(self, sock: socket.socket) -> None:
        if self.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.io_timeout)
        while True:
            (length,) = struct.unpack(">H", self._recv_exact(sock, 2))
            payload = self._recv_exact(sock, length)
            if length == 1:
                self._control(sock, payload[0])
            elif length == 0:
                log.debug("vpcd sent an empty message; ignored")
            else:
                self._apdu(sock, payload)

    def _control(self, sock: socket.socket, code: int) -> None:
        try:
            if code == VpcdControl.POWER_OFF:
                self.card.power_off()
            elif code == VpcdControl.POWER_ON:
                self.card.power_on()
            elif code == VpcdControl.RESET:
                self.card.reset()
            elif code == VpcdControl.GET_ATR:
                self._send(sock, self.card.atr)
            else:
                log.warning("unknown vpcd control byte %02X ignored", code)
        except CardTorn as exc:
            self._pulled(exc)
        except CardSimError as exc:  # e.g. an unusable state directory: report, keep the server alive
            log.error("card failed on control byte %02X: %s", code, exc)
        except Exception:  # a card bug must not take the reader loop down
            log.exception("card failed on control byte %02X", code)

    def _apdu(self, sock: socket.socket, apdu: bytes) -> None:
        try:
            if not self.card.powered:
                log.debug("APDU to an unpowered card: powering it up first")
                self.card.power_on()
            response = self.card.transmit(apdu)
        except CardTorn as exc:
            self._pulled(exc)
        except CardSimError as exc:  # state directory unusable: the card is dead, not the server
            log.error("card failed: %s", exc)
            response = b"\x6f\x00"
        except Exception:  # whatever the card (or a test wrapper) raises, the reader gets a status word
            log.exception("card failed on an APDU of %d bytes", len(apdu))
            response = b"\x6f\x00"
        if len(response) < 2:
            log.error("card answered %d bytes, no status word; sending 6F00", len(response))
            response = b"\x6f\x00"
        self.apdus += 1
        self._send(sock, response)

    def _pulled(self, exc: CardTorn) -> NoReturn:
        """A fault tore the card: it leaves the reader until insert()."""
        log.info("card pulled by fault injection: %s", exc)
        self._inserted.clear()
        raise _Closed

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            if self._stop.is_set() or not self._inserted.is_set():
                raise _Closed
            if self.quickack:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # not sticky: before EVERY recv
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                continue
            if not chunk:
                raise _Closed
            buf += chunk
        return buf

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        if len(payload) > VPCD_MAX_MESSAGE:
            payload = b"\x67\x00"  # cannot happen with the clamped limits; never send a broken frame
        sock.sendall(struct.pack(">H", len(payload)) + payload)
