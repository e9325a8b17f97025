"""PC/SC adapter (pyscard's low-level ``scard`` API) behind :class:`CardConnection`.

The only module that imports pyscard. It maps PC/SC's many removal symptoms to one
:class:`CardRemovedError` (with :class:`CardResetError` when the card is still there but lost its RAM
state), sharing violations to :class:`CardBusyError`, and offers exclusive mode for writes and a choice
of what happens to the card on disconnect.
"""

from __future__ import annotations

import contextlib
import time
from enum import IntEnum
from typing import Any

from smartcard import scard

from cardsvc.card.transport import (
    CardBusyError,
    CardRemovedError,
    CardResetError,
    CardWaitTimeoutError,
    NoReaderError,
    TransportError,
)


class PcscCode(IntEnum):
    """PC/SC result codes the adapter tells apart."""

    SUCCESS = 0x00000000
    E_UNKNOWN_READER = 0x80100009
    E_TIMEOUT = 0x8010000A
    E_SHARING_VIOLATION = 0x8010000B
    E_NO_SMARTCARD = 0x8010000C
    E_PROTO_MISMATCH = 0x8010000F
    E_NOT_TRANSACTED = 0x80100016
    E_READER_UNAVAILABLE = 0x80100017
    E_NO_SERVICE = 0x8010001D
    E_NO_READERS_AVAILABLE = 0x8010002E
    W_UNRESPONSIVE_CARD = 0x80100066
    W_UNPOWERED_CARD = 0x80100067
    W_RESET_CARD = 0x80100068
    W_REMOVED_CARD = 0x80100069


class Disposition(IntEnum):
    """What happens to the card when the connection closes."""

    LEAVE = scard.SCARD_LEAVE_CARD  # keep power and state (the next client may see our PIN state reset)
    RESET = scard.SCARD_RESET_CARD  # warm reset: RAM state cleared
    UNPOWER = scard.SCARD_UNPOWER_CARD  # power off: RAM state cleared (pyscard's default)


_REMOVED = {
    PcscCode.E_NO_SMARTCARD,
    PcscCode.E_NOT_TRANSACTED,
    PcscCode.W_REMOVED_CARD,
    PcscCode.W_UNRESPONSIVE_CARD,
}
_RESET = {PcscCode.W_RESET_CARD, PcscCode.W_UNPOWERED_CARD}
_NO_READER = {PcscCode.E_UNKNOWN_READER, PcscCode.E_READER_UNAVAILABLE, PcscCode.E_NO_READERS_AVAILABLE}


def _code_name(hresult: int) -> str:
    try:
        return f"{PcscCode(hresult).name} (0x{hresult:08X})"
    except ValueError:
        return f"0x{hresult:08X}"


def pcsc_error(hresult: int, what: str) -> TransportError:
    """The typed error for a failed PC/SC call."""
    hresult &= 0xFFFFFFFF
    text = f"{what}: {_code_name(hresult)}"
    if hresult in _RESET:
        return CardResetError(f"{text}; the card lost its session state, select and authenticate again")
    if hresult in _REMOVED:
        return CardRemovedError(f"{text}; card removed")
    if hresult == PcscCode.E_SHARING_VIOLATION:
        return CardBusyError(f"{text}; another client holds the card exclusively")
    if hresult in _NO_READER:
        return NoReaderError(text)
    if hresult == PcscCode.E_TIMEOUT:
        return CardWaitTimeoutError(text)
    if hresult == PcscCode.E_NO_SERVICE:
        return TransportError(f"{text}; is pcscd running?")
    return TransportError(text)


def _check(result: tuple[Any, ...] | list[Any] | int, what: str) -> tuple[Any, ...]:
    """Raise the typed error unless the call succeeded; return the call's other results."""
    tup = tuple(result) if isinstance(result, tuple | list) else (result,)
    hresult = tup[0] & 0xFFFFFFFF
    if hresult != PcscCode.SUCCESS:
        raise pcsc_error(hresult, what)
    return tup[1:]


