"""The terminal API under /api/v1: thin routes over the services layer; every call is signed."""

from __future__ import annotations

import json
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.orm import Session

from cardsvc.central.app import clock
from cardsvc.central.extensions import get_db
from cardsvc.central.services.auth import HEADERS, authenticate
from cardsvc.central.services.catalogue import catalogue
from cardsvc.central.services.ingest import ingest_batch
from cardsvc.central.services.terminals import (
    DbTerminalDirectory,
    TerminalDirectory,
    TerminalInfo,
    revocation_list,
)

api = Blueprint("api", __name__, url_prefix="/api/v1")


def _signed_path() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def _directory(session: Session) -> TerminalDirectory:
    """Certificate chains checked to the root when a trust anchor is configured, else registered keys."""
    anchor = current_app.config.get("TRUST_ANCHOR")
    if anchor is None:
        return DbTerminalDirectory(session)
    from cardsvc.central.services.pki_keys import CertifiedTerminalDirectory

    revocations = current_app.config.get("REVOCATIONS")
    return CertifiedTerminalDirectory(session, anchor, clock(current_app), revocations)


def _authenticated(body: bytes) -> TerminalInfo:
    db = get_db()
    with db.sessions() as session:
        return authenticate(
            session,
            _directory(session),
            {name: request.headers.get(name, "") for name in HEADERS},
            request.method,
            _signed_path(),
            body,
            now=clock(current_app),
            window=current_app.config["AUTH_WINDOW_SECONDS"],
        )


@api.post("/batches")
def upload_batch() -> tuple[Response, int]:
    """Upload a camp, transaction or FKO-ledger batch: 201 new, 200 already held (same receipt)."""
    body = request.get_data(cache=False)
    terminal = _authenticated(body)
    anchor = current_app.config.get("TRUST_ANCHOR")
    cards = None
    if anchor is not None:
        from cardsvc.central.services.pki_keys import CardCertifier

        cards = CardCertifier(anchor, clock(current_app), current_app.config.get("REVOCATIONS"))
    with get_db().sessions() as session:
        result = ingest_batch(session, _directory(session), body, terminal.id, clock(current_app), cards)
    status = 200 if result.duplicate else 201
    return jsonify(receipt=result.receipt.to_json(), duplicate=result.duplicate), status


@api.get("/revocations")
def revocations() -> Response:
    """Revoked terminals, operators and cards."""
    _authenticated(b"")
    with get_db().sessions() as session:
        lists = revocation_list(session)
    return jsonify(issued_at=clock(current_app), **lists)


@api.get("/packages")
def packages() -> Response:
    """The package catalogue: every version of every package, newest last."""
    _authenticated(b"")
    with get_db().sessions() as session:
        return jsonify(packages=catalogue(session))


@api.get("/authorisations")
def authorisations() -> Response:
    """Signed renewals, top-ups, split cards and replacements for this terminal (none until phase 2)."""
    terminal = _authenticated(b"")
    return jsonify(terminal_id=terminal.id, authorisations=[])


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 description of this API (public)."""
    text = resources.files("cardsvc.central").joinpath("openapi.json").read_text(encoding="utf-8")
    return jsonify(json.loads(text))
