"""Central ingest and reconciliation with records made by the REAL beneficiary card application.

The records come from hardware_sims' beneficiary application (key generated on the card, FKO-activated,
DEBIT through ``BeneficiarySession``), in-process for speed and once through pcscd + vpcd + pyscard. They are
uploaded through the API and checked on SQLite and PostgreSQL: ingest, then the flags a clone, a replay, a
gap, a revoked operator or terminal, use outside the policy period, impossible travel and records before
the camp raise; settlement of a real stay; card chains on items; the real officer card's signed ledger.
(An honest card cannot break its own balance or chain: those flags are tested with forged records in
test_central_reconcile.py.)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.pcsc import PcscConnection
from cardsvc.central.errors import UnprocessableError
from cardsvc.central.extensions import get_db
from cardsvc.central.models import FkoLedgerRow, FlagRow, TransactionRow
from cardsvc.central.services.ingest import ingest_batch
from cardsvc.central.services.pki_keys import CardCertifier
from cardsvc.central.services.reconcile import FlagKind, ReconcilePolicy, reconcile
from cardsvc.central.services.settlement import run_settlement
from cardsvc.central.services.terminals import (
    DbTerminalDirectory,
    add_facility,
    public_key_bytes,
    register_terminal,
    revoke_operator,
    revoke_terminal,
)
from cardsvc.central.testing import FixedClock, SimTerminal, p256_key
from cardsvc.formats.batch import (
    BatchKind,
    CampCard,
    FkoLedgerEntry,
    Gender,
    Item,
    Member,
    SchemeCover,
    SignedLedger,
    TransactionItem,
)
from cardsvc.formats.profile import card_number, reference_id
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.officer import OFFICER_CLA, LedgerPage, OfficerIns
from tests.fixtures.beneficiary import (
    CARD_ID,
    CARD_NOW,
    COVER,
    FKO_CHR,
    POLICY_END,
    POLICY_START,
    SCHEME_HEALTH,
    SCHEME_PENSION,
    BeneficiaryCard,
    household_profile,
)

DAY = 86_400
T0 = int(CARD_NOW.timestamp())
HOSPITAL = 6
OPERATOR = 0x0E
CARD_HEX = f"{card_number(CARD_ID):016x}"


def _unix(d: Any, end: bool = False) -> int:
    return int(datetime.combine(d, time(23, 59, 59) if end else time(0, 0), tzinfo=UTC).timestamp())


@dataclass
class Central:
    app: Flask
    clock: FixedClock
    uploader: SimTerminal

    @property
    def now(self) -> int:
        return int(self.clock())

    def post(self, kind: BatchKind, items: list[Item]) -> Any:
        body = self.uploader.batch(kind, items, self.now)
        headers = self.uploader.headers("POST", "/api/v1/batches", body, self.now)
        return self.app.test_client().post("/api/v1/batches", data=body, headers=headers)

    def upload(self, kind: BatchKind, items: list[Item]) -> dict[str, Any]:
        response = self.post(kind, items)
        assert response.status_code in (200, 201), response.get_json()
        receipt: dict[str, Any] = response.get_json()["receipt"]
        return receipt

    def register_camp(self, card_key: bytes, schemes: tuple[SchemeCover, ...] = ()) -> None:
        profile = household_profile()
        camp = CampCard(
            card_id=card_number(CARD_ID), household_id=profile.household_id, district=profile.district,
            scheme_id=SCHEME_HEALTH, policy_start=_unix(POLICY_START), policy_end=_unix(POLICY_END, end=True),
            cover_paise=COVER, card_key=card_key, fko_id=reference_id(FKO_CHR),
            members=tuple(Member(Gender(chr(m.gender)), m.birth_year) for m in profile.members),
            schemes=schemes,
        )  # fmt: skip
        self.upload(BatchKind.CAMP, [camp])

    def reconcile_flags(self) -> dict[str, list[FlagRow]]:
        with get_db(self.app).sessions() as session:
            reconcile(session, self.now)
            out: dict[str, list[FlagRow]] = {}
            for flag in session.execute(select(FlagRow).order_by(FlagRow.id)).scalars():
                out.setdefault(flag.kind, []).append(flag)
            return out

    def stored(self) -> int:
        with get_db(self.app).sessions() as session:
            return session.execute(select(func.count()).select_from(TransactionRow)).scalar_one()


@pytest.fixture
def central(central_app: Flask, clock: FixedClock) -> Central:
    clock.now = float(T0 + 10 * DAY)  # central hears of the records ten days after the card made them
    uploader = SimTerminal.new(0xD157_0001, random.Random(8))
    with get_db(central_app).sessions() as session:
        add_facility(session, HOSPITAL, "District Hospital", "INDKMA-PATNA1", 25.6, 85.1)
        session.flush()
        register_terminal(session, uploader.terminal_id, uploader.key.public_key(), T0 - 400 * DAY)
        session.commit()
    return Central(central_app, clock, uploader)


class Till:
    """A POS terminal at the hospital talking to one simulated card (in-process)."""

    def __init__(self, card: BeneficiaryCard) -> None:
        self.card = card
        self.session = card.pos_session()
        assert self.session.card_certificate is not None
        self.key = self.session.card_certificate.public_point
        self.nonces = random.Random(id(card) & 0xFFFF)

    def debit(self, kind: RecordType, amount: int, at: int, **kw: Any) -> TransactionRecord:
        scheme, operator = kw.pop("scheme", SCHEME_HEALTH), kw.pop("operator", OPERATOR)
        return self.session.debit(
            kind, scheme_id=scheme, amount=amount, time=at, operator_id=operator, facility_id=HOSPITAL,
            rng=self.nonces.randbytes, **kw,
        )  # fmt: skip

    def items(self, records: list[TransactionRecord]) -> list[Item]:
        return [TransactionItem(r.encode(), self.key) for r in records]


@pytest.fixture
def till(make_beneficiary_card: Callable[..., BeneficiaryCard]) -> Till:
    return Till(make_beneficiary_card("activated"))


def test_honest_card_stay_ingested_reconciled_and_settled(central: Central, till: Till) -> None:
    central.register_camp(till.key)
    block = till.debit(RecordType.BLOCK, 150_000, T0, reference=301, member_index=2)
    settle = till.debit(RecordType.SETTLE, 120_000, T0 + DAY, reference=block.counter, member_index=2)
    pol = till.debit(RecordType.PROOF_OF_LIFE, 0, T0 + 2 * DAY)
    receipt = central.upload(BatchKind.TRANSACTIONS, till.items([block, settle, pol]))
    assert receipt["new_items"] == 3 and central.stored() == 3
    assert central.reconcile_flags() == {}
    with get_db(central.app).sessions() as session:
        settlement, created = run_settlement(session, HOSPITAL, T0 - DAY, T0 + 5 * DAY, now=central.now)
    assert created and settlement.payable_paise == 120_000 and settlement.held == []
    assert settlement.claims[0].package == 301


def test_clone_same_id_and_counter_with_other_content_flagged(
    central: Central, make_beneficiary_card: Callable[..., BeneficiaryCard]
) -> None:
    genuine, clone = Till(make_beneficiary_card("activated")), Till(make_beneficiary_card("activated"))
    assert genuine.key == clone.key  # a copy of the chip: same card id, same key, same state
    central.register_camp(genuine.key)
    a = genuine.debit(RecordType.CASH, 10_000, T0)
    b = clone.debit(RecordType.CASH, 25_000, T0 + 3600)
    assert (a.card_id, a.counter) == (b.card_id, b.counter) and a.content_hash() != b.content_hash()
    central.upload(BatchKind.TRANSACTIONS, genuine.items([a]) + clone.items([b]))
    flags = central.reconcile_flags()
    [dup] = flags[FlagKind.DUPLICATE_COUNTER]
    assert dup.card_id == CARD_HEX and dup.details["counter"] == 1 and dup.details["versions"] == 2
    assert sorted(dup.details["content_hashes"]) == sorted([a.content_hash().hex(), b.content_hash().hex()])


def test_replayed_record_held_once_and_altered_replay_refused(central: Central, till: Till) -> None:
    central.register_camp(till.key)
    nonce = bytes(16)
    first = till.debit(RecordType.CASH, 30_000, T0, nonce=nonce)
    again = till.debit(RecordType.CASH, 30_000, T0, nonce=nonce)  # a terminal retrying after a crash
    assert again == first  # the card returns the same record, it does not debit twice
    assert central.upload(BatchKind.TRANSACTIONS, till.items([first]))["new_items"] == 1
    second = central.upload(BatchKind.TRANSACTIONS, till.items([again]) + till.items([first]))
    assert second["new_items"] == 0 and central.stored() == 1
    raw = bytearray(first.encode())
    raw[18] ^= 0x01  # the amount's low byte: a replay with a changed amount
    response = central.post(BatchKind.TRANSACTIONS, [TransactionItem(bytes(raw), till.key)])
    assert response.status_code == 422 and response.get_json()["error"] == "bad_record_signature"
    assert central.reconcile_flags() == {}


def test_gap_flagged_until_the_withheld_record_arrives(central: Central, till: Till) -> None:
    central.register_camp(till.key)
    records = [till.debit(RecordType.CASH, 1_000 * (i + 1), T0 + i * DAY) for i in range(3)]
    central.upload(BatchKind.TRANSACTIONS, till.items([records[0], records[2]]))
    [gap] = central.reconcile_flags()[FlagKind.COUNTER_GAP]
    assert gap.details["counters"] == [2]
    central.upload(BatchKind.TRANSACTIONS, till.items([records[1]]))
    assert central.reconcile_flags() == {}


def test_records_by_revoked_operator_and_terminal_flagged(central: Central, till: Till) -> None:
    central.register_camp(till.key)
    pos_terminal = reference_id(till.card.world.pos.chr)
    with get_db(central.app).sessions() as session:
        register_terminal(session, pos_terminal, p256_key(random.Random(2)).public_key(), T0 - 100 * DAY)
        revoke_operator(session, 0xBAD, T0 + DAY)
        revoke_terminal(session, pos_terminal, T0 + 3 * DAY)
        session.commit()
    early = till.debit(RecordType.CASH, 1_000, T0, operator=0xBAD)  # before the revocation: fine
    late = till.debit(RecordType.CASH, 1_000, T0 + 2 * DAY, operator=0xBAD)
    after = till.debit(RecordType.CASH, 1_000, T0 + 4 * DAY)
    assert after.terminal_id == pos_terminal
    central.upload(BatchKind.TRANSACTIONS, till.items([early, late, after]))  # relayed by a good terminal
    flags = central.reconcile_flags()
    [by_operator] = flags[FlagKind.REVOKED_OPERATOR]
    assert by_operator.details["counter"] == late.counter
    [by_terminal] = flags[FlagKind.REVOKED_TERMINAL]
    assert (
        by_terminal.details["counter"] == after.counter and by_terminal.terminal_id == f"{pos_terminal:016x}"
    )


def test_use_after_the_policy_period_flagged(central: Central, till: Till) -> None:
    central.register_camp(till.key)
    inside = till.debit(RecordType.CASH, 1_000, T0)
    after_end = _unix(POLICY_END, end=True) + 2 * DAY  # a terminal with the date set after the policy year
    outside = till.debit(RecordType.CASH, 1_000, after_end)
    central.upload(BatchKind.TRANSACTIONS, till.items([inside, outside]))
    [flag] = central.reconcile_flags()[FlagKind.OUTSIDE_POLICY]
    assert flag.details["counter"] == outside.counter and flag.facility_id == HOSPITAL


def test_records_through_pcscd_and_vpcd_ingested(
    central: Central, served_beneficiary_card: tuple[BeneficiaryCard, Any]
) -> None:
    card, served = served_beneficiary_card
    with PcscConnection(served.reader, exclusive=True) as conn:
        session = BeneficiarySession(conn)
        session.terminal_authenticate(card.world.pos.chain, card.world.pos.holder.signer, CARD_ID)
        session.read_public()
        assert session.card_certificate is not None
        key = session.card_certificate.public_point
        block = session.debit(
            RecordType.BLOCK, scheme_id=SCHEME_HEALTH, amount=50_000, time=T0, operator_id=OPERATOR,
            facility_id=HOSPITAL, reference=17,
        )  # fmt: skip
        settle = session.debit(
            RecordType.SETTLE, scheme_id=SCHEME_HEALTH, amount=40_000, time=T0 + DAY, operator_id=OPERATOR,
            facility_id=HOSPITAL, reference=block.counter,
        )  # fmt: skip
        log = session.read_log(1)
    assert log == [block, settle]
    central.register_camp(key)
    receipt = central.upload(BatchKind.TRANSACTIONS, [TransactionItem(r.encode(), key) for r in log])
    assert receipt["new_items"] == 2
    assert central.reconcile_flags() == {}
    with get_db(central.app).sessions() as db:
        raws = [
            bytes(r)
            for r in db.execute(select(TransactionRow.raw).order_by(TransactionRow.counter)).scalars()
        ]
    assert raws == [block.encode(), settle.encode()]  # the raw bytes the card signed are kept


def test_records_carrying_the_card_chain_are_certified_before_the_camp_arrives(
    central: Central, till: Till
) -> None:
    w = till.card.world
    assert till.session.card_certificate is not None
    chain = (w.pki.district.cert.encode(), w.fko_certificate.encode(), till.session.card_certificate.encode())
    records = [till.debit(RecordType.CASH, 5_000, T0), till.debit(RecordType.CASH, 5_000, T0 + DAY)]
    certifier = CardCertifier(w.anchor, central.now)

    def ingest(items: list[Item]) -> Any:
        body = central.uploader.batch(BatchKind.TRANSACTIONS, items, central.now)
        with get_db(central.app).sessions() as session:
            return ingest_batch(session, DbTerminalDirectory(session), body, "00000000d1570001", central.now,
                                certifier)  # fmt: skip

    forged_key = p256_key(random.Random(9))
    forged = TransactionRecord.parse(records[0].encode()).signed_with(forged_key)
    with pytest.raises(UnprocessableError, match="certifies another key"):
        ingest([TransactionItem(forged.encode(), public_key_bytes(forged_key.public_key()), chain)])
    later = _unix(POLICY_END, end=True) + 5 * DAY  # after the card certificate's validity
    outside = till.debit(RecordType.CASH, 1_000, later)
    with pytest.raises(UnprocessableError) as refused:
        ingest([TransactionItem(outside.encode(), till.key, chain)])
    assert refused.value.code == "bad_card_certificate"

    receipt = ingest([TransactionItem(r.encode(), till.key, chain) for r in records]).receipt
    assert receipt.new_items == 2
    with get_db(central.app).sessions() as db:
        assert set(db.execute(select(TransactionRow.key_source)).scalars()) == {"certified"}
    assert central.reconcile_flags() == {}  # certified: not an unregistered card awaiting its camp


def test_fko_ledger_carries_the_officer_cards_own_signature(
    central: Central, beneficiary_world: Any, tmp_path: Any
) -> None:
    w = beneficiary_world
    officer_card, officer = w.officer_session(tmp_path)
    cards = ["CARD-10000000002", "CARD-10000000003"]
    for i, chr_ in enumerate(cards):
        point = public_key_bytes(p256_key(random.Random(40 + i)).public_key())
        officer.activate_card(w.card_body(point, chr_))
    challenge = bytes(range(16))
    le = min(65536, officer.limits.max_response_data)
    page = LedgerPage.parse(
        officer.protocol.send_apdu(OFFICER_CLA, OfficerIns.READ_LEDGER, 0, 0, challenge, le)
    )
    officer_card.power_off()
    signed = SignedLedger(
        (w.pki.district.cert.encode(), w.fko_certificate.encode()), challenge, page.count, page.head,
        page.raw_entries, page.signature,
    )  # fmt: skip
    fko = reference_id(FKO_CHR)
    numbers = tuple(card_number(c) for c in cards)

    dropped = FkoLedgerEntry(fko, numbers[:1], signed)  # the terminal leaves out one activation
    response = central.post(BatchKind.FKO_LEDGER, [dropped])
    assert response.status_code == 422 and response.get_json()["error"] == "ledger_mismatch"
    forged = FkoLedgerEntry(fko, numbers, replace(signed, signature=bytes(64)))
    response = central.post(BatchKind.FKO_LEDGER, [forged])
    assert response.status_code == 422 and response.get_json()["error"] == "bad_ledger_signature"
    other_fko = FkoLedgerEntry(reference_id("INFKO-PAT-0100"), numbers, signed)
    response = central.post(BatchKind.FKO_LEDGER, [other_fko])
    assert response.status_code == 422 and response.get_json()["error"] == "bad_officer_certificate"

    central.upload(BatchKind.FKO_LEDGER, [FkoLedgerEntry(fko, numbers, signed)])
    again = FkoLedgerEntry(fko, tuple(reversed(numbers)), signed)
    body = central.uploader.batch(BatchKind.FKO_LEDGER, [again], central.now)
    with get_db(central.app).sessions() as session:  # with the root configured: the chain is checked too
        ingest_batch(
            session, DbTerminalDirectory(session), body, "00000000d1570001", central.now, anchor=w.anchor
        )
        checks = sorted(str(c) for c in session.execute(select(FkoLedgerRow.officer_verified)).scalars())
    assert checks == ["chain", "signature"]
    # the officer signed two activations; no camp reported them yet
    [mismatch] = central.reconcile_flags()[FlagKind.FKO_COUNT_MISMATCH]
    assert mismatch.details["ledger"] == 2 and mismatch.details["uploaded"] == 0
    assert mismatch.details["officer_signed"] is True  # the officer's own word, not only the terminal's


def test_distant_facilities_within_hours_and_records_before_the_camp_flagged(
    central: Central, till: Till
) -> None:
    with get_db(central.app).sessions() as session:
        add_facility(session, 7, "Kolkata Hospital", "INDKMA-KOL", 22.57, 88.36)  # about 470 km from Patna
        session.commit()
    here = till.debit(RecordType.CASH, 1_000, T0)
    there = till.session.debit(RecordType.CASH, scheme_id=SCHEME_HEALTH, amount=1_000, time=T0 + 3600,
                               operator_id=OPERATOR, facility_id=7, rng=till.nonces.randbytes)  # fmt: skip
    central.upload(BatchKind.TRANSACTIONS, till.items([here, there]))  # before the card's camp
    flags = central.reconcile_flags()
    [travel] = flags[FlagKind.IMPOSSIBLE_TRAVEL]
    assert travel.details["facilities"] == [HOSPITAL, 7] and travel.details["km"] > 400
    [unregistered] = flags[FlagKind.UNREGISTERED_CARD]
    assert unregistered.card_id == CARD_HEX and unregistered.details["records"] == 2
    central.register_camp(till.key)
    after = central.reconcile_flags()
    assert FlagKind.UNREGISTERED_CARD not in after and FlagKind.FORGED_RECORD not in after


@pytest.mark.parametrize("camp_lists_schemes", [True, False])
def test_each_scheme_balance_reconciled_on_its_own(
    central: Central, till: Till, camp_lists_schemes: bool
) -> None:
    schemes = (SchemeCover(SCHEME_HEALTH, COVER), SchemeCover(SCHEME_PENSION, 500_000))
    central.register_camp(till.key, schemes if camp_lists_schemes else ())
    block = till.debit(RecordType.BLOCK, 150_000, T0, reference=301)
    pension = till.debit(RecordType.CASH, 100_000, T0 + 60, scheme=SCHEME_PENSION)
    settle = till.debit(RecordType.SETTLE, 120_000, T0 + DAY, reference=block.counter)
    assert pension.balance_after == 400_000 and settle.balance_after == COVER - 120_000
    central.upload(BatchKind.TRANSACTIONS, till.items([block, pension, settle]))
    assert central.reconcile_flags() == {}  # the pension never mixes with the health cover


def test_odd_procedure_mix_at_one_hospital_flagged(central: Central, till: Till) -> None:
    """Admissions (BLOCK records made by the card) of one package far above the other hospital's share."""
    with get_db(central.app).sessions() as session:
        add_facility(session, 8, "Danapur Hospital", "INDKMA-PATNA1", 25.63, 85.05)  # 10 km away
        session.commit()
    central.register_camp(till.key)
    at = T0
    records = []
    plan = [(HOSPITAL, 501)] * 7 + [(HOSPITAL, 511), (HOSPITAL, 512)]  # 7 of 9 admissions: package 501
    plan += [(8, 501)] + [(8, 503 + i) for i in range(8)]  # the other hospital: 1 of 9
    for facility, package in plan:
        at += 3 * 3600
        block = till.session.debit(
            RecordType.BLOCK, scheme_id=SCHEME_HEALTH, amount=10_000, time=at, operator_id=OPERATOR,
            facility_id=facility, reference=package, rng=till.nonces.randbytes,
        )  # fmt: skip
        release = till.session.debit(  # the patient went home without a claim: the card holds no block open
            RecordType.RELEASE, scheme_id=SCHEME_HEALTH, amount=0, time=at + 600, operator_id=OPERATOR,
            facility_id=facility, reference=block.counter, rng=till.nonces.randbytes,
        )  # fmt: skip
        records += [block, release]
    central.upload(BatchKind.TRANSACTIONS, till.items(records))
    with get_db(central.app).sessions() as session:
        reconcile(session, central.now, ReconcilePolicy(mix_min_claims=9))  # a small district's threshold
        flags = session.execute(select(FlagRow).order_by(FlagRow.id)).scalars().all()
    assert {f.kind for f in flags} == {FlagKind.PACKAGE_MIX_OUTLIER}
    [mix] = flags
    assert mix.facility_id == HOSPITAL and mix.card_id is None
    assert mix.details["package"] == 501 and mix.details["admissions"] == 9
    assert mix.details["share"] == round(7 / 9, 4) and mix.details["peer_share"] == round(1 / 9, 4)
    assert central.reconcile_flags() == {}  # with the default threshold (30 admissions) too few to judge


