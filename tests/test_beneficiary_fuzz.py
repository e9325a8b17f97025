"""The beneficiary application never crashes: arbitrary proprietary commands answer a status word, never
6F00 (an exception inside the card), whatever rights the terminal holds; a refused command changes nothing."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.beneficiary import protocol as fmt
from hardware_sims.card.apdu import build_command
from tests.fixtures.beneficiary import BeneficiaryCard

INS = st.sampled_from([int(i) for i in fmt.BenIns] + [0x00, 0xFF])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    commands=st.lists(
        st.tuples(INS, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=80), st.integers(0, 256)),
        min_size=1,
        max_size=6,
    ),
    rights=st.booleans(),
    state=st.sampled_from(["activated", "personalised"]),
)
def test_arbitrary_commands_answer_a_status_word(
    make_beneficiary_card: Callable[..., BeneficiaryCard],
    commands: list[tuple[int, int, int, bytes, int]],
    rights: bool,
    state: str,
) -> None:
    c = make_beneficiary_card(state)
    card = c.card
    card.transmit(build_command(0x00, 0xA4, 0x04, 0x00, fmt.BENEFICIARY_AID, 256))
    if rights:
        card.session.grant_terminal_rights(
            "ENROL", "DEBIT", "READ_PROFILE", "READ_TEMPLATES", "TOP_UP", "RENEW", "PROOF_OF_LIFE",
            terminal_id=b"INTRM-POS-0001",
        )  # fmt: skip
    for ins, p1, p2, data, ne in commands:
        before = card.store.snapshot()
        raw = card.transmit(build_command(0x80, ins, p1, p2, data, ne))
        sw = int.from_bytes(raw[-2:], "big")
        assert sw != 0x6F00, f"card crashed on 80 {ins:02X} {p1:02X} {p2:02X} {data.hex()}"
        if sw != 0x9000 and sw >> 8 != 0x61:
            assert card.store.snapshot() == before, f"refused 80 {ins:02X} ({sw:04X}) changed the card"
    card.power_off()
