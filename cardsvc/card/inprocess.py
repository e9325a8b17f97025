"""In-process adapter: a simulated card object called directly, behind the same CardConnection.

For fast unit tests of protocol and application code; the PC/SC path is exercised separately.
"""

from __future__ import annotations

from cardsvc.card.transport import CardRemovedError, SimulatedCardLike, TransportError


class InProcessConnection:
    """A :class:`CardConnection` to any :class:`SimulatedCardLike`; powers the card on when opened."""

    def __init__(self, card: SimulatedCardLike, *, power_on: bool = True) -> None:
        self.card = card
        self._atr = card.power_on() if power_on else b""
        self._open = True

    @property
    def atr(self) -> bytes:
        return self._atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if not self._open:
            raise TransportError("connection is closed")
        response = self.card.transmit(bytes(apdu))
        if len(response) < 2:
            raise CardRemovedError("card returned no valid response (no status word)")
        return bytes(response[:-2]), int.from_bytes(response[-2:], "big")

    def power_cycle(self) -> bytes:
        """Power off and on again: the card's RAM state is lost, as after pulling and reinserting it."""
        self.card.power_off()
        self._atr = self.card.power_on()
        return self._atr

    def close(self) -> None:
        """Unpower the card (as pyscard's default disconnect does)."""
        if self._open:
            self._open = False
            self.card.power_off()

    def __enter__(self) -> InProcessConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
