"""The dashboard without a browser (Flask test client, the real central app on SQLite and PostgreSQL):
every route walked by every role (deny by default), the idle time-out, CSRF on every form, the signed
revocation list published from the dashboard and verified as a terminal verifies it, an authorisation
refused while a possible duplicate enrolment is open and issued once it is reviewed, and data values in
words in Hindi."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.central.dashboard.users import Role
from cardsvc.central.dashboard.views import ACCESS, PUBLIC
from cardsvc.central.extensions import get_db
from cardsvc.central.models import AuthorisationRow, Card, FlagRow, Package, PublishedList
from cardsvc.central.services.flags import open_flags
from cardsvc.formats.profile import card_chr
from cardsvc.pki.chain import TrustAnchor
from cardsvc.pki.revocation import RevocationList, verify_revocation_list
from enrolment_station.authorisation import AuthKind, SignedAuthorisation
from tests.test_screens_dashboard import (
    AUDITOR_PASSWORD,
    DISTRICT_PASSWORD,
    NOW,
    STAFF_PASSWORD,
    Dashboard,
    build_dashboard,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORDS = {"anita": STAFF_PASSWORD, "ravi": AUDITOR_PASSWORD, "priya": DISTRICT_PASSWORD}
ROLES = {"anita": Role.CENTRAL, "ravi": Role.AUDITOR, "priya": Role.DISTRICT}


@pytest.fixture
def desk(db_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    """The dashboard's world on each backend in turn (SQLite, PostgreSQL)."""
    d = build_dashboard(db_url, tmp_path)
    yield d
    get_db(d.app).dispose()


class Staff:
    """One signed-in browser session, through the test client: keeps the cookie and the CSRF token."""

    def __init__(self, app: Flask, name: str, lang: str = "en") -> None:
        self.client: FlaskClient = app.test_client()
        self.lang = lang
        page = self.client.get(f"/dashboard/login?lang={lang}").get_data(as_text=True)
        self.token = self._token(page)
        answer = self.client.post(
            "/dashboard/login", data={"username": name, "password": PASSWORDS[name], "csrf_token": self.token}
        )
        assert answer.status_code == 302 and "/dashboard/flags" in answer.headers["Location"], name
        self.token = self._token(self.text("/dashboard/flags"))  # signing in starts a new session

    @staticmethod
    def _token(page: str) -> str:
        match = CSRF.search(page)
        assert match, "every form carries a CSRF token"
        return match.group(1)

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def text(self, path: str) -> str:
        response = self.client.get(path, follow_redirects=True)
        assert response.status_code == 200, (path, response.status_code)
        return str(response.get_data(as_text=True))

    def post(self, path: str, data: dict[str, str] | None = None, *, token: bool = True) -> Any:
        form = dict(data or {})
        if token:
            form["csrf_token"] = self.token
        return self.client.post(path, data=form)


def authorisations(session: Session) -> list[tuple[str, str]]:
    rows = session.execute(select(AuthorisationRow).order_by(AuthorisationRow.id)).scalars()
    return [(a.kind, a.card_id) for a in rows]


def audit_actions(app: Flask) -> list[str]:
    from keymgmt.audit import AuditLog

    return [str(e["action"]) for e in AuditLog(Path(app.config["DASHBOARD_AUDIT_LOG"])).entries()]


def dashboard_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every dashboard route."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("dashboard."):
            for method in sorted((rule.methods or set()) & {"GET", "POST"}):
                routes.append((rule.endpoint, method, rule.rule))
    return routes


def example_url(d: Dashboard, rule: str) -> str:
    flag_id = _flag_id(d, d.twins[0])
    return (rule.replace("<int:flag_id>", str(flag_id)).replace("<card_id>", d.card_id)
            .replace("<int:facility_id>", "1"))  # fmt: skip


def _flag_id(d: Dashboard, card_id: str) -> int:
    with get_db(d.app).sessions() as session:
        return open_flags(session, card_ids=[card_id])[0].id


