"""APDU traffic log on its own level (TRAFFIC = 5, logger ``cardsvc.apdu``), with secrets redacted.

Why its own level: hex dumps are invaluable when a card misbehaves but far too noisy for DEBUG. Why
redaction here: it is the one place every APDU passes, so a PIN, key or fingerprint template can never
leak through a forgotten call site. VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER data is always
hidden; commands marked ``sensitive`` hide both their data and their response data.
"""

from __future__ import annotations

import logging

from cardsvc.card.apdu import CommandApdu, ResponseApdu
from cardsvc.card.iso import SECRET_DATA_INS, sw_name

TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")

logger = logging.getLogger("cardsvc.apdu")

#: Longer data is dumped up to this many bytes, then its size: an 8 KB read must not flood the log.
DUMP_LIMIT = 256


def _hex(data: bytes) -> str:
    if len(data) <= DUMP_LIMIT:
        return data.hex(" ").upper()
    return f"{data[:DUMP_LIMIT].hex(' ').upper()} ... ({len(data)} bytes)"


def command_redacted(apdu: CommandApdu) -> bool:
    """True when the command data must not be logged."""
    return apdu.sensitive or apdu.ins in SECRET_DATA_INS


def format_command(apdu: CommandApdu, wire: bytes) -> str:
    """Hex dump of a command as sent, or its header and sizes only when it carries a secret."""
    if command_redacted(apdu) and apdu.data:
        return (
            f"{wire[:4].hex(' ').upper()} [{len(apdu.data)} data bytes redacted]"
            + (f" Le={apdu.le}" if apdu.le else "")
        )
    return _hex(wire)


def format_response(apdu: CommandApdu, response: ResponseApdu) -> str:
    if response.data and apdu.sensitive:
        return f"[{len(response.data)} data bytes redacted] {sw_name(response.sw)}"
    data = _hex(response.data)
    return f"{data} {sw_name(response.sw)}" if data else sw_name(response.sw)


def log_exchange(apdu: CommandApdu, wire: bytes, response: ResponseApdu | None) -> None:
    """Log one exchange at TRAFFIC level (cheap no-op when the level is off)."""
    if not logger.isEnabledFor(TRAFFIC):
        return
    logger.log(TRAFFIC, "> %s", format_command(apdu, wire))
    if response is not None:
        logger.log(TRAFFIC, "< %s", format_response(apdu, response))
