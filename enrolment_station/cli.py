"""Command line of enrolment_station. Thin: every subcommand calls a service function."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Enrolment station: eligibility lists, FKO session, capture, personalisation, hand-over."""
