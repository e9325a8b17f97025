"""Command line of point_of_service. Thin: every subcommand calls a service function."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Point of service: clerk sign-in, offline verification, hospital and paypoint flows."""
