"""The APDU processor stack under one ``send_apdu``.

Each concern is one small processor wrapping the next, so application sessions never see 61xx, 6Cxx,
chaining or the short/extended choice::

    send_apdu -> CommandChaining -> ResponseChaining (61xx, 6Cxx) -> Formatting (+ log) -> CardConnection

A secure-messaging processor, when one exists, goes on top with :meth:`SmartCardProtocol.push_processor`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from cardsvc.card.apdu import SHORT_MAX_LE, CardLimits, CommandApdu, ResponseApdu
from cardsvc.card.apdulog import log_exchange
from cardsvc.card.errors import ApduTooLongError, ProtocolError, raise_for_sw
from cardsvc.card.iso import Cla, Ins
from cardsvc.card.transport import CardConnection

#: A card that keeps answering 61xx past this many bytes is broken, not generous.
MAX_CHAINED_RESPONSE = 1 << 20


class ApduProcessor(Protocol):
    """One layer of the stack: takes a logical command, returns the logical response."""

    def process(self, apdu: CommandApdu) -> ResponseApdu: ...


class FormattingProcessor:
    """Bottom layer: encodes short or extended per the card's limits, logs, calls the connection."""

    def __init__(self, connection: CardConnection, limits: CardLimits) -> None:
        self.connection = connection
        self.limits = limits

    def process(self, apdu: CommandApdu) -> ResponseApdu:
        limits = self.limits
        if apdu.le > limits.max_response_data:
            # Ask for what the card can give; it reports the rest with 61xx or the caller reads on.
            apdu = replace(apdu, le=limits.max_response_data)
        if len(apdu.data) > limits.max_command_data:
            raise ApduTooLongError(
                f"command {apdu.ins:02X} carries {len(apdu.data)} data bytes; the card accepts "
                f"{limits.max_command_data} per APDU"
            )
        wire = apdu.encode(limits)
        data, sw = self.connection.send_and_receive(wire)
        response = ResponseApdu(bytes(data), sw)
        log_exchange(apdu, wire, response)
        return response


class ResponseChainingProcessor:
    """Handles 61xx (fetch the rest with GET RESPONSE) and 6Cxx (re-issue with the Le the card wants).

    pcscd does not do this for T=1, so the host must.
    """

    def __init__(self, inner: ApduProcessor) -> None:
        self.inner = inner

    def process(self, apdu: CommandApdu) -> ResponseApdu:
        response = self.inner.process(apdu)
        correct_le = response.correct_le
        if correct_le is not None:
            response = self.inner.process(replace(apdu, le=correct_le))
        parts = [response.data]
        total = len(response.data)
        while (available := response.bytes_available) is not None:
            get_response = CommandApdu(
                apdu.cla & ~Cla.CHAINING & 0xFF, Ins.GET_RESPONSE, 0, 0, le=available,
                sensitive=apdu.sensitive,
            )
            response = self.inner.process(get_response)
            if (wanted := response.correct_le) is not None:
                response = self.inner.process(replace(get_response, le=min(wanted, SHORT_MAX_LE)))
            parts.append(response.data)
            total += len(response.data)
            if total > MAX_CHAINED_RESPONSE:
                raise ProtocolError(f"card keeps answering 61xx after {total} bytes")
        if len(parts) == 1:
            return response
        return ResponseApdu(b"".join(parts), response.sw)


class CommandChainingProcessor:
    """Splits data longer than one APDU allows into a chain (CLA bit 0x10 on all but the last)."""

    def __init__(self, inner: ApduProcessor, limits: CardLimits) -> None:
        self.inner = inner
        self.limits = limits

    def process(self, apdu: CommandApdu) -> ResponseApdu:
        size = self.limits.max_command_data
        if len(apdu.data) <= size:
            return self.inner.process(apdu)
        if not self.limits.command_chaining:
            raise ApduTooLongError(
                f"command {apdu.ins:02X} carries {len(apdu.data)} data bytes; the card accepts {size} per "
                "APDU and does not support command chaining"
            )
        data = apdu.data
        for start in range(0, len(data) - size, size):
            link = replace(apdu, cla=apdu.cla | Cla.CHAINING, data=data[start : start + size], le=0)
            response = self.inner.process(link)
            if not response.ok:
                return response
        last_start = ((len(data) - 1) // size) * size
        return self.inner.process(replace(apdu, data=data[last_start:]))


class SmartCardProtocol:
    """APDU-level access to one card through a :class:`CardConnection`.

    ``send_apdu`` returns the response data and raises a typed :class:`ApduError` on any SW but 9000;
    ``transmit`` returns the full response for callers that read status words themselves (PIN status).
    """

    def __init__(self, connection: CardConnection, limits: CardLimits | None = None) -> None:
        self.connection = connection
        self._limits = limits or CardLimits.short()
        self._wrappers: list[Callable[[ApduProcessor], ApduProcessor]] = []
        self._build()

    def _build(self) -> None:
        self._formatter = FormattingProcessor(self.connection, self._limits)
        chain: ApduProcessor = CommandChainingProcessor(
            ResponseChainingProcessor(self._formatter), self._limits
        )
        for wrap in self._wrappers:
            chain = wrap(chain)
        self._top = chain

    @property
    def limits(self) -> CardLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: CardLimits) -> None:
        self._limits = limits
        self._build()

    def push_processor(self, wrap: Callable[[ApduProcessor], ApduProcessor]) -> None:
        """Add a processor on top of the stack (e.g. secure messaging); kept across limit changes."""
        self._wrappers.append(wrap)
        self._build()

    def transmit(self, apdu: CommandApdu) -> ResponseApdu:
        """Send through the whole stack; return the response whatever its status word."""
        return self._top.process(apdu)

    def send_apdu(
        self,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        data: bytes = b"",
        le: int = 0,
        *,
        sensitive: bool = False,
    ) -> bytes:
        """Send one logical command; return its data; raise the typed error for any SW but 9000."""
        response = self.transmit(CommandApdu(cla, ins, p1, p2, bytes(data), le, sensitive=sensitive))
        raise_for_sw(response.sw, response.data)
        return response.data

    def close(self) -> None:
        self.connection.close()