def valid_form(d: Dashboard, endpoint: str) -> dict[str, str]:
    """A form the route would act on, if the role may."""
    return {
        "dashboard.resolve": {"note": "checked the ledger"},
        "dashboard.settlement": {"facility": "1", "start": "2026-12-01", "end": "2027-01-31"},
        "dashboard.revoke": {"kind": "card", "id": d.clean_card, "reason": "lost at the market"},
        "dashboard.publish_revocations": {},
        "dashboard.authorise": {"kind": "sync_ack", "card": d.clean_card},
        "dashboard.review_duplicate": {"outcome": "different", "note": "two brothers, papers seen"},
        "dashboard.check_catalogue": {"packages": CATALOGUE_V2},
        "dashboard.publish_catalogue": {"packages": CATALOGUE_V2},
    }.get(endpoint, {})


def test_every_dashboard_route_is_in_the_role_table(desk: Dashboard) -> None:
    routes = dashboard_routes(desk.app)
    assert len(routes) >= 18
    unlisted = [(e, m) for e, m, _ in routes if e not in PUBLIC and (e, m) not in ACCESS]
    assert not unlisted, f"routes nobody may use (deny by default) - list them in ACCESS: {unlisted}"
    stale = [k for k in ACCESS if k not in {(e, m) for e, m, _ in routes}]
    assert not stale, f"ACCESS lists routes that do not exist: {stale}"


@pytest.mark.parametrize("name", ["anita", "ravi", "priya"])
def test_every_route_refuses_the_roles_not_listed_and_changes_nothing(desk: Dashboard, name: str) -> None:
    with get_db(desk.app).sessions() as session:
        before = authorisations(session)  # the sync acknowledgements central made at upload
    staff = Staff(desk.app, name)
    role = ROLES[name]
    walked = 0
    for endpoint, method, rule in dashboard_routes(desk.app):
        if endpoint in PUBLIC or endpoint == "dashboard.logout":
            continue
        url = example_url(desk, rule)
        allowed = role in ACCESS[(endpoint, method)]
        if method == "GET":
            response = staff.get(url)
        elif allowed:
            continue  # the actions themselves are tested below and in the browser tests
        else:
            response = staff.post(url, valid_form(desk, endpoint))
        walked += 1
        if allowed:
            assert response.status_code in (200, 302), (name, endpoint, response.status_code)
            assert "/dashboard/login" not in response.headers.get("Location", ""), (name, endpoint)
        else:
            assert response.status_code == 403, (name, endpoint, method, response.status_code)
            assert "Your role may not do this." in response.get_data(as_text=True)
    assert walked >= 10
    assert audit_actions(desk.app) == ["login"], "a refused request changes nothing and logs no action"
    with get_db(desk.app).sessions() as session:
        assert session.get(Card, desk.clean_card).revoked_at is None  # type: ignore[union-attr]
        assert session.execute(select(PublishedList)).first() is None
        assert authorisations(session) == before
        assert len(open_flags(session, kinds=["duplicate_enrolment"])) == 2


def test_what_each_role_is_shown(desk: Dashboard) -> None:
    nav = re.compile(r'id="nav-(\w+)"')
    seen = {name: set(nav.findall(Staff(desk.app, name).text("/dashboard/flags"))) for name in PASSWORDS}
    assert "audit" in seen["anita"] and "audit" in seen["ravi"] and "audit" not in seen["priya"]
    assert {"flags", "dedup", "authorisations", "revocations", "settlement", "reports"} <= seen["priya"]
    auditor = Staff(desk.app, "ravi")
    assert 'id="authorise-form"' not in auditor.text("/dashboard/authorisations")
    assert 'id="publish"' not in auditor.text("/dashboard/revocations")
    assert "review-form" not in auditor.text("/dashboard/dedup")
    officer = Staff(desk.app, "priya")
    assert 'id="publish"' not in officer.text("/dashboard/revocations")
    assert "no-pairs" in officer.text("/dashboard/dedup"), "the Jaipur pair is not shown in Patna"


