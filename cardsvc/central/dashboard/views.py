"""Dashboard views: thin over cardsvc.central.services (flags, settlement, reports, terminals; the signed
lists, authorisations and de-duplication review are in lists.py). Every route's roles are in ``ACCESS``,
checked before any view runs; every change (sign-in, resolution, revocation, settlement, publication,
authorisation, duplicate review) is appended to the dashboard's audit log (a hash chain, keymgmt.audit's
format)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers.response import Response as WResponse

from cardsvc.central.app import clock
from cardsvc.central.dashboard import labels
from cardsvc.central.dashboard.charts import Series, bar_chart
from cardsvc.central.dashboard.users import Role, User, UserStore
from cardsvc.central.errors import ServiceError
from cardsvc.central.extensions import get_db
from cardsvc.central.models import Card, Facility, FlagRow, TransactionRow
from cardsvc.central.services import flags as flag_service
from cardsvc.central.services import settlement as settle_service
from cardsvc.web.i18n import money, number

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates")
FLAG_LABELS, RECORD_LABELS, ROLE_LABELS = labels.FLAG_LABELS, labels.RECORD_LABELS, labels.ROLE_LABELS

#: Who may do what, per (endpoint, method). A route not listed is refused to everyone (deny by default);
#: the sign-in page and the status poll are the only routes open before sign-in. District officers are
#: further limited, in the views, to what touches their district.
ALL: frozenset[Role] = frozenset(Role)
STAFF: frozenset[Role] = frozenset({Role.CENTRAL})
REVIEWERS: frozenset[Role] = frozenset({Role.CENTRAL, Role.DISTRICT})
AUDIT_READERS: frozenset[Role] = frozenset({Role.CENTRAL, Role.AUDITOR})
PUBLIC = frozenset({"dashboard.login", "dashboard.status"})
ACCESS: dict[tuple[str, str], frozenset[Role]] = {
    ("dashboard.logout", "POST"): ALL,
    ("dashboard.index", "GET"): ALL,
    ("dashboard.flags", "GET"): ALL,
    ("dashboard.resolve", "POST"): REVIEWERS,
    ("dashboard.card", "GET"): ALL,
    ("dashboard.facility", "GET"): ALL,
    ("dashboard.settlement", "GET"): ALL,
    ("dashboard.settlement", "POST"): STAFF,
    ("dashboard.reports", "GET"): ALL,
    ("dashboard.revocations", "GET"): ALL,
    ("dashboard.revoke", "POST"): REVIEWERS,
    ("dashboard.publish_revocations", "POST"): STAFF,
    ("dashboard.authorisations", "GET"): ALL,
    ("dashboard.authorise", "POST"): STAFF,
    ("dashboard.dedup", "GET"): ALL,
    ("dashboard.review_duplicate", "POST"): REVIEWERS,
    ("dashboard.audit_log", "GET"): AUDIT_READERS,
    ("dashboard.catalogue", "GET"): ALL,
    ("dashboard.check_catalogue", "POST"): STAFF,
    ("dashboard.publish_catalogue", "POST"): STAFF,
}


def may(user: User | None, endpoint: str, method: str = "GET") -> bool:
    """Whether ``user`` may use ``endpoint`` (templates use it to show only the controls a role may use)."""
    return user is not None and user.role in ACCESS.get((endpoint, method), frozenset())


def users() -> UserStore:
    return UserStore(Path(current_app.config["DASHBOARD_USERS"]))


def now() -> int:
    return clock(current_app)


def audit(action: str, subject: str, details: dict[str, Any] | None = None) -> None:
    """Append to the dashboard's audit log (who did what to what; never a password)."""
    from keymgmt.audit import AuditLog

    user: User | None = g.get("user")
    log = AuditLog(Path(current_app.config["DASHBOARD_AUDIT_LOG"]),
                   now=lambda: datetime.fromtimestamp(now(), UTC))  # fmt: skip
    log.append(actor=user.name if user else "-", action=action, subject=subject, details=details or {})


def db() -> Session:
    s: Session = g.get("db_session")
    if s is None:
        s = g.db_session = get_db().sessions()
    return s


