"""`hwsim sensor ...`: serve the simulated fingerprint sensor, and put fingers on it."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click

from hardware_sims.fingers import SkinQuality
from hardware_sims.sensor.control import ControlClient, ControlError
from hardware_sims.sensor.simulator import SensorSimulator

_control_option = click.option(
    "--control", "control", required=True, type=click.Path(dir_okay=False), help="control socket path"
)


@click.group()
def sensor() -> None:
    """Simulated ZhianTec R30x fingerprint sensor on a pseudo-terminal."""


@sensor.command()
@_control_option
@click.option("--state", type=click.Path(file_okay=False), default=None, help="directory keeping the flash")
@click.option("--serial-timing/--no-serial-timing", default=False, help="pace answers at the module's baud")
def serve(control: str, state: str | None, serial_timing: bool) -> None:
    """Serve until killed; the FIRST stdout line is the pty path for pyfingerprint."""
    sim = SensorSimulator(
        Path(state) if state else None, control_path=Path(control), serial_timing=serial_timing
    )
    port = sim.start()
    click.echo(port)
    sys.stdout.flush()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()


@sensor.command()
@_control_option
@click.option("--finger", type=click.IntRange(min=0), required=True, help="synthetic finger seed")
@click.option("--impression", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--quality", type=click.Choice([q.value for q in SkinQuality]), default="good", show_default=True
)
def place(control: str, finger: int, impression: int, quality: str) -> None:
    """Put synthetic finger FINGER (impression K) on the sensor."""
    _run(lambda: ControlClient(control).place(finger, impression, quality))


@sensor.command()
@_control_option
def lift(control: str) -> None:
    """Take the finger off the sensor."""
    _run(lambda: ControlClient(control).lift())


@sensor.command()
@_control_option
def status(control: str) -> None:
    """Show the simulator's state (port, finger present, stored templates, baud)."""
    _run(lambda: ControlClient(control).status())


def _run(call: Callable[[], dict[str, Any]]) -> None:
    try:
        reply = call()
    except ControlError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(reply))