def test_session_ends_after_the_idle_time_and_not_before(desk: Dashboard) -> None:
    staff = Staff(desk.app, "anita")
    desk.clock.advance(899)
    assert staff.get("/dashboard/flags").status_code == 200, "still signed in just inside the idle time"
    desk.clock.advance(899)
    assert staff.get("/dashboard/flags").status_code == 200, "each request restarts the idle time"
    desk.clock.advance(901)
    answer = staff.post("/dashboard/revocations", valid_form(desk, "dashboard.revoke"))
    assert answer.status_code == 302 and "/dashboard/login" in answer.headers["Location"]
    assert "Your session timed out" in staff.text("/dashboard/login")
    with get_db(desk.app).sessions() as session:
        assert session.get(Card, desk.clean_card).revoked_at is None  # type: ignore[union-attr]


def test_every_form_without_the_csrf_token_is_refused(desk: Dashboard) -> None:
    staff = Staff(desk.app, "anita")
    posts = [(e, r) for e, m, r in dashboard_routes(desk.app) if m == "POST"]
    assert len(posts) >= 8
    for endpoint, rule in posts:
        response = staff.post(example_url(desk, rule), valid_form(desk, endpoint), token=False)
        assert response.status_code == 400, endpoint
    assert audit_actions(desk.app) == ["login"]


def test_revocation_list_published_from_the_dashboard_verifies_at_a_terminal(desk: Dashboard) -> None:
    staff = Staff(desk.app, "anita")
    assert staff.post("/dashboard/revocations", valid_form(desk, "dashboard.revoke")).status_code == 302
    assert staff.post("/dashboard/revocations/publish").status_code == 302
    page = staff.text("/dashboard/revocations")
    assert f"Revocation list version {NOW} signed and published." in page  # versions: issue time
    staff.post("/dashboard/revocations/publish")
    assert f"Nothing changed since version {NOW}" in staff.text("/dashboard/revocations")
    with get_db(desk.app).sessions() as session:
        rows = session.execute(select(PublishedList).order_by(PublishedList.version)).scalars().all()
        assert [r.version for r in rows] == [NOW]
        rl = RevocationList.parse(bytes(rows[0].wire))
    anchor = TrustAnchor(desk.key.chr, desk.key.signer.public_key())
    verify_revocation_list(rl, anchor, now=datetime.fromtimestamp(NOW, UTC))
    assert [e.subject for e in rl.entries] == [f"CARD-{int(desk.clean_card, 16)}"]
    assert audit_actions(desk.app) == ["login", "revoke", "publish-revocations"]


def test_authorisation_refused_while_a_duplicate_is_open_then_issued_after_review(desk: Dashboard) -> None:
    staff = Staff(desk.app, "anita")
    top_up = {"kind": "top_up", "card": desk.twins[0], "amount": "1,50,000"}
    refused = staff.post("/dashboard/authorisations", top_up)
    assert refused.status_code == 422
    assert "possible duplicate enrolment of this card is open" in refused.get_data(as_text=True)
    flag = _flag_id(desk, desk.twins[0])
    review = {"outcome": "different", "note": "two brothers; ration cards seen"}
    assert staff.post(f"/dashboard/dedup/{flag}/review", review).status_code == 302
    with get_db(desk.app).sessions() as session:
        assert open_flags(session, kinds=["duplicate_enrolment"]) == [], "both cards' findings resolved"
        resolutions = session.execute(select(FlagRow.resolution).where(FlagRow.kind == "duplicate_enrolment"))
        assert all("anita: reviewed: different people" in str(r) for (r,) in resolutions)
    with get_db(desk.app).sessions() as session:
        before = authorisations(session)
    assert staff.post("/dashboard/authorisations", top_up).status_code == 302
    with get_db(desk.app).sessions() as session:
        assert set(authorisations(session)) - set(before) == {("top_up", desk.twins[0])}
    page = staff.text("/dashboard/audit")
    assert "₹\u00a01,50,000.00" in page, "the top-up amount in the audit log, Indian grouping"
    assert audit_actions(desk.app) == ["login", "review-duplicate", "authorise"]
    split = {"kind": "split", "card": desk.clean_card, "members": "2"}
    assert staff.post("/dashboard/authorisations", split).status_code == 302
    with get_db(desk.app).sessions() as session:
        wire = session.execute(
            select(AuthorisationRow.wire).where(AuthorisationRow.kind == "split")
        ).scalar_one()
    anchor = TrustAnchor(desk.key.chr, desk.key.signer.public_key())
    granted = SignedAuthorisation.parse(bytes(wire)).verify(
        anchor, now=datetime.fromtimestamp(NOW, UTC), revocations=None, kind=AuthKind.SPLIT,
        card_id=card_chr(int(desk.clean_card, 16)), household_id=f"HH-{int(desk.clean_card, 16):x}",
    )  # fmt: skip
    assert granted.members == (1,), "member 2 on the card is index 1: the station verifies it offline"
    bad = staff.post(
        "/dashboard/authorisations", {"kind": "split", "card": desk.clean_card, "members": "1,2"}
    )
    assert bad.status_code == 422 and "Those members are not on this card" in bad.get_data(as_text=True)


