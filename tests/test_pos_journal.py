"""The POS journal: write-ahead intents survive a killed process, records are stored once, and nothing that
looks like a PIN, key or template is ever written."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cardsvc.central.testing import SimCard
from cardsvc.formats.transaction import RecordType
from point_of_service.journal import Journal

_CHILD = """
import os, sys
from cardsvc.formats.transaction import RecordType
from point_of_service.journal import Journal
j = Journal(sys.argv[1])
j.add_intent(nonce="n1", created=1, card_id=0xCA4D, record_type=RecordType.CASH, amount=500, reference=0,
             member=0, operator="INFOP-1", counter_before=4, request_time=1)
os.kill(os.getpid(), 9)
"""


def test_intent_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env={**os.environ}, check=False)
    assert proc.returncode == -9
    with Journal(path) as journal:
        (intent,) = journal.pending_intents(0xCA4D)
        assert (intent.nonce, intent.amount, intent.counter_before) == ("n1", 500, 4)


def test_records_are_stored_once_and_exposure_counts_until_acked(tmp_path: Path) -> None:
    card = SimCard.new(0xCA4D, random.Random(1))
    with Journal(tmp_path / "j.sqlite") as journal:
        r1 = card.transact(RecordType.CASH, 1000, 100, 1, 2, 3)
        r2 = card.transact(RecordType.PROOF_OF_LIFE, 0, 200, 1, 2, 3)
        assert journal.add_record(r1, card.public_key) and journal.add_record(r2, card.public_key)
        assert not journal.add_record(r1, card.public_key)
        assert journal.card_offline_exposure(0xCA4D) == (2, 1000, 100)
        journal.add_batch(1, 300, "ab" * 32, b"{}", [r1, r2])
        assert journal.card_offline_exposure(0xCA4D) == (2, 1000, 100)
        journal.ack_batch(1, {"ok": True})
        assert journal.card_offline_exposure(0xCA4D) == (0, 0, None)


@pytest.mark.parametrize("key", ["pin", "operator_pin", "template", "private_key", "Passphrase"])
def test_secrets_are_refused(tmp_path: Path, key: str) -> None:
    with Journal(tmp_path / "j.sqlite") as journal, pytest.raises(ValueError):
        journal.log("signin", at=1, detail={key: "x"})
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal.events() == []
