"""Status words as typed domain errors, in one helper (:func:`raise_for_sw`).

Callers catch what they can act on (``WrongPinError.attempts_remaining``, ``AuthBlockedError``) instead of
comparing hex; every error prints the status word's name.
"""

from __future__ import annotations

from cardsvc.card.iso import SW, SW1, sw_name
from cardsvc.card.transport import (
    CardBusyError,
    CardError,
    CardRemovedError,
    CardResetError,
    CardWaitTimeoutError,
    NoReaderError,
    TransportError,
)

__all__ = [
    "ApduError",
    "ApduTooLongError",
    "AuthBlockedError",
    "CardBusyError",
    "CardError",
    "CardFileNotFoundError",
    "CardRemovedError",
    "CardResetError",
    "CardWaitTimeoutError",
    "ConditionsNotSatisfiedError",
    "IncorrectDataError",
    "InsNotSupportedError",
    "NoReaderError",
    "NotEnoughMemoryError",
    "ProtocolError",
    "ReferenceNotFoundError",
    "SecurityStatusError",
    "TransportError",
    "WrongLengthError",
    "WrongPinError",
    "error_for_sw",
    "raise_for_sw",
]


class ProtocolError(CardError):
    """The card answered, but not in a way ISO 7816-4 allows (e.g. a response without a status word)."""


class ApduTooLongError(ProtocolError):
    """A command does not fit the card's limits and cannot be split (no chaining, no extended length)."""


class ApduError(CardError):
    """The card refused a command: carries the status word and any response data."""

    def __init__(self, sw: int, data: bytes = b"", message: str | None = None) -> None:
        self.sw = sw
        self.data = data
        self.message = message
        super().__init__(sw, data)

    @property
    def sw_name(self) -> str:
        return sw_name(self.sw)

    def __str__(self) -> str:
        text = f"card returned {sw_name(self.sw)}"
        return f"{text}: {self.message}" if self.message else text


class WrongPinError(ApduError):
    """VERIFY failed (63Cx): ``attempts_remaining`` tries left before the PIN blocks."""

    def __init__(self, sw: int, data: bytes = b"", message: str | None = None) -> None:
        super().__init__(sw, data, message)
        self.attempts_remaining = sw & 0x0F

    def __str__(self) -> str:
        return f"wrong PIN: {self.attempts_remaining} attempt(s) remaining ({self.sw:04X})"


class AuthBlockedError(ApduError):
    """6983: the PIN (or key) is blocked; it must be unblocked by an authority."""


class SecurityStatusError(ApduError):
    """6982: the command needs a PIN or authentication that has not been satisfied in this session."""


class CardFileNotFoundError(ApduError):
    """6A82: no such file or application on the card."""


class NotEnoughMemoryError(ApduError):
    """6A84: the card has no room for this data."""


class WrongLengthError(ApduError):
    """6700: Lc or Le does not suit the command."""


class ConditionsNotSatisfiedError(ApduError):
    """6985: the card's state does not allow the command now (e.g. wrong life-cycle state)."""


class IncorrectDataError(ApduError):
    """6A80: the command data is malformed."""


class ReferenceNotFoundError(ApduError):
    """6A88: the referenced key or PIN does not exist."""


class InsNotSupportedError(ApduError):
    """6D00: the card (or selected application) does not know this instruction."""


_BY_SW: dict[int, type[ApduError]] = {
    SW.AUTH_METHOD_BLOCKED: AuthBlockedError,
    SW.SECURITY_STATUS_NOT_SATISFIED: SecurityStatusError,
    SW.FILE_NOT_FOUND: CardFileNotFoundError,
    SW.NOT_ENOUGH_MEMORY: NotEnoughMemoryError,
    SW.WRONG_LENGTH: WrongLengthError,
    SW.CONDITIONS_NOT_SATISFIED: ConditionsNotSatisfiedError,
    SW.INCORRECT_DATA: IncorrectDataError,
    SW.REFERENCE_NOT_FOUND: ReferenceNotFoundError,
    SW.INS_NOT_SUPPORTED: InsNotSupportedError,
}


def error_for_sw(sw: int, data: bytes = b"", message: str | None = None) -> ApduError:
    """The typed error for a non-9000 status word."""
    if sw >> 8 == SW1.WARNING_COUNTER and sw & 0xF0 == 0xC0:
        return WrongPinError(sw, data, message)
    return _BY_SW.get(sw, ApduError)(sw, data, message)


def raise_for_sw(sw: int, data: bytes = b"", message: str | None = None) -> None:
    """Raise the typed error unless ``sw`` is 9000."""
    if sw != SW.OK:
        raise error_for_sw(sw, data, message)
