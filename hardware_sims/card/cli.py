"""``hwsim card ...``: serve a simulated card to pcscd through vpcd."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

import click

from .cardos import KB, SimulatedCard
from .vpcd import VPCD_BASE_PORT, VpcdCardServer


def parse_size(text: str) -> int:
    """'32K', '64k', '80K' or a byte count."""
    raw = text.strip().upper()
    try:
        return int(raw[:-1]) * KB if raw.endswith("K") else int(raw)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a size like 32K or 32768") from exc


@click.group("card")
def card_group() -> None:
    """Simulated smart cards."""


@card_group.command("serve")
@click.option("--slot", type=click.IntRange(0, 15), default=0, show_default=True,
              help="vpcd slot: the card connects to 127.0.0.1:35963+SLOT.")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory holding the card's persistent memory (created if missing).")
@click.option("--capacity", default="32K", show_default=True, help="EEPROM size: 32K, 64K or 80K.")
@click.option("--max-command", type=int, default=65535, show_default=True,
              help="Largest command APDU the card accepts (bytes; 261 = short APDUs only).")
@click.option("--max-response", type=int, default=65535, show_default=True,
              help="Largest response APDU (data + SW) the card returns.")
@click.option("--byte-rate", type=float, default=None,
              help="Contact-interface speed in bytes/s (e.g. 4096 for a real T=1 card); default instant.")
@click.option("--chaining/--no-chaining", default=True, show_default=True,
              help="Accept command chaining (CLA bit 10) and announce it in the ATR.")
@click.option("--generic-app/--no-generic-app", default=True, show_default=True,
              help="Install the generic test application on a blank card.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where vpcd listens.")
@click.option("--port", type=int, default=None, help="Override the port (default 35963+SLOT).")
@click.option("-v", "--verbose", is_flag=True, help="Log connections (never APDU contents).")
def serve(slot: int, state_dir: Path, capacity: str, max_command: int, max_response: int,
          byte_rate: float | None, chaining: bool, generic_app: bool, host: str, port: int | None,
          verbose: bool) -> None:
    """Attach a simulated card to pcscd's vpcd reader and run until killed (SIGTERM/SIGINT)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir.mkdir(parents=True, exist_ok=True)
    apps = []
    if generic_app:
        from .apps.generic import GenericApplication

        apps.append(GenericApplication())
    card = SimulatedCard(state_dir, capacity=parse_size(capacity), max_command_apdu=max_command,
                         max_response_apdu=max_response, byte_rate=byte_rate, applications=apps,
                         supports_chaining=chaining)
    card.power_on()  # personalise now so that errors show before pcscd is involved
    card.power_off()
    server = VpcdCardServer(card, host=host, port=VPCD_BASE_PORT + slot if port is None else port)

    def _stop(signum: int, frame: FrameType | None) -> None:
        server.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"card (state {state_dir}) serving vpcd {server.host}:{server.port}; Ctrl-C to stop", err=True)
    server.serve_forever()
    click.echo("card server stopped", err=True)
