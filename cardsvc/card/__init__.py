"""Host-side card stack: transport interface and adapters, APDU processors, ISO 7816-4 sessions.

Import what you need from the submodules; the names below are the everyday ones. The PC/SC adapter
(``cardsvc.card.pcsc``) is not imported here so in-process users do not load pyscard.
"""

from cardsvc.card.apdu import CardLimits, CommandApdu, ResponseApdu
from cardsvc.card.errors import (
    ApduError,
    AuthBlockedError,
    CardBusyError,
    CardError,
    CardFileNotFoundError,
    CardRemovedError,
    CardResetError,
    NoReaderError,
    ProtocolError,
    SecurityStatusError,
    TransportError,
    WrongPinError,
)
from cardsvc.card.protocol import SmartCardProtocol
from cardsvc.card.session import ApplicationSession, FileInfo, Iso7816Session, PinStatus
from cardsvc.card.transport import CardConnection

__all__ = [
    "ApduError",
    "ApplicationSession",
    "AuthBlockedError",
    "CardBusyError",
    "CardConnection",
    "CardError",
    "CardFileNotFoundError",
    "CardLimits",
    "CardRemovedError",
    "CardResetError",
    "CommandApdu",
    "FileInfo",
    "Iso7816Session",
    "NoReaderError",
    "PinStatus",
    "ProtocolError",
    "ResponseApdu",
    "SecurityStatusError",
    "SmartCardProtocol",
    "TransportError",
    "WrongPinError",
]
