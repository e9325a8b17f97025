"""Property tests of the whole processor stack against a small ISO card model (chaining in, 61xx out)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.card.apdu import CardLimits, CommandApdu
from cardsvc.card.protocol import SmartCardProtocol

INS_ECHO = 0xEE


class EchoCard:
    """Accepts chained commands, answers INS EE with the data reversed, at most ``chunk`` bytes a time."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.chained = b""
        self.pending = b""
        self.apdus: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus.append(apdu)
        assert len(apdu) <= 4 + 1 + 255 + 1, "the host sent an APDU a short-only card cannot take"
        cmd = CommandApdu.decode(apdu)
        if cmd.ins == 0xC0:
            n = min(cmd.le, self.chunk)
            out, self.pending = self.pending[:n], self.pending[n:]
        elif cmd.cla & 0x10:
            self.chained += cmd.data
            return b"", 0x9000
        else:
            whole, self.chained = self.chained + cmd.data, b""
            answer = whole[::-1]
            limit = min(cmd.le, self.chunk)
            out, self.pending = answer[:limit], answer[limit:]
        if self.pending:
            return out, 0x6100 | min(len(self.pending), 256) & 0xFF
        return out, 0x9000

    def close(self) -> None:
        pass


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=1500), chunk=st.integers(1, 256))
def test_any_length_goes_out_chained_and_comes_back_whole(data: bytes, chunk: int) -> None:
    card = EchoCard(chunk)
    protocol = SmartCardProtocol(card, CardLimits.short(command_chaining=True))
    assert protocol.send_apdu(0x80, INS_ECHO, 0, 0, data, le=256) == data[::-1]
    commands = [a for a in card.apdus if a[1] == INS_ECHO]
    assert len(commands) == max(1, -(-len(data) // 255))  # as few links as the card allows