def test_fko_ledger_that_differs_from_the_uploaded_camps_flagged(
    central: Central, beneficiary_world: Any, tmp_path: Any
) -> None:
    """The real FKO card activated X and Y; camps report Y and Z under that FKO: both differences named."""
    w = beneficiary_world
    officer_card, officer = w.officer_session(tmp_path)
    x, y, z = "CARD-10000000021", "CARD-10000000022", "CARD-10000000023"
    points = {
        c: public_key_bytes(p256_key(random.Random(80 + i)).public_key()) for i, c in enumerate((x, y, z))
    }
    for c in (x, y):
        officer.activate_card(w.card_body(points[c], c))
    ledger = officer.read_ledger(rng=random.Random(6).randbytes)
    officer_card.power_off()
    signed = SignedLedger(
        (w.pki.district.cert.encode(), w.fko_certificate.encode()), ledger.challenge, ledger.count,
        ledger.head, ledger.raw_entries, ledger.signature,
    )  # fmt: skip
    fko = reference_id(FKO_CHR)
    central.upload(BatchKind.FKO_LEDGER, [FkoLedgerEntry(fko, (card_number(x), card_number(y)), signed)])
    profile = household_profile()

    def camp(chr_: str) -> CampCard:
        return CampCard(
            card_id=card_number(chr_), household_id=f"HH-{chr_[-2:]}", district=profile.district,
            scheme_id=SCHEME_HEALTH, policy_start=_unix(POLICY_START), policy_end=_unix(POLICY_END, end=True),
            cover_paise=COVER, card_key=points[chr_], fko_id=fko,
            members=tuple(Member(Gender(chr(m.gender)), m.birth_year) for m in profile.members),
        )  # fmt: skip

    central.upload(BatchKind.CAMP, [camp(y), camp(z)])
    [mismatch] = central.reconcile_flags()[FlagKind.FKO_COUNT_MISMATCH]
    assert mismatch.details["ledger"] == 2 and mismatch.details["uploaded"] == 2
    assert mismatch.details["not_uploaded"] == [f"{card_number(x):016x}"]
    assert mismatch.details["not_on_ledger"] == [f"{card_number(z):016x}"]
    assert mismatch.details["officer_signed"] is True
    central.upload(BatchKind.CAMP, [camp(x)])  # X's camp arrives; Z stays unexplained
    [still] = central.reconcile_flags()[FlagKind.FKO_COUNT_MISMATCH]
    assert still.details["not_uploaded"] == [] and still.details["not_on_ledger"] == [
        f"{card_number(z):016x}"
    ]
