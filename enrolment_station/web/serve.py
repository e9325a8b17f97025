"""``enrol serve``: the station screens on 127.0.0.1 over the real devices (PC/SC readers, ZFM sensor).

The enrolment CLI belongs to the station engineer; it adds this command with one line:
``from enrolment_station.web.serve import register; register(main)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cardsvc.card.transport import CardConnection


@dataclass
class PcscStationHardware:
    """The FKO card and the beneficiary card through pcscd; the FKO finger from the sensor."""

    fko_reader: str
    card_reader: str
    sensor_port: str
    reader: Any  # SensorFingerReader
    _fko: CardConnection | None = None

    def fko_card(self) -> CardConnection:
        from cardsvc.card.pcsc import PcscConnection

        if self._fko is not None:
            self._fko.close()
        self._fko = PcscConnection(self.fko_reader, exclusive=True, wait=5)  # held for the whole session
        return self._fko

    def beneficiary_card(self) -> CardConnection:
        from cardsvc.card.pcsc import PcscConnection

        return PcscConnection(self.card_reader, exclusive=True, wait=5)

    def officer_probe(self) -> bytes:
        return bytes(self.reader.officer_probe())

    def devices(self) -> dict[str, bool]:
        from cardsvc.web.devices import reader_status, serial_present

        fko_reader, _ = reader_status(self.fko_reader)
        card_reader, card = reader_status(self.card_reader)
        return {"fko_reader": fko_reader, "card_reader": card_reader, "card": card,
                "sensor": serial_present(self.sensor_port)}  # fmt: skip


@click.command("serve")
@click.option("--sensor", "sensor_port", required=True, help="Serial port of the fingerprint sensor.")
@click.option("--sensor-control", default=None, help="Simulator control socket (demos): place fingers.")
@click.option("--fko-reader", required=True, help="PC/SC reader holding the FKO card.")
@click.option("--reader", "card_reader", required=True, help="PC/SC reader for the beneficiary cards.")
@click.option("--port", default=8470, show_default=True, help="Port on 127.0.0.1.")
@click.pass_obj
def serve(obj: Any, sensor_port: str, sensor_control: str | None, fko_reader: str, card_reader: str,
          port: int) -> None:  # fmt: skip
    """Serve the station screens on http://127.0.0.1:PORT (one request at a time; works offline)."""
    import os

    from werkzeug.serving import run_simple

    from cardsvc.bio.capture import FingerprintSensor
    from enrolment_station.camp import Camp
    from enrolment_station.fingers import SensorFingerReader
    from enrolment_station.keys import PASSPHRASE_ENV
    from enrolment_station.web import CampThread, RecordingReader, StationContext, create_app
    from enrolment_station.web.station import StationProgress

    passphrase = os.environ.get(PASSPHRASE_ENV) or click.prompt("terminal key passphrase", hide_input=True)
    placer = None
    if sensor_control:
        from hardware_sims.sensor.control import ControlClient

        placer = ControlClient(sensor_control)
    sensor = FingerprintSensor(sensor_port)
    sensor.open()
    fingers = SensorFingerReader(sensor, placer=placer)
    recorder = RecordingReader(fingers)
    progress = StationProgress()
    home: Path = obj.home
    hardware = PcscStationHardware(fko_reader, card_reader, sensor_port, fingers)

    def build() -> tuple[Any, Any]:  # on the camp thread: the journal's SQLite connection lives there
        camp = Camp(home, passphrase=str(passphrase).encode(), operator=obj.operator,
                    camp_id=obj.camp_id or time.strftime("CAMP-%Y%m%d"), reader=recorder,
                    progress=progress)  # fmt: skip
        context = StationContext(camp, hardware, recorder, imports_dir=home / "imports", progress=progress)
        return create_app(context), camp.close

    wsgi = CampThread(build)
    click.echo(f"station screens on http://127.0.0.1:{port}/")
    try:
        run_simple("127.0.0.1", port, wsgi, threaded=True, use_reloader=False)
    finally:
        wsgi.close()
        sensor.close()


def register(group: click.Group) -> None:
    """Add ``serve`` to the ``enrol`` command group."""
    group.add_command(serve)
