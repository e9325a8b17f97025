"""A facility operator revoked at central is refused at clerk sign-in, through the real stack.

Central (the real Flask app, SQLite and PostgreSQL, signing with the district key) revokes the clerk by the
id the card records carry; its signed revocation list then names ``OP-<id>``. The POS syncs over the terminal
API, verifies and keeps that list, and the operator card (simulated, served through pcscd + vpcd and reached
with pyscard) is refused at sign-in with the reason ``operator-revoked``, also after a restart. A list not
signed by central's key, or an older one, is refused and the list held stays.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.transport import CardConnection
from cardsvc.central.app import create_app
from cardsvc.central.extensions import get_db
from cardsvc.central.services.publish import CentralKey, publish_revocations
from cardsvc.central.services.terminals import add_facility, register_terminal, revoke_operator
from cardsvc.central.testing import FixedClock
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationList,
    SubjectKind,
    build_revocation_list,
    operator_subject,
)
from cardsvc.pki.signer import SoftwareSigner, load_public_point
from point_of_service.errors import SignInError
from point_of_service.identity import reference_id
from point_of_service.journal import Journal
from point_of_service.reasons import Reason
from point_of_service.services.signin import Clerk, sign_in
from point_of_service.services.sync import SyncService
from point_of_service.trust import TrustState
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.pos import (
    OPERATOR_CHR,
    OPERATOR_FINGER,
    OPERATOR_PIN,
    POS_CARD_NOW,
    POS_FACILITY_ID,
    PosWorld,
    capture_of,
)

NOW = POS_CARD_NOW
DAY = 86_400
OPERATOR_ID = reference_id(OPERATOR_CHR)


class Transport:
    """The POS's HTTP exchange answered by the real central app's test client."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.tamper: Callable[[dict[str, Any]], None] | None = None

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        client = self.app.test_client()
        resp = (
            client.post(path, data=body, headers=headers)
            if method == "POST"
            else client.get(path, headers=headers)
        )
        payload = resp.get_json()
        if self.tamper is not None and path.endswith("/revocations"):
            self.tamper(payload)
        return resp.status_code, payload


class Field:
    """Central with its signing key, one POS terminal (journal, trust, sync) that central knows."""

    def __init__(self, world: PosWorld, db_url: str, tmp: Path) -> None:
        pki = world.pki
        self.world = world
        self.clock = FixedClock(float(NOW))
        self.key = CentralKey(pki.district.signer, pki.district.chr, (pki.district.cert,))
        self.app = create_app(
            {"DATABASE_URL": db_url, "CLOCK": self.clock, "TESTING": True, "CENTRAL_KEY": self.key}
        )
        self.identity = world.identity()
        with get_db(self.app).sessions() as session:
            add_facility(session, POS_FACILITY_ID, "Patna Hospital", pki.district.chr, 25.6, 85.1)
            session.flush()
            point = load_public_point(self.identity.certificate.public_point)
            register_terminal(session, self.identity.terminal_id, point, NOW - DAY, POS_FACILITY_ID)
            session.commit()
        self.journal = Journal(tmp / "pos.sqlite")
        self.trust = world.trust(self.journal)
        self.transport = Transport(self.app)
        self.sync = SyncService(self.journal, self.identity, self.trust, self.transport,
                                now=lambda: int(self.clock()))  # fmt: skip

    def revoke(self, operator_id: int, at: int) -> None:
        with get_db(self.app).sessions() as session:
            revoke_operator(session, operator_id, at)
            session.commit()

    def sign_in(self, connection: CardConnection, trust: TrustState | None = None) -> Clerk:
        trust = trust or self.trust
        return sign_in(
            connection, pin=OPERATOR_PIN, capture=capture_of(OPERATOR_FINGER, 2),
            anchor=self.world.pki.anchor, districts=trust.districts, now=NOW, journal=self.journal,
            revocations=trust.store, finger_attempts=2,
        )  # fmt: skip

    def close(self) -> None:
        self.journal.close()
        get_db(self.app).dispose()


@pytest.fixture
def field(pos_world: PosWorld, db_url: str, tmp_path: Path) -> Any:
    f = Field(pos_world, db_url, tmp_path)
    yield f
    f.close()