def test_district_officer_reviews_only_in_their_district(desk: Dashboard) -> None:
    officer = Staff(desk.app, "priya")
    flag = _flag_id(desk, desk.twins[0])
    answer = officer.post(
        f"/dashboard/dedup/{flag}/review", {"outcome": "same", "note": "same thumb, same man"}
    )
    assert answer.status_code == 302
    assert "not in your district" in officer.text("/dashboard/dedup")
    gap = _flag_id(desk, desk.patna_card)
    assert (
        officer.post(f"/dashboard/flags/{gap}/resolve", {"note": "record 2 seen on the card"}).status_code
        == 302
    )
    jaipur = _flag_id(desk, desk.card_id)
    officer.post(f"/dashboard/flags/{jaipur}/resolve", {"note": "not mine to judge"})
    with get_db(desk.app).sessions() as session:
        still_open = {f.card_id for f in open_flags(session)}
    assert desk.patna_card not in still_open and {desk.card_id, *desk.twins} <= still_open
    assert audit_actions(desk.app) == ["login", "resolve-flag"]


ENGLISH_DATA = [
    "duplicate_counter", "counter_gap", "duplicate_enrolment", "top_up", "sync_ack", "Same counter twice",
    "Cash payment", "Health cover", "Women", "Central staff", "Same finger on two cards", "payable", "held",
    "Right index", "Signed in", "Coverage by district",
]  # fmt: skip


def test_hindi_pages_show_every_data_value_in_words(desk: Dashboard) -> None:
    staff = Staff(desk.app, "anita", lang="hi")
    staff.post("/dashboard/settlement", {"facility": "1", "start": "2026-12-01", "end": "2027-01-31"})
    staff.post("/dashboard/authorisations", {"kind": "sync_ack", "card": desk.card_id})
    pages = [
        "/dashboard/flags", f"/dashboard/cards/{desk.card_id}", "/dashboard/facilities/1",
        "/dashboard/settlement?facility=1&start=2026-12-01&end=2027-01-31", "/dashboard/reports",
        "/dashboard/revocations", "/dashboard/authorisations", "/dashboard/dedup", "/dashboard/audit",
        "/dashboard/catalogue",
    ]  # fmt: skip
    for path in pages:
        html = staff.text(path)
        body = html.split('<main id="main"', 1)[1]
        visible = re.sub(r"<[^>]+>", " ", body)
        leaked = [w for w in ENGLISH_DATA if re.search(rf"\b{re.escape(w)}\b", visible)]
        assert not leaked, f"{path} shows English data values in Hindi: {leaked}"
        assert re.search(r"[\u0900-\u097F]{3}", visible), path
    assert "₹\u00a012,345.00" in staff.text(
        "/dashboard/settlement?facility=1&start=2026-12-01&end=2027-01-31"
    )


