"""APDU benchmark through the real PC/SC stack (pcscd + vpcd + pyscard) with a simulated card.

Figures, each printed beside its ceiling: the median round trip of a short APDU (raw and through the whole
processor stack), and the time and APDU count to read an 8 KB file on a card that takes extended APDUs and
on one limited to short APDUs. A benchmark, not a test: the suite never asserts on time.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cardsvc.benchfig import Figure, median_ms, payload, report
from cardsvc.card.iso import Ins
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.pcscd import VPCD_PORTS, PcscdHandle, ensure_pcscd, wait_for_card_state
from cardsvc.card.session import Iso7816Session
from cardsvc.card.transport import CountingConnection

BENCH_AID = bytes.fromhex("F05253425953494D01")  # the simulator's generic test application
BENCH_EF = 0x0103  # its big EF, read/update ALWAYS
FILE_SIZE = 8 * 1024
SHORT_ONLY = {"max_command_apdu": 4 + 1 + 255 + 1, "max_response_apdu": 256 + 2}

#: Ceilings (HARDWARE.md: short APDU about 0.1 ms, 4 KB extended about 0.35 ms, 4 KB in 17 short 2.3 ms)
CEILING_SHORT_MS = 1.0
CEILING_8K_EXTENDED_MS = 5.0
CEILING_8K_EXTENDED_APDUS = 1
CEILING_8K_SHORT_MS = 25.0
CEILING_8K_SHORT_APDUS = 32


@contextmanager
def served_card(daemon: PcscdHandle, state_dir: Path, slot: int = 0, **card_kwargs: Any) -> Iterator[str]:
    """Serve a bench card on a vpcd slot; yields the reader name once pcscd sees the card."""
    from hardware_sims.card import cardos, vpcd
    from hardware_sims.card.apps import generic

    state_dir.mkdir(parents=True, exist_ok=True)
    app = generic.GenericApplication(big_file_size=FILE_SIZE)
    card = cardos.SimulatedCard(state_dir, applications=[app], **card_kwargs)
    reader = daemon.reader(slot)
    with vpcd.VpcdCardServer(card, port=VPCD_PORTS[slot]):
        wait_for_card_state(reader, present=True)
        yield reader
    wait_for_card_state(reader, present=False)  # so the next card on this slot is not mistaken for it


def _read_figures(reader: str, label: str, reps: int) -> tuple[float, int, bytes]:
    with PcscConnection(reader, exclusive=True) as pcsc:
        conn = CountingConnection(pcsc)
        session = Iso7816Session(conn)
        session.read_limits()
        session.select_aid(BENCH_AID)
        session.select_file(BENCH_EF)
        before = conn.count
        content = session.read_binary(length=FILE_SIZE)
        apdus = conn.count - before
        if len(content) != FILE_SIZE:
            raise RuntimeError(f"{label}: read {len(content)} bytes, expected {FILE_SIZE}")
        ms = median_ms(lambda: session.read_binary(length=FILE_SIZE), reps, warmup=3)
        return ms, apdus, content


def measure(daemon: PcscdHandle, work_dir: Path, rounds: int = 1000, read_reps: int = 50) -> list[Figure]:
    """Run every measurement; return the figures."""
    figures: list[Figure] = []
    with served_card(daemon, work_dir / "extended") as reader:
        with PcscConnection(reader, exclusive=True) as pcsc:
            session = Iso7816Session(pcsc)
            session.select_aid(BENCH_AID)
            session.select_file(BENCH_EF)
            raw = bytes([0x00, Ins.READ_BINARY, 0x00, 0x00, 0x10])  # READ BINARY, 16 bytes
            figures.append(
                Figure(
                    f"short APDU round trip, raw, median of {rounds}",
                    median_ms(lambda: pcsc.send_and_receive(raw), rounds),
                    "ms",
                    CEILING_SHORT_MS,
                )
            )
            figures.append(
                Figure(
                    f"short APDU round trip, send_apdu, median of {rounds}",
                    median_ms(lambda: session.send_apdu(Ins.READ_BINARY, 0, 0, le=16), rounds),
                    "ms",
                    CEILING_SHORT_MS,
                )
            )
        ms, apdus, extended_content = _read_figures(reader, "extended", read_reps)
        figures.append(
            Figure("read 8 KB, extended-length card: time (median)", ms, "ms", CEILING_8K_EXTENDED_MS)
        )
        figures.append(
            Figure("read 8 KB, extended-length card: APDUs", apdus, "APDUs", CEILING_8K_EXTENDED_APDUS)
        )
    with served_card(daemon, work_dir / "short", **SHORT_ONLY) as reader:
        ms, apdus, short_content = _read_figures(reader, "short", read_reps)
        if short_content != extended_content:
            raise RuntimeError("the short-APDU read returned different content")
        figures.append(Figure("read 8 KB, short-APDU card: time (median)", ms, "ms", CEILING_8K_SHORT_MS))
        figures.append(Figure("read 8 KB, short-APDU card: APDUs", apdus, "APDUs", CEILING_8K_SHORT_APDUS))
    return figures


def run_apdu_benchmark(
    rounds: int = 1000, json_path: str | None = None, out: Callable[[str], None] = print
) -> bool:
    """Measure, print each figure beside its ceiling, optionally write JSON; True if all are within."""
    with ensure_pcscd(on_wait=out) as daemon, tempfile.TemporaryDirectory(prefix="bench-apdu-") as tmp:
        out(f"APDU benchmark: pcscd (pid {daemon.pid}) + vpcd + pyscard, simulated card, loopback")
        figures = measure(daemon, Path(tmp), rounds=rounds)
    ok = report(figures, out)
    if json_path:
        Path(json_path).write_text(json.dumps(payload("apdu", figures), indent=2) + "\n")
    return ok
