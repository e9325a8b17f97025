"""Command line of hardware_sims. Thin: every subcommand calls a service function."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Hardware simulators: smart cards served to pcscd through vpcd, the ZFM fingerprint sensor."""


main.add_command(__import__("hardware_sims.sensor.cli", fromlist=["sensor"]).sensor)
main.add_command(__import__("hardware_sims.card.cli", fromlist=["card_group"]).card_group)