def test_without_central_key_the_screens_say_so_and_sign_nothing(desk: Dashboard) -> None:
    desk.app.config["CENTRAL_KEY"] = None
    staff = Staff(desk.app, "anita")
    assert 'id="publish"' not in staff.text("/dashboard/revocations")
    assert staff.post("/dashboard/revocations/publish").status_code == 302
    assert "signing key is not configured" in staff.text("/dashboard/revocations")
    refused = staff.post("/dashboard/authorisations", {"kind": "sync_ack", "card": desk.clean_card})
    assert refused.status_code == 422 and "signing key is not configured" in refused.get_data(as_text=True)
    assert staff.post("/dashboard/catalogue/publish", {"packages": CATALOGUE_V2}).status_code == 302
    assert "signing key is not configured" in staff.text("/dashboard/catalogue")
    with get_db(desk.app).sessions() as session:
        assert session.execute(select(PublishedList)).first() is None
    assert audit_actions(desk.app) == ["login"]


CATALOGUE_V2 = (
    "code,name,rate,category\n"
    '301,Normal delivery,"5,000",obstetrics\n'  # rate changed
    "302,Caesarean section,9000,obstetrics\n"  # unchanged
    '501,Hernia repair,"₹ 12,500.50",surgery\n'  # new
)  # 410 left out: stays as it is
CATALOGUE_BAD = (
    "code,name,rate,category\n"
    "301,Normal delivery,4500,obstetrics\n"
    "302,,9000,obstetrics\n"  # missing name
    "301,Twins delivery,12x00,obstetrics\n"  # duplicate code and bad rate
    "abc,Hernia repair,0,surgery\n"  # bad code, rate not above zero
    "777,Only three columns\n"
)


def test_catalogue_bad_upload_names_every_bad_line_and_changes_nothing(desk: Dashboard) -> None:
    staff = Staff(desk.app, "anita")
    answer = staff.post("/dashboard/catalogue", {"packages": CATALOGUE_BAD})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    problems = re.findall(r'<li data-problem="(\w+)" data-field="(\w+)">(.*?)</li>', html)
    assert [(code, field) for code, field, _ in problems] == [
        ("missing_name", "name"), ("duplicate_code", "code"), ("bad_rate", "rate"), ("bad_code", "code"),
        ("bad_rate", "rate"), ("bad_columns", "line"),
    ]  # fmt: skip
    texts = [re.sub(r"<[^>]+>", "", t) for _, _, t in problems]
    assert texts[0] == "Line 3, name: The name is missing."
    assert texts[1] == "Line 4, code: This code is already on line 2. «301»"
    assert texts[2].startswith("Line 4, rate: The rate must be an amount in rupees greater than zero")
    assert texts[2].endswith("«12x00»")
    assert texts[5].startswith("Line 6: Give four columns")
    assert "Twins delivery" in html, "the text stays in the form to be corrected"
    hindi = Staff(desk.app, "anita", lang="hi")
    hindi_html = hindi.post("/dashboard/catalogue", {"packages": CATALOGUE_BAD}).get_data(as_text=True)
    assert "पंक्ति 3" in hindi_html and "The name is missing" not in hindi_html
    with get_db(desk.app).sessions() as session:
        assert session.execute(select(PublishedList)).first() is None
        assert session.execute(select(Package).where(Package.version > 1)).first() is None
    assert audit_actions(desk.app) == ["login", "login"]


