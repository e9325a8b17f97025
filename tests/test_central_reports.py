"""Reports: coverage and use by district, scheme, gender and age band as CSV, PNG and one self-contained
HTML page; the settle / report / dedup / revoke-card commands. Service on both backends, CLI on SQLite."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from pathlib import Path

from click.testing import CliRunner
from flask import Flask

from cardsvc.central.extensions import Database, get_db
from cardsvc.central.services.reports import age_band, build_report, write_report
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.cli import main
from cardsvc.formats.batch import BatchKind, Gender, Item, Member
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.signer import ScryptCost, encrypt_private_key

DAY = 86_400


def populate(app: Flask, now: int) -> None:
    """Two districts: Jaipur 2 households (one used), Patna 1 household (unused); one record with no camp."""
    rng = random.Random(6)
    terminal = SimTerminal.new(0x7E, rng)
    with get_db(app).sessions() as session:
        add_facility(session, 5, "Jaipur Hospital", "Jaipur", 26.9, 75.8)
        session.flush()
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), now - DAY, 5)
        session.commit()

    def upload(kind: BatchKind, items: list[Item]) -> None:
        body = terminal.batch(kind, items, now)
        headers = terminal.headers("POST", "/api/v1/batches", body, now)
        assert app.test_client().post("/api/v1/batches", data=body, headers=headers).status_code == 201

    family = (Member(Gender.MALE, 1970), Member(Gender.FEMALE, 1975), Member(Gender.FEMALE, 2015))
    elderly = (Member(Gender.FEMALE, 1950),)
    cards = [SimCard.new(0xE1 + i, rng) for i in range(4)]
    policy = (now - 100 * DAY, now + 265 * DAY)
    upload(BatchKind.CAMP, [
        cards[0].camp_card("Jaipur", *policy, 0xF0, members=family),
        cards[1].camp_card("Jaipur", *policy, 0xF0, members=elderly),
        cards[2].camp_card("Patna", *policy, 0xF1, members=family),
    ])  # fmt: skip
    t = now - 10 * DAY
    block = cards[0].transact(RecordType.BLOCK, 500_000, t, terminal.terminal_id, 1, 5, 301, member_index=1)
    cards[0].transact(RecordType.SETTLE, 450_000, t + DAY, terminal.terminal_id, 1, 5, block.counter, 1)
    cards[1].transact(RecordType.CASH, 20_000, t, terminal.terminal_id, 1, 5)
    cards[1].transact(RecordType.PROOF_OF_LIFE, 0, t + 1, terminal.terminal_id, 1, 5)
    cards[3].transact(RecordType.CASH, 1_000, t, terminal.terminal_id, 1, 5)  # no camp yet
    upload(BatchKind.TRANSACTIONS, [*cards[0].items(), *cards[1].items(), *cards[3].items()])


def test_age_bands() -> None:
    assert [age_band(y, 2027) for y in (2027, 2010, 2009, 1988, 1987, 1968, 1967, 1900)] == [
        "0-17", "0-17", "18-39", "18-39", "40-59", "40-59", "60+", "60+",
    ]  # fmt: skip


def test_coverage_and_use_by_district_scheme_gender_age(
    central_app: Flask, clock: FixedClock, tmp_path: Path
) -> None:
    now = int(clock())  # 2027
    populate(central_app, now)
    with get_db(central_app).sessions() as session:
        report = build_report(session, now)
    coverage = {(r[0], r[2], r[3]): (r[4], r[5]) for r in report.coverage_rows()}
    assert coverage[("Jaipur", "M", "40-59")] == (1, 1)  # the head: one household, one person
    assert coverage[("Jaipur", "F", "40-59")] == (0, 1)
    assert coverage[("Jaipur", "F", "0-17")] == (0, 1)
    assert coverage[("Jaipur", "F", "60+")] == (1, 1)
    assert sum(p for _, p in coverage.values()) == 7 and sum(h for h, _ in coverage.values()) == 3
    use = {(r[0], r[2], r[3]): r[4:] for r in report.use_rows()}
    # the spouse (member 1, F 40-59) was admitted and discharged: 1 admission, 1 claim of 450,000 paise
    assert use[("Jaipur", "F", "40-59")] == [1, 1, 450_000, 0, 0, 0, 1]
    assert use[("Jaipur", "F", "60+")] == [0, 0, 0, 1, 20_000, 1, 1]
    assert not any(k[0] == "Patna" for k in use) and report.unattributed_records == 1

    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"coverage.csv", "use.csv", "coverage_by_district.png", "persons_by_age_gender.png",
                          "use_by_district.png", "report.html"}  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(paths["use.csv"].read_text())))
    assert sum(int(r["claimed_paise"]) for r in rows) == 450_000
    for name in ("coverage_by_district.png", "persons_by_age_gender.png", "use_by_district.png"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["report.html"].read_text()
    assert page.count("data:image/png;base64,") == 3
    assert not re.search(r'(src|href)="(?!data:)', page)  # self-contained: no external asset
    assert "<script" not in page and "Jaipur" in page and "450000" in page


def test_settle_report_dedup_and_revoke_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    from cardsvc.central.app import create_app

    app = create_app({"DATABASE_URL": url, "CLOCK": lambda: 1_800_000_000.0})
    populate(app, 1_800_000_000)
    get_db(app).dispose()
    args = ["--database-url", url]
    out = runner.invoke(main, ["central", "settle", *args, "5", "--from", "2026-12-01", "--to", "2027-02-01",
                               "--csv", str(tmp_path / "s.csv"), "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    settled = json.loads(out.output)
    assert settled["payable_paise"] == 450_000 and settled["held_count"] == 0
    assert "450000" in (tmp_path / "s.csv").read_text()
    again = runner.invoke(
        main, ["central", "settle", *args, "5", "--from", "2026-12-01", "--to", "2027-02-01"]
    )
    assert again.exit_code == 0 and "already recorded" in again.output
    bad = runner.invoke(main, ["central", "settle", *args, "5", "--from", "2027-02-01", "--to", "2027-01-01"])
    assert bad.exit_code != 0 and "not after" in bad.output

    out = runner.invoke(main, ["central", "report", *args, "--out", str(tmp_path / "r")])
    assert out.exit_code == 0 and (tmp_path / "r" / "report.html").exists()
    out = runner.invoke(main, ["report", *args, "--out", str(tmp_path / "r2")])
    assert out.exit_code == 0 and "use.csv" in out.output
    assert (tmp_path / "r2" / "use.csv").read_text() == (tmp_path / "r" / "use.csv").read_text()

    from cardsvc.central.testing import p256_key

    key_file = tmp_path / "dedup.key"
    key_file.write_bytes(encrypt_private_key(p256_key(random.Random(1)), b"pw", cost=ScryptCost(n=2**10)))
    out = runner.invoke(main, ["central", "dedup", *args, "--key-file", str(key_file), "--json"],
                        env={"CARDSVC_KEY_PASSPHRASE": "pw"})  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["searched_cards"] == 0  # these camps sealed no templates

    out = runner.invoke(main, ["central", "revoke-card", *args, "00000000000000e1"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["central", "revoke-card", *args, "00000000000000ff"])
    assert out.exit_code != 0 and "not registered" in out.output
    database = Database(url)
    with database.sessions() as session:
        from cardsvc.central.models import Card

        assert session.get(Card, "00000000000000e1").revoked_at is not None  # type: ignore[union-attr]
    database.dispose()
