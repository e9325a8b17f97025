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
from cardsvc.central.services.catalogue import add_package_version
from cardsvc.central.services.dedup import record_flags
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import Flag, FlagKind, reconcile
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal, p256_key
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.signer import SoftwareSigner
from tests.fixtures.screens import SCREENSHOTS, LiveServer, Screens, serve_app

pytestmark = pytest.mark.slow

DAY = 86_400
NOW = 1_800_000_000
STAFF_PASSWORD = "Central-Staff-2026"
AUDITOR_PASSWORD = "Auditor-Reads-2026"
DISTRICT_PASSWORD = "Patna-Officer-2026"
ROOT_CHR = "INROOT00001"
#: The package catalogue central holds (code, name, rate in paise, speciality).
PACKAGES = [
    (301, "Normal delivery", 450_000, "obstetrics"),
    (302, "Caesarean section", 900_000, "obstetrics"),
    (410, "Cataract surgery", 700_000, "ophthalmology"),
]


@dataclass
class Dashboard:
    server: LiveServer | None
    app: Flask
    clock: FixedClock
    card_id: str  # a cloned card (Jaipur): duplicate_counter
    clean_card: str  # Jaipur, one admission and discharge at facility 1: a payable claim
    twins: tuple[str, str]  # two Jaipur cards flagged duplicate_enrolment (the same finger on both)
    patna_card: str  # Patna: a counter gap, for the district officer
    key: CentralKey

    def url(self, path: str) -> str:
        assert self.server is not None
        return self.server.url + path


def upload(app: Flask, terminal: SimTerminal, kind: BatchKind, items: list, now: int) -> None:
    body = terminal.batch(kind, items, now)
    headers = terminal.headers("POST", "/api/v1/batches", body, now)
    response = app.test_client().post("/api/v1/batches", data=body, headers=headers)
    assert response.status_code == 201, response.get_json()


def build_dashboard(sqlite_url: str, tmp_path: Path) -> Dashboard:
    """Central (SQLite) with the dashboard, three users, a signing key, and records uploaded through the
    signed API: a cloned card, a clean stay, a possible duplicate enrolment and a Patna card with a gap."""
    from tests.fixtures.db import _empty_all_tables

    _empty_all_tables(sqlite_url)
    clock = FixedClock(float(NOW))
    key = CentralKey(SoftwareSigner(p256_key(random.Random(30))), ROOT_CHR)
    app = create_app({
        "DATABASE_URL": sqlite_url, "CLOCK": clock, "SECRET_KEY": b"dashboard-test", "CENTRAL_KEY": key,
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
        add_facility(session, 3, "Patna Medical College", "Patna", 25.61, 85.14)
        session.flush()
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), NOW - 365 * DAY)
        for code, name, paise, category in PACKAGES:
            add_package_version(session, code, name, paise, NOW - 200 * DAY, category)
        session.commit()
    card, clean = SimCard.new(0xC001, random.Random(21)), SimCard.new(0xC002, random.Random(22))
    twins = [SimCard.new(0xC003, random.Random(23)), SimCard.new(0xC004, random.Random(24))]
    patna = SimCard.new(0xD001, random.Random(25))
    policy = (NOW - 100 * DAY, NOW + 265 * DAY)
    camp = [c.camp_card("Jaipur", *policy, 0xF0) for c in (card, clean, *twins)]
    upload(app, terminal, BatchKind.CAMP, [*camp, patna.camp_card("Patna", *policy, 0xF1)], NOW)
    tid = terminal.terminal_id
    card.transact(RecordType.CASH, 10_000, NOW - 5 * DAY, tid, 0x0E, 1)
    clone = copy.deepcopy(card)  # same key and state on another chip: a clone
    card.transact(RecordType.CASH, 20_000, NOW - 4 * DAY, tid, 0x0E, 1)
    clone.transact(RecordType.CASH, 30_000, NOW - 4 * DAY + 7200, tid, 0x0E, 2)
    held = card.transact(RecordType.BLOCK, 800_000, NOW - 3 * DAY, tid, 0x0E, 1, reference=302)
    card.transact(RecordType.SETTLE, 750_000, NOW - 2 * DAY, tid, 0x0E, 1, reference=held.counter)  # held
    block = clean.transact(RecordType.BLOCK, 1_500_000, NOW - 6 * DAY, tid, 0x0E, 1, reference=301)
    clean.transact(RecordType.SETTLE, 1_234_500, NOW - 3 * DAY, tid, 0x0E, 1, reference=block.counter)
    for i in range(3):
        patna.transact(RecordType.CASH, 5_000, NOW - (9 - i) * DAY, tid, 0x0F, 3)
    gap = [patna.log[0], patna.log[2]]  # counter 2 withheld: a gap
    items = card.items() + clone.items(clone.log[1:]) + clean.items() + patna.items(gap)
    upload(app, terminal, BatchKind.TRANSACTIONS, items, NOW)
    a, b = (f"{t.card_id:016x}" for t in twins)
    with get_db(app).sessions() as session:
        reconcile(session, NOW)
        record_flags(session, [
            Flag(FlagKind.DUPLICATE_ENROLMENT, {"other_card": other, "household": f"HH-{mine[-4:]}",
                 "other_household": f"HH-{other[-4:]}", "score": 41.5, "matches": [[0, 2, 1, 7, 41.5]]},
                 card_id=mine)
            for mine, other in ((a, b), (b, a))
        ], NOW)  # fmt: skip
        session.commit()
    return Dashboard(None, app, clock, f"{card.card_id:016x}", f"{clean.card_id:016x}", (a, b),
                     f"{patna.card_id:016x}", key)  # fmt: skip


