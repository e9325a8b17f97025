"""`cardsvc demo`: the pilot on simulated hardware, through the real PC/SC stack.

This stage shows the card platform: a simulated card is served to pcscd through vpcd, reached with pyscard,
and exercised with the protocol layer. Later stages (key ceremony, camp, hospital, paypoint, central) plug
in as further steps of :func:`run_demo`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.pcscd import VPCD_PORTS, ensure_pcscd, wait_for_card_state
from cardsvc.card.session import Iso7816Session


@dataclass
class DemoSummary:
    """What the demo did, as a plain table and as JSON."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, label: str, value: Any, key: str | None = None) -> None:
        self.rows.append((label, str(value)))
        if key is not None:
            self.figures[key] = value


def _step(echo: Callable[[str], None], text: str) -> None:
    echo(click.style("==> ", fg="cyan") + text)


def run_demo(*, households: int = 20, json_path: str | None = None, echo: Callable[[str], None] = click.echo,
             workdir: Path | None = None) -> DemoSummary:
    """Run the pilot; print progress and a summary table; optionally write the JSON summary."""
    from hardware_sims.card.apps.generic import GENERIC_AID, GenericApplication
    from hardware_sims.card.cardos import SimulatedCard
    from hardware_sims.card.vpcd import VpcdCardServer

    summary = DemoSummary()
    summary.figures["households_requested"] = households
    with tempfile.TemporaryDirectory(prefix="cardsvc-demo-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        _step(echo, "PC/SC: making sure pcscd runs with the vpcd readers")
        with ensure_pcscd(on_wait=echo) as pcscd:
            reader = pcscd.reader(0)
            summary.add("pcscd", f"pid {pcscd.pid} ({'started' if pcscd.started_here else 'reused'})")
            _step(echo, f"serving a simulated 32 KB card on '{reader}' (vpcd port {VPCD_PORTS[0]})")
            state = root / "card0"
            state.mkdir(parents=True, exist_ok=True)
            card = SimulatedCard(state, applications=[GenericApplication(big_file_size=8192)])
            with VpcdCardServer(card, port=VPCD_PORTS[0]):
                wait_for_card_state(reader, present=True)
                conn = PcscConnection(reader, exclusive=True)
                try:
                    session = Iso7816Session(conn)
                    limits = session.read_limits()
                    summary.add("ATR", conn.atr.hex(" ").upper(), "atr")
                    summary.add("card limits (command / response data bytes)",
                                f"{limits.max_command_data} / {limits.max_response_data}"
                                f"{' (extended length)' if limits.extended_length else ''}")
                    session.select_aid(GENERIC_AID)
                    challenge = session.get_challenge(8)
                    summary.add("GET CHALLENGE", challenge.hex().upper())
                    t0 = time.perf_counter()
                    data = session.read_binary(0x0103, offset=0, length=8192)
                    read_ms = (time.perf_counter() - t0) * 1000
                    summary.add("read 8 KB (one extended APDU)", f"{len(data)} bytes in {read_ms:.2f} ms")
                    rounds = 200
                    t0 = time.perf_counter()
                    for _ in range(rounds):
                        session.get_challenge(8)
                    per_apdu_ms = (time.perf_counter() - t0) * 1000 / rounds
                    summary.add("short APDU round trip through pcscd + vpcd",
                                f"{per_apdu_ms:.3f} ms (mean of {rounds}; ceiling 1 ms)")
                    summary.figures["apdu_round_trip_ms"] = round(per_apdu_ms, 4)
                finally:
                    conn.close()
                wait_time = time.monotonic()
            wait_for_card_state(reader, present=False)
            summary.figures["card_removed_after_s"] = round(time.monotonic() - wait_time, 3)
    _print_table(summary, echo)
    if json_path:
        Path(json_path).write_text(json.dumps(summary.figures, indent=2, sort_keys=True) + "\n")
        echo(f"summary written to {json_path}")
    return summary


def _print_table(summary: DemoSummary, echo: Callable[[str], None]) -> None:
    width = max(len(label) for label, _ in summary.rows)
    echo("")
    echo(click.style("Summary", bold=True))
    for label, value in summary.rows:
        echo(f"  {label.ljust(width)}  {value}")
