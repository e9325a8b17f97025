"""Dashboard views of the package catalogue terminals receive (services/catalogue.py, services/publish.py):
the packages valid now and the signed version terminals have; a new version uploaded or edited as CSV,
checked line by line (every bad line in words), compared with the packages now, then written and signed in
one step. Thin: parsing, comparing and writing are the catalogue service's, signing is publish's."""

from __future__ import annotations

import json
from typing import Any

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers.response import Response as WResponse

from cardsvc.central.dashboard import labels
from cardsvc.central.dashboard.lists import _central_key
from cardsvc.central.dashboard.views import audit, bp, db, now, page
from cardsvc.central.models import PublishedList
from cardsvc.central.services import catalogue as catalogue_service
from cardsvc.central.services.catalogue import CatalogueUploadError, ChangeKind, PackageChange
from cardsvc.central.services.publish import ListKind, publish_catalogue

MAX_UPLOAD_BYTES = 1_000_000


def _published() -> list[dict[str, Any]]:
    """The signed catalogue versions, newest first (version, when signed, how many packages)."""
    rows = db().execute(
        select(PublishedList).where(PublishedList.kind == ListKind.CATALOGUE.value)
        .order_by(PublishedList.version.desc()).limit(20)
    ).scalars().all()  # fmt: skip
    return [
        {"version": r.version, "issued_at": r.issued_at,
         "packages": len(json.loads(bytes(r.wire))["catalogue"]["packages"])}
        for r in rows
    ]  # fmt: skip


def _upload_text() -> str:
    """The new version as text: the file chosen, else the edited list."""
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        return upload.stream.read(MAX_UPLOAD_BYTES).decode("utf-8", errors="replace")
    return request.form.get("packages", "")


def _catalogue_page(status: int = 200, **kw: Any) -> tuple[str, int]:
    packages = catalogue_service.current_packages(db(), now())
    kw.setdefault("text", catalogue_service.catalogue_csv(packages))
    html = page("dashboard/catalogue.html", packages=packages, published=_published(),
                has_key=_central_key() is not None, **kw)  # fmt: skip
    return html, status


def _counts(changes: list[PackageChange]) -> dict[str, int]:
    return {k.value: sum(1 for c in changes if c.kind is k) for k in ChangeKind}


@bp.get("/catalogue")
def catalogue() -> tuple[str, int]:
    return _catalogue_page()


@bp.post("/catalogue", endpoint="check_catalogue")
def check_catalogue_view() -> tuple[str, int]:
    """Check an uploaded or edited version and show what it changes (nothing is written)."""
    text = _upload_text()
    try:
        lines = catalogue_service.parse_catalogue_upload(text)
    except CatalogueUploadError as exc:
        return _catalogue_page(422, text=text, problems=[labels.upload_problem(p) for p in exc.problems])
    changes = catalogue_service.plan_catalogue_version(db(), lines, now())
    return _catalogue_page(text=text, changes=changes, counts=_counts(changes))


@bp.post("/catalogue/publish", endpoint="publish_catalogue")
def publish_catalogue_view() -> WResponse | tuple[str, int]:
    """Write the checked version (new package versions valid from now) and sign the catalogue."""
    key = _central_key()
    if key is None:
        flash(_("Central's signing key is not configured: start central with --central-key-file."), "error")
        return redirect(url_for("dashboard.catalogue"))
    text = request.form.get("packages", "")
    try:
        lines = catalogue_service.parse_catalogue_upload(text)
    except CatalogueUploadError as exc:
        return _catalogue_page(422, text=text, problems=[labels.upload_problem(p) for p in exc.problems])
    before = db().execute(
        select(PublishedList.version).where(PublishedList.kind == ListKind.CATALOGUE.value)
        .order_by(PublishedList.version.desc())
    ).scalars().first()  # fmt: skip
    changes = catalogue_service.apply_catalogue_version(db(), lines, now())
    published = publish_catalogue(db(), key, now())  # commits the new package versions with the list
    if published is None or published.version == before:
        db().rollback()
        version = published.version if published else 0
        flash(_("Nothing changed since version %(v)s: terminals already have it.", v=version), "info")
        return redirect(url_for("dashboard.catalogue"))
    changed = sum(1 for c in changes if c.kind is not ChangeKind.SAME)
    audit("publish-catalogue", f"catalogue:v{published.version}", {"changed": changed, "signed_by": key.chr})
    flash(_("Package catalogue version %(v)s signed and published: terminals receive it at their next sync.",
            v=published.version), "ok")  # fmt: skip
    return redirect(url_for("dashboard.catalogue"))
