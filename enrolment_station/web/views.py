"""Station screens: thin views over the camp service (enrolment_station.camp.Camp). Each POST is one
operator step of the camp; its refusal is shown as a catalogued problem and next step (texts.py)."""

from __future__ import annotations

import base64
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
from flask_babel import ngettext
from markupsafe import Markup
from werkzeug.utils import secure_filename
from werkzeug.wrappers.response import Response as WResponse

from cardsvc.card.transport import TransportError
from cardsvc.formats.batch import BatchKind
from enrolment_station.eligibility import Household
from enrolment_station.errors import EligibilityError, StationError
from enrolment_station.handover import card_face, print_face
from enrolment_station.journal import CardState, HouseholdStatus, Journal, MemberException
from enrolment_station.personalise import Stage, Step
from enrolment_station.photos import MAX_UPLOAD_BYTES as MAX_PHOTO_BYTES
from enrolment_station.photos import record_photo
from enrolment_station.web.station import StationContext
from enrolment_station.web.texts import NO_CARD, message_for

bp = Blueprint("station", __name__, template_folder="templates")

STATUS_LABELS: dict[str, Any] = {
    HouseholdStatus.LISTED: _l("Not yet enrolled"),
    HouseholdStatus.CAPTURED: _l("Fingers captured"),
    HouseholdStatus.PERSONALISED: _l("Card written, not handed over"),
    HouseholdStatus.HANDED_OVER: _l("Handed over"),
}
EXCEPTIONS: dict[str, Any] = {
    MemberException.MISSING_FINGER: _l("Finger missing"),
    MemberException.INJURED_FINGER: _l("Finger injured"),
    MemberException.WORN_FINGERPRINTS: _l("Worn fingerprints"),
    MemberException.CHILD: _l("Child (no fingerprints)"),
    MemberException.ABSENT: _l("Member absent"),
}
RELATIONS: dict[str, Any] = {
    "HEAD": _l("Head"), "SPOUSE": _l("Spouse"), "SON": _l("Son"), "DAUGHTER": _l("Daughter"),
    "FATHER": _l("Father"), "MOTHER": _l("Mother"), "OTHER": _l("Other"),
}  # fmt: skip
GENDERS: dict[str, Any] = {"F": _l("female"), "M": _l("male"), "O": _l("other")}  # eligibility Gender
#: Upload batches by kind (the journal's upload queue), in words.
BATCH_KINDS: dict[str, Any] = {
    BatchKind.CAMP: _l("Camp enrolments"), BatchKind.FKO_LEDGER: _l("FKO card ledger"),
    BatchKind.TRANSACTIONS: _l("Card transactions"), BatchKind.FALLBACKS: _l("Fallbacks used"),
}  # fmt: skip
#: Eligibility list columns (and whole-file places) named in a refused row, in the operator's words.
COLUMNS: dict[str, Any] = {
    "household_id": _l("household"), "village_code": _l("village code"), "member_no": _l("member number"),
    "name": _l("name"), "gender": _l("gender"), "year_of_birth": _l("year of birth"),
    "relation": _l("relation"), "header": _l("header"), "row": _l("row"), "file": _l("file"),
}  # fmt: skip
MAX_ROWS_SHOWN = 30
CARD_STATES: dict[str, Any] = {
    CardState.STARTED: _l("Being written"),
    CardState.ACTIVATED: _l("Activated, not handed over"),
    CardState.HANDED_OVER: _l("Handed over"),
    CardState.WIPED: _l("Wiped"),
    CardState.ABANDONED: _l("Abandoned"),
}
FINGERS: dict[int, Any] = {
    1: _l("Right thumb"), 2: _l("Right index"), 3: _l("Right middle"), 4: _l("Right ring"),
    5: _l("Right little"), 6: _l("Left thumb"), 7: _l("Left index"), 8: _l("Left middle"),
    9: _l("Left ring"), 10: _l("Left little"),
}  # fmt: skip
STEPS: list[tuple[str, Any]] = [
    (Step.KEY, _l("Card key generated")),
    (Step.PROFILE, _l("Household written")),
    (Step.TEMPLATES, _l("Fingerprints written")),
    (Step.PHOTOS, _l("Photos written")),
    (Step.REQUESTED, _l("Activation requested")),
    (Step.CERTIFIED, _l("Signed by the FKO")),
    (Step.ACTIVATED, _l("Card activated")),
]


