"""``cardsvc bench apdu``: the APDU round-trip benchmark through pcscd + vpcd (see bench/bench_apdu.py)."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Attach ``apdu`` to the existing ``bench`` group of the ``cardsvc`` command."""
    bench = main.commands.get("bench")
    if not isinstance(bench, click.Group):
        raise RuntimeError("cardsvc has no 'bench' group to attach 'apdu' to")

    @bench.command("apdu")
    @click.option("--rounds", default=1000, show_default=True, help="Short APDUs timed for the median.")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures here.")
    def apdu(rounds: int, json_path: str | None) -> None:
        """Median short-APDU round trip and 8 KB read time through the real PC/SC stack, beside ceilings."""
        from cardsvc.card.bench import run_apdu_benchmark

        ok = run_apdu_benchmark(rounds=rounds, json_path=json_path)
        if not ok:
            raise SystemExit(1)