def test_central_lists_revoked_operators_by_record_id(field: Field) -> None:
    field.revoke(OPERATOR_ID, NOW - 3600)
    field.revoke(0x77, NOW - 7200)
    with get_db(field.app).sessions() as session:
        published = publish_revocations(session, field.key, NOW)
        again = publish_revocations(session, field.key, NOW + 60)
    rl = RevocationList.parse(published.wire)
    operators = {e.subject: e for e in rl.entries if e.kind is SubjectKind.OPERATOR}
    assert set(operators) == {operator_subject(OPERATOR_ID), "OP-0000000000000077"}
    assert operators[operator_subject(OPERATOR_ID)].revoked_at == datetime.fromtimestamp(NOW - 3600, UTC)
    assert again.version == published.version  # nothing changed: the same signed bytes


def test_operator_revoked_at_central_refused_at_sign_in_through_pcsc(
    field: Field, pos_world: PosWorld, tmp_path: Path, serve_card: Callable[..., ServedCard]
) -> None:
    served = serve_card(slot=1, card=pos_world.officer_card(tmp_path / "operator"))
    assert field.sync.sync().error is None  # central's list, still without this clerk
    assert field.trust.central_list_version() == NOW  # versions are the issue time (docs/central.md)
    with PcscConnection(served.reader, exclusive=True) as conn:
        assert field.sign_in(conn).chr == OPERATOR_CHR

    field.revoke(OPERATOR_ID, NOW - 600)  # staff strike the clerk off (dashboard or CLI)
    field.clock.advance(60)
    assert field.sync.sync().error is None
    assert field.trust.central_list_version() == NOW + 60
    with PcscConnection(served.reader, exclusive=True) as conn, pytest.raises(SignInError) as refused:
        field.sign_in(conn)
    assert refused.value.reason is Reason.OPERATOR_REVOKED
    assert OPERATOR_CHR in refused.value.detail and f"{OPERATOR_ID:016x}" in refused.value.detail
    assert f"{field.key.chr}'s list v{NOW + 60}" in refused.value.detail
    [event] = [e for e in field.journal.events(kind="signin") if e.outcome == "refused"]
    assert event.reason == Reason.OPERATOR_REVOKED.value

    restarted = pos_world.trust(field.journal)  # the terminal restarts, offline: from its journal
    with PcscConnection(served.reader, exclusive=True) as conn, pytest.raises(SignInError) as again:
        field.sign_in(conn, restarted)
    assert again.value.reason is Reason.OPERATOR_REVOKED


def test_revocation_after_the_sign_in_time_does_not_refuse(
    field: Field, pos_world: PosWorld, tmp_path: Path
) -> None:
    field.revoke(OPERATOR_ID, NOW + DAY)  # struck off from tomorrow
    assert field.sync.sync().error is None
    card = pos_world.officer_card(tmp_path / "operator")
    assert field.sign_in(InProcessConnection(card)).chr == OPERATOR_CHR


def test_forged_and_older_central_lists_refused_and_the_held_list_kept(
    field: Field, pos_world: PosWorld, tmp_path: Path
) -> None:
    field.revoke(OPERATOR_ID, NOW - 600)
    assert field.sync.sync().error is None
    held = field.trust.central_list_version()
    assert held == NOW

    at = datetime.fromtimestamp(NOW, UTC)
    impostor = SoftwareSigner.generate()  # someone between the POS and central, without the district key
    forged = build_revocation_list(
        impostor, issuer=field.key.chr, version=held + 1, issued_at=at,
        entries=[RevocationEntry("CARD-1", SubjectKind.CARD, at)],
    )  # fmt: skip

    def swap(payload: dict[str, Any]) -> None:
        payload["signed_list"] = base64.b64encode(forged.encode()).decode()

    field.transport.tamper = swap
    field.clock.advance(60)
    assert field.sync.sync().error is None  # the sync itself goes on; the list is refused
    assert field.trust.central_list_version() == held
    refusals = field.journal.events(kind="trust.central_list")
    assert refusals and refusals[-1].outcome == "refused" and "bad-signature" in str(refusals[-1].detail)

    older = build_revocation_list(
        pos_world.pki.district.signer, issuer=field.key.chr, version=held, issued_at=at, entries=[]
    )  # same version, other contents: a rollback that would un-revoke the clerk

    def roll_back(payload: dict[str, Any]) -> None:
        payload["signed_list"] = base64.b64encode(older.encode()).decode()

    field.transport.tamper = roll_back
    field.clock.advance(60)
    assert field.sync.sync().error is None
    assert "rollback" in str(field.journal.events(kind="trust.central_list")[-1].detail)
    card = pos_world.officer_card(tmp_path / "operator")
    with pytest.raises(SignInError) as refused:
        field.sign_in(InProcessConnection(card))
    assert refused.value.reason is Reason.OPERATOR_REVOKED