def station() -> StationContext:
    ctx: StationContext = current_app.extensions["station"]
    return ctx


def problem_of(exc: BaseException) -> dict[str, str]:
    problem, next_step = NO_CARD if isinstance(exc, TransportError) else message_for(exc)
    detail = str(exc)
    if isinstance(exc, EligibilityError):
        detail = "; ".join(str(p) for p in getattr(exc, "problems", ())) or detail
    return {"problem": _(problem), "next_step": _(next_step), "detail": detail,
            "code": getattr(exc, "reason", "card")}  # fmt: skip


def _session_open() -> bool:
    fko = station().camp.fko
    return fko is not None and fko.closed_reason is None


def _need_session() -> WResponse | None:
    if not _session_open():
        flash(_("The Field Key Officer must sign in first."), "error")
        return redirect(url_for("station.signin"))
    return None


def page(template: str, **kw: Any) -> str:
    camp = station().camp
    return render_template(template, session_open=_session_open(), camp=camp, **kw)


@bp.get("/status.json")
def status() -> Response:
    ctx = station()
    d = ctx.hardware.devices()
    yes, no = _("connected"), _("not connected")

    def item(ok: bool, good: str, bad: str, bad_state: str = "bad") -> dict[str, str]:
        return {"text": good if ok else bad, "state": "ok" if ok else bad_state}

    fko = ctx.camp.fko
    open_ = _session_open()
    return jsonify({
        "fko": {**item(open_, fko.fko_chr if (fko and open_) else "", _("not signed in"), "warn"),
                "data": open_},
        "card_reader": item(d.get("card_reader", False), yes, no),
        "card": item(d.get("card", False), _("card inserted"), _("no card"), "warn"),
        "sensor": item(d.get("sensor", False), yes, no),
        "uploads": {"text": _("%(n)s batches waiting", n=len(ctx.camp.journal.pending_uploads())),
                    "state": "ok" if not ctx.camp.journal.pending_uploads() else "warn"},
    })  # fmt: skip


@bp.get("/live/capture.json")
def live_capture() -> Response:
    """The capture in progress (memory only: answered while the capture request itself is running)."""
    live = station().recorder.live
    if live is None:
        return jsonify({"text": _("Waiting for the first finger…"), "image": None})
    text = _("Member %(m)s · %(finger)s · try %(n)s", m=live.member_no, finger=FINGERS.get(live.finger, ""),
             n=live.attempt)  # fmt: skip
    if live.quality is not None:
        text += " · " + _("quality %(q)s", q=live.quality)
    image = None if live.png is None else "data:image/png;base64," + base64.b64encode(live.png).decode()
    return jsonify({"text": text, "image": image, "member": live.member_no, "finger": live.finger})


#: The personalisation stages as the service names them (personalise.Stage) -> what the operator reads.
PROGRESS_LABELS: dict[str, Any] = {
    Stage.COMPLETING: _l("Completing an interrupted card"),
    Stage.WIPING: _l("Wiping a partly written card"),
    Stage.KEY: _l("Generating the card key"),
    Stage.PROFILE: _l("Writing the household"),
    Stage.TEMPLATES: _l("Writing the fingerprints"),
    Stage.CERTIFYING: _l("The FKO card signs the card"),
    Stage.ACTIVATING: _l("Activating the card"),
    Stage.REMOVED: _l("Card removed: put the same card back in the reader"),
}


