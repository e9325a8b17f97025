"""The terminal API under /api/v1: thin routes over the services layer; every call is signed."""

from __future__ import annotations

import base64
import json
import re
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.orm import Session

from cardsvc.central.app import clock
from cardsvc.central.errors import MalformedError
from cardsvc.central.extensions import get_db
from cardsvc.central.services.auth import HEADERS, authenticate
from cardsvc.central.services.authorise import authorisations_for
from cardsvc.central.services.catalogue import catalogue
from cardsvc.central.services.ingest import ingest_batch
from cardsvc.central.services.publish import CentralKey, publish_catalogue, publish_revocations
from cardsvc.central.services.terminals import (
    DbTerminalDirectory,
    TerminalDirectory,
    TerminalInfo,
    revocation_list,
)

api = Blueprint("api", __name__, url_prefix="/api/v1")
_HEX_ID = re.compile(r"[0-9a-f]{16}")


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
        result = ingest_batch(
            session, _directory(session), body, terminal.id, clock(current_app), cards, anchor=anchor,
            revocations=current_app.config.get("REVOCATIONS"),
        )  # fmt: skip
    _acknowledge_syncs(body, result.receipt.kind)
    status = 200 if result.duplicate else 201
    return jsonify(receipt=result.receipt.to_json(), duplicate=result.duplicate), status


def _acknowledge_syncs(body: bytes, kind: str) -> None:
    """With a CENTRAL_KEY: after a transactions batch, SYNC_ACKs for its cards (services/sync_acks.py).
    The batch is stored whatever happens here; a card not acknowledged now is at its next upload."""
    key = _central_key()
    if key is None or kind != "transactions":
        return
    from cardsvc.central.services.sync_acks import acknowledge_batch

    try:
        with get_db().sessions() as session:
            acknowledge_batch(session, key, body, now=clock(current_app))
    except Exception:  # the upload succeeded: never turn it into an error; logged for central staff
        current_app.logger.exception("sync acknowledgements after a transactions batch failed")


def _central_key() -> CentralKey | None:
    key: CentralKey | None = current_app.config.get("CENTRAL_KEY")
    return key


@api.get("/revocations")
def revocations() -> Response:
    """Revoked terminals, operators and cards; with a CENTRAL_KEY also the signed revocation list."""
    _authenticated(b"")
    now = clock(current_app)
    key = _central_key()
    with get_db().sessions() as session:
        lists = revocation_list(session)
        signed = publish_revocations(session, key, now) if key is not None else None
    extra = {} if signed is None else {
        "signed_list": base64.b64encode(signed.wire).decode("ascii"), "signed_version": signed.version,
    }  # fmt: skip
    return jsonify(issued_at=now, **lists, **extra)


@api.get("/packages")
def packages() -> Response:
    """The package catalogue: every version of every package; with a CENTRAL_KEY the signed catalogue."""
    _authenticated(b"")
    key = _central_key()
    with get_db().sessions() as session:
        listed = catalogue(session)
        signed = publish_catalogue(session, key, clock(current_app)) if key is not None else None
    extra = {} if signed is None else {
        "signed_catalogue": base64.b64encode(signed.wire).decode("ascii"),
        "catalogue_version": signed.version,
    }  # fmt: skip
    return jsonify(packages=listed, **extra)


@api.get("/authorisations")
def authorisations() -> Response:
    """Signed renewals, top-ups, split cards, replacements for this terminal's district and the cards it
    names (``?card=<16 hex>``, repeatable)."""
    terminal = _authenticated(b"")
    cards = request.args.getlist("card")
    bad = [c for c in cards if not _HEX_ID.fullmatch(c)]
    if bad:
        raise MalformedError("bad_card_id", f"card ids must be 16 lower-case hex digits: {bad[:3]}")
    with get_db().sessions() as session:
        found = authorisations_for(session, terminal.id, now=clock(current_app), card_ids=cards)
    return jsonify(terminal_id=terminal.id, authorisations=[a.to_json() for a in found])


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 description of this API (public)."""
    text = resources.files("cardsvc.central").joinpath("openapi.json").read_text(encoding="utf-8")
    return jsonify(json.loads(text))
