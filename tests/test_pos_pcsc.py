"""Acceptance through the real stack: pcscd + vpcd + pyscard for both cards (beneficiary on slot 0, the
facility operator card on slot 1) and the sensor simulator over a pty driven by pyfingerprint (the capture
driver): clerk sign-in, genuine member accepted, impostor refused, cloned / tampered / unactivated /
revoked / expired cards refused, an admission, and a card torn mid-debit recovered on reinsertion."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.pcsc import PcscConnection
from cardsvc.formats.transaction import RecordType
from hardware_sims.sensor.simulator import SensorSimulator
from point_of_service.catalogue import Catalogue, Package
from point_of_service.errors import SignInError, TransactionError, VerificationError
from point_of_service.identity import reference_id
from point_of_service.journal import Journal
from point_of_service.probe import CaptureFn, sensor_capture
from point_of_service.reasons import Reason
from point_of_service.services import hospital, paypoint
from point_of_service.services.signin import Clerk, sign_in
from point_of_service.services.transactions import recover_card
from point_of_service.services.verification import CardVisit, verify_card, verify_member
from tests.fixtures.beneficiary import CARD_ID, COVER, SCHEME_PENSION
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.pos import OPERATOR_CHR, OPERATOR_FINGER, OPERATOR_PIN, POS_CARD_NOW, PosWorld

NOW = POS_CARD_NOW


def placed(sim: SensorSimulator, seed: int, k: int) -> CaptureFn:
    """The finger ``seed`` (impression k) put on the simulated sensor, captured through pyfingerprint."""
    capture = sensor_capture(sim.port, timeout=5.0)

    def run() -> Any:
        sim.place(seed, k)
        try:
            return capture()
        finally:
            sim.lift()

    return run


class Pos:
    def __init__(self, world: PosWorld, tmp: Path, sensor: SensorSimulator) -> None:
        self.world = world
        self.sensor = sensor
        self.journal = Journal(tmp / "pos.sqlite")
        self.trust = world.trust(self.journal)
        self.identity = world.identity()
        self.rng = random.Random(11)
        pki = world.pki
        catalogue = Catalogue(
            4, pki.district.chr, NOW, NOW, (Package(301, "Normal delivery", 450_000, "obstetrics"),)
        )
        self.trust.install_catalogue(
            catalogue.sign(pki.district.signer, [pki.district.cert]), now=datetime.fromtimestamp(NOW, UTC)
        )
        self.clerk: Clerk | None = None

    def sign_in(self, reader: str, pin: str = OPERATOR_PIN, seed: int = OPERATOR_FINGER) -> Clerk:
        with PcscConnection(reader) as conn:
            self.clerk = sign_in(
                conn,
                pin=pin,
                capture=placed(self.sensor, seed, 1),
                anchor=self.identity.anchor,
                districts=self.trust.districts,
                now=NOW,
                journal=self.journal,
                revocations=self.trust.store,
                finger_attempts=1,
            )
        return self.clerk

    def verify(self, conn: Any, now: int = NOW) -> CardVisit:
        assert self.clerk is not None
        return verify_card(
            conn,
            identity=self.identity,
            trust=self.trust,
            clerk=self.clerk,
            now=now,
            journal=self.journal,
            rng=self.rng.randbytes,
        )

    def member(self, visit: CardVisit, member: int, finger: int, seed: int) -> bool:
        assert self.clerk is not None
        return verify_member(
            visit,
            member=member,
            finger=finger,
            capture=placed(self.sensor, seed, 2),
            clerk=self.clerk,
            now=NOW,
            journal=self.journal,
        ).matched

    def kw(self) -> dict[str, Any]:
        return {
            "journal": self.journal,
            "identity": self.identity,
            "clerk": self.clerk,
            "rng": self.rng.randbytes,
        }


@pytest.fixture
def pos(pos_world: PosWorld, tmp_path: Path, sensor_sim: SensorSimulator) -> Iterator[Pos]:
    p = Pos(pos_world, tmp_path, sensor_sim)
    yield p
    p.journal.close()


@pytest.fixture
def operator_reader(pos_world: PosWorld, tmp_path: Path, serve_card: Callable[..., ServedCard]) -> str:
    return serve_card(slot=1, card=pos_world.officer_card(tmp_path / "operator")).reader


def test_clerk_signs_in_then_genuine_member_admitted_impostor_refused(
    pos: Pos, pos_world: PosWorld, tmp_path: Path, operator_reader: str, serve_card: Callable[..., ServedCard]
) -> None:
    clerk = pos.sign_in(operator_reader)
    assert clerk.chr == OPERATOR_CHR and clerk.operator_id == reference_id(OPERATOR_CHR)
    served = serve_card(slot=0, card=pos_world.beneficiary_card(tmp_path / "ben"))
    with PcscConnection(served.reader, exclusive=True) as conn:
        visit = pos.verify(conn)
        assert visit.card_chr == CARD_ID
        assert not pos.member(visit, member=0, finger=2, seed=5), "another person's finger is refused"
        assert pos.member(visit, member=0, finger=2, seed=3)
        out = hospital.admit(visit, package_code=301, trust=pos.trust, now=NOW, **pos.kw())
    assert out.record.record_type is RecordType.BLOCK and out.record.balance_after == COVER - 450_000
    assert out.record.operator_id == clerk.operator_id and out.record.terminal_id == reference_id(
        pos.identity.chr
    )
    kinds = [(e.kind, e.outcome) for e in pos.journal.events()]
    assert kinds == [
        ("signin", "ok"),
        ("verify-card", "ok"),
        ("verify-member", "refused"),
        ("verify-member", "ok"),
        ("transaction", "ok"),
    ]


def test_sign_in_refusals(pos: Pos, operator_reader: str) -> None:
    with pytest.raises(SignInError) as pin:
        pos.sign_in(operator_reader, pin="000000")
    assert pin.value.reason is Reason.OPERATOR_WRONG_PIN
    with pytest.raises(SignInError) as finger:
        pos.sign_in(operator_reader, seed=3)
    assert finger.value.reason is Reason.OPERATOR_FINGER_MISMATCH
    assert [e.reason for e in pos.journal.events(kind="signin")] == [
        Reason.OPERATOR_WRONG_PIN.value,
        Reason.OPERATOR_FINGER_MISMATCH.value,
    ]


def _clone(world: PosWorld, genuine: Path, target: Path) -> Any:
    clone = world.ben.new_card(target, rng=random.Random(99))
    s = BeneficiarySession(InProcessConnection(clone))
    s.terminal_authenticate(world.ben.enrol.chain, world.ben.enrol.holder.signer, CARD_ID)
    s.generate_key()
    clone.power_off()
    for obj in genuine.glob("objects/*"):
        if not obj.name.startswith("key."):
            shutil.copy(obj, target / "objects" / obj.name)
    return clone


def _tampered(world: PosWorld, target: Path) -> Any:
    card = world.beneficiary_card(target)
    [path] = [p for p in (target / "objects").glob("bin.*") if b"Sunita Devi" in p.read_bytes()]
    path.write_bytes(path.read_bytes().replace(b"Sunita Devi", b"Sunita Rani"))
    return card


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("cloned", Reason.CARD_NOT_GENUINE),
        ("tampered", Reason.PROFILE_TAMPERED),
        ("unactivated", Reason.CARD_NOT_ACTIVATED),
        ("expired", Reason.POLICY_EXPIRED),
        ("revoked", Reason.CARD_REVOKED),
    ],
)
def test_refused_cards_through_pcsc(
    pos: Pos,
    pos_world: PosWorld,
    tmp_path: Path,
    serve_card: Callable[..., ServedCard],
    case: str,
    reason: Reason,
) -> None:
    pos.clerk = pos_world.clerk()
    now = NOW
    if case == "cloned":
        card = _clone(pos_world, pos_world.states["activated"], tmp_path / "clone")
    elif case == "tampered":
        card = _tampered(pos_world, tmp_path / "tampered")
    elif case == "unactivated":
        card = pos_world.beneficiary_card(tmp_path / "p", "personalised")
    else:
        card = pos_world.beneficiary_card(tmp_path / "c")
        if case == "expired":
            now = int(datetime(2027, 12, 1, tzinfo=UTC).timestamp())
        else:
            pos.trust.set_central_revocations(
                {"cards": [{"id": f"{10000000001:016x}", "revoked_at": NOW - 1}]}
            )
    served = serve_card(slot=0, card=card)
    with PcscConnection(served.reader, exclusive=True) as conn, pytest.raises(VerificationError) as info:
        pos.verify(conn, now=now)
    assert info.value.reason is reason
    assert info.value.message.next_step


def test_card_torn_mid_debit_over_pcsc_is_recovered(
    pos: Pos, pos_world: PosWorld, tmp_path: Path, serve_card: Callable[..., ServedCard]
) -> None:
    pos.clerk = pos_world.clerk()
    card = pos_world.beneficiary_card(tmp_path / "ben")
    served = serve_card(slot=0, card=card)
    conn = PcscConnection(served.reader, exclusive=True)
    try:
        visit = pos.verify(conn)
        assert pos.member(visit, member=0, finger=2, seed=3)
        card.faults.arm(after_writes=3)  # inside the DEBIT's journal commit: vpcd drops the card
        with pytest.raises(TransactionError) as info:
            paypoint.disburse(visit, scheme_id=SCHEME_PENSION, amount=10_000, now=NOW, **pos.kw())
        assert info.value.reason is Reason.CARD_REMOVED
        assert len(pos.journal.pending_intents()) == 1
        card.faults.disarm()
        served.insert()
        conn.reconnect(wait=10)
        visit = pos.verify(conn)
        recovery = recover_card(
            visit.session,
            pos.journal,
            card_id=visit.card_id,
            card_key=visit.card_key,
            terminal_id=reference_id(pos.identity.chr),
            now=NOW + 5,
        )
        counter = visit.session.status().counter
    finally:
        conn.close()
    assert counter in (0, 1)
    assert len(recovery.completed) == counter and len(recovery.abandoned) == 1 - counter
    assert not pos.journal.pending_intents()
    assert len(pos.journal.records(visit.card_id)) == counter
