"""Benchmark of the simulated card: in-process command cost and the vpcd link (with and without the
TCP_QUICKACK fix), each printed with the ceiling it is compared with.

    .venv/bin/python bench/bench_card_sim.py

The vpcd half uses a stand-in for vpcd that writes length and APDU in two sends, as bookworm's vpcd does;
the full PC/SC path (pcscd + pyscard) is measured by bench/bench_apdu*.py (card-host engineer).
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import tempfile
from pathlib import Path

from cardsvc.benchfig import Figure, median_ms, report
from hardware_sims.card.apdu import build_command
from hardware_sims.card.apps.generic import CARD_AUTH_KEY, EF_BIG, GENERIC_AID
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.vpcd import VpcdCardServer

SELECT_APP = build_command(0, 0xA4, 0x04, 0x0C, GENERIC_AID)
SELECT_BIG = build_command(0, 0xA4, 0x02, 0x0C, EF_BIG.to_bytes(2, "big"))
READ_SHORT = build_command(0, 0xB0, 0, 0, ne=250)
READ_4K = build_command(0, 0xB0, 0, 0, ne=4096)
VERIFY = build_command(0, 0x20, 0, 0x81, b"123456")
INT_AUTH = build_command(0, 0x88, 0, CARD_AUTH_KEY, bytes(16), ne=256)
UPDATE_64 = [build_command(0, 0xD6, 0, 0, bytes([i]) * 64) for i in range(2)]

# Ceilings: what the host-side timings in HARDWARE.md leave room for (simulator must be far below).
CEILINGS_MS = {
    "in-process READ BINARY 250 B": 0.5,
    "in-process READ BINARY 4 KB extended": 1.0,
    "in-process VERIFY (2 journaled writes)": 5.0,
    "in-process UPDATE BINARY 64 B (journaled)": 5.0,
    "in-process INTERNAL AUTHENTICATE (P-256)": 5.0,
    "vpcd link short APDU, QUICKACK": 1.0,
    "vpcd link 4 KB APDU, QUICKACK": 2.0,
    "vpcd link short APDU, no QUICKACK (the trap)": 100.0,
}


def check(card: SimulatedCard, apdu: bytes) -> bytes:
    response = card.transmit(apdu)
    if response[-2:] not in (b"\x90\x00", b"\x62\x82"):
        raise RuntimeError(f"{apdu.hex()} -> {response.hex()}")
    return response


def in_process(work: Path) -> dict[str, float]:
    card = SimulatedCard.with_default_filesystem(work / "inproc", rng=random.Random(1))
    card.power_on()
    for apdu in (SELECT_APP, VERIFY, build_command(0, 0x47, 0x80, CARD_AUTH_KEY, ne=256), SELECT_BIG):
        check(card, apdu)
    return {
        "in-process READ BINARY 250 B": median_ms(lambda: check(card, READ_SHORT), 2000),
        "in-process READ BINARY 4 KB extended": median_ms(lambda: check(card, READ_4K), 2000),
        "in-process VERIFY (2 journaled writes)": median_ms(lambda: check(card, VERIFY), 300),
        "in-process UPDATE BINARY 64 B (journaled)": median_ms(
            lambda: [check(card, a) for a in UPDATE_64], 300
        )
        / 2,
        "in-process INTERNAL AUTHENTICATE (P-256)": median_ms(lambda: check(card, INT_AUTH), 500),
    }


class TwoSendReader:
    """Reader side of vpcd: length and payload in two sends (the bookworm behaviour)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.conn, _ = self.listener.accept()

    def transmit(self, payload: bytes) -> bytes:
        assert self.conn is not None
        self.conn.sendall(struct.pack(">H", len(payload)))
        self.conn.sendall(payload)
        head = self._exact(2)
        return self._exact(struct.unpack(">H", head)[0])

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("card left")
            buf += chunk
        return buf

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.listener.close()


def vpcd_link(work: Path, quickack: bool) -> tuple[float, float]:
    card = SimulatedCard.with_default_filesystem(work / f"vpcd-{quickack}")
    reader = TwoSendReader()
    try:
        with VpcdCardServer(card, port=reader.port, quickack=quickack):
            reader.accept()
            reader.conn.sendall(b"\x00\x01\x01")  # type: ignore[union-attr]
            for apdu in (SELECT_APP, SELECT_BIG):
                reader.transmit(apdu)
            rounds = 200 if quickack else 20
            short = median_ms(lambda: reader.transmit(READ_SHORT), rounds, warmup=min(20, rounds))
            big = median_ms(lambda: reader.transmit(READ_4K), rounds, warmup=min(20, rounds))
            return short, big
    finally:
        reader.close()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        figures = in_process(work)
        short, big = vpcd_link(work, quickack=True)
        figures["vpcd link short APDU, QUICKACK"] = short
        figures["vpcd link 4 KB APDU, QUICKACK"] = big
        slow_short, _ = vpcd_link(work, quickack=False)
        figures["vpcd link short APDU, no QUICKACK (the trap)"] = slow_short
    return 0 if report(Figure(name, ms, "ms", CEILINGS_MS[name]) for name, ms in figures.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
