"""Command line of keymgmt. Thin: every subcommand calls a service function."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Key management: root, districts, officer cards, terminals, revocation, audit."""