def test_catalogue_checked_then_published_verifies_at_a_terminal(desk: Dashboard) -> None:
    from point_of_service.catalogue import verify_catalogue

    staff = Staff(desk.app, "anita")
    page = staff.text("/dashboard/catalogue")
    assert "Not published from here yet" in page
    assert "301,Normal delivery,4500,obstetrics" in page, "the list now, ready to edit"
    checked = staff.post("/dashboard/catalogue", {"packages": CATALOGUE_V2})
    assert checked.status_code == 200
    html = checked.get_data(as_text=True)
    assert re.findall(r'data-change="(\w+)" data-code="(\d+)"', html) == [("rate", "301"), ("new", "501")]
    assert "New packages: 1. Rates changed: 1. Names or specialities changed: 0. Unchanged: 1." in html
    with get_db(desk.app).sessions() as session:
        assert session.execute(select(PublishedList)).first() is None, "checking writes nothing"
    assert staff.post("/dashboard/catalogue/publish", {"packages": CATALOGUE_V2}).status_code == 302
    with get_db(desk.app).sessions() as session:
        rows = session.execute(select(PublishedList)).scalars().all()
        assert [r.kind for r in rows] == ["catalogue"]
        version, wire = rows[0].version, bytes(rows[0].wire)
    page = staff.text("/dashboard/catalogue")
    assert f"Package catalogue version {version} signed and published: terminals receive it at" in page
    assert re.search(r"Version [\d,]+, signed .*: 4 packages\.", page)
    staff.post("/dashboard/catalogue/publish", {"packages": CATALOGUE_V2})
    assert "Nothing changed since version" in staff.text("/dashboard/catalogue")
    with get_db(desk.app).sessions() as session:
        assert session.execute(select(PublishedList.version)).scalars().all() == [version]
        versions = {(p.code, p.version) for p in session.execute(select(Package)).scalars()}
    assert versions == {(301, 1), (301, 2), (302, 1), (410, 1), (501, 1)}, "old rates kept for old claims"
    anchor = TrustAnchor(desk.key.chr, desk.key.signer.public_key())
    catalogue = verify_catalogue(wire, anchor, now=datetime.fromtimestamp(NOW, UTC))
    rates = {p.code: p.rate_paise for p in catalogue.packages}
    assert rates == {301: 500_000, 302: 900_000, 410: 700_000, 501: 1_250_050}
    assert audit_actions(desk.app) == ["login", "publish-catalogue"]
    assert "Package catalogue published" in staff.text("/dashboard/audit")


def test_catalogue_is_read_only_for_officers_and_auditors(desk: Dashboard) -> None:
    for name in ("ravi", "priya"):
        staff = Staff(desk.app, name)
        page = staff.text("/dashboard/catalogue")
        assert 'id="nav-catalogue"' in page and "Cataract surgery" in page
        assert 'id="catalogue-form"' not in page and 'id="publish-catalogue"' not in page


@pytest.mark.parametrize(("lang", "words"), [("en", "Cover moved to a split card"),
                                             ("hi", "कवर का हिस्सा अलग कार्ड पर भेजा गया")])  # fmt: skip
def test_a_split_lowering_is_shown_in_words_on_the_card_page(desk: Dashboard, lang: str, words: str) -> None:
    """The original card's SPLIT record (cover moved to a split card) on its ledger, in the staff's words."""
    import random

    from cardsvc.central.testing import SimCard, SimTerminal
    from cardsvc.formats.batch import BatchKind
    from cardsvc.formats.transaction import RecordType
    from tests.test_screens_dashboard import DAY, upload

    terminal = SimTerminal.new(0x7E57, random.Random(20))  # the terminal build_dashboard registered
    terminal.seq = 100  # its later batches
    original = SimCard.new(0xC0FF, random.Random(26))
    camp = original.camp_card("Jaipur", NOW - 9 * DAY, NOW + DAY, 0xF0)
    upload(desk.app, terminal, BatchKind.CAMP, [camp], NOW)
    original.transact(RecordType.SPLIT, 1_000_000, NOW - DAY, terminal.terminal_id, 0x0E, 0, reference=7)
    upload(desk.app, terminal, BatchKind.TRANSACTIONS, original.items(), NOW)
    page = Staff(desk.app, "anita", lang=lang).text(f"/dashboard/cards/{original.card_id:016x}")
    ledger = re.sub(r"<[^>]+>", " ", page.split('id="ledger"', 1)[1])
    assert words in ledger and "SPLIT" not in ledger
    assert "10,000.00" in ledger and "20,000.00" in ledger  # lowered by ₹10,000, ₹20,000 left
