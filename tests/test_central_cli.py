"""The central commands: schema upgrade, registering a facility and a terminal, reconciling."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
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


def test_package_versions_reach_the_catalogue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    runner = CliRunner()
    add = ["central", "add-package", "--database-url", url, "301", "Hysterectomy"]
    assert runner.invoke(main, [*add, "--price-paise", "1200000", "--valid-from", "0"]).exit_code == 0
    result = runner.invoke(main, [*add, "--price-paise", "1000000", "--valid-from", "100"])
    assert result.exit_code == 0 and "version 2" in result.output
    from cardsvc.central.services.catalogue import catalogue

    database = Database(url)
    with database.sessions() as session:
        prices = [(p["version"], p["price_paise"]) for p in catalogue(session)]
    database.dispose()
    assert prices == [(1, 1_200_000), (2, 1_000_000)]


@pytest.mark.slow
def test_serve_runs_under_gunicorn(tmp_path: Path) -> None:
    """`cardsvc serve` starts gunicorn; the API answers (and refuses an unsigned call, saying why)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cardsvc = Path(sys.executable).parent / "cardsvc"  # the installed console script
    command = [str(cardsvc), "serve", "--database-url", f"sqlite:///{tmp_path / 's.db'}"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60  # a cold start: imports and migrations on a busy machine
        while True:
            try:
                with urllib.request.urlopen(f"{base}/openapi.json", timeout=5) as response:
                    assert json.loads(response.read())["openapi"].startswith("3.")
                break
            except OSError:  # refused, reset or timed out: not up yet
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
                time.sleep(0.1)
        try:
            urllib.request.urlopen(f"{base}/packages", timeout=2)
        except urllib.error.HTTPError as refused:
            assert refused.code == 401 and json.loads(refused.read())["error"] == "unsigned"
        else:
            raise AssertionError("an unsigned call was answered")
    finally:
        server.terminate()
        server.wait(10)
