"""The vpcd client of the simulated card, against a stand-in for vpcd's listening socket (no pcscd needed).

The PC/SC path through the real pcscd is exercised by the card-host tests (tests/test_pcsc*.py)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware_sims.card.apps.generic import GENERIC_AID
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.faults import FaultInjector
from hardware_sims.card.vpcd import VpcdCardServer

TIMEOUT = 5.0


class FakeVpcd:
    """The reader side of the vpcd protocol: listens, accepts the card, sends frames."""

    def __init__(self, port: int = 0) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(TIMEOUT)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        # two sends, as bookworm's vpcd does (the latency trap)
        self.conn.sendall(struct.pack(">H", len(payload)))
        self.conn.sendall(payload)

    def recv(self) -> bytes:
        assert self.conn is not None
        head = self._exact(2)
        return self._exact(struct.unpack(">H", head)[0])

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("card closed the connection")
            buf += chunk
        return buf

    def transmit(self, apdu: bytes) -> bytes:
        self.send(apdu)
        return self.recv()

    def card_gone(self) -> bool:
        assert self.conn is not None
        try:
            return self.conn.recv(1) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    fake = FakeVpcd()
    yield fake
    fake.close()


def _card(tmp_path: Path, **kwargs) -> SimulatedCard:
    return SimulatedCard.with_default_filesystem(tmp_path / "card", **kwargs)


def test_control_bytes_and_apdus(tmp_path: Path, vpcd: FakeVpcd) -> None:
    card = _card(tmp_path)
    with VpcdCardServer(card, port=vpcd.port) as server:
        vpcd.accept()
        vpcd.send(b"\x04")
        assert vpcd.recv() == card.atr
        vpcd.send(b"\x01")  # power on: no answer
        response = vpcd.transmit(b"\x00\xa4\x04\x0c" + bytes([len(GENERIC_AID)]) + GENERIC_AID)
        assert response == b"\x90\x00"
        assert vpcd.transmit(bytes.fromhex("0020008100"))[-2:] == b"\x63\xc3"
        vpcd.send(b"\x02")  # reset: RAM gone, no answer
        assert vpcd.transmit(bytes.fromhex("0020008100")) == b"\x6a\x88", "reset must drop the selection"
        vpcd.send(b"\x00")
        vpcd.send(b"\x04")  # a round trip proves the power-off was processed
        vpcd.recv()
        assert not card.powered
        assert server.apdus == 3


def test_vpcd_frames_are_clamped_to_65535_bytes(tmp_path: Path, vpcd: FakeVpcd) -> None:
    card = _card(tmp_path)
    with VpcdCardServer(card, port=vpcd.port):
        vpcd.accept()
        vpcd.send(b"\x01")
        data = vpcd.transmit(bytes.fromhex("00CA7F6600"))
        assert data[:-2] == bytes.fromhex("7F660A020300FFFF020300FFFF")


def test_remove_and_insert(tmp_path: Path, vpcd: FakeVpcd) -> None:
    card = _card(tmp_path)
    with VpcdCardServer(card, port=vpcd.port) as server:
        vpcd.accept()
        vpcd.send(b"\x01")
        vpcd.send(b"\x04")
        vpcd.recv()
        server.remove()
        assert vpcd.card_gone()
        vpcd.listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            vpcd.listener.accept()  # a removed card stays out of the reader
        vpcd.listener.settimeout(TIMEOUT)
        assert not server.connected.is_set()
        server.insert()
        vpcd.accept()
        vpcd.send(b"\x04")
        assert vpcd.recv() == card.atr
        assert server.connections == 2


def test_card_waits_for_vpcd_with_back_off(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on port yet
    card = _card(tmp_path)
    with VpcdCardServer(card, port=port, backoff_min=0.01, backoff_max=0.05):
        time.sleep(0.2)  # several refused attempts
        fake = FakeVpcd(port)
        try:
            fake.accept()
            fake.send(b"\x04")
            assert fake.recv() == card.atr
        finally:
            fake.close()


def test_fault_pulls_the_card_until_reinserted(tmp_path: Path, vpcd: FakeVpcd) -> None:
    faults = FaultInjector()
    card = _card(tmp_path, faults=faults)
    with VpcdCardServer(card, port=vpcd.port) as server:
        vpcd.accept()
        vpcd.send(b"\x01")
        assert vpcd.transmit(b"\x00\xa4\x04\x0c" + bytes([len(GENERIC_AID)]) + GENERIC_AID) == b"\x90\x00"
        faults.arm(after_writes=1)
        vpcd.send(bytes.fromhex("0020008106") + b"000000")  # a PIN try writes: torn at the first write
        assert vpcd.card_gone()
        server.insert()
        vpcd.accept()
        vpcd.send(b"\x01")
        vpcd.transmit(b"\x00\xa4\x04\x0c" + bytes([len(GENERIC_AID)]) + GENERIC_AID)
        assert vpcd.transmit(bytes.fromhex("0020008100")) == b"\x63\xc3"  # torn before the commit


def test_cli_serve_exits_cleanly_on_sigterm(tmp_path: Path, vpcd: FakeVpcd) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "hwsim"), "card", "serve", "--state", str(tmp_path / "cli"),
         "--port", str(vpcd.port), "--capacity", "64K"],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        vpcd.accept()
        vpcd.send(b"\x04")
        atr = vpcd.recv()
        assert atr[0] == 0x3B
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
        assert "stopped" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_card_reconnects_when_pcscd_restarts(tmp_path: Path) -> None:
    first = FakeVpcd()
    port = first.port
    card = _card(tmp_path)
    with VpcdCardServer(card, port=port, backoff_min=0.01, backoff_max=0.05, min_out_time=0.05) as server:
        first.accept()
        first.send(b"\x01")
        first.send(b"\x04")
        first.recv()
        first.close()  # pcscd (and vpcd's listening socket) goes away
        deadline = time.monotonic() + 10  # the card retries against a closed port
        while card.powered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not card.powered, "losing the reader must power the card off"
        second = FakeVpcd(port)
        try:
            second.accept()
            second.send(b"\x04")
            assert second.recv() == card.atr
            assert server.connections == 2
        finally:
            second.close()


def test_cli_rejects_a_bad_capacity(tmp_path: Path) -> None:
    proc = subprocess.run([str(Path(sys.executable).parent / "hwsim"), "card", "serve", "--state",
                           str(tmp_path), "--capacity", "lots"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not a size like 32K" in proc.stderr
