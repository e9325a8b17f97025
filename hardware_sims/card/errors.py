"""Errors of the simulated card.

Two kinds: :class:`IsoError` carries a status word back to the terminal (it never leaves transmit());
:class:`CardSimError` subclasses are what a *caller* of the simulator sees (the card was torn, it is not
powered, its state directory is unusable).
"""

from __future__ import annotations

from .iso import SW


class IsoError(Exception):
    """A command fails with a status word; raised inside the card, turned into SW1 SW2 by transmit()."""

    def __init__(self, sw: int, why: str = "") -> None:
        self.sw = int(sw)
        self.why = why
        super().__init__(f"{SW.describe(self.sw)} ({self.sw:04X}){': ' + why if why else ''}")


class MemoryFullError(IsoError):
    """Persistent memory would exceed the card's capacity (6A84)."""

    def __init__(self, needed: int, free: int) -> None:
        super().__init__(SW.NOT_ENOUGH_MEMORY, f"needs {needed} bytes, {free} free")
        self.needed = needed
        self.free = free


class CardSimError(Exception):
    """Base of the errors a user of the simulator sees."""


class CardTorn(CardSimError):
    """The fault injector pulled the card: power is gone, the command did not complete.

    The card is now powered off; power_on() recovers the journal and returns the ATR.
    """

    def __init__(self, where: str) -> None:
        super().__init__(f"card torn {where}")
        self.where = where


class CardNotPowered(CardSimError):
    """An APDU was sent to a card that is not powered (power_on() first)."""


class StateDirError(CardSimError):
    """The card's state directory cannot be used (unreadable object, foreign file, bad journal format)."""


class PersonalisationError(CardSimError):
    """An application could not be installed at power-up (it does not fit, or its install() failed)."""
