"""The ``pos`` command line end to end on the real stack: terminal set up from keymgmt-style files (chain,
encrypted key), signed catalogue installed, clerk sign-in with the operator card (vpcd slot 1) and the
sensor simulator, admission and discharge on the beneficiary card (slot 0), refusals with the clerk's
reason and exit status 2, journal and offline status; and ``pos bench verify --json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardsvc.beneficiary.protocol import AuthKind, Authorisation
from cardsvc.beneficiary.session import sign_authorisation
from cardsvc.formats.profile import card_number
from cardsvc.pki.rights import Role
from cardsvc.pki.signer import FileSigner, ScryptCost
from hardware_sims.sensor.simulator import SensorSimulator
from point_of_service.catalogue import Catalogue, Package
from point_of_service.cli import main
from point_of_service.identity import JOURNAL_FILE
from point_of_service.journal import Journal
from point_of_service.services.authorisations import StoredAuthorisation, store_authorisations
from tests.fixtures.beneficiary import CARD_ID, COVER
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.pos import OPERATOR_CHR, OPERATOR_FINGER, OPERATOR_PIN, POS_CARD_NOW, PosWorld

PASS = "terminal-pass-1"
NOW_ISO = "2026-11-23T12:00:00Z"


def _home(world: PosWorld, tmp: Path) -> tuple[Path, Path]:
    pki = world.pki
    key = tmp / "files" / "key.enc"
    signer = FileSigner.create(key, PASS.encode(), cost=ScryptCost(n=2**10))
    terminal = pki.issue(pki.district, "INTRM-POS-CLI1", Role.POS_TERMINAL, signer=signer)
    chain = tmp / "files" / "pos.chain"
    chain.write_bytes(pki.root.cert.encode() + pki.district.cert.encode() + terminal.cert.encode())
    catalogue = tmp / "files" / "catalogue.json"
    cat = Catalogue(
        2,
        pki.district.chr,
        POS_CARD_NOW,
        POS_CARD_NOW,
        (Package(301, "Normal delivery", 450_000, "obstetrics"),),
    )
    catalogue.write_bytes(cat.sign(pki.district.signer, [pki.district.cert]))
    return chain, catalogue


def test_cli_signin_admit_discharge_refusals_journal(
    pos_world: PosWorld, tmp_path: Path, serve_card: Callable[..., ServedCard], sensor_sim: SensorSimulator
) -> None:
    chain, catalogue = _home(pos_world, tmp_path)
    ben = serve_card(slot=0, card=pos_world.beneficiary_card(tmp_path / "ben"))
    op = serve_card(slot=1, card=pos_world.officer_card(tmp_path / "op"))
    home = tmp_path / "pos-home"
    env = {"POS_TERMINAL_PASSPHRASE": PASS, "POS_OPERATOR_PIN": OPERATOR_PIN}
    base = [
        "--home",
        str(home),
        "--card-reader",
        ben.reader,
        "--operator-reader",
        op.reader,
        "--sensor",
        sensor_sim.port,
        "--now",
        NOW_ISO,
    ]
    runner = CliRunner()

    def pos(*args: str, finger: int | None = None, code: int = 0) -> str:
        if finger is not None:
            sensor_sim.place(finger, 1)
        try:
            result = runner.invoke(main, [*base, *args], env=env, catch_exceptions=False)
        finally:
            sensor_sim.lift()
        assert result.exit_code == code, result.output
        return result.output

    key = tmp_path / "files" / "key.enc"
    pos(
        "setup",
        "--chain",
        str(chain),
        "--key",
        str(key),
        "--terminal-id",
        "000000005ec0c111",
        "--facility-id",
        "17",
    )
    assert "v2" in pos("catalogue", "install", str(catalogue))
    out = pos("admit", "--package", "301", finger=3, code=2)
    assert "REFUSED (not-signed-in)" in out and "next:" in out
    assert f"signed in: {OPERATOR_CHR}" in pos("signin", finger=OPERATOR_FINGER)
    out = pos("admit", "--package", "301", "--member", "0", "--finger", "2", finger=3)
    assert f"BLOCK: 450000 paise, balance {COVER - 450_000} paise, card counter 1" in out
    out = pos("discharge", "--admission", "1", "--amount", "400000", finger=3)
    assert f"SETTLE: 400000 paise, balance {COVER - 400_000} paise, card counter 2" in out
    out = pos("pay", "--scheme", "2", "--amount", "1000", finger=5, code=2)  # member 1's finger for member 0
    assert "REFUSED (finger-mismatch)" in out and "another-finger" in out
    out = pos(
        "pay",
        "--scheme",
        "2",
        "--amount",
        "1000",
        "--override",
        "worn-fingerprints",
        "--note",
        "ridges worn by field work",
        code=2,
    )
    assert "REFUSED (override-needs-supervisor)" in out
    journal = pos("journal")
    assert "transaction" in journal and "reason=finger-mismatch" in journal
    events = json.loads(pos("journal", "--json", "--kind", "transaction"))
    assert [e["detail"]["type"] for e in events] == ["BLOCK", "SETTLE"]
    status = pos("status")
    assert "never synced" in status and "2 records" in status
    assert (
        "offline limits at 2026-11-23 12:00: 2 of 20 debits, 450000 of 2000000 paise since counter 0"
        in status
    )

    # central's acknowledgement of both records, as a sync downloads it: shown waiting, then presented
    pki = pos_world.pki
    card_id = card_number(CARD_ID)
    ack = sign_authorisation(pki.district.signer, Authorisation(AuthKind.SYNC_ACK, CARD_ID, 1, 1, 2),
                             pki.district.cert)  # fmt: skip
    with Journal(home / JOURNAL_FILE) as terminal_journal:
        item = StoredAuthorisation("ack1", "sync_ack", "card", f"{card_id:016x}", POS_CARD_NOW,
                                   POS_CARD_NOW + 86_400, ack.encode(), ())  # fmt: skip
        store_authorisations(terminal_journal, [item.to_json()])
    assert "acknowledgement up to counter 2 waits for the card" in pos("status")
    out = pos("verify", "--member", "0", "--finger", "2", finger=3)
    assert "central's sync acknowledgement presented: offline limits now 0 of 20 debits" in out
    status = pos("status")
    assert "(reset by central's acknowledgement): 0 of 20 debits, 0 of" in status, status
    assert "since counter 2" in status and "waits for the card" not in status


@pytest.mark.slow
def test_bench_verify_json(pcscd: object) -> None:
    result = CliRunner().invoke(
        main, ["bench", "verify", "--rounds", "1", "--json", "-"], catch_exceptions=False
    )
    figures = json.loads(result.output[result.output.index("{") :])
    assert set(figures["figures"]) == {"apdus", "bytes_read", "cpu_ms", "sensor_io_cpu_ms", "wall_ms"}
    assert (
        figures["figures"]["apdus"]["ceiling"] == 20 and figures["figures"]["bytes_read"]["ceiling"] == 4096
    )
    assert result.exit_code == (0 if figures["ok"] else 1)