@bp.get("/live/card.json")
def live_card() -> Response:
    """The personalisation stage in progress (memory only, answered while the card is being written)."""
    progress = station().progress
    if progress.stage is None:
        return jsonify({"stage": None, "number": 0, "of": progress.of, "text": _("Waiting for the card…"),
                        "image": None})  # fmt: skip
    text = str(PROGRESS_LABELS.get(progress.stage, _("Writing the card: do not remove it…")))
    if progress.stage == Stage.TEMPLATES and progress.items is not None:
        text += " (" + ngettext("%(num)s template", "%(num)s templates", progress.items) + ")"
    if progress.number:
        text = _("Step %(n)s of %(of)s: %(what)s", n=progress.number, of=progress.of, what=text)
    return jsonify({"stage": progress.stage, "number": progress.number, "of": progress.of, "text": text,
                    "image": None})  # fmt: skip


@bp.get("/")
def index() -> WResponse:
    return redirect(url_for("station.households" if _session_open() else "station.signin"))


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> str | WResponse:
    ctx = station()
    problem = None
    if request.method == "POST":
        try:
            pin = request.form.get("pin", "")
            ctx.camp.open_session(ctx.hardware.fko_card(), pin=pin, fingerprint=ctx.hardware.officer_probe)
        except (StationError, TransportError) as exc:
            problem = problem_of(exc)
        else:
            flash(_("Camp opened by the Field Key Officer."), "ok")
            return redirect(url_for("station.households"))
    return page("station/signin.html", problem=problem)


@bp.post("/signout")
def signout() -> WResponse:
    fko = station().camp.fko
    if fko is not None and fko.closed_reason is None:
        fko.close("signed out at the screen")
    flash(_("The FKO session is closed."), "ok")
    return redirect(url_for("station.signin"))


# ------------------------------------------------------------------------------------------ households
@bp.get("/households")
def households() -> str | WResponse:
    if (r := _need_session()) is not None:
        return r
    journal = station().camp.journal
    q = request.args.get("q", "").strip().lower()
    wanted = request.args.get("status", "")
    rows = []
    for hid in journal.household_ids():
        household = journal.household(hid)
        status = journal.household_status(hid)
        if wanted and status.value != wanted:
            continue
        names = " ".join(m.name for m in household.members).lower()
        if q and q not in hid.lower() and q not in names and q not in household.village_code:
            continue
        rows.append((household, status))
    counts = journal.households_by_status()
    return page("station/households.html", rows=rows, q=request.args.get("q", ""), wanted=wanted,
                labels=STATUS_LABELS, counts=counts)  # fmt: skip


@bp.post("/import")
def import_list() -> WResponse:
    if (r := _need_session()) is not None:
        return r
    ctx = station()
    upload = request.files.get("listing")
    if upload is None or not upload.filename:
        flash(_("Choose the eligibility list file first."), "error")
        return redirect(url_for("station.households"))
    ctx.imports_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.imports_dir / secure_filename(upload.filename)
    upload.save(path)
    try:
        listing = ctx.camp.import_list(path)
    except EligibilityError as exc:
        p = problem_of(exc)
        flash(f"{p['problem']} {p['next_step']}", "error")
        for row in exc.problems[:MAX_ROWS_SHOWN]:  # each bad row: where in the operator's words, why as found
            where = _("Line %(n)s, %(column)s:", n=row.line, column=COLUMNS.get(row.column, row.column))
            flash(Markup('{} <span translate="no" lang="en">{}</span>').format(where, row.reason), "error")
        if len(exc.problems) > MAX_ROWS_SHOWN:
            flash(_("… and %(n)s more rows.", n=len(exc.problems) - MAX_ROWS_SHOWN), "error")
    except StationError as exc:
        p = problem_of(exc)
        flash(f"{p['problem']} {p['next_step']} ({p['detail']})", "error")
    else:
        flash(_("%(n)s households imported.", n=len(listing.households)), "ok")
    return redirect(url_for("station.households"))


