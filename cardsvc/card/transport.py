"""The one I/O interface between host code and a card.

Protocol code (APDU formatting, chaining, application sessions) talks only to :class:`CardConnection`.
Adapters sit behind it: the pyscard PC/SC adapter (real pcscd, simulated cards served through vpcd) and the
in-process adapter (a simulated card object called directly, for fast unit tests).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class CardError(Exception):
    """Base of every error raised by the card stack."""


class TransportError(CardError):
    """The link to the reader or card failed in a way that is not a card removal."""


class CardRemovedError(TransportError):
    """The card left the reader (or lost power) during or before a command.

    Every adapter maps its own removal symptoms to this one error; callers recover on the next insertion.
    """


class CardResetError(CardRemovedError):
    """The card was reset under us (another client disconnected with reset, or a power cycle).

    The card is still there but its RAM state is gone: selected application, verified PIN, session keys.
    Callers must select and authenticate again; reconnecting is enough, no new insertion is needed.
    """


class NoReaderError(TransportError):
    """The named reader does not exist."""


class CardBusyError(TransportError):
    """Another client holds the card in exclusive mode (PC/SC sharing violation 0x8010000B)."""


class CardWaitTimeoutError(TransportError):
    """No card was inserted within the time allowed."""


@runtime_checkable
class CardConnection(Protocol):
    """A connection to one card: one method that sends a raw command APDU and returns (data, sw)."""

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one raw command APDU; return the response data and the status word (SW1 << 8 | SW2)."""
        ...

    def close(self) -> None:
        """Release the card."""
        ...


class CountingConnection:
    """Wraps a CardConnection and counts (and keeps) the APDUs that cross it.

    Why here: benchmarks and tests measure how many APDUs a read or a write costs; one wrapper serves both.
    """

    def __init__(self, inner: CardConnection) -> None:
        self.inner = inner
        self.count = 0
        self.sent: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return bytes(getattr(self.inner, "atr", b""))

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.count += 1
        self.sent.append(bytes(apdu))
        return self.inner.send_and_receive(apdu)

    def close(self) -> None:
        self.inner.close()


@runtime_checkable
class SimulatedCardLike(Protocol):
    """What the in-process adapter needs from a simulated card (implemented in hardware_sims)."""

    def power_on(self) -> bytes:
        """Cold reset: RAM state cleared, journal recovered; returns the ATR."""
        ...

    def power_off(self) -> None:
        """Remove power: RAM state is lost."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; return response data followed by SW1 SW2."""
        ...
