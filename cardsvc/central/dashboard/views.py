"""Dashboard views: thin over cardsvc.central.services (flags, settlement, reports, terminals). Each view
checks the signed-in user's role; every change (sign-in, resolution, revocation, settlement) is appended
to the dashboard's audit log (a hash chain, keymgmt.audit's format)."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers.response import Response as WResponse

from cardsvc.central.app import clock
from cardsvc.central.dashboard.users import Role, User, UserStore
from cardsvc.central.errors import ServiceError
from cardsvc.central.extensions import get_db
from cardsvc.central.models import Card, Facility, TransactionRow
from cardsvc.central.services import flags as flag_service
from cardsvc.central.services import settlement as settle_service
from cardsvc.central.services import terminals as terminal_service
from cardsvc.formats.transaction import RecordType

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates")
F = TypeVar("F", bound=Callable[..., Any])

FLAG_LABELS: dict[str, Any] = {
    "duplicate_counter": _l("Same counter twice: cloned card or replay"),
    "counter_gap": _l("Records missing (counter gap)"),
    "balance_mismatch": _l("Balance does not add up"),
    "chain_break": _l("Record chain broken"),
    "outside_policy": _l("Used outside the policy year"),
    "impossible_travel": _l("Impossible travel between facilities"),
    "package_mix_outlier": _l("Unusual package mix at a facility"),
    "revoked_terminal": _l("Used by a revoked terminal"),
    "revoked_operator": _l("Used by a revoked operator"),
    "fko_count_mismatch": _l("FKO ledger differs from uploaded camps"),
    "unregistered_card": _l("Card no camp has reported"),
    "forged_record": _l("Record not signed by the card's key"),
    "duplicate_enrolment": _l("Same finger on two cards"),
}
RECORD_LABELS: dict[int, Any] = {
    RecordType.BLOCK: _l("Admission (block)"), RecordType.SETTLE: _l("Discharge (settle)"),
    RecordType.RELEASE: _l("Cancellation (release)"), RecordType.CASH: _l("Cash payment"),
    RecordType.PROOF_OF_LIFE: _l("Proof of life"), RecordType.TOP_UP: _l("Top-up"),
    RecordType.RENEWAL: _l("Renewal"),
}  # fmt: skip
ROLE_LABELS = {Role.CENTRAL: _l("Central staff"), Role.DISTRICT: _l("District officer"),
               Role.AUDITOR: _l("Auditor")}  # fmt: skip


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
def _guard() -> WResponse | None:
    """CSRF on every form; sign-in required; idle time-out (sessions end after DASHBOARD_IDLE_SECONDS)."""
    if request.method == "POST":
        current_app.extensions["dashboard_csrf"].protect()
    if request.endpoint in ("dashboard.login", "dashboard.status"):
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
    return None


def needs(*roles: Role) -> Callable[[F], F]:
    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if g.user.role not in roles:
                flash(_("Your role may not do this."), "error")
                return redirect(url_for("dashboard.flags"))
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def page(template: str, **kw: Any) -> str:
    return render_template(template, user=g.get("user"), role_labels=ROLE_LABELS, flag_labels=FLAG_LABELS,
                           Role=Role, **kw)  # fmt: skip


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
@needs(Role.CENTRAL)
def resolve(flag_id: int) -> WResponse:
    note = request.form.get("note", "")
    try:
        flag_service.resolve_flag(db(), flag_id, by=g.user.name, note=note, now=now())
    except ServiceError as exc:
        flash(_("Not resolved: %(why)s", why=exc.reason), "error")
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
                flagged=flagged, record_labels=RECORD_LABELS)  # fmt: skip


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
                flags=facility_flags, runs=runs, record_labels=RECORD_LABELS)  # fmt: skip


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
                if g.user.role is not Role.CENTRAL:
                    flash(_("Your role may not do this."), "error")
                    return redirect(url_for("dashboard.settlement"))
                result, new = settle_service.run_settlement(db(), fid, start, end, now=now())
                audit("settle", str(fid), {"start": start, "end": end, "payable_paise": result.payable_paise})
                flash(_("Settlement recorded.") if new else _("This period was already settled."), "ok")
            else:
                result = settle_service.compute_settlement(db(), fid, start, end)
        except (ValueError, ServiceError) as exc:
            problem = getattr(exc, "reason", str(exc))
    return page("dashboard/settlement.html", facilities=facilities, result=result, problem=problem,
                form=form)  # fmt: skip


# ------------------------------------------------------------------------------------------ reports
@bp.get("/reports")
def reports() -> str:
    from cardsvc.central.services.reports import build_report

    report = build_report(db(), now())
    district = g.user.district if g.user.role is Role.DISTRICT else None
    coverage = [r for r in report.coverage_rows() if district is None or r[0] == district]
    use = [r for r in report.use_rows() if district is None or r[0] == district]
    by_gender: dict[str, int] = {}
    by_age: dict[str, int] = {}
    for r in coverage:
        by_gender[str(r[2])] = by_gender.get(str(r[2]), 0) + int(r[5])
        by_age[str(r[3])] = by_age.get(str(r[3]), 0) + int(r[5])
    chart = None
    if coverage or use:
        from cardsvc.central.services.reports import charts

        pngs = charts(report)
        chart = {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in pngs.items()}
    return page("dashboard/reports.html", coverage=coverage, use=use, by_gender=by_gender, by_age=by_age,
                charts=chart)  # fmt: skip


# ------------------------------------------------------------------------------------------ revocations
@bp.get("/revocations")
def revocations() -> str:
    listing = terminal_service.revocation_list(db())
    return page("dashboard/revocations.html", listing=listing)


@bp.post("/revocations")
@needs(Role.CENTRAL, Role.DISTRICT)
def revoke() -> WResponse:
    kind, ident = request.form.get("kind", ""), request.form.get("id", "").strip().lower()
    reason = request.form.get("reason", "").strip()
    try:
        number = int(ident, 16)
    except ValueError:
        flash(_("Give the id as 16 hexadecimal digits."), "error")
        return redirect(url_for("dashboard.revocations"))
    if len(reason) < 5:
        flash(_("Say why, in a few words."), "error")
        return redirect(url_for("dashboard.revocations"))
    if g.user.role is Role.DISTRICT and (kind != "card" or not _in_district(f"{number:016x}", None)):
        flash(_("Your role may not do this."), "error")
        return redirect(url_for("dashboard.revocations"))
    try:
        if kind == "card":
            terminal_service.revoke_card(db(), number, now())
        elif kind == "terminal":
            terminal_service.revoke_terminal(db(), number, now())
        elif kind == "operator":
            terminal_service.revoke_operator(db(), number, now())
        else:
            raise ValueError(kind)
        db().commit()
    except (ServiceError, ValueError) as exc:
        db().rollback()
        flash(_("Not revoked: %(why)s", why=getattr(exc, "reason", str(exc))), "error")
        return redirect(url_for("dashboard.revocations"))
    audit("revoke", f"{kind}:{number:016x}", {"reason": reason[:200]})
    flash(_("Revoked. Terminals refuse it after their next sync."), "ok")
    return redirect(url_for("dashboard.revocations"))


# ------------------------------------------------------------------------------------------ audit log
@bp.get("/audit")
@needs(Role.CENTRAL, Role.AUDITOR)
def audit_log() -> str:
    from cardsvc.pki.errors import AuditTamperedError
    from keymgmt.audit import AuditLog, verify_log

    log = AuditLog(Path(current_app.config["DASHBOARD_AUDIT_LOG"]))
    try:
        count, intact = verify_log(log), True
    except AuditTamperedError:
        count, intact = 0, False
    entries = list(log.entries())[-200:]
    return page("dashboard/audit.html", entries=list(reversed(entries)), count=count, intact=intact)