@bp.teardown_request
def _close(_exc: BaseException | None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        s.close()


@bp.before_request
def _guard() -> WResponse | str | tuple[str, int] | None:
    """CSRF on every form; sign-in required; idle time-out (sessions end after DASHBOARD_IDLE_SECONDS);
    then the role table (``ACCESS``): a role not listed for the route gets 403."""
    if request.method == "POST":
        current_app.extensions["dashboard_csrf"].protect()
    if request.endpoint in PUBLIC:
        return None
    name, seen = session.get("user"), session.get("seen", 0)
    user = users().get(name) if name else None
    if user is None or now() - int(seen) > current_app.config["DASHBOARD_IDLE_SECONDS"]:
        session.clear()
        if user is not None:
            flash(_("Your session timed out. Sign in again."), "info")
        return redirect(url_for("dashboard.login", next=request.path))
    session["seen"] = now()
    g.user = user
    method = "POST" if request.method == "POST" else "GET"
    if not may(user, request.endpoint or "", method):
        return page("dashboard/forbidden.html"), 403
    return None


def page(template: str, **kw: Any) -> str:
    user = g.get("user")
    return render_template(template, user=user, Role=Role, may=lambda e, m="GET": may(user, e, m),
                           **labels.template_helpers(), **kw)  # fmt: skip


def _in_district(card_id: str | None, facility_id: int | None) -> bool:
    """District officers see what touches their district; the others see everything."""
    user: User = g.user
    if user.role is not Role.DISTRICT:
        return True
    if card_id:
        card = db().get(Card, card_id)
        if card is not None and card.district == user.district:
            return True
    if facility_id is not None:
        facility = db().get(Facility, facility_id)
        return facility is not None and facility.district == user.district
    return False


# ------------------------------------------------------------------------------------------ sign-in
@bp.get("/status.json")
def status() -> dict[str, Any]:
    return {}


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | WResponse:
    problem = None
    if request.method == "POST":
        name = request.form.get("username", "").strip()
        user = users().check(name, request.form.get("password", ""))
        if user is None:
            problem = _("Wrong user name or password.")
            g.user = None
            audit("login-refused", name or "-")
        else:
            session.clear()
            session.permanent = True
            session["user"], session["seen"] = user.name, now()
            g.user = user
            audit("login", user.name, {"role": user.role.value})
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/dashboard/") else url_for("dashboard.flags"))
    return page("dashboard/login.html", problem=problem)


@bp.post("/logout")
def logout() -> WResponse:
    audit("logout", g.user.name)
    session.clear()
    flash(_("Signed out."), "ok")
    return redirect(url_for("dashboard.login"))


# ------------------------------------------------------------------------------------------ flags
@bp.get("/")
def index() -> WResponse:
    return redirect(url_for("dashboard.flags"))


@bp.get("/flags")
def flags() -> str:
    kind = request.args.get("kind") or None
    found = flag_service.open_flags(db(), kinds=[kind] if kind else None)
    visible = [f for f in found if _in_district(f.card_id, f.facility_id)]
    counts: dict[str, int] = {}
    for f in flag_service.open_flags(db()):
        if _in_district(f.card_id, f.facility_id):
            counts[f.kind] = counts.get(f.kind, 0) + 1
    return page("dashboard/flags.html", flags=visible, kind=kind, counts=counts)


@bp.post("/flags/<int:flag_id>/resolve")
def resolve(flag_id: int) -> WResponse:
    note = request.form.get("note", "")
    row = db().get(FlagRow, flag_id)
    if row is not None and not _in_district(row.card_id, row.facility_id):
        flash(_("This flag is not in your district."), "error")
        return redirect(url_for("dashboard.flags"))
    if row is not None and row.kind == "duplicate_enrolment":
        flash(
            _("A duplicate enrolment is reviewed on the de-duplication screen: same person or not."), "error"
        )
        return redirect(url_for("dashboard.dedup"))
    try:
        flag_service.resolve_flag(db(), flag_id, by=g.user.name, note=note, now=now())
    except ServiceError as exc:
        flash(_("Not resolved: %(why)s", why=labels.refusal(exc.code, exc.reason)), "error")
    else:
        audit("resolve-flag", str(flag_id), {"note": note.strip()[:200]})
        flash(_("Flag resolved."), "ok")
    return redirect(url_for("dashboard.flags"))


# ------------------------------------------------------------------------------------------ drill-down
@bp.get("/cards/<card_id>")
def card(card_id: str) -> str | WResponse:
    row = db().get(Card, card_id)
    if not _in_district(card_id, None) and row is not None:
        flash(_("This card is not in your district."), "error")
        return redirect(url_for("dashboard.flags"))
    ledger = (
        db()
        .execute(
            select(TransactionRow).where(TransactionRow.card_id == card_id).order_by(TransactionRow.counter)
        )
        .scalars()
        .all()
    )
    card_flags = flag_service.open_flags(db(), card_ids=[card_id])
    flagged = {f.details.get("counter") for f in card_flags}
    return page("dashboard/card.html", card=row, card_id=card_id, ledger=ledger, flags=card_flags,
                flagged=flagged)  # fmt: skip


@bp.get("/facilities/<int:facility_id>")
def facility(facility_id: int) -> str | WResponse:
    row = db().get(Facility, facility_id)
    if not _in_district(None, facility_id):
        flash(_("This facility is not in your district."), "error")
        return redirect(url_for("dashboard.flags"))
    recent = db().execute(
        select(TransactionRow).where(TransactionRow.facility_id == facility_id)
        .order_by(TransactionRow.time.desc()).limit(50)
    ).scalars().all()  # fmt: skip
    cards_here = {t.card_id for t in recent}
    facility_flags = [
        f for f in flag_service.open_flags(db(), facility_id=facility_id)
        if f.facility_id == facility_id or f.card_id in cards_here
    ]  # fmt: skip
    runs = settle_service.settlement_runs(db(), facility_id)
    return page("dashboard/facility.html", facility=row, facility_id=facility_id, recent=recent,
                flags=facility_flags, runs=runs)  # fmt: skip


# ------------------------------------------------------------------------------------------ settlement
def _day(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


@bp.route("/settlement", methods=["GET", "POST"])
def settlement() -> str | WResponse:
    facilities = db().execute(select(Facility).order_by(Facility.id)).scalars().all()
    facilities = [f for f in facilities if _in_district(None, f.id)]
    result, problem = None, None
    form = request.values
    if form.get("facility") and form.get("start") and form.get("end"):
        try:
            fid, start, end = int(form["facility"]), _day(form["start"]), _day(form["end"]) + 86_400
            if request.method == "POST":
                result, new = settle_service.run_settlement(db(), fid, start, end, now=now())
                audit("settle", str(fid), {"start": start, "end": end, "payable_paise": result.payable_paise})
                flash(_("Settlement recorded.") if new else _("This period was already settled."), "ok")
            else:
                result = settle_service.compute_settlement(db(), fid, start, end)
        except ServiceError as exc:
            problem = labels.refusal(exc.code, exc.reason)
        except ValueError:
            problem = _("Choose a facility and give both dates.")
    return page("dashboard/settlement.html", facilities=facilities, result=result, problem=problem,
                form=form)  # fmt: skip


# ------------------------------------------------------------------------------------------ reports
@bp.get("/reports")
def reports() -> str:
    from cardsvc.central.services.reports import AGE_BANDS, GENDERS, build_report

    report = build_report(db(), now())
    district = g.user.district if g.user.role is Role.DISTRICT else None
    coverage = [r for r in report.coverage_rows() if district is None or r[0] == district]
    use = [r for r in report.use_rows() if district is None or r[0] == district]
    by_gender: dict[str, int] = {}
    by_age: dict[str, int] = {}
    for r in coverage:
        by_gender[str(r[2])] = by_gender.get(str(r[2]), 0) + int(r[5])
        by_age[str(r[3])] = by_age.get(str(r[3]), 0) + int(r[5])
    charts = []
    if coverage or use:
        districts = sorted({str(r[0]) for r in coverage} | {str(r[0]) for r in use})
        households = [sum(int(r[4]) for r in coverage if r[0] == d) for d in districts]
        persons = [sum(int(r[5]) for r in coverage if r[0] == d) for d in districts]
        charts.append(bar_chart(
            _("Coverage by district"), districts,
            [Series(_("Households"), households), Series(_("Persons"), persons)], number,
            chart_id="chart-coverage",
        ))  # fmt: skip
        bands = [b[2] for b in AGE_BANDS]
        by_band = [
            Series(labels.label(labels.GENDER_LABELS, gender),
                   [sum(int(r[5]) for r in coverage if r[2] == gender and r[3] == band) for band in bands])
            for gender in GENDERS if any(r[2] == gender for r in coverage)
        ]  # fmt: skip
        charts.append(bar_chart(_("Persons covered by age band and gender"), bands, by_band, number,
                                chart_id="chart-age-gender"))  # fmt: skip
        claimed = [sum(int(r[6]) for r in use if r[0] == d) for d in districts]
        cash = [sum(int(r[8]) for r in use if r[0] == d) for d in districts]
        charts.append(bar_chart(
            _("Use by district"), districts,
            [Series(_("Claimed"), claimed), Series(_("Cash paid"), cash)], lambda v: money(int(v)),
            chart_id="chart-use",
        ))  # fmt: skip
    return page("dashboard/reports.html", coverage=coverage, use=use, by_gender=by_gender, by_age=by_age,
                charts=charts)  # fmt: skip


# ------------------------------------------------------------------------------------------ audit log
@bp.get("/audit")
def audit_log() -> str:
    from cardsvc.pki.errors import AuditTamperedError
    from keymgmt.audit import AuditLog, verify_log

    log = AuditLog(Path(current_app.config["DASHBOARD_AUDIT_LOG"]))
    try:
        count, intact = verify_log(log), True
    except AuditTamperedError:
        count, intact = 0, False
    entries = list(log.entries())[-200:] if intact else []
    for e in entries:
        try:
            e["ts"] = int(
                datetime.strptime(str(e.get("time")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
            )
        except ValueError:
            e["ts"] = None
    return page("dashboard/audit.html", entries=list(reversed(entries)), count=count, intact=intact)
