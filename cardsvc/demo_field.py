"""The demo's field stage: a hospital and a paypoint terminal at work, and the attacks a district sees.

Every step is a point_of_service service call through pcscd + vpcd (beneficiary cards in slot 0, the
clerk's officer card in slot 1) with fingers captured from the sensor simulator. An attack counts as
refused only when the service refused it, and under the reason the service gave.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.pcscd import PcscdHandle
from cardsvc.demo_world import (
    CLERK_PIN,
    DISTRICT,
    DISTRICT_SECRET,
    HOSPITAL_CLERK,
    HOSPITAL_CLERK_FINGER,
    PACKAGES,
    PAYPOINT_CLERK,
    PAYPOINT_CLERK_FINGER,
    POS_PASSPHRASE,
    SCHEME_PENSION,
    STATION_PASSPHRASE,
    STRUCK_OFF_CLERK,
    STRUCK_OFF_FINGER,
    Slot,
    utc_now,
)

PENSION_PAISE = 100_000  # Rs 1,000


class FieldPilot(Protocol):
    """What the field stage needs from the pilot (cardsvc.demo.Pilot)."""

    root: Path
    pcscd: PcscdHandle
    km: Any
    anchor: Any
    clerk_cards: dict[str, Any]
    cards: dict[str, Any]
    refusals: Counter[str]
    attempts: Counter[str]
    transactions: Counter[str]

    @property
    def echo(self) -> Callable[[str], None]: ...


class TerminalCrash(Exception):
    """The POS process dies after the card answered and before the journal wrote the record."""


def now() -> int:
    return int(time.time())


@dataclass
class Terminal:
    """The POS terminal: identity, journal and trust, all on disk (so it can be restarted after a crash)."""

    home: Path
    bundle_dir: Path
    identity: Any = None
    journal: Any = None
    trust: Any = None

    def start(self) -> Terminal:
        from cardsvc.pki.bundle import TrustBundle
        from point_of_service.identity import load
        from point_of_service.journal import Journal
        from point_of_service.trust import TrustState

        self.identity = load(self.home, POS_PASSPHRASE)
        self.journal = Journal(self.home / "journal.sqlite")
        self.trust = TrustState.load(self.journal, self.identity.anchor)
        self.trust.apply_bundle(TrustBundle.read(self.bundle_dir), now=utc_now())
        return self

    def stop(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    @property
    def reference(self) -> int:
        from point_of_service.identity import reference_id

        return reference_id(self.identity.chr)


@dataclass
class Field:
    """One POS terminal, the two reader slots and the sensor; a method per clerk action or attack."""

    p: FieldPilot
    sim: Any
    term: Terminal
    card_slot: Slot
    clerk_slot: Slot
    clerk: Any = None
    counters: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "torn": 0, "crash": 0})

    # -- clerk actions ---------------------------------------------------------------------------------
    def placed(self, seed: int, k: int) -> Callable[[], Any]:
        """Finger ``seed`` (impression k) on the simulated sensor, captured through pyfingerprint."""
        from point_of_service.probe import sensor_capture

        capture = sensor_capture(self.sim.port, timeout=10.0)

        def run() -> Any:
            self.sim.place(seed, k)
            try:
                return capture()
            finally:
                self.sim.lift()

        return run

    def sign_in(self, chr_: str, seed: int) -> Any:
        from point_of_service.services.signin import sign_in

        self.clerk_slot.serve(self.p.clerk_cards[chr_])
        with self.clerk_slot.connect(exclusive=False) as conn:
            self.clerk = sign_in(
                conn,
                pin=CLERK_PIN,
                capture=self.placed(seed, 1),
                anchor=self.term.identity.anchor,
                districts=self.term.trust.districts,
                now=now(),
                journal=self.term.journal,
                revocations=self.term.trust.store,
                finger_attempts=1,
            )
        return self.clerk

    def verify(self, conn: Any) -> Any:
        from point_of_service.services.verification import verify_card

        return verify_card(
            conn,
            identity=self.term.identity,
            trust=self.term.trust,
            clerk=self.clerk,
            now=now(),
            journal=self.term.journal,
        )

    def member(self, visit: Any, seed_of: Callable[[int], int]) -> bool:
        """The head's first enrolled finger, presented live (``seed_of(finger)`` is whose finger it is)."""
        from point_of_service.services.verification import enrolled_fingers, verify_member

        finger = min(enrolled_fingers(visit, 0))
        return bool(
            verify_member(
                visit,
                member=0,
                finger=finger,
                capture=self.placed(seed_of(finger), 2),
                clerk=self.clerk,
                now=now(),
                journal=self.term.journal,
            ).matched
        )

    def genuine(self, visit: Any, hid: str) -> None:
        from enrolment_station.fingers import finger_seed

        if not self.member(visit, lambda f: finger_seed(hid, 1, f)):
            raise RuntimeError(f"{hid}: the genuine head's finger did not match")
        self.counters["accepted"] += 1

    def refused(self, kind: str, reason: str) -> None:
        self.p.refusals[f"{kind}:{reason}"] += 1
        self.p.echo(f"    {kind}: refused ({reason})")

    def recover(self, visit: Any) -> Any:
        from point_of_service.services.transactions import recover_card

        return recover_card(
            visit.session,
            self.term.journal,
            card_id=visit.card_id,
            card_key=visit.card_key,
            terminal_id=self.term.reference,
            now=now(),
        )

    def disburse(self, visit: Any, **kwargs: Any) -> Any:
        from point_of_service.services import paypoint

        return paypoint.disburse(
            visit,
            scheme_id=SCHEME_PENSION,
            amount=PENSION_PAISE,
            journal=self.term.journal,
            identity=self.term.identity,
            clerk=self.clerk,
            now=now(),
            **kwargs,
        )

    # -- the day at the hospital -----------------------------------------------------------------------
    def hospital_visit(self, n: int, hid: str, impostor_of: str | None) -> str:
        from enrolment_station.fingers import finger_seed
        from point_of_service.services import hospital

        self.card_slot.serve(self.p.cards[hid])
        with self.card_slot.connect() as conn:
            visit = self.verify(conn)
            if impostor_of is not None:  # someone else's finger on this household's card
                self.p.attempts["impostor"] += 1
                if self.member(visit, lambda f: finger_seed(impostor_of, 1, f)):
                    self.p.echo("    impostor ACCEPTED")
                else:
                    self.refused("impostor", str(self.term.journal.events(kind="verify-member")[-1].reason))
            self.genuine(visit, hid)
            code = PACKAGES[n % len(PACKAGES)][0]
            kw = {"journal": self.term.journal, "identity": self.term.identity, "clerk": self.clerk}
            admitted = hospital.admit(visit, package_code=code, trust=self.term.trust, now=now(), **kw)
            hospital.discharge(visit, admission=admitted.record.counter, now=now(), **kw)
        self.p.transactions["admissions"] += 1
        self.p.transactions["discharges"] += 1
        return f"verified, admitted (package {code}), discharged"

    # -- attacks on the card ---------------------------------------------------------------------------
    def _card_like(self, genuine: str, state: Path) -> Any:
        from hardware_sims.card.apps.beneficiary import BeneficiaryApplication
        from hardware_sims.card.cardos import SimulatedCard

        app = self.p.cards[genuine].applications[0]
        return SimulatedCard(
            state, applications=[BeneficiaryApplication(card_id=app.card_id, anchor=self.p.anchor)]
        )

    def _present_forgery(self, kind: str, card: Any) -> None:
        from point_of_service.errors import VerificationError

        self.p.attempts[kind] += 1
        self.card_slot.serve(card)
        with self.card_slot.connect() as conn:
            try:
                self.verify(conn)
                self.p.echo(f"    {kind} ACCEPTED")
            except VerificationError as exc:
                self.refused(kind, exc.reason.value)

    def clone_attack(self, victim: str) -> None:
        """Every file of a genuine card copied onto another chip; its private key is its own (the genuine
        one never leaves the genuine chip)."""
        from cardsvc.beneficiary.session import BeneficiarySession
        from cardsvc.card.inprocess import InProcessConnection
        from enrolment_station.keys import StationIdentity

        state = self.p.root / "cards" / "clone"
        state.mkdir()
        blank = self._card_like(victim, state)
        station = StationIdentity.load(self.p.root / "station", STATION_PASSPHRASE, now=utc_now())
        session = BeneficiarySession(InProcessConnection(blank))
        session.terminal_authenticate(station.chain, station.terminal, blank.applications[0].card_id)
        session.generate_key()
        blank.power_off()
        for obj in (self.p.root / "cards" / f"ben-{victim}" / "objects").glob("*"):
            if not obj.name.startswith("key."):
                shutil.copy(obj, state / "objects" / obj.name)
        self._present_forgery("clone", self._card_like(victim, state))

    def tamper_attack(self, victim: str) -> None:
        """The household profile edited in the chip's memory (a member's name changed)."""
        state = self.p.root / "cards" / "tampered"
        shutil.copytree(self.p.root / "cards" / f"ben-{victim}", state)
        for path in (state / "objects").glob("bin.*"):
            raw = path.read_bytes()
            if b"204101" in raw and b"Yadav" in raw:
                path.write_bytes(raw.replace(b"Yadav", b"Yadov", 1))
        self._present_forgery("tampered", self._card_like(victim, state))

    # -- the paypoint ----------------------------------------------------------------------------------
    def paypoint_visit(self, hid: str, *, tear: bool, crash: bool) -> str:
        card = self.p.cards[hid]
        self.card_slot.serve(card)
        conn = PcscConnection(self.card_slot.reader, exclusive=True)
        note = ""
        try:
            visit = self.verify(conn)
            self.genuine(visit, hid)
            if tear:
                visit, note = self._torn_debit(card, conn, visit, hid)
            if crash:
                conn, extra = self._crashed_debit(conn, visit)
                note += extra
            else:
                self.disburse(visit)
            self.p.transactions["disbursements"] += 1
        finally:
            conn.close()
        return f"{note}Rs {PENSION_PAISE // 100:,} pension paid"

    def _torn_debit(self, card: Any, conn: PcscConnection, visit: Any, hid: str) -> tuple[Any, str]:
        """The card is pulled inside the DEBIT's journal commit; reinserted, the intent is resolved."""
        from point_of_service.errors import TransactionError

        self.p.attempts["torn"] += 1
        card.faults.arm(after_writes=3)
        note = "card not pulled (the fault did not fire); "
        try:
            self.disburse(visit)
        except TransactionError as exc:
            note = f"card pulled mid-debit ({exc.reason.value}); "
        card.faults.disarm()
        self.card_slot.reinsert()
        conn.reconnect(wait=10)
        visit = self.verify(conn)
        rec = self.recover(visit)
        if not self.term.journal.pending_intents():
            self.counters["torn"] += 1
        self.genuine(visit, hid)
        return visit, note + f"recovered ({len(rec.completed)} completed, {len(rec.abandoned)} abandoned); "

    def _crashed_debit(self, conn: PcscConnection, visit: Any) -> tuple[PcscConnection, str]:
        """The terminal dies after the card debited, before its journal write; restarted from disk, the
        card's own log completes the record."""
        self.p.attempts["crash"] += 1

        def crash(record: Any) -> None:
            raise TerminalCrash(f"terminal died after card counter {record.counter}")

        with contextlib.suppress(TerminalCrash):
            self.disburse(visit, after_card=crash)
        conn.close()
        self.term.stop()
        self.term.start()
        self.sign_in(PAYPOINT_CLERK, PAYPOINT_CLERK_FINGER)
        conn = PcscConnection(self.card_slot.reader, exclusive=True)
        rec = self.recover(self.verify(conn))
        if rec.completed and not self.term.journal.pending_intents():
            self.counters["crash"] += 1
        return conn, f"terminal crashed, restarted, card record recovered ({len(rec.completed)}); "


