"""``pos serve``: the clerk's screens on 127.0.0.1 over the real devices (two PC/SC readers, ZFM sensor).

The POS CLI belongs to the POS engineer; it adds this command with one line:
``from point_of_service.web.serve import register; register(main)``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from cardsvc.bio.template import FingerTemplate
from cardsvc.card.transport import CardConnection


@dataclass
class PcscPosHardware:
    operator_reader: str
    card_reader: str
    sensor_port: str | None
    _patient: CardConnection | None = None

    def operator_card(self) -> CardConnection:
        from cardsvc.card.pcsc import PcscConnection

        return PcscConnection(self.operator_reader, wait=5)

    def patient_card(self) -> CardConnection:
        from cardsvc.card.pcsc import PcscConnection

        if self._patient is not None:
            self._patient.close()
        self._patient = PcscConnection(self.card_reader, exclusive=True, wait=5)  # held for the visit
        return self._patient

    def capture(self) -> FingerTemplate:
        from point_of_service.probe import sensor_capture

        if not self.sensor_port:
            from cardsvc.bio.capture import SensorError

            raise SensorError("no fingerprint sensor configured (--sensor)")
        return sensor_capture(self.sensor_port)()

    def devices(self) -> dict[str, bool]:
        from cardsvc.web.devices import reader_status, serial_present

        op_reader, op_card = reader_status(self.operator_reader)
        reader, card = reader_status(self.card_reader)
        return {"operator_reader": op_reader, "operator_card": op_card, "card_reader": reader, "card": card,
                "sensor": serial_present(self.sensor_port)}  # fmt: skip


@click.command("serve")
@click.option("--port", default=8471, show_default=True, help="Port on 127.0.0.1.")
@click.pass_obj
def serve(settings: Any, port: int) -> None:
    """Serve the clerk's screens on http://127.0.0.1:PORT (one request at a time, live progress beside it;
    works offline)."""
    from werkzeug.serving import run_simple

    from cardsvc.web.worker import OneThreadApp
    from point_of_service import identity as ident
    from point_of_service.journal import Journal
    from point_of_service.services.sync import HttpTransport, SyncService
    from point_of_service.trust import TrustState
    from point_of_service.web import PosTerminal, create_app

    passphrase = os.environ.get("POS_TERMINAL_PASSPHRASE") or click.prompt(
        "terminal key passphrase", hide_input=True
    )
    identity = ident.load(settings.home, str(passphrase).encode())
    now = (lambda: settings.now) if settings.now_text else (lambda: int(time.time()))
    hardware = PcscPosHardware(settings.operator_reader, settings.card_reader, settings.sensor)

    def build() -> tuple[Any, Any]:  # on the worker thread: the journal's SQLite connection lives there
        journal = Journal(settings.home / ident.JOURNAL_FILE)
        district = identity.chain[0]
        trust = TrustState.load(journal, identity.anchor, districts={district.chr: district})
        sync = None
        if identity.central_url:
            sync = SyncService(journal, identity, trust, HttpTransport(identity.central_url), now=now)
        app = create_app(PosTerminal(journal, identity, trust, hardware, now=now, sync=sync))
        return app, journal.close

    wsgi = OneThreadApp(build, name="pos")
    click.echo(f"clerk screens on http://127.0.0.1:{port}/ (started {datetime.now(UTC):%H:%M} UTC)")
    try:
        run_simple("127.0.0.1", port, wsgi, threaded=True, use_reloader=False)
    finally:
        wsgi.close()


def register(group: click.Group) -> None:
    """Add ``serve`` to the ``pos`` command group."""
    group.add_command(serve)
