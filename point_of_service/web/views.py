"""POS screens: thin views over point_of_service.services. No business rule lives here: each view calls one
service function and shows its outcome, or the clerk-facing reason (problem, then next step) it refused with.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers.response import Response as WResponse

from cardsvc.card.errors import CardError
from cardsvc.card.transport import TransportError
from cardsvc.pki.rights import Right
from point_of_service.errors import PosError, SyncError, TransactionError, VerificationError
from point_of_service.reasons import Reason, message_for
from point_of_service.services import hospital, paypoint
from point_of_service.services.fallback import Fallback, Override, OverrideReason
from point_of_service.services.signin import sign_in
from point_of_service.services.sync import offline_status
from point_of_service.services.verification import override_member as override_service
from point_of_service.services.verification import verify_card, verify_member
from point_of_service.web.terminal import PosTerminal

bp = Blueprint("pos", __name__, template_folder="templates")

#: The verification steps in the order the card goes through them (names as VerificationError.step).
STEPS: list[tuple[str, Any]] = [
    ("present", _l("Card present")),
    ("activated", _l("Card activated")),
    ("chain", _l("Certificate chain")),
    ("revocation", _l("Not blacklisted")),
    ("policy", _l("Policy year valid")),
    ("challenge", _l("Genuine chip")),
    ("terminal-auth", _l("Terminal accepted")),
    ("profile", _l("Household data intact")),
]

OVERRIDE_REASONS: dict[OverrideReason, Any] = {
    OverrideReason.WORN_FINGERPRINTS: _l("Worn fingerprints"),
    OverrideReason.INJURY_OR_AMPUTATION: _l("Injury or amputation"),
    OverrideReason.PATIENT_UNCONSCIOUS: _l("Patient unconscious"),
    OverrideReason.SENSOR_FAULT: _l("Sensor fault"),
    OverrideReason.ELDERLY_OR_BEDRIDDEN: _l("Elderly or bedridden"),
}
FALLBACKS: dict[Fallback, Any] = {
    Fallback.ANOTHER_FINGER: _l("Try another finger"),
    Fallback.ANOTHER_MEMBER: _l("Try another member of the household"),
    Fallback.OVERRIDE: _l("Supervised override"),
}
FINGERS: dict[int, Any] = {
    1: _l("Right thumb"), 2: _l("Right index"), 3: _l("Right middle"), 4: _l("Right ring"),
    5: _l("Right little"), 6: _l("Left thumb"), 7: _l("Left index"), 8: _l("Left middle"),
    9: _l("Left ring"), 10: _l("Left little"),
}  # fmt: skip
EVENTS: dict[str, Any] = {
    "signin": _l("Clerk signed in"),
    "signin-supervisor": _l("Supervisor signed in"),
    "signout": _l("Signed out"),
    "verify-card": _l("Card checked"),
    "verify-member": _l("Fingerprint checked"),
    "fallback": _l("Fallback used"),
    "transaction": _l("Card transaction"),
    "recover": _l("Interrupted operation completed"),
    "sync": _l("Sync with central"),
    "bundle": _l("Trust lists installed"),
    "catalogue": _l("Package catalogue installed"),
}
OUTCOMES: dict[str, Any] = {"ok": _l("done"), "refused": _l("refused"), "failed": _l("failed"),
                            "interrupted": _l("interrupted")}  # fmt: skip
RELATIONS = {1: _l("Head"), 2: _l("Spouse"), 3: _l("Child"), 4: _l("Parent"), 5: _l("Other")}
SCHEMES = {1: _l("Health cover"), 2: _l("Pension"), 3: _l("Life insurance")}


def terminal() -> PosTerminal:
    term: PosTerminal = current_app.extensions["pos_terminal"]
    return term


def refusal(exc: PosError) -> dict[str, str]:
    """The clerk's view of a refusal: translated problem and next step, and the reason code."""
    msg = message_for(exc.reason)
    return {"code": exc.reason.value, "problem": _(msg.problem), "next_step": _(msg.next_step)}


