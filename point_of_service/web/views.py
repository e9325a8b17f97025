"""POS screens: thin views over point_of_service.services. No business rule lives here: each view calls one
service function and shows its outcome, or the clerk-facing reason (problem, then next step) it refused with.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
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

from cardsvc.beneficiary.protocol import CardStatus
from cardsvc.beneficiary.session import OfflineState
from cardsvc.beneficiary.verify import STEPS as CARD_STEPS
from cardsvc.card.errors import CardError
from cardsvc.card.transport import TransportError
from cardsvc.pki.rights import Right
from point_of_service.errors import PosError, SyncError, TransactionError, VerificationError
from point_of_service.reasons import Reason, message_for
from point_of_service.services import hospital, paypoint
from point_of_service.services.fallback import Fallback, Override, OverrideReason
from point_of_service.services.signin import sign_in
from point_of_service.services.sync import offline_status
from point_of_service.services.verification import CardVisit, verify_card, verify_member
from point_of_service.services.verification import override_member as override_service
from point_of_service.web.terminal import CardReading, PosTerminal

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
assert [name for name, _label in STEPS] == list(CARD_STEPS), "one name per step of verify_card"

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
FALLBACK_WORDS: dict[str, Any] = {f.value: label for f, label in FALLBACKS.items()}
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
    "authorisation": _l("Central's authorisation presented to the card"),
    "card-records": _l("Records the card made itself, collected for central"),
}
OUTCOMES: dict[str, Any] = {"ok": _l("done"), "refused": _l("refused"), "failed": _l("failed"),
                            "interrupted": _l("interrupted")}  # fmt: skip
RELATIONS = {1: _l("Head"), 2: _l("Spouse"), 3: _l("Child"), 4: _l("Parent"), 5: _l("Other")}
#: Package specialities of the signed catalogue, in words (an unknown one is shown as the catalogue has it).
SPECIALITIES = {
    "obstetrics": _l("obstetrics"), "ophthalmology": _l("ophthalmology"), "general": _l("general"),
    "surgery": _l("surgery"), "medicine": _l("medicine"), "orthopaedics": _l("orthopaedics"),
    "paediatrics": _l("paediatrics"), "cardiology": _l("cardiology"),
}  # fmt: skip
GENDERS = {ord("M"): _l("male"), ord("F"): _l("female"), ord("O"): _l("other")}  # Gender values
VERIFIED_BY = {"fingerprint": _l("fingerprint"), "override": _l("supervised override")}
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
    limits = {"text": _("no card read"), "state": "unknown"}
    if term.limits is not None:
        limits = {"text": _limits_text(term.limits), "state": _limits_state(term.limits)}
    return jsonify(
        {
            "limits": limits,
            "card_reader": item(devices.get("card_reader", False), yes, no),
            "card": item(devices.get("card", False), _("card inserted"), _("no card"), "warn"),
            "sensor": item(devices.get("sensor", False), yes, no),
            "operator": {
                **item(clerk is not None, clerk.chr if clerk else "", _("nobody signed in"), "warn"),
                "data": clerk is not None,
            },
            "sync": {
                "text": _duration(off.seconds_offline)
                if off.seconds_offline is None
                else _("offline for %(d)s", d=_duration(off.seconds_offline)),
                "state": "ok" if off.seconds_offline is not None and off.seconds_offline < 86400 else "warn",
            },
        }
    )


def _duration(seconds: int | None) -> str:
    from cardsvc.web.i18n import duration

    return duration(seconds)


def _limits_used(limits: OfflineState) -> int:
    """How much of the card's offline limits is used, in percent (the nearer of count and amount)."""
    used = [100 * used / top for used, top in ((limits.count, limits.max_count),
                                                (limits.amount, limits.max_amount)) if top]  # fmt: skip
    return min(100, round(max(used, default=0)))


def _limits_state(limits: OfflineState) -> str:
    used = _limits_used(limits)
    return "bad" if used >= 100 else "warn" if used >= 80 else "ok"


def _limits_text(limits: OfflineState) -> str:
    from cardsvc.web.i18n import money, number

    return _("%(c)s of %(mc)s debits, %(a)s of %(ma)s", c=number(limits.count), mc=number(limits.max_count),
             a=money(limits.amount), ma=money(limits.max_amount))  # fmt: skip


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
    term.clerk = term.supervisor = term.visit = term.limits = None
    term.reading = CardReading()
    flash(_("Signed out."), "ok")
    return redirect(url_for("pos.signin"))


