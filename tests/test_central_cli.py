"""The central commands: schema upgrade, registering a facility and a terminal, reconciling."""

from __future__ import annotations

import json
import random
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from cardsvc.central.extensions import Database
from cardsvc.central.models import Facility, Terminal
from cardsvc.central.testing import p256_key
from cardsvc.cli import main


def test_upgrade_register_and_reconcile(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    result = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0 and "head" in result.output
    args = ["central", "add-facility", "--database-url", url, "7", "District Hospital"]
    result = runner.invoke(main, [*args, "--district", "Jaipur", "--lat", "26.9", "--lon", "75.8"])
    assert result.exit_code == 0, result.output
    pem = tmp_path / "t.pem"
    key = p256_key(random.Random(1)).public_key()
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM, spki))
    add = ["central", "add-terminal", "--database-url", url]
    result = runner.invoke(main, [*add, "00000000000000aa", str(pem), "--facility", "7"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, [*add, "xyz", str(pem)])
    assert result.exit_code != 0 and "not hexadecimal" in result.output
    result = runner.invoke(main, ["central", "reconcile", "--database-url", url, "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["records"] == 0
    database = Database(url)
    with database.sessions() as session:
        assert session.execute(select(Facility.name)).scalar_one() == "District Hospital"
        terminal = session.execute(select(Terminal)).scalar_one()
        assert (terminal.id, terminal.facility_id, terminal.revoked_at) == ("00000000000000aa", 7, None)
    database.dispose()
