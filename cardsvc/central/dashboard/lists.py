"""Dashboard views for what central signs and what staff review: revocations and the signed revocation list
(services/publish.py), authorisations for stations and cards (services/authorise.py), and the review of
possible duplicate enrolments (services/flags.py). Thin: each action is one service call, refused by role
in ``views.ACCESS`` before it runs, and appended to the audit log after it succeeded."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, g, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers.response import Response as WResponse

from cardsvc.central.dashboard import labels
from cardsvc.central.dashboard.users import Role
from cardsvc.central.dashboard.views import _in_district, audit, bp, db, now, page
from cardsvc.central.errors import ServiceError
from cardsvc.central.models import AuthorisationRow, Card, FlagRow, PublishedList
from cardsvc.central.services import flags as flag_service
from cardsvc.central.services import terminals as terminal_service
from cardsvc.central.services.authorise import (
    CardKind,
    StationKind,
    issue_card_authorisation,
    issue_station_authorisation,
)
from cardsvc.central.services.publish import CentralKey, ListKind, publish_revocations

DUPLICATE = "duplicate_enrolment"
MIN_NOTE = 5


def _central_key() -> CentralKey | None:
    key: CentralKey | None = current_app.config.get("CENTRAL_KEY")
    return key


def _hex_id(text: str) -> str | None:
    """A 16-hex-digit id (shorter ones are zero-padded), lower case; None when it is not one."""
    text = text.strip().lower()
    if not 1 <= len(text) <= 16:
        return None
    try:
        return f"{int(text, 16):016x}"
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ revocations
def _published() -> list[dict[str, Any]]:
    from cardsvc.pki.revocation import RevocationList

    rows = db().execute(
        select(PublishedList).where(PublishedList.kind == ListKind.REVOCATIONS.value)
        .order_by(PublishedList.version.desc()).limit(20)
    ).scalars().all()  # fmt: skip
    return [
        {
            "version": r.version,
            "issued_at": r.issued_at,
            "entries": len(RevocationList.parse(bytes(r.wire)).entries),
        }
        for r in rows
    ]


@bp.get("/revocations")
def revocations() -> str:
    listing = terminal_service.revocation_list(db())
    return page("dashboard/revocations.html", listing=listing, published=_published(),
                has_key=_central_key() is not None)  # fmt: skip


@bp.post("/revocations")
def revoke() -> WResponse:
    kind, ident = request.form.get("kind", ""), request.form.get("id", "")
    reason = request.form.get("reason", "").strip()
    card_id = _hex_id(ident)
    if card_id is None:
        flash(_("Give the id as 16 hexadecimal digits."), "error")
        return redirect(url_for("dashboard.revocations"))
    if len(reason) < MIN_NOTE:
        flash(_("Say why, in a few words."), "error")
        return redirect(url_for("dashboard.revocations"))
    if g.user.role is Role.DISTRICT and (kind != "card" or not _in_district(card_id, None)):
        flash(_("A district officer may revoke only the cards of their district."), "error")
        return redirect(url_for("dashboard.revocations"))
    number = int(card_id, 16)
    try:
        if kind == "card":
            terminal_service.revoke_card(db(), number, now())
        elif kind == "terminal":
            terminal_service.revoke_terminal(db(), number, now())
        elif kind == "operator":
            terminal_service.revoke_operator(db(), number, now())
        else:
            flash(_("Choose what to revoke."), "error")
            return redirect(url_for("dashboard.revocations"))
        db().commit()
    except ServiceError as exc:
        db().rollback()
        flash(_("Not revoked: %(why)s", why=labels.refusal(exc.code, exc.reason)), "error")
        return redirect(url_for("dashboard.revocations"))
    audit("revoke", f"{kind}:{card_id}", {"reason": reason[:200]})
    flash(_("Revoked. Publish the revocation list so terminals refuse it after their next sync."), "ok")
    return redirect(url_for("dashboard.revocations"))


@bp.post("/revocations/publish", endpoint="publish_revocations")
def publish_revocations_view() -> WResponse:
    key = _central_key()
    if key is None:
        flash(_("Central's signing key is not configured: start central with --central-key-file."), "error")
        return redirect(url_for("dashboard.revocations"))
    before = db().execute(
        select(PublishedList.version).where(PublishedList.kind == ListKind.REVOCATIONS.value)
        .order_by(PublishedList.version.desc())
    ).scalars().first()  # fmt: skip
    published = publish_revocations(db(), key, now())
    if published.version == before:
        flash(
            _("Nothing changed since version %(v)s: terminals already have it.", v=published.version), "info"
        )
        return redirect(url_for("dashboard.revocations"))
    audit("publish-revocations", f"revocations:v{published.version}", {"signed_by": key.chr})
    flash(_("Revocation list version %(v)s signed and published.", v=published.version), "ok")
    return redirect(url_for("dashboard.revocations"))


# ------------------------------------------------------------------------------------------ authorisations
STATION_KINDS = [k.value for k in StationKind]
CARD_KINDS = [k.value for k in CardKind]


@bp.get("/authorisations")
def authorisations() -> str:
    query = (
        select(AuthorisationRow).order_by(AuthorisationRow.issued_at.desc(), AuthorisationRow.id).limit(100)
    )
    if g.user.role is Role.DISTRICT:
        query = query.where(AuthorisationRow.district == g.user.district)
    rows = db().execute(query).scalars().all()
    return page("dashboard/authorisations.html", rows=rows, kinds=STATION_KINDS + CARD_KINDS,
                form=request.values, has_key=_central_key() is not None, now_ts=now())  # fmt: skip


def _members(text: str) -> list[int] | None:
    """ "2, 3" (as numbered on the card's page, from 1) -> member indexes from 0; None when malformed."""
    try:
        numbers = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        return None
    return [n - 1 for n in numbers] if numbers and all(n >= 1 for n in numbers) else None


def _paise(text: str) -> int | None:
    try:
        rupees = float(text.replace(",", "").strip())
    except ValueError:
        return None
    return round(rupees * 100) if rupees > 0 else None


@bp.post("/authorisations")
def authorise() -> WResponse | tuple[str, int]:
    form = request.form
    kind, card_id = form.get("kind", ""), _hex_id(form.get("card", ""))
    problem = None
    key = _central_key()
    if key is None:
        problem = _("Central's signing key is not configured: start central with --central-key-file.")
    elif card_id is None:
        problem = _("Give the card id as 16 hexadecimal digits.")
    elif kind not in STATION_KINDS + CARD_KINDS:
        problem = _("Choose what to authorise.")
    if problem is not None or key is None or card_id is None:
        return _authorise_refused(problem or "")
    details: dict[str, Any] = {}
    try:
        if kind in STATION_KINDS:
            members = None
            if kind == StationKind.SPLIT.value:
                members = _members(form.get("members", ""))
                if members is None:
                    return _authorise_refused(_("For a split card, list the members it carries (e.g. 2, 3)."))
                details["members"] = [m + 1 for m in members]
            issued = issue_station_authorisation(
                db(), key, StationKind(kind), card_id, now=now(), members=members
            )
        else:
            value = None
            if kind in (CardKind.TOP_UP.value, CardKind.RENEWAL.value):
                value = _paise(form.get("amount", ""))
                if value is None:
                    return _authorise_refused(labels.label(labels.REFUSAL_LABELS, "bad_value"))
                details["value_paise"] = value
            scheme = form.get("scheme", type=int)
            issued = issue_card_authorisation(
                db(), key, CardKind(kind), card_id, now=now(), scheme_id=scheme or None, value=value
            )
    except ServiceError as exc:
        db().rollback()
        return _authorise_refused(labels.refusal(exc.code, exc.reason))
    audit("authorise", f"card:{card_id}", {"kind": kind, "id": issued.id, **details})
    what = labels.label(labels.AUTH_KIND_LABELS, kind)
    flash(_("Authorisation %(id)s signed: %(kind)s.", id=issued.id, kind=what), "ok")
    if kind == StationKind.REPLACE.value:
        flash(_("The lost card is revoked from now: publish the revocation list."), "info")
    return redirect(url_for("dashboard.authorisations"))


def _authorise_refused(problem: str) -> tuple[str, int]:
    query = (
        select(AuthorisationRow).order_by(AuthorisationRow.issued_at.desc(), AuthorisationRow.id).limit(100)
    )
    rows = db().execute(query).scalars().all()
    html = page(
        "dashboard/authorisations.html", rows=rows, kinds=STATION_KINDS + CARD_KINDS, form=request.form,
        has_key=_central_key() is not None, now_ts=now(), problem=problem,
    )  # fmt: skip
    return html, 422


# ------------------------------------------------------------------------------------------ de-duplication
def _pairs() -> list[dict[str, Any]]:
    """Open duplicate-enrolment findings as pairs of cards (each pair is flagged once on each card)."""
    found = [f for f in flag_service.open_flags(db(), kinds=[DUPLICATE]) if _in_district(f.card_id, None)]
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for f in found:
        other = str(f.details.get("other_card", ""))
        a, b = sorted((str(f.card_id), other))
        entry = pairs.setdefault((a, b), {"flags": [], "a": a, "b": b, "score": 0.0, "matches": []})
        entry["flags"].append(f)
        entry["score"] = max(entry["score"], float(f.details.get("score", 0.0)))
        if f.card_id == a:
            entry["matches"] = list(f.details.get("matches", []))
            entry["created_at"] = f.created_at
    for entry in pairs.values():
        entry["cards"] = {c: db().get(Card, c) for c in (entry["a"], entry["b"])}
        entry["id"] = min(f.id for f in entry["flags"])
        entry.setdefault("created_at", entry["flags"][0].created_at)
    return [pairs[k] for k in sorted(pairs)]


@bp.get("/dedup")
def dedup() -> str:
    return page("dashboard/dedup.html", pairs=_pairs())


@bp.post("/dedup/<int:flag_id>/review")
def review_duplicate(flag_id: int) -> WResponse:
    outcome, note = request.form.get("outcome", ""), request.form.get("note", "").strip()
    row = db().get(FlagRow, flag_id)
    if row is None or row.kind != DUPLICATE or row.resolved_at is not None:
        flash(_("This finding is no longer open."), "error")
        return redirect(url_for("dashboard.dedup"))
    if not _in_district(row.card_id, None):
        flash(_("This card is not in your district."), "error")
        return redirect(url_for("dashboard.dedup"))
    if outcome not in labels.OUTCOME_LABELS or len(note) < MIN_NOTE:
        flash(_("Choose same person or different people, and say what was checked."), "error")
        return redirect(url_for("dashboard.dedup"))
    card, other = str(row.card_id), str(dict(row.details).get("other_card", ""))
    words = {"same": "reviewed: same person", "different": "reviewed: different people"}[outcome]
    both = [
        f for f in flag_service.open_flags(db(), card_ids=[card, other], kinds=[DUPLICATE])
        if {str(f.card_id), str(f.details.get("other_card", ""))} == {card, other}
    ]  # fmt: skip
    try:
        for f in both:
            flag_service.resolve_flag(db(), f.id, by=g.user.name, note=f"{words}: {note}", now=now())
    except ServiceError as exc:
        db().rollback()
        flash(_("Not resolved: %(why)s", why=labels.refusal(exc.code, exc.reason)), "error")
        return redirect(url_for("dashboard.dedup"))
    a, b = sorted((card, other))
    audit("review-duplicate", f"cards:{a}+{b}", {"outcome": outcome, "flags": [f.id for f in both],
                                                   "note": note[:200]})  # fmt: skip
    if outcome == "same":
        flash(_("Recorded: the same person. Issue a split or replacement so that one card keeps them."), "ok")
    else:
        flash(_("Recorded: different people. Both cards may be authorised again."), "ok")
    return redirect(url_for("dashboard.dedup"))