def _need_clerk() -> WResponse | None:
    if terminal().signed_in() is None:
        flash(_(message_for(Reason.NOT_SIGNED_IN).problem), "error")
        return redirect(url_for("pos.signin"))
    return None


def _need_visit() -> WResponse | None:
    if (r := _need_clerk()) is not None:
        return r
    if terminal().visit is None:
        flash(_("Insert the beneficiary's card and read it first."), "info")
        return redirect(url_for("pos.card"))
    return None


def _rupees(text: str) -> int:
    """Rupees typed by the clerk -> paise; refuses anything but a positive amount with at most 2 decimals."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except (InvalidOperation, AttributeError):
        raise TransactionError(Reason.AMOUNT_INVALID, f"not a number: {text!r}") from None
    paise = value * 100
    if paise <= 0 or paise != paise.to_integral_value():
        raise TransactionError(Reason.AMOUNT_INVALID, f"not a positive amount in rupees: {text!r}")
    return int(paise)


def _nav() -> dict[str, Any]:
    term = terminal()
    return {"clerk": term.signed_in(), "visit": term.visit, "supervisor": term.current_supervisor()}


def page(template: str, **kwargs: Any) -> str:
    return render_template(template, **_nav(), **kwargs)


# ------------------------------------------------------------------------------------------ status
@bp.get("/status.json")
def status() -> Response:
    """Reader, sensor and card state for the status bar (polled every 1.5 s)."""
    term = terminal()
    devices = term.hardware.devices()
    off = offline_status(term.journal, term.now())
    yes, no = _("connected"), _("not connected")

    def item(ok: bool, good: str, bad: str, bad_state: str = "bad") -> dict[str, str]:
        return {"text": good if ok else bad, "state": "ok" if ok else bad_state}

    clerk = term.signed_in()
    return jsonify(
        {
            "card_reader": item(devices.get("card_reader", False), yes, no),
            "card": item(devices.get("card", False), _("card inserted"), _("no card"), "warn"),
            "sensor": item(devices.get("sensor", False), yes, no),
            "operator": item(clerk is not None, clerk.chr if clerk else "", _("nobody signed in"), "warn"),
            "sync": {
                "text": _duration(off.seconds_offline)
                if off.seconds_offline is None
                else _("offline for %(d)s", d=_duration(off.seconds_offline)),
                "state": "ok" if (off.seconds_offline or 10**9) < 86400 else "warn",
            },
        }
    )


def _duration(seconds: int | None) -> str:
    from cardsvc.web.i18n import duration

    return duration(seconds)


# ------------------------------------------------------------------------------------------ sign-in
@bp.get("/")
def index() -> WResponse:
    return redirect(url_for("pos.card" if terminal().signed_in() else "pos.signin"))


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> str | WResponse:
    term = terminal()
    problem = None
    if request.method == "POST":
        with term.lock:
            try:
                term.clerk = sign_in(
                    term.hardware.operator_card(),
                    pin=request.form.get("pin", ""),
                    capture=term.hardware.capture,
                    anchor=term.identity.anchor,
                    districts=term.trust.districts,
                    now=term.now(),
                    journal=term.journal,
                    revocations=term.trust.store,
                )
            except PosError as exc:
                problem = refusal(exc)
            except TransportError as exc:
                problem = refusal(PosError(Reason.OPERATOR_CARD_MISSING, str(exc)))
        if problem is None:
            flash(_("Signed in. Insert the beneficiary's card."), "ok")
            return redirect(url_for("pos.card"))
    return page("pos/signin.html", problem=problem)


@bp.post("/signout")
def signout() -> WResponse:
    term = terminal()
    if term.clerk is not None:
        term.journal.log("signout", at=term.now(), operator=term.clerk.chr)
    term.clerk = term.supervisor = term.visit = None
    flash(_("Signed out."), "ok")
    return redirect(url_for("pos.signin"))


# ------------------------------------------------------------------------------------------ card
def _card_page(problem: dict[str, str] | None = None, failed_step: str | None = None, **kw: Any) -> str:
    term = terminal()
    visit = term.visit
    steps = []
    passed = visit is not None or failed_step is not None
    for name, label in STEPS:
        if name == failed_step:
            steps.append((label, "failed"))
            passed = False
        else:
            steps.append((label, "ok" if passed else "pending"))
    photos: dict[int, str] = {}
    if visit is not None:
        photos = _photos(visit)
    return page(
        "pos/card.html",
        steps=steps,
        problem=problem,
        photos=photos,
        fingers=FINGERS,
        relations=RELATIONS,
        schemes=SCHEMES,
        fallbacks=FALLBACKS,
        **kw,
    )


def _photos(visit: Any) -> dict[int, str]:
    """Member photos as data: URIs (no file leaves the terminal); none when the card has none."""
    try:
        return {
            p.member_index: "data:image/jpeg;base64," + base64.b64encode(p.jpeg).decode()
            for p in visit.session.read_photos(visit.verified.status)
        }
    except Exception:  # a card without photos, or one that refuses: the screen shows the placeholder
        return {}


@bp.get("/card")
def card() -> str | WResponse:
    if (r := _need_clerk()) is not None:
        return r
    return _card_page()


@bp.post("/card/read")
def card_read() -> str | WResponse:
    if (r := _need_clerk()) is not None:
        return r
    term = terminal()
    clerk = term.signed_in()
    assert clerk is not None
    with term.lock:
        term.visit = None
        try:
            connection = term.hardware.patient_card()
            term.visit = verify_card(
                connection,
                identity=term.identity,
                trust=term.trust,
                clerk=clerk,
                now=term.now(),
                journal=term.journal,
                rng=term.rng,
            )
        except VerificationError as exc:
            return _card_page(refusal(exc), exc.step or "present")
        except (TransportError, CardError) as exc:
            return _card_page(refusal(VerificationError(Reason.CARD_MISSING, str(exc))), "present")
    return _card_page()


@bp.post("/card/member")
def card_member() -> str | WResponse:
    if (r := _need_visit()) is not None:
        return r
    term = terminal()
    visit, clerk = term.visit, term.signed_in()
    assert visit is not None and clerk is not None
    member, finger = request.form.get("member", type=int), request.form.get("finger", type=int)
    if member is None or finger is None:
        return _card_page(refusal(VerificationError(Reason.MEMBER_UNKNOWN)), "member")
    with term.lock:
        try:
            match = verify_member(
                visit,
                member=member,
                finger=finger,
                capture=term.hardware.capture,
                clerk=clerk,
                now=term.now(),
                journal=term.journal,
            )
        except PosError as exc:
            return _card_page(refusal(exc), None, chosen=member)
    if match.matched:
        flash(_("Fingerprint matched: member verified."), "ok")
        return _card_page(chosen=member)
    mismatch = refusal(VerificationError(Reason.FINGER_MISMATCH))
    return _card_page(mismatch, None, chosen=member, options=match.options)


@bp.route("/card/override", methods=["GET", "POST"])
def card_override() -> str | WResponse:
    """Supervised override: the supervisor signs in with their own card (PIN + finger), picks a reason."""
    if (r := _need_visit()) is not None:
        return r
    term = terminal()
    visit, clerk = term.visit, term.signed_in()
    assert visit is not None and clerk is not None
    member = request.values.get("member", type=int, default=visit.member or 0)
    problem = None
    if request.method == "POST":
        with term.lock:
            try:
                reason = OverrideReason(request.form.get("reason", ""))
            except ValueError:
                problem = refusal(VerificationError(Reason.OVERRIDE_NEEDS_REASON))
            else:
                try:
                    supervisor = term.current_supervisor() or sign_in(
                        term.hardware.operator_card(),
                        pin=request.form.get("pin", ""),
                        capture=term.hardware.capture,
                        anchor=term.identity.anchor,
                        districts=term.trust.districts,
                        now=term.now(),
                        journal=term.journal,
                        revocations=term.trust.store,
                        required=Right.SUPERVISE_OVERRIDE,
                        event="signin-supervisor",
                    )
                    term.supervisor = supervisor
                    override_service(
                        visit,
                        member=member,
                        override=Override(supervisor, reason, request.form.get("note", "")),
                        clerk=clerk,
                        now=term.now(),
                        journal=term.journal,
                    )
                except PosError as exc:
                    problem = refusal(exc)
                except TransportError as exc:
                    problem = refusal(PosError(Reason.OVERRIDE_NEEDS_SUPERVISOR, str(exc)))
        if problem is None:
            flash(_("Override recorded: member accepted by the supervisor."), "ok")
            return redirect(url_for("pos.card"))
    return page(
        "pos/override.html", member=member, reasons=OVERRIDE_REASONS, problem=problem, form=request.form
    )


@bp.post("/card/done")
def card_done() -> WResponse:
    terminal().end_visit()
    flash(_("Card visit ended. Give the card back."), "ok")
    return redirect(url_for("pos.card"))


# ------------------------------------------------------------------------------------------ transactions
def _transaction(run: Callable[[], Any], success: str, back: str) -> str | WResponse:
    """Run one card transaction under the lock; show the refusal, or the card's record."""
    term = terminal()
    with term.lock:
        try:
            outcome = run()
        except PosError as exc:
            flash(_(message_for(exc.reason).problem) + " " + _(message_for(exc.reason).next_step), "error")
            return redirect(url_for(back, reason=exc.reason.value))
    record = outcome.record
    flash(success + " " + _("Card record no. %(n)s.", n=record.counter), "ok")
    return redirect(url_for(back))


