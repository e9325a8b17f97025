"""Central's signed lists after its database is restored from an older backup, and terminals central knows
by a plain key only, through the real central app and the POS's own sync and trust code.

Central (the real Flask app on a SQLite file, signing with the district key) publishes its revocation list;
the file is copied (the backup), central publishes more, the copy is put back (the restore). The lists central
publishes after the restore still number above every list the POS took before it, so the POS takes them
(its rollback check stays strict: an old signed list replayed is still refused), and a card revoked after
the restore is refused at the POS through pcscd + vpcd. A terminal central knows only by its plain key is
named in the signed list too (``TRM-<id>``), so the POS stops serving once revoked even when someone strips
it from the unsigned register.
"""

from __future__ import annotations

import base64
import random
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.transport import CardConnection
from cardsvc.central.app import create_app
from cardsvc.central.extensions import get_db, make_engine
from cardsvc.central.migrate import upgrade
from cardsvc.central.services.pki_keys import register_certified_terminal
from cardsvc.central.services.publish import CentralKey, publish_revocations
from cardsvc.central.services.terminals import (
    add_facility,
    register_terminal,
    revocation_list,
    revoke_card,
    revoke_terminal,
)
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.profile import card_chr, card_number
from cardsvc.pki.errors import RollbackError
from cardsvc.pki.revocation import RevocationList, SubjectKind, terminal_subject
from cardsvc.pki.signer import load_public_point
from point_of_service.errors import VerificationError
from point_of_service.journal import Journal
from point_of_service.reasons import Reason
from point_of_service.services.sync import SyncService
from point_of_service.services.verification import check_facility, verify_card
from point_of_service.trust import TrustState
from tests.fixtures.beneficiary import CARD_ID
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.pos import POS_CARD_NOW, POS_FACILITY_ID, PosWorld

NOW = POS_CARD_NOW
DAY = 86_400
STATION_ID = 0x5E_A7  # the enrolment station that uploads the camp: central knows it by a plain key
OTHER_CARDS = (0xAB01, 0xAB02)