class PcscContext:
    """A PC/SC context (one per thread of use); closed on exit."""

    def __init__(self) -> None:
        (self.handle,) = _check(scard.SCardEstablishContext(scard.SCARD_SCOPE_USER), "establishing context")

    def readers(self) -> list[str]:
        hresult, readers = scard.SCardListReaders(self.handle, [])
        if hresult & 0xFFFFFFFF in (PcscCode.E_NO_READERS_AVAILABLE, PcscCode.E_UNKNOWN_READER):
            return []
        _check(hresult, "listing readers")
        return list(readers)

    def resolve(self, reader: str | int) -> str:
        """Reader name from a name, a unique name prefix, or an index in the reader list."""
        readers = self.readers()
        if isinstance(reader, int):
            if not 0 <= reader < len(readers):
                raise NoReaderError(f"no reader at index {reader}; readers: {readers or 'none'}")
            return readers[reader]
        if reader in readers:
            return reader
        matches = [r for r in readers if r.startswith(reader)]
        if len(matches) == 1:
            return matches[0]
        raise NoReaderError(f"no reader named {reader!r}; readers: {readers or 'none'}")

    def reader_state(self, reader: str) -> tuple[int, int]:
        """(event counter, state flags) of ``reader``; the counter moves on every insertion and removal."""
        (states,) = _check(
            scard.SCardGetStatusChange(self.handle, 0, [(reader, scard.SCARD_STATE_UNAWARE)]),
            f"reading the state of {reader!r}",
        )
        event = int(states[0][1])
        return event >> 16, event & 0xFFFF

    def card_present(self, reader: str) -> bool:
        return bool(self.reader_state(reader)[1] & scard.SCARD_STATE_PRESENT)

    def wait_for_card(self, reader: str, timeout: float, *, not_event: int | None = None) -> None:
        """Block until a card is present in ``reader``; CardWaitTimeoutError after ``timeout`` seconds.

        With ``not_event`` (an event counter from :meth:`reader_state`), a card that was present at that
        event does not count: only a new insertion does. pcscd notices a removal at its next poll, so
        without this a stale "present" would end the wait before the card is back.
        """
        deadline = time.monotonic() + timeout
        state = scard.SCARD_STATE_UNAWARE
        while True:
            remaining = deadline - time.monotonic()
            ms = max(0, int(remaining * 1000))
            hresult, states = scard.SCardGetStatusChange(self.handle, ms, [(reader, state)])
            hresult &= 0xFFFFFFFF
            if hresult == PcscCode.E_TIMEOUT:
                raise CardWaitTimeoutError(f"no card inserted in {reader!r} within {timeout:g} s")
            _check(hresult, f"waiting for a card in {reader!r}")
            event = int(states[0][1])
            present = event & scard.SCARD_STATE_PRESENT and not event & scard.SCARD_STATE_MUTE
            if present and (not_event is None or event >> 16 != not_event):
                return
            if remaining <= 0:
                raise CardWaitTimeoutError(f"no card inserted in {reader!r} within {timeout:g} s")
            state = event & ~scard.SCARD_STATE_CHANGED

    def close(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_readers() -> list[str]:
    """Names of the PC/SC readers pcscd knows (empty when none)."""
    with PcscContext() as ctx:
        return ctx.readers()


def wait_for_card(reader: str | int = 0, timeout: float = 10.0) -> str:
    """Wait until a card is in ``reader`` (name, prefix or index); return the reader's name."""
    with PcscContext() as ctx:
        name = ctx.resolve(reader)
        ctx.wait_for_card(name, timeout)
        return name


class PcscConnection:
    """A :class:`CardConnection` through pcscd.

    ``exclusive=True`` keeps every other client out (they get :class:`CardBusyError`) — use it for
    personalisation and debits. ``disposition`` says what happens to the card on :meth:`close`.
    """

    def __init__(
        self,
        reader: str | int = 0,
        *,
        exclusive: bool = False,
        disposition: Disposition = Disposition.LEAVE,
        wait: float | None = None,
    ) -> None:
        self._context = PcscContext()
        try:
            self.reader = self._context.resolve(reader)
            if wait is not None:
                self._context.wait_for_card(self.reader, wait)
            self.exclusive = exclusive
            self.disposition = disposition
            self._share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
            self._hcard: Any = None
            self._connect()
        except BaseException:
            self._context.close()
            raise

    def _connect(self) -> None:
        hcard, protocol = _check(
            scard.SCardConnect(
                self._context.handle,
                self.reader,
                self._share,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            ),
            f"connecting to {self.reader!r}",
        )
        self._hcard = hcard
        self._event_count = self._context.reader_state(self.reader)[0]
        self._pci = scard.SCARD_PCI_T1 if protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
        self.protocol = protocol

    @property
    def atr(self) -> bytes:
        """The card's ATR (from PC/SC status)."""
        _reader, _state, _protocol, atr = _check(scard.SCardStatus(self._require()), "reading the ATR")
        return bytes(atr)

    def _require(self) -> Any:
        if self._hcard is None:
            raise TransportError(f"connection to {self.reader!r} is closed")
        return self._hcard

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        hresult, response = scard.SCardTransmit(self._require(), self._pci, list(apdu))
        if hresult & 0xFFFFFFFF != PcscCode.SUCCESS:
            raise pcsc_error(hresult, f"sending an APDU to {self.reader!r}")
        if len(response) < 2:
            raise CardRemovedError(f"card in {self.reader!r} returned no valid response; card removed")
        raw = bytes(response)
        return raw[:-2], int.from_bytes(raw[-2:], "big")

    def reconnect(
        self, *, initialization: Disposition = Disposition.LEAVE, wait: float | None = None
    ) -> None:
        """Re-establish the card handle after a reset (acknowledges it) or after reinsertion.

        ``initialization`` RESET / UNPOWER force a warm reset or power cycle; ``wait`` waits this long for
        a card first (after a removal).
        """
        if wait is not None:
            # After a removal the old handle is dead: drop it and connect afresh to a NEW insertion.
            if self._hcard is not None:
                scard.SCardDisconnect(self._hcard, scard.SCARD_LEAVE_CARD)
                self._hcard = None
            try:
                self._context.wait_for_card(self.reader, wait, not_event=self._event_count)
            except CardWaitTimeoutError:
                # Reinserted faster than pcscd polls (no event seen): if a card is there, try it.
                if not self._context.card_present(self.reader):
                    raise
        if self._hcard is not None:
            hresult, protocol = scard.SCardReconnect(
                self._hcard, self._share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1, initialization
            )
            if hresult & 0xFFFFFFFF == PcscCode.SUCCESS:
                self._pci = scard.SCARD_PCI_T1 if protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
                return
            scard.SCardDisconnect(self._hcard, scard.SCARD_LEAVE_CARD)
            self._hcard = None
            if hresult & 0xFFFFFFFF not in _REMOVED | _RESET:
                raise pcsc_error(hresult, f"reconnecting to {self.reader!r}")
        self._connect()
        if initialization != Disposition.LEAVE:
            self.reconnect(initialization=initialization)

    def power_cycle(self) -> None:
        """Power the card off and on: all its RAM state (selected app, verified PIN) is lost."""
        self.reconnect(initialization=Disposition.UNPOWER)

    def close(self) -> None:
        """Disconnect with the chosen disposition and release the context (idempotent)."""
        if self._hcard is not None:
            scard.SCardDisconnect(self._hcard, int(self.disposition))
            self._hcard = None
        self._context.close()

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing useful to do
            self.close()


def connect(
    reader: str | int = 0,
    *,
    exclusive: bool = False,
    disposition: Disposition = Disposition.LEAVE,
    wait: float | None = None,
) -> PcscConnection:
    """Open a PC/SC connection by reader name, name prefix or index (optionally waiting for a card)."""
    return PcscConnection(reader, exclusive=exclusive, disposition=disposition, wait=wait)