def _household_page(
    hid: str, problem: dict[str, str] | None = None, photo_problem: tuple[int, dict[str, str]] | None = None
) -> str:
    ctx = station()
    journal = ctx.camp.journal
    household = journal.household(hid)
    captures: dict[int, list[Any]] = {}
    for row in journal.captures(hid):
        captures.setdefault(row.member_no, []).append(row)
    images = {
        (m, f): "data:image/png;base64," + base64.b64encode(last.png).decode()
        for (h, m, f), last in ctx.recorder.last.items()
        if h == hid
    }
    attempts = {(m, f): last.attempts for (h, m, f), last in ctx.recorder.last.items() if h == hid}
    cards = journal.cards(household_id=hid)
    photos = {
        m.member_no: "data:image/png;base64," + base64.b64encode(png).decode()
        for m in household.members
        if (png := journal.photo(hid, m.member_no)) is not None
    }
    return page("station/household.html", household=household, status=journal.household_status(hid),
                photos=photos, photo_problem=photo_problem,
                labels=STATUS_LABELS, statuses=journal.member_statuses(hid), captures=captures, images=images,
                attempts=attempts, exceptions=EXCEPTIONS, fingers=FINGERS, problem=problem, cards=cards,
                relations=RELATIONS, genders=GENDERS)  # fmt: skip


@bp.get("/household/<hid>")
def household(hid: str) -> str | WResponse:
    if (r := _need_session()) is not None:
        return r
    try:
        return _household_page(hid)
    except StationError as exc:
        flash(problem_of(exc)["problem"], "error")
        return redirect(url_for("station.households"))


@bp.post("/household/<hid>/capture")
def capture(hid: str) -> str | WResponse:
    """Capture every member's fingers, with the ways out chosen (child, absent, finger missing)."""
    if (r := _need_session()) is not None:
        return r
    ctx = station()
    household = ctx.camp.journal.household(hid)
    member_exceptions: dict[int, MemberException] = {}
    unavailable: dict[int, dict[int, MemberException]] = {}
    for m in household.members:
        way_out = request.form.get(f"way_out_{m.member_no}", "")
        if way_out in (MemberException.CHILD, MemberException.ABSENT):
            member_exceptions[m.member_no] = MemberException(way_out)
        missing = request.form.get(f"missing_{m.member_no}", type=int)
        if missing:
            unavailable[m.member_no] = {missing: MemberException.MISSING_FINGER}
    ctx.recorder.forget(hid)
    try:
        ctx.camp.capture_household(hid, member_exceptions=member_exceptions, unavailable=unavailable)
    except (StationError, TransportError) as exc:
        return _household_page(hid, problem_of(exc))
    flash(_("Fingerprints captured for every member. Insert a blank card and write it."), "ok")
    return redirect(url_for("station.household", hid=hid))


@bp.post("/household/<hid>/photo/<int:member_no>")
def photo(hid: str, member_no: int) -> str | WResponse:
    """A member's photo from the camera or a file (one check with `enrol photo`); a retake replaces it."""
    if (r := _need_session()) is not None:
        return r
    upload = request.files.get("photo")
    data = b"" if upload is None else upload.read(MAX_PHOTO_BYTES + 1)
    try:
        record_photo(station().camp.journal, hid, member_no, data)
    except StationError as exc:
        return _household_page(hid, photo_problem=(member_no, problem_of(exc)))
    flash(_("Photo recorded."), "ok")
    return redirect(url_for("station.household", hid=hid) + f"#member-{member_no}")


@bp.post("/household/<hid>/card")
def personalise(hid: str) -> str | WResponse:
    if (r := _need_session()) is not None:
        return r
    ctx = station()
    ctx.progress.reset()
    try:
        connection = ctx.hardware.beneficiary_card()
        try:  # the card reader is held only while the card is written
            result = ctx.camp.personalise(connection, hid, reinsert_wait=0.0)
        finally:
            connection.close()
        print_face(ctx.camp.journal, result.card_id, ctx.camp.faces_dir)
    except (StationError, TransportError) as exc:
        return _household_page(hid, problem_of(exc))
    flash(_("Card written and activated. Check the card face, print it and hand it over."), "ok")
    return redirect(url_for("station.card", card_id=result.card_id))