class Transport:
    """The POS's HTTP exchange answered by the real central app; ``strip`` empties the unsigned register
    of ``GET /revocations`` (someone on the path), leaving the signed list as the only source."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.strip = False
        self.replace_list: bytes | None = None

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        client = self.app.test_client()
        resp = (
            client.post(path, data=body, headers=headers)
            if method == "POST"
            else client.get(path, headers=headers)
        )
        payload = resp.get_json()
        if path.endswith("/revocations") and resp.status_code == 200:
            if self.strip:
                payload.update(terminals=[], operators=[], cards=[])
            if self.replace_list is not None:
                payload["signed_list"] = base64.b64encode(self.replace_list).decode("ascii")
        return resp.status_code, payload


class Central:
    """Central on a SQLite file that can be backed up and restored by copying the file."""

    def __init__(self, world: PosWorld, tmp: Path, clock: FixedClock) -> None:
        pki = world.pki
        self.world, self.clock, self.tmp = world, clock, tmp
        self.file = tmp / "central.sqlite"
        self.url = f"sqlite:///{self.file}"
        engine = make_engine(self.url)
        upgrade(engine)
        engine.dispose()
        self.key = CentralKey(pki.district.signer, pki.district.chr, (pki.district.cert,))
        self.app = create_app(
            {"DATABASE_URL": self.url, "CLOCK": clock, "TESTING": True, "CENTRAL_KEY": self.key}
        )
        self.station = SimTerminal.new(STATION_ID, random.Random(5))

    @property
    def now(self) -> int:
        return int(self.clock())

    def session(self) -> Any:
        return get_db(self.app).sessions()

    def backup(self, name: str) -> Path:
        """A copy of the database file, taken with central stopped (its connections closed)."""
        get_db(self.app).dispose()
        assert not Path(f"{self.file}-wal").exists() or Path(f"{self.file}-wal").stat().st_size == 0
        target = self.tmp / name
        shutil.copyfile(self.file, target)
        return target

    def restore(self, backup: Path) -> None:
        get_db(self.app).dispose()
        for extra in (Path(f"{self.file}-wal"), Path(f"{self.file}-shm")):
            extra.unlink(missing_ok=True)
        shutil.copyfile(backup, self.file)

    def upload_camp(self, card_ids: list[int]) -> None:
        cards = [SimCard.new(c, random.Random(c)) for c in card_ids]
        items = [
            c.camp_card(self.world.pki.district.chr, NOW - 100 * DAY, NOW + 200 * DAY, 0xF0) for c in cards
        ]
        body = self.station.batch(BatchKind.CAMP, items, self.now)
        headers = self.station.headers("POST", "/api/v1/batches", body, self.now)
        assert self.app.test_client().post("/api/v1/batches", data=body, headers=headers).status_code == 201

    def revoke_cards(self, *card_ids: int) -> None:
        with self.session() as session:
            for card_id in card_ids:
                revoke_card(session, card_id, self.now - 60)
            session.commit()


class Pos:
    """One POS terminal (journal, trust, sync) that central knows by its plain key."""

    def __init__(self, world: PosWorld, central: Central, tmp: Path) -> None:
        self.world = world
        self.identity = world.identity()
        self.journal = Journal(tmp / "pos.sqlite")
        self.trust: TrustState = world.trust(self.journal)
        self.transport = Transport(central.app)
        self.sync = SyncService(self.journal, self.identity, self.trust, self.transport,
                                now=lambda: int(central.clock()))  # fmt: skip

    def synced(self) -> int:
        """Sync; the version of central's signed list held afterwards."""
        report = self.sync.sync()
        assert report.error is None, report.error
        return self.trust.central_list_version()

    def refusals(self) -> list[str]:
        return [
            str(e.detail) for e in self.journal.events(kind="trust.central_list") if e.outcome == "refused"
        ]

    def card_revoked(self, card_id: int) -> bool:
        path = (self.world.pki.anchor.chr, self.world.pki.district.chr)
        return self.trust.revocation_of(card_chr(card_id), path) is not None

    def verify(self, connection: CardConnection, now: int) -> Reason | None:
        try:
            verify_card(
                connection, identity=self.identity, trust=self.trust, clerk=self.world.clerk(), now=now,
                journal=self.journal, rng=random.Random(3).randbytes,
            )  # fmt: skip
        except VerificationError as exc:
            return exc.reason
        return None


@pytest.fixture
def central(pos_world: PosWorld, tmp_path: Path) -> Iterator[Central]:
    c = Central(pos_world, tmp_path, FixedClock(float(NOW)))
    yield c
    get_db(c.app).dispose()


def _pos(world: PosWorld, central: Central, tmp: Path) -> Pos:
    with central.session() as session:
        add_facility(session, POS_FACILITY_ID, "Patna Hospital", world.pki.district.chr, 25.6, 85.1)
        session.flush()
        identity = world.identity()
        point = load_public_point(identity.certificate.public_point)
        register_terminal(session, identity.terminal_id, point, NOW - DAY, POS_FACILITY_ID)
        register_terminal(session, STATION_ID, central.station.key.public_key(), NOW - DAY)
        session.commit()
    return Pos(world, central, tmp)


@pytest.fixture
def pos(pos_world: PosWorld, central: Central, tmp_path: Path) -> Iterator[Pos]:
    p = _pos(pos_world, central, tmp_path)
    yield p
    p.journal.close()


