"""`cardsvc`: the main command. Thin: every subcommand calls a service function."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="cardsvc")
def main() -> None:
    """Smart-card and biometric benefit delivery: demo, biometrics tools, central service, benchmarks."""


@main.group()
def bio() -> None:
    """Fingerprint tools: ISO template dump, matcher evaluation."""


@main.group()
def bench() -> None:
    """Benchmarks: each prints its figure beside the ceiling it is compared with."""


@main.command()
@click.option("--households", default=20, show_default=True, help="Households in the pilot camp.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON summary here.")
def demo(households: int, json_path: str | None) -> None:
    """Run the district pilot on simulated hardware through the real PC/SC stack."""
    from cardsvc.demo import run_demo

    run_demo(households=households, json_path=json_path)


def _register_subcommands() -> None:
    """Attach subcommands that live in their own modules (kept out of start-up where possible)."""
    import importlib

    for module in ("cardsvc.bio.cli", "cardsvc.card.cli", "cardsvc.central.cli", "cardsvc.bench_all"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            continue
        mod.register(main)


_register_subcommands()
