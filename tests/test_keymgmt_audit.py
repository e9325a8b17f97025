"""The audit log: any edit, deletion, insertion, reordering or forged rewrite is named at its first entry."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cardsvc.pki.errors import AuditError, AuditTamperedError
from cardsvc.pki.signer import SoftwareSigner
from keymgmt.audit import AuditLog, entry_hash, verify_log

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def signed_log(tmp_path: Path) -> tuple[AuditLog, dict[str, bytes], SoftwareSigner]:
    ticks = iter(range(100))
    log = AuditLog(tmp_path / "audit.log", now=lambda: T0 + timedelta(minutes=next(ticks)))
    dkma = SoftwareSigner.generate()
    for i in range(5):
        log.append(
            actor="asha",
            action="terminal.register",
            subject=f"INTRM-{i}",
            details={"rights": ["DEBIT"], "n": i},
            signer=dkma,
            signer_ref="INDKMA-PATNA1",
        )
    return log, {"INDKMA-PATNA1": dkma.public_key()}, dkma


def _lines(log: AuditLog) -> list[dict]:
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def _write(log: AuditLog, entries: list[dict]) -> None:
    log.path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_intact_log_verifies_and_entries_are_chained(signed_log) -> None:
    log, keys, _ = signed_log
    assert verify_log(log, public_keys=keys) == 5
    lines = _lines(log)
    assert lines[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))
    assert lines[2]["time"] == "2026-11-23T09:02:00Z"


def test_edited_entry_is_named(signed_log) -> None:
    log, keys, _ = signed_log
    lines = _lines(log)
    lines[2]["subject"] = "INTRM-EVIL"
    _write(log, lines)
    with pytest.raises(AuditTamperedError, match=r"entry 3 \(seq 3.*edited") as exc:
        verify_log(log, public_keys=keys)
    assert exc.value.index == 2


def test_deleted_inserted_or_reordered_entries_are_named(signed_log) -> None:
    log, keys, _ = signed_log
    original = _lines(log)
    _write(log, original[:1] + original[2:])
    with pytest.raises(AuditTamperedError, match="entry 2") as exc:
        verify_log(log, public_keys=keys)
    assert exc.value.index == 1
    swapped = original[:]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    _write(log, swapped)
    with pytest.raises(AuditTamperedError, match="entry 4"):
        verify_log(log, public_keys=keys)
    _write(log, original)
    text = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join([*text[:2], "{broken\n", *text[2:]]))
    with pytest.raises(AuditTamperedError, match="line 3 is not JSON"):
        verify_log(log, public_keys=keys)


def test_rewritten_tail_with_recomputed_hashes_is_caught_by_the_signatures(signed_log) -> None:
    log, keys, _ = signed_log
    lines = _lines(log)
    lines[1]["details"]["rights"] = ["DEBIT", "CERTIFY"]
    prev = lines[0]["hash"]
    for e in lines[1:]:  # the attacker recomputes every hash after the edit
        e["prev_hash"] = prev
        e["hash"] = entry_hash(e)
        prev = e["hash"]
    _write(log, lines)
    with pytest.raises(AuditTamperedError, match=r"entry 2 .*signature by INDKMA-PATNA1 does not verify"):
        verify_log(log, public_keys=keys)
    with pytest.raises(AuditTamperedError, match="signed by unknown key"):
        verify_log(log, public_keys={})


def test_new_entries_continue_the_chain_after_reopening(signed_log) -> None:
    log, keys, _ = signed_log
    again = AuditLog(log.path, now=lambda: T0)
    e = again.append(actor="ravi", action="revoke", subject="INTRM-1", details={"by": "INDKMA-PATNA1"})
    assert e.seq == 6 and e.prev_hash == _lines(log)[4]["hash"]
    assert verify_log(again, public_keys=keys) == 6


@pytest.mark.parametrize("key", ["pin", "officer_PIN", "passphrase", "template", "private_key"])
def test_secrets_are_refused_in_details(tmp_path: Path, key: str) -> None:
    log = AuditLog(tmp_path / "a.log", now=lambda: T0)
    with pytest.raises(AuditError, match="never go into the audit log"):
        log.append(actor="a", action="x", subject="s", details={"nested": {key: "1234"}})
    assert not log.path.exists()