def test_lists_published_after_a_restore_are_taken_by_a_terminal_that_held_later_ones(
    central: Central, pos: Pos, pos_world: PosWorld, tmp_path: Path,
    serve_card: Callable[..., ServedCard],
) -> None:  # fmt: skip
    genuine = card_number(CARD_ID)  # the activated card of the POS tests
    a, b = OTHER_CARDS
    central.upload_camp([genuine, a, b])
    central.revoke_cards(a)
    before_backup = pos.synced()
    replayable = pos.trust.journal.get("trust.central_list")  # the signed list the POS took (base64)
    assert pos.card_revoked(a)
    backup = central.backup("nightly.sqlite")

    central.clock.advance(3600)
    central.revoke_cards(b)
    newest = pos.synced()
    assert newest > before_backup and pos.card_revoked(b)

    central.restore(backup)  # the revocation of b and the list naming it are gone from central
    central.clock.advance(3600)
    assert pos.synced() == newest  # central serves its older list again: refused, the newer one stays
    assert "rollback" in pos.refusals()[-1] and pos.card_revoked(b)

    central.clock.advance(3600)
    central.revoke_cards(b, genuine)  # staff enter again what the restore lost, and revoke one more card
    refused_so_far = len(pos.refusals())
    pos.transport.strip = True  # from here only the signed list tells the POS what is revoked
    after_restore = pos.synced()
    assert after_restore > newest, "the list published after the restore is taken"
    assert len(pos.refusals()) == refused_so_far
    assert all(pos.card_revoked(c) for c in (a, b, genuine))
    with central.session() as session:
        assert publish_revocations(session, central.key, central.now).version == after_restore

    served = serve_card(slot=1, card=pos_world.beneficiary_card(tmp_path / "card"))
    with PcscConnection(served.reader, exclusive=True) as connection:
        assert pos.verify(connection, central.now) is Reason.CARD_REVOKED

    # an old signed list replayed (it does not name the genuine card): a rollback, also after a restart
    old = base64.b64decode(replayable)
    with pytest.raises(RollbackError):
        pos.trust.install_central_list(old)
    pos.transport.replace_list = old
    central.clock.advance(60)
    assert pos.synced() == after_restore
    assert "rollback" in pos.refusals()[-1]
    restarted = pos_world.trust(pos.journal)
    assert restarted.central_list_version() == after_restore
    with pytest.raises(RollbackError):
        restarted.install_central_list(old)
    card = pos_world.beneficiary_card(tmp_path / "again")
    pos.trust = restarted
    assert pos.verify(InProcessConnection(card), central.now) is Reason.CARD_REVOKED


def test_every_revoked_terminal_of_the_register_is_in_the_signed_list(
    central: Central, pos: Pos, pos_world: PosWorld
) -> None:
    pki = pos_world.pki
    certified = 0x5E_C7
    with central.session() as session:
        register_certified_terminal(
            session, certified, pki.chain_of(pki.pos_terminal), pki.anchor, central.now
        )
        revoke_terminal(session, certified, central.now - 120)
        revoke_terminal(session, STATION_ID, central.now - 60)
        session.commit()
        register = revocation_list(session)
        published = publish_revocations(session, central.key, central.now)
    rl = RevocationList.parse(published.wire)
    terminals = {e.subject: e for e in rl.entries if e.kind is SubjectKind.TERMINAL}
    assert set(terminals) == {pki.pos_terminal.chr, terminal_subject(STATION_ID)}
    assert [t["id"] for t in register["terminals"]] == [f"{STATION_ID:016x}", f"{certified:016x}"]
    station = terminals[terminal_subject(STATION_ID)]
    assert station.revoked_at == datetime.fromtimestamp(central.now - 60, UTC)


def test_terminal_known_by_a_plain_key_stops_serving_when_revoked_even_with_the_register_stripped(
    central: Central, pos: Pos, pos_world: PosWorld
) -> None:
    clerk = pos_world.clerk()
    assert pos.synced() > 0
    check_facility(pos.identity, pos.trust, clerk, central.now)  # serving

    with central.session() as session:  # decommissioned from the end of the day: it may still sync today
        revoke_terminal(session, pos.identity.terminal_id, central.now + 3600)
        session.commit()
    pos.transport.strip = True  # the unsigned register no longer names it
    central.clock.advance(60)
    pos.synced()
    assert pos.trust.central_revoked_at("terminals", f"{pos.identity.terminal_id:016x}") == NOW + 3600
    check_facility(pos.identity, pos.trust, clerk, central.now)  # not yet
    with pytest.raises(VerificationError) as refused:
        check_facility(pos.identity, pos.trust, clerk, NOW + 3600)
    assert refused.value.reason is Reason.FACILITY_REVOKED
    restarted = pos_world.trust(pos.journal)  # offline, from its journal
    with pytest.raises(VerificationError):
        check_facility(pos.identity, restarted, clerk, NOW + 3600)