def _kw() -> dict[str, Any]:
    term = terminal()
    clerk = term.signed_in()
    assert clerk is not None
    return {"journal": term.journal, "identity": term.identity, "clerk": clerk, "now": term.now(),
            "rng": term.rng}  # fmt: skip


def _member_ready() -> WResponse | None:
    if (r := _need_visit()) is not None:
        return r
    visit = terminal().visit
    assert visit is not None
    if visit.member is None or visit.member_verified_by is None:
        flash(_("Verify the member's fingerprint first (or a supervised override)."), "error")
        return redirect(url_for("pos.card"))
    return None


@bp.get("/hospital")
def hospital_page() -> str | WResponse:
    if (r := _need_visit()) is not None:
        return r
    term = terminal()
    visit = term.visit
    assert visit is not None
    query = request.args.get("q", "").strip().lower()
    try:
        catalogue = term.trust.current_catalogue()
        packages = [
            p for p in catalogue.packages
            if not query or query in p.name.lower() or query in p.category.lower() or query == str(p.code)
        ]  # fmt: skip
    except PosError as exc:
        catalogue, packages = None, []
        flash(_(message_for(exc.reason).problem), "error")
    admissions = term.journal.admissions(visit.card_id, "open")
    names = {p.code: p.name for p in catalogue.packages} if catalogue else {}
    return page("pos/hospital.html", packages=packages, q=request.args.get("q", ""), admissions=admissions,
                names=names, reason=request.args.get("reason"))  # fmt: skip