def _step(echo: Callable[[str], None], text: str) -> None:
    import click

    echo(click.style("==> ", fg="cyan") + text)


def install_catalogue(p: FieldPilot, term: Terminal) -> None:
    """The district's signed package catalogue (normally downloaded at sync; installed here at set-up)."""
    from point_of_service.catalogue import Catalogue, Package

    signer = p.km.load_signer(DISTRICT, DISTRICT_SECRET)
    issued = now() - 60
    catalogue = Catalogue(1, DISTRICT, issued, issued, tuple(Package(*pk) for pk in PACKAGES))
    term.trust.install_catalogue(catalogue.sign(signer, [p.km.store.certificate(DISTRICT)]), now=utc_now())


def run_field(p: FieldPilot, sensor: Any) -> tuple[Terminal, dict[str, int]]:
    """Hospital then paypoint, with every attack; returns the terminal (for the sync) and the counters."""
    from point_of_service.errors import SignInError

    echo = p.echo
    term = Terminal(p.root / "pos", p.root / "bundle").start()
    install_catalogue(p, term)
    ids = sorted(p.cards)
    hospital_ids, paypoint_ids = ids[0::2], ids[1::2]
    f = Field(p, sensor, term, Slot(p.pcscd, 0), Slot(p.pcscd, 1))
    try:
        _step(echo, "attack: the operator of a struck-off (revoked) facility signs in")
        p.attempts["revoked"] += 1
        try:
            f.sign_in(STRUCK_OFF_CLERK, STRUCK_OFF_FINGER)
            echo("    revoked operator ACCEPTED")
        except SignInError as exc:
            f.refused("revoked", exc.reason.value)

        _step(echo, f"hospital: clerk {HOSPITAL_CLERK} signs in (card, PIN, finger)")
        f.sign_in(HOSPITAL_CLERK, HOSPITAL_CLERK_FINGER)
        for n, hid in enumerate(hospital_ids, start=1):
            done = f.hospital_visit(n, hid, impostor_of=ids[-1] if n == 1 else None)
            echo(f"    [{n}/{len(hospital_ids)}] {hid}: {done}")

        _step(echo, "attack: a cloned card (every file copied, the chip's private key cannot be)")
        f.clone_attack(ids[0])
        _step(echo, "attack: a tampered card (the household profile edited in the chip's memory)")
        f.tamper_attack(ids[1])

        _step(echo, f"paypoint: clerk {PAYPOINT_CLERK} signs in; pensions paid by genuine members")
        f.sign_in(PAYPOINT_CLERK, PAYPOINT_CLERK_FINGER)
        crash_at = min(2, len(paypoint_ids))
        for n, hid in enumerate(paypoint_ids, start=1):
            done = f.paypoint_visit(hid, tear=n == 1, crash=n == crash_at)
            echo(f"    [{n}/{len(paypoint_ids)}] {hid}: {done}")
    finally:
        f.card_slot.close()
        f.clerk_slot.close()
    return term, f.counters