# ------------------------------------------------------------------------------------------ card
def step_states(reading: CardReading, verified: bool) -> list[dict[str, Any]]:
    """Each verification step with its state: ok, failed, current (being checked now) or pending.

    Steps the card passed are ticked; a refusal stops at its step (later steps stay pending); a refusal
    outside the card's steps (facility revoked) leaves them all pending."""
    names = [name for name, _label in STEPS]
    passed = set(names) if verified else set(reading.passed)
    failed = reading.failed if reading.failed in names else None
    if failed is None and reading.problem is not None and reading.passed:
        failed = next((n for n in names if n not in passed), None)  # a card error mid-way
    current = None
    if not reading.done and not verified:
        current = next((n for n in names if n not in passed), None)
    states, stopped = [], False
    for name, label in STEPS:
        if name == failed:
            state, stopped = "failed", True
        elif stopped or name not in passed:
            state = "current" if name == current else "pending"
        else:
            state = "ok"
        states.append({"name": name, "label": label, "state": state})
    return states


def _card_page(problem: dict[str, str] | None = None, **kw: Any) -> str:
    term = terminal()
    visit = term.visit
    if problem is None and visit is None:
        problem = term.reading.problem  # the last card read refused (shown again on reload)
    photos: dict[int, str] = {}
    limits = None
    if visit is not None:
        photos = _photos(visit)
        limits = term.limits or visit.offline_limits
    return page(
        "pos/card.html",
        steps=step_states(term.reading, visit is not None),
        problem=problem,
        photos=photos,
        fingers=FINGERS,
        relations=RELATIONS,
        genders=GENDERS,
        schemes=SCHEMES,
        fallbacks=FALLBACKS,
        verified_by=VERIFIED_BY,
        limits=limits,
        limits_used=_limits_used(limits) if limits else 0,
        limits_state=_limits_state(limits) if limits else "ok",
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


@bp.get("/live/steps.json")
def live_steps() -> Response:
    """The verification steps so far (memory only: answered while the card is being read). ``token`` is the
    one the page sent with its "Read the card": until that reading starts, the steps are all pending."""
    term = terminal()
    reading = term.reading
    if request.args.get("token", "") != reading.token:
        reading = CardReading()
    states = step_states(reading, False)
    return jsonify({"steps": [{"name": s["name"], "state": s["state"]} for s in states],
                    "problem": reading.problem, "done": reading.done})  # fmt: skip


@bp.post("/card/read")
def card_read() -> str | WResponse:
    """Verify the card in the patient reader; each step passed is ticked in ``term.reading`` as it passes."""
    if (r := _need_clerk()) is not None:
        return r
    term = terminal()
    clerk = term.signed_in()
    assert clerk is not None
    token = request.form.get("token", "")
    reading = CardReading(token=token if token.isalnum() and len(token) <= 40 else "")
    with term.lock:
        term.visit, term.limits, term.reading = None, None, reading
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
                on_step=reading.step_passed,
            )
        except VerificationError as exc:
            reading.refused(exc.step, refusal(exc))
        except (TransportError, CardError) as exc:
            missing = refusal(VerificationError(Reason.CARD_MISSING, str(exc)))
            reading.refused("present" if not reading.passed else None, missing)
        else:
            reading.done = True
            term.limits = term.visit.offline_limits
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
        return _card_page(refusal(VerificationError(Reason.MEMBER_UNKNOWN)))
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
            return _card_page(refusal(exc), chosen=member)
    if match.matched:
        flash(_("Fingerprint matched: member verified."), "ok")
        return _card_page(chosen=member)
    mismatch = refusal(VerificationError(Reason.FINGER_MISMATCH))
    return _card_page(mismatch, chosen=member, options=match.options)


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
    terminal().reading = CardReading()
    flash(_("Card visit ended. Give the card back."), "ok")
    return redirect(url_for("pos.card"))


# ------------------------------------------------------------------------------------------ transactions
def _card_transaction(run: Callable[[CardVisit], Any], success: str, back: str) -> str | WResponse:
    """One card transaction for the verified member: refused in words, or the card's record shown; the
    card's offline limits read again after it (status bar)."""
    if (r := _member_ready()) is not None:
        return r
    term = terminal()
    visit = term.visit
    assert visit is not None
    with term.lock:
        try:
            outcome = run(visit)
        except PosError as exc:
            msg = message_for(exc.reason)
            flash(_(msg.problem) + " " + _(msg.next_step), "error")
            return redirect(url_for(back, reason=exc.reason.value))
        _card_status(visit)
    flash(success + " " + _("Card record no. %(n)s.", n=outcome.record.counter), "ok")
    return redirect(url_for(back))