@bp.get("/card/<card_id>")
def card(card_id: str) -> str | WResponse:
    if (r := _need_session()) is not None:
        return r
    journal = station().camp.journal
    row = journal.card(card_id)
    if row is None:
        flash(_("Unknown card."), "error")
        return redirect(url_for("station.households"))
    done = journal.steps(card_id)
    household = journal.household(row["household_id"])
    steps = [
        (name, label, "ok" if name in done else "pending")
        for name, label in STEPS
        if name != Step.PHOTOS or _photos_step_shown(journal, household, done)
    ]
    face = None
    if row["state"] in (CardState.ACTIVATED, CardState.HANDED_OVER):
        face = "data:image/png;base64," + base64.b64encode(card_face(journal, card_id).png()).decode()
    return page("station/card.html", row=row, steps=steps, face=face, household=household,
                handed_over=row["state"] == CardState.HANDED_OVER)  # fmt: skip


def _photos_step_shown(journal: Journal, household: Household, done: dict[str, dict[str, Any]]) -> bool:
    """The checklist's "Photos written" line: once written; or while the fingerprints are not yet written,
    if the household has a photo (it will be written then). A photo taken after that is printed on the
    card face only, so a card without photos shows no step it will never reach."""
    if Step.PHOTOS in done:
        return True
    return Step.TEMPLATES not in done and any(
        journal.photo(household.household_id, m.member_no) is not None for m in household.members
    )


@bp.post("/card/<card_id>/handover")
def handover(card_id: str) -> str | WResponse:
    if (r := _need_session()) is not None:
        return r
    ctx = station()
    if request.form.get("confirm") != "yes":
        flash(_("Tick the box to confirm the card is in the household's hands."), "error")
        return redirect(url_for("station.card", card_id=card_id))
    try:
        ctx.camp.hand_over(card_id, request.form.get("received_by", type=int))
    except StationError as exc:
        p = problem_of(exc)
        flash(f"{p['problem']} {p['next_step']}", "error")
        return redirect(url_for("station.card", card_id=card_id))
    flash(_("Hand-over recorded."), "ok")
    return redirect(url_for("station.households"))


# ------------------------------------------------------------------------------------------ summary
@bp.get("/summary")
def summary() -> str | WResponse:
    if (r := _need_session()) is not None:
        return r
    ctx = station()
    journal = ctx.camp.journal
    states: dict[str, int] = {}
    for row in journal.cards():
        states[row["state"]] = states.get(row["state"], 0) + 1
    pending = journal.pending_uploads()
    return page("station/summary.html", counts=journal.households_by_status(), labels=STATUS_LABELS,
                states=states, card_states=CARD_STATES, pending=pending, can_send=ctx.send_upload is not None,
                batch_kinds=BATCH_KINDS,
                ledger=current_app.extensions.get("station_ledger"))  # fmt: skip


@bp.post("/summary/ledger")
def ledger() -> WResponse:
    if (r := _need_session()) is not None:
        return r
    try:
        check = station().camp.ledger()
    except StationError as exc:
        flash(problem_of(exc)["problem"], "error")
    else:
        current_app.extensions["station_ledger"] = check
        flash(_("FKO card ledger read: %(n)s cards activated.", n=check.ledger_count), "ok")
    return redirect(url_for("station.summary"))


@bp.post("/summary/upload")
def upload() -> WResponse:
    if (r := _need_session()) is not None:
        return r
    ctx = station()
    batches = ctx.camp.upload_batches()
    if ctx.send_upload is None:
        flash(_("%(n)s batches ready; they go to central when a network appears.", n=len(batches)), "ok")
        return redirect(url_for("station.summary"))
    try:
        receipts = ctx.send_upload()
    except StationError as exc:
        p = problem_of(exc)
        flash(f"{p['problem']} {p['next_step']}", "error")
    else:
        flash(_("%(n)s batches received by central.", n=len(receipts)), "ok")
    return redirect(url_for("station.summary"))