@pytest.fixture
def dashboard(sqlite_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    d = build_dashboard(sqlite_url, tmp_path)
    d.server = serve_app(lambda: d.app)
    yield d
    d.server.stop()
    get_db(d.app).dispose()


def login(d: Dashboard, screens: Screens, lang: str, name: str, password: str) -> None:
    page = screens.page
    page.goto(d.url(f"/dashboard/login?lang={lang}"))
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login")


def requests_seen(d: Dashboard, screens: Screens) -> list[str]:
    """Every URL the page asks for from now on (a request listener, beside the fixture's route guard)."""
    seen: list[str] = []
    screens.page.on("request", lambda request: seen.append(request.url))
    return seen


def assert_local(d: Dashboard, seen: list[str]) -> None:
    assert d.server is not None and seen, "the listener saw the pages load"
    outside = [u for u in seen if not u.startswith((d.server.url + "/", "data:"))]
    assert not outside, f"requests that left the machine: {outside}"


def actions(screens: Screens) -> list[str]:
    """The audit log's actions, newest first (the codes behind the words shown)."""
    return [
        str(a)
        for a in screens.page.locator("#audit tbody tr").evaluate_all("rs => rs.map(r => r.dataset.action)")
    ]


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_flag_followed_to_the_card_ledger_and_facility(
    dashboard: Dashboard, screens: Screens, lang: str
) -> None:
    d, page = dashboard, screens.page
    seen = requests_seen(d, screens)
    page.goto(d.url(f"/dashboard/flags?lang={lang}"))
    page.wait_for_selector("#login-form")  # not signed in: the login page
    screens.shot(lang, "dashboard-login")
    login(d, screens, lang, "anita", "wrong-password-1")
    page.wait_for_selector(".refusal")
    login(d, screens, lang, "anita", STAFF_PASSWORD)
    page.wait_for_selector("#flags")
    row = page.locator("#flags tr[data-kind=duplicate_counter]")
    assert row.count() == 1
    assert page.locator("#flags tr[data-kind=duplicate_enrolment] a.button").count() == 2, (
        "review, not resolve"
    )
    screens.shot(lang, "dashboard-flags")
    row.locator("a.card-link").click()
    page.wait_for_selector("#ledger")
    assert page.locator("#ledger tbody tr").count() == 5, "both versions of counter 2 are in the ledger"
    assert page.locator("#ledger tr.flagged").count() == 2
    assert d.card_id in page.inner_text("h1")
    assert "₹\u00a030,000.00" in page.inner_text("#card-info"), "the cover in rupees, local format"
    screens.shot(lang, "dashboard-card-ledger")
    page.locator("#ledger tr.flagged a").last.click()
    page.wait_for_selector("#facility-flags")
    screens.shot(lang, "dashboard-facility")
    page.click("#nav-settlement")
    page.select_option("#facility", "1")
    page.fill("#start", "2026-12-01")
    page.fill("#end", "2027-01-31")
    page.click("#preview")
    page.wait_for_selector("#settlement-result")
    assert page.locator("#claims tr[data-status=payable]").count() == 1
    held_reasons = page.locator("#claims tr[data-status=held] .reasons li")
    assert held_reasons.count() == 1, "the cloned card's discharge is held, with its reason"
    if lang == "en":
        assert held_reasons.inner_text().startswith("Same counter twice: cloned card or replay (flag no. ")
    else:
        assert "duplicate_counter" not in held_reasons.inner_text()
    assert "₹\u00a012,345.00" in page.inner_text("#settlement-result")
    if lang == "en":
        assert page.inner_text("#period") == "Period: 1 Dec 2026 to 31 Jan 2027", "dates in the Indian format"
    page.click("#run-settlement")
    page.wait_for_selector(".flash.ok")
    screens.shot(lang, "dashboard-settlement")
    page.click("#nav-reports")
    page.wait_for_selector("#use")
    assert page.locator("#charts svg.chart").count() == 3
    screens.shot(lang, "dashboard-reports")
    # the whole page too: the use chart and the table are below the fold
    page.screenshot(path=str(SCREENSHOTS / lang / "dashboard-reports-full.png"), full_page=True)
    assert_local(d, seen)


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_revocation_published_authorisation_issued_duplicate_reviewed(
    dashboard: Dashboard, screens: Screens, lang: str
) -> None:
    d, page = dashboard, screens.page
    seen = requests_seen(d, screens)
    login(d, screens, lang, "anita", STAFF_PASSWORD)
    page.wait_for_selector("#flags")
    page.click("#nav-revocations")
    page.select_option("#kind", "card")
    page.fill("#rid", d.card_id)
    page.fill("#reason", "cloned card seized at facility 2")
    page.click("#revoke")
    page.wait_for_selector(f"#revoked-cards a:text('{d.card_id}')")
    page.click("#publish")
    page.wait_for_selector("#published tbody tr")
    assert page.locator("#published tbody tr").count() == 1
    screens.shot(lang, "dashboard-revocations")
    page.click("#nav-authorisations")
    page.select_option("#auth-kind", "top_up")
    page.fill("#auth-card", d.twins[0])
    page.fill("#auth-amount", "1500")
    page.click("#authorise")
    page.wait_for_selector("#authorise-refused")  # a possible duplicate is open: refused
    page.click("#nav-dedup")
    pair = page.locator(f"#pair-{d.twins[0]}")
    assert d.twins[1] in pair.inner_text()
    screens.shot(lang, "dashboard-dedup")
    pair.locator("input[value=different]").check()
    pair.locator("input[name=note]").fill("two brothers; ration cards seen")
    pair.locator("button.review").click()
    page.wait_for_selector("#no-pairs")
    page.click("#nav-authorisations")
    page.select_option("#auth-kind", "top_up")
    page.fill("#auth-card", d.twins[0])
    page.fill("#auth-amount", "1500")
    page.click("#authorise")
    page.wait_for_selector("#issued tr[data-kind=top_up]")
    screens.shot(lang, "dashboard-authorisations")
    page.click("#nav-audit")
    page.wait_for_selector("#chain-ok")
    assert actions(screens) == ["authorise", "review-duplicate", "publish-revocations", "revoke", "login"]
    screens.shot(lang, "dashboard-audit")
    assert_local(d, seen)


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
    kinds = page.locator("#flags tr[data-kind]")
    assert kinds.count() == 1, "only the Patna card's gap; no Jaipur flag is shown in Patna"
    assert d.patna_card in kinds.inner_text()
    kinds.locator("input[name=note]").fill("counter 2 seen on the card; upload pending")
    kinds.locator("button").click()
    page.wait_for_selector(".flash.ok")
    assert page.locator("#flags tr[data-kind]").count() == 0
    page.goto(d.url(f"/dashboard/cards/{d.card_id}"))
    page.wait_for_selector("#flags")
    assert "not in your district" in page.inner_text(".flash")
    page.goto(d.url("/dashboard/facilities/1"))
    assert "not in your district" in page.inner_text(".flash")
    page.goto(d.url("/dashboard/audit"))
    assert page.locator("#forbidden").count() == 1 and page.locator("#nav-audit").count() == 0
    screens.shot("en", "dashboard-forbidden")


def test_weak_passwords_and_unknown_users_refused(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "u.json")
    with pytest.raises(UserError, match="at least 10"):
        store.add("x", "short", Role.CENTRAL)
    with pytest.raises(UserError, match="district"):
        store.add("d", "District-Officer-1", Role.DISTRICT)
    store.add("d", "District-Officer-1", Role.DISTRICT, "Jaipur")
    officer = store.check("d", "District-Officer-1")
    assert officer is not None and officer.district == "Jaipur"
    assert store.check("d", "district-officer-1") is None
    assert store.check("nobody", "District-Officer-1") is None
    assert "District-Officer-1" not in (tmp_path / "u.json").read_text()
    assert oct((tmp_path / "u.json").stat().st_mode & 0o777) == "0o600"


CATALOGUE_BAD = (
    "code,name,rate,category\n301,Normal delivery,4500,obstetrics\n302,,9000,obstetrics\n"
    "301,Twins delivery,12x00,obstetrics\n"
)  # fmt: skip
CATALOGUE_NEW = (
    "code,name,rate,category\n301,Normal delivery,5000,obstetrics\n302,Caesarean section,9000,obstetrics\n"
    '410,Cataract surgery,7000,ophthalmology\n501,Hernia repair,"12,500",surgery\n'
)  # fmt: skip


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_package_catalogue_checked_and_published(
    dashboard: Dashboard, screens: Screens, lang: str, tmp_path: Path
) -> None:
    d, page = dashboard, screens.page
    screens.hindi_only = True
    seen = requests_seen(d, screens)
    login(d, screens, lang, "anita", STAFF_PASSWORD)
    page.wait_for_selector("#flags")
    page.click("#nav-catalogue")
    page.wait_for_selector("#packages-now")
    assert page.locator("#packages-now tbody tr").count() == 3
    assert "₹\u00a04,500.00" in page.inner_text("#packages-now tr[data-code='301']"), "rates in rupees"
    screens.shot(lang, "dashboard-catalogue")  # (the page loaded: its style sheet applied)
    picker, chosen = page.locator("label.file-button[for=file]"), page.locator("#file-name")
    box = picker.bounding_box()
    assert box is not None and box["height"] >= 48, "the CSV file picker is a button at least 48 px high"
    native = "e => getComputedStyle(e).display !== 'none' && e.getBoundingClientRect().width <= 1"
    assert page.locator("#file").evaluate(native), "Chromium's own control (in the browser's language) unseen"
    words = (picker.inner_text(), chosen.inner_text())
    if lang == "en":
        assert words == ("Or choose a CSV file", "No file chosen")
    else:
        assert words == ("या एक CSV फ़ाइल चुनें", "कोई फ़ाइल नहीं चुनी गई"), "the picker in the page's language"
    page.fill("#packages", CATALOGUE_BAD)
    page.click("#check-catalogue")
    page.wait_for_selector("#upload-problems")
    problems = page.locator("#upload-problems li")
    assert [problems.nth(i).get_attribute("data-problem") for i in range(problems.count())] == [
        "missing_name", "duplicate_code", "bad_rate",
    ]  # fmt: skip
    if lang == "en":
        assert problems.nth(0).inner_text() == "Line 3, name: The name is missing."
        assert problems.nth(1).inner_text() == "Line 4, code: This code is already on line 2. «301»"
    else:
        assert problems.nth(0).inner_text().startswith("पंक्ति 3, नाम:")
    assert page.input_value("#packages") == CATALOGUE_BAD, "the list stays in the form to be corrected"
    screens.shot(lang, "dashboard-catalogue-refused")
    new_csv = tmp_path / "packages-2026.csv"  # the new version as a file: it is what is checked
    new_csv.write_text(CATALOGUE_NEW)
    with page.expect_file_chooser() as chooser:
        picker.click()
    chooser.value.set_files(str(new_csv))
    page.wait_for_function("() => document.getElementById('file-name').textContent === 'packages-2026.csv'")
    page.click("#check-catalogue")
    page.wait_for_selector("#changes")
    changed = page.locator("#change-list tr[data-change]")
    assert [changed.nth(i).get_attribute("data-change") for i in range(changed.count())] == ["rate", "new"]
    assert (
        "₹\u00a05,000.00" in changed.nth(0).inner_text() and "₹\u00a04,500.00" in changed.nth(0).inner_text()
    )
    screens.shot(lang, "dashboard-catalogue-changes")
    page.click("#publish-catalogue")
    page.wait_for_selector(".flash.ok")
    assert page.locator("#published tbody tr").count() == 1
    assert page.locator("#packages-now tbody tr").count() == 4
    assert "₹\u00a012,500.00" in page.inner_text("#packages-now tr[data-code='501']")
    screens.shot(lang, "dashboard-catalogue-published")
    page.click("#nav-audit")
    page.wait_for_selector("#chain-ok")
    assert actions(screens) == ["publish-catalogue", "login"]
    assert_local(d, seen)