@bp.post("/hospital/admit")
def hospital_admit() -> str | WResponse:
    if (r := _member_ready()) is not None:
        return r
    term = terminal()
    visit = term.visit
    assert visit is not None
    code = request.form.get("package", type=int, default=0)
    return _transaction(
        lambda: hospital.admit(visit, package_code=code, trust=term.trust, **_kw()),
        _("Admitted: the package amount is blocked on the card."),
        "pos.hospital_page",
    )


@bp.post("/hospital/discharge")
def hospital_discharge() -> str | WResponse:
    if (r := _member_ready()) is not None:
        return r
    visit = terminal().visit
    assert visit is not None
    admission = request.form.get("admission", type=int, default=0)
    amount_text = request.form.get("amount", "").strip()

    def run() -> Any:
        final = _rupees(amount_text) if amount_text else None
        return hospital.discharge(visit, admission=admission, final_amount=final, **_kw())

    return _transaction(run, _("Discharged: the final amount is settled."), "pos.hospital_page")


@bp.post("/hospital/cancel")
def hospital_cancel() -> str | WResponse:
    if (r := _member_ready()) is not None:
        return r
    visit = terminal().visit
    assert visit is not None
    admission = request.form.get("admission", type=int, default=0)
    return _transaction(
        lambda: hospital.cancel(visit, admission=admission, **_kw()),
        _("Admission cancelled: the blocked amount is released."),
        "pos.hospital_page",
    )


