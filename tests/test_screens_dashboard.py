"""Browser test of the central dashboard: Chromium (Playwright) against the real central app (SQLite) with
records uploaded through the signed API. A cloned card's flag followed to the card's ledger and to the
facility; roles (an auditor may not resolve), CSRF, the idle time-out and the audit log; in English and
Hindi, with screenshots."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from cardsvc.central.app import create_app
from cardsvc.central.dashboard import init_dashboard
from cardsvc.central.dashboard.users import Role, UserError, UserStore
from cardsvc.central.extensions import get_db
from cardsvc.central.services.reconcile import reconcile
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.transaction import RecordType
from tests.fixtures.screens import LiveServer, Screens, serve_app

pytestmark = pytest.mark.slow

DAY = 86_400
NOW = 1_800_000_000
STAFF_PASSWORD = "Central-Staff-2026"
AUDITOR_PASSWORD = "Auditor-Reads-2026"
DISTRICT_PASSWORD = "Patna-Officer-2026"


@dataclass
class Dashboard:
    server: LiveServer
    app: Flask
    clock: FixedClock
    card_id: str

    def url(self, path: str) -> str:
        return self.server.url + path


def upload(app: Flask, terminal: SimTerminal, kind: BatchKind, items: list, now: int) -> None:
    body = terminal.batch(kind, items, now)
    headers = terminal.headers("POST", "/api/v1/batches", body, now)
    response = app.test_client().post("/api/v1/batches", data=body, headers=headers)
    assert response.status_code == 201, response.get_json()


@pytest.fixture
def dashboard(sqlite_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    from tests.fixtures.db import _empty_all_tables

    _empty_all_tables(sqlite_url)
    clock = FixedClock(float(NOW))
    app = create_app({
        "DATABASE_URL": sqlite_url, "CLOCK": clock, "SECRET_KEY": b"dashboard-test",
        "DASHBOARD_USERS": str(tmp_path / "users.json"), "DASHBOARD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    })  # fmt: skip
    if "dashboard" not in app.blueprints:  # until central's create_app registers it
        init_dashboard(app)
    users = UserStore(tmp_path / "users.json")
    users.add("anita", STAFF_PASSWORD, Role.CENTRAL)
    users.add("ravi", AUDITOR_PASSWORD, Role.AUDITOR)
    users.add("priya", DISTRICT_PASSWORD, Role.DISTRICT, "Patna")
    terminal = SimTerminal.new(0x7E57, random.Random(20))
    with get_db(app).sessions() as session:
        add_facility(session, 1, "District Hospital Jaipur", "Jaipur", 26.91, 75.79)
        add_facility(session, 2, "Sawai Clinic", "Jaipur", 26.85, 75.80)
        session.flush()
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), NOW - 365 * DAY)
        session.commit()
    card = SimCard.new(0xC001, random.Random(21))
    upload(app, terminal, BatchKind.CAMP, [card.camp_card("Jaipur", NOW - 100 * DAY, NOW + 265 * DAY, 0xF0)],
           NOW)  # fmt: skip
    tid = terminal.terminal_id
    card.transact(RecordType.CASH, 10_000, NOW - 5 * DAY, tid, 0x0E, 1)
    clone = copy.deepcopy(card)  # same key and state on another chip: a clone
    card.transact(RecordType.CASH, 20_000, NOW - 4 * DAY, tid, 0x0E, 1)
    clone.transact(RecordType.CASH, 30_000, NOW - 4 * DAY + 7200, tid, 0x0E, 2)
    upload(app, terminal, BatchKind.TRANSACTIONS, card.items() + clone.items(clone.log[1:]), NOW)
    with get_db(app).sessions() as session:
        reconcile(session, NOW)
    server = serve_app(lambda: app)
    yield Dashboard(server, app, clock, f"{card.card_id:016x}")
    server.stop()
    get_db(app).dispose()


def login(d: Dashboard, screens: Screens, lang: str, name: str, password: str) -> None:
    page = screens.page
    page.goto(d.url(f"/dashboard/login?lang={lang}"))
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login")


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_flag_followed_to_the_card_ledger_and_facility(
    dashboard: Dashboard, screens: Screens, lang: str
) -> None:
    d, page = dashboard, screens.page
    page.goto(d.url(f"/dashboard/flags?lang={lang}"))
    page.wait_for_selector("#login-form")  # not signed in: the login page
    screens.shot(lang, "dashboard-login")
    login(d, screens, lang, "anita", "wrong-password-1")
    page.wait_for_selector(".refusal")
    login(d, screens, lang, "anita", STAFF_PASSWORD)
    page.wait_for_selector("#flags")
    row = page.locator("#flags tr[data-kind=duplicate_counter]")
    assert row.count() == 1
    screens.shot(lang, "dashboard-flags")
    row.locator("a.card-link").click()
    page.wait_for_selector("#ledger")
    assert page.locator("#ledger tbody tr").count() == 3, "both versions of counter 2 are in the ledger"
    assert page.locator("#ledger tr.flagged").count() == 2
    assert d.card_id in page.inner_text("h1")
    screens.shot(lang, "dashboard-card-ledger")
    page.locator("#ledger tr.flagged a").last.click()
    page.wait_for_selector("#facility-flags")
    screens.shot(lang, "dashboard-facility")
    page.goto(d.url("/dashboard/settlement?facility=1&start=2026-12-01&end=2027-01-31"))
    page.wait_for_selector("#settlement-result")
    screens.shot(lang, "dashboard-settlement")
    page.click("#nav-reports")
    page.wait_for_selector("#use")
    screens.shot(lang, "dashboard-reports")
    page.click("#nav-revocations")
    page.select_option("#kind", "card")
    page.fill("#rid", d.card_id)
    page.fill("#reason", "cloned card seized at facility 2")
    page.click("#revoke")
    page.wait_for_selector(f"#revoked-cards a:text('{d.card_id}')")
    screens.shot(lang, "dashboard-revocations")
    page.click("#nav-audit")
    page.wait_for_selector("#chain-ok")
    actions = page.locator("#audit tbody td:nth-child(4)").all_inner_texts()
    assert actions[:2] == ["revoke", "login"] and "login-refused" in actions
    screens.shot(lang, "dashboard-audit")


def test_auditor_reads_but_may_not_change_and_sessions_time_out(
    dashboard: Dashboard, screens: Screens
) -> None:
    d, page = dashboard, screens.page
    login(d, screens, "en", "ravi", AUDITOR_PASSWORD)
    page.wait_for_selector("#flags")
    assert page.locator("#flags button").count() == 0, "no resolve button for an auditor"
    response = page.request.post(d.url("/dashboard/flags/1/resolve"), form={"note": "looks fine"})
    assert response.status == 400, "a form without the CSRF token is refused"
    page.click("#nav-revocations")
    assert page.locator("#revoke-form").count() == 0
    d.clock.advance(16 * 60)
    page.click("#nav-flags")
    page.wait_for_selector("#login-form")
    assert "timed out" in page.inner_text(".flash")


def test_district_officer_sees_only_their_district(dashboard: Dashboard, screens: Screens) -> None:
    d, page = dashboard, screens.page
    login(d, screens, "en", "priya", DISTRICT_PASSWORD)
    page.wait_for_selector("#flags")
    assert page.locator("#flags tr[data-kind]").count() == 0, "a Jaipur card's flag is not shown in Patna"
    page.goto(d.url(f"/dashboard/cards/{d.card_id}"))
    page.wait_for_selector("#flags")
    assert "not in your district" in page.inner_text(".flash")
    page.goto(d.url("/dashboard/facilities/1"))
    assert "not in your district" in page.inner_text(".flash")


def test_weak_passwords_and_unknown_users_refused(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "u.json")
    with pytest.raises(UserError, match="at least 10"):
        store.add("x", "short", Role.CENTRAL)
    with pytest.raises(UserError, match="district"):
        store.add("d", "District-Officer-1", Role.DISTRICT)
    store.add("d", "District-Officer-1", Role.DISTRICT, "Jaipur")
    assert store.check("d", "District-Officer-1").district == "Jaipur"
    assert store.check("d", "district-officer-1") is None
    assert store.check("nobody", "District-Officer-1") is None
    assert "District-Officer-1" not in (tmp_path / "u.json").read_text()
    assert oct((tmp_path / "u.json").stat().st_mode & 0o777) == "0o600"
