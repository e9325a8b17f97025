"""The simulated card on the real PC/SC stack, seen by third-party clients (opensc-tool, pcsc_scan) and by
pyscard: ATR, short APDUs, reset of RAM state between sessions, card pulled by a fault.

Uses the card-host engineer's ``serve_card`` fixture (pcscd + vpcd); skips locally (fails under CI) where
pcscd or a tool cannot run."""

from __future__ import annotations

import random
import re
import shutil
import subprocess

import pytest

from hardware_sims.card.apps.generic import GENERIC_AID, GenericApplication
from hardware_sims.card.faults import FaultInjector
from tests.fixtures.pcsc import unavailable

pytestmark = pytest.mark.pcsc

SLOT = 1  # the card-host tests mostly use slot 0; either works


def _tool(*args: str) -> str:
    if shutil.which(args[0]) is None:
        unavailable(f"{args[0]} is not installed (scripts/setup.sh installs it)")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return proc.stdout + proc.stderr


def _index(reader: str) -> str:
    for line in _tool("opensc-tool", "-l").splitlines():
        if line.rstrip().endswith(reader):
            return line.split()[0]
    raise AssertionError(f"opensc-tool does not list {reader}")


def test_opensc_tool_and_pcsc_scan_see_the_card(serve_card) -> None:
    served = serve_card(slot=SLOT, applications=[GenericApplication()], rng=random.Random(9))
    idx = _index(served.reader)
    atr_hex = ":".join(f"{b:02x}" for b in served.card.atr)
    assert atr_hex in _tool("opensc-tool", "-r", idx, "-a")
    out = _tool("opensc-tool", "-r", idx,
                "-s", "00A4040C09" + GENERIC_AID.hex(),
                "-s", "00 84 00 00 08",
                "-s", "00 20 00 81",
                "-s", "00 CA 7F 66 00")
    found = re.findall(r"SW1=0x([0-9a-f]{2}), SW2=0x([0-9a-f]{2})", out, re.I)
    sws = [(a.lower(), b.lower()) for a, b in found]
    assert sws == [("90", "00"), ("90", "00"), ("63", "c3"), ("90", "00")], out
    scan = _tool("timeout", "2", "pcsc_scan", "-n")
    assert " ".join(f"{b:02X}" for b in served.card.atr) in scan


def test_ram_state_resets_between_pyscard_sessions_and_a_pull_is_recovered(serve_card) -> None:
    from smartcard.System import readers

    faults = FaultInjector()
    served = serve_card(slot=SLOT, applications=[GenericApplication()], faults=faults)
    reader = next(r for r in readers() if str(r) == served.reader)

    def session(*apdus: str) -> list[int]:
        conn = reader.createConnection()
        conn.connect()
        try:
            out = []
            for apdu in apdus:
                _, sw1, sw2 = conn.transmit(list(bytes.fromhex(apdu)))
                out.append(sw1 << 8 | sw2)
            return out
        finally:
            conn.disconnect()

    select = "00A4040C09" + GENERIC_AID.hex()
    assert session(select, "0020008106313233343536", "00200081") == [0x9000, 0x9000, 0x9000]
    assert session(select, "00200081") == [0x9000, 0x63C3], "PIN verification must not outlive a session"
    faults.arm(after_writes=1)
    with pytest.raises(Exception):  # noqa: B017 - pyscard raises its own several types for a pulled card
        session(select, "0020008106303030303030")
    served.insert()
    assert session(select, "00200081") == [0x9000, 0x63C3], "torn before the commit: no try counted"
