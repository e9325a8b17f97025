"""Device presence for the status bars, through the real stacks (pcscd, the sensor's serial port), without
disturbing a card another client holds (reader state only, no connection)."""

from __future__ import annotations

import os


def reader_status(reader: str) -> tuple[bool, bool]:
    """(reader present, card present) for the PC/SC reader named ``reader`` (name or prefix)."""
    from cardsvc.card.pcsc import PcscContext

    try:
        with PcscContext() as ctx:
            name = ctx.resolve(reader)
            return True, ctx.card_present(name)
    except Exception:  # pcscd down or reader unplugged: shown as "not connected"
        return False, False


def serial_present(port: str | None) -> bool:
    return bool(port) and os.path.exists(str(port))