@bp.get("/paypoint")
def paypoint_page() -> str | WResponse:
    if (r := _need_visit()) is not None:
        return r
    visit = terminal().visit
    assert visit is not None
    with terminal().lock:
        try:
            wallets = visit.session.status().wallets
        except (CardError, TransportError):
            wallets = visit.verified.wallets
    return page("pos/paypoint.html", wallets=wallets, schemes=SCHEMES, reason=request.args.get("reason"))


@bp.post("/paypoint/pay")
def paypoint_pay() -> str | WResponse:
    if (r := _member_ready()) is not None:
        return r
    visit = terminal().visit
    assert visit is not None
    scheme = request.form.get("scheme", type=int, default=0)
    amount_text = request.form.get("amount", "")
    return _transaction(
        lambda: paypoint.disburse(visit, scheme_id=scheme, amount=_rupees(amount_text), **_kw()),
        _("Paid: hand the cash to the beneficiary."),
        "pos.paypoint_page",
    )


@bp.post("/paypoint/proof-of-life")
def paypoint_proof() -> str | WResponse:
    if (r := _member_ready()) is not None:
        return r
    visit = terminal().visit
    assert visit is not None
    scheme = request.form.get("scheme", type=int, default=0)
    return _transaction(
        lambda: paypoint.proof_of_life(visit, scheme_id=scheme, **_kw()),
        _("Proof of life recorded."),
        "pos.paypoint_page",
    )


# ------------------------------------------------------------------------------------------ journal, sync
@bp.get("/journal")
def journal_page() -> str | WResponse:
    if (r := _need_clerk()) is not None:
        return r
    term = terminal()
    off = offline_status(term.journal, term.now())
    events = list(reversed(term.journal.events()))[:40]
    cards = sorted({e.card_id for e in events if e.card_id})
    exposure = {c: term.journal.card_offline_exposure(int(c, 16)) for c in cards}
    limits = None
    if term.visit is not None:
        with term.lock:
            try:  # the card's own counters now, not those read at insertion
                st = term.visit.session.status()
                limits = (st.max_count, st.max_amount, st.since_sync_count, st.since_sync_amount)
            except (CardError, TransportError):
                limits = term.visit.verified.limits
    reasons = {r.value: _(message_for(r).problem) for r in Reason}
    return page("pos/journal.html", off=off, events=events, exposure=exposure, limits=limits,
                can_sync=term.sync is not None, event_labels=EVENTS, outcomes=OUTCOMES,
                reasons=reasons)  # fmt: skip


@bp.post("/sync")
def sync() -> WResponse:
    if (r := _need_clerk()) is not None:
        return r
    term = terminal()
    if term.sync is None:
        flash(_(message_for(Reason.SYNC_FAILED).problem), "error")
        return redirect(url_for("pos.journal_page"))
    with term.lock:
        try:
            report = term.sync.sync()
        except SyncError as exc:
            flash(_(exc.message.problem) + " " + _(exc.message.next_step), "error")
            return redirect(url_for("pos.journal_page"))
    if report.error is not None and report.reason is not None:
        msg = message_for(report.reason)
        flash(_(msg.problem) + " " + _(msg.next_step), "error")
    else:
        flash(_("Synchronised: %(n)s records sent.", n=report.records_sent), "ok")
    return redirect(url_for("pos.journal_page"))