def _card_status(visit: CardVisit) -> CardStatus | None:
    """The card's status read now (wallets, offline counters), kept for the status bar; None when the card
    does not answer (the pages then show what verification read)."""
    term = terminal()
    with term.lock:
        try:
            st = visit.session.status()
        except (CardError, TransportError):
            return None
    term.limits = OfflineState(st.max_count, st.max_amount, st.since_sync_count, st.since_sync_amount,
                               st.synced_counter, st.counter)  # fmt: skip
    return st


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


def _admission() -> int:
    return request.form.get("admission", type=int, default=0)


def _scheme() -> int:
    return request.form.get("scheme", type=int, default=0)


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
                names=names, reason=request.args.get("reason"), specialities=SPECIALITIES)  # fmt: skip


@bp.post("/hospital/admit")
def hospital_admit() -> str | WResponse:
    code = request.form.get("package", type=int, default=0)
    trust = terminal().trust
    return _card_transaction(
        lambda visit: hospital.admit(visit, package_code=code, trust=trust, **_kw()),
        _("Admitted: the package amount is blocked on the card."),
        "pos.hospital_page",
    )


@bp.post("/hospital/discharge")
def hospital_discharge() -> str | WResponse:
    admission, amount_text = _admission(), request.form.get("amount", "").strip()

    def run(visit: CardVisit) -> Any:
        final = _rupees(amount_text) if amount_text else None
        return hospital.discharge(visit, admission=admission, final_amount=final, **_kw())

    return _card_transaction(run, _("Discharged: the final amount is settled."), "pos.hospital_page")


@bp.post("/hospital/cancel")
def hospital_cancel() -> str | WResponse:
    admission = _admission()
    return _card_transaction(
        lambda visit: hospital.cancel(visit, admission=admission, **_kw()),
        _("Admission cancelled: the blocked amount is released."),
        "pos.hospital_page",
    )


@bp.get("/paypoint")
def paypoint_page() -> str | WResponse:
    if (r := _need_visit()) is not None:
        return r
    visit = terminal().visit
    assert visit is not None
    st = _card_status(visit)
    wallets = st.wallets if st is not None else visit.verified.wallets
    return page("pos/paypoint.html", wallets=wallets, schemes=SCHEMES, reason=request.args.get("reason"))


@bp.post("/paypoint/pay")
def paypoint_pay() -> str | WResponse:
    scheme, amount_text = _scheme(), request.form.get("amount", "")
    return _card_transaction(
        lambda visit: paypoint.disburse(visit, scheme_id=scheme, amount=_rupees(amount_text), **_kw()),
        _("Paid: hand the cash to the beneficiary."),
        "pos.paypoint_page",
    )


@bp.post("/paypoint/proof-of-life")
def paypoint_proof() -> str | WResponse:
    scheme = _scheme()
    return _card_transaction(
        lambda visit: paypoint.proof_of_life(visit, scheme_id=scheme, **_kw()),
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
    if term.visit is not None:  # the card's own counters now, not those read at insertion
        limits = term.limits if _card_status(term.visit) is not None else term.visit.offline_limits
    reasons = {r.value: _(message_for(r).problem) for r in Reason}
    return page("pos/journal.html", off=off, events=events, exposure=exposure, limits=limits,
                limits_used=_limits_used(limits) if limits else 0,
                limits_state=_limits_state(limits) if limits else "ok",
                last_limits={c: _last_limits(c) for c in cards}, can_sync=term.sync is not None,
                event_labels=EVENTS, outcomes=OUTCOMES, reasons=reasons,
                fallbacks=FALLBACK_WORDS)  # fmt: skip


@dataclass(frozen=True)
class LastLimits:
    """A card's offline limits as the card itself reported them at its last reading here (journal)."""

    at: int
    count: int
    amount: int
    max_count: int
    max_amount: int


def _last_limits(card: str) -> LastLimits | None:
    events = terminal().journal.events(card_id=int(card, 16), kind="verify-card", limit=1)
    for event in events:
        since, top = event.detail.get("since_sync"), event.detail.get("offline_limits")
        if since and top:
            return LastLimits(event.at, int(since[0]), int(since[1]), int(top[0]), int(top[1]))
    return None


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
