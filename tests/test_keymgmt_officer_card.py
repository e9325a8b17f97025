"""Officer cards: personalised by the DKMA (key generated on the card), they certify beneficiary cards only
after the officer's PIN AND a matching fingerprint (match-on-card), and keep a signed activation ledger.

Fast tests drive the simulated card in-process; one test goes through the real pcscd + vpcd + pyscard.
Fingers here are generated minutiae sets (same finger = small rotation, shift, noise, missing minutiae):
the matcher's accuracy is measured by the biometrics area, these tests check the card's decisions.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cardsvc.bio.iso19794 import encode_compact, wrap_verify_template
from cardsvc.bio.template import FingerTemplate, Minutia
from cardsvc.card.errors import (
    AuthBlockedError,
    ConditionsNotSatisfiedError,
    IncorrectDataError,
    NotEnoughMemoryError,
    SecurityStatusError,
    WrongPinError,
)
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.pki import errors
from cardsvc.pki import officer as fmt
from cardsvc.pki.chain import validate_chain
from cardsvc.pki.cvc import build_body
from cardsvc.pki.officer_card import FingerprintMismatchError, OfficerCardSession
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import ScryptCost, SoftwareSigner
from hardware_sims.card.apps.officer import OfficerApplication
from hardware_sims.card.cardos import SimulatedCard
from keymgmt.service import KeyManager, Pkcs11Custody, ServiceError
from tests.fixtures.keys import SoftHsm

T0_DAY = date(2026, 11, 23)
PIN = "482916"
FKO = "INFKO-PAT-0007"
DISTRICT = "INDKMA-PATNA1"


def finger(seed: int, n: int = 40) -> FingerTemplate:
    r = random.Random(seed)
    return FingerTemplate(
        tuple(Minutia(r.randint(20, 230), r.randint(20, 270), r.uniform(0, 360)) for _ in range(n)), 256, 288
    )


def impression(
    t: FingerTemplate, seed: int, *, dx: int = 6, dy: int = -4, rot: float = 5.0
) -> FingerTemplate:
    """Another touch of the same finger: rotated, shifted, noisy, some minutiae missed."""
    r = random.Random(seed)
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    out = []
    for m in t.minutiae:
        if r.random() < 0.1:
            continue
        x = (m.x - 128) * c - (m.y - 144) * s + 128 + dx + r.gauss(0, 1.5)
        y = (m.x - 128) * s + (m.y - 144) * c + 144 + dy + r.gauss(0, 1.5)
        out.append(Minutia(int(x), int(y), (m.angle - rot + r.gauss(0, 3)) % 360))
    return FingerTemplate(tuple(out), 256, 288)


def wrapped(t: FingerTemplate) -> bytes:
    return wrap_verify_template(encode_compact(t))


OFFICER_FINGER = finger(101)


@pytest.fixture
def km(tmp_path: Path, softhsm: SoftHsm) -> KeyManager:
    tag = uuid.uuid4().hex[:8]
    m = KeyManager(
        tmp_path / "home",
        actor="dkma",
        now=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        scrypt_cost=ScryptCost(n=2**10),
    )
    m.init_root("INROOT00001", Pkcs11Custody(softhsm.module, "rootca", softhsm.pin, f"oc-root-{tag}"))
    m.add_district(
        DISTRICT, Pkcs11Custody(softhsm.module, "dkma", softhsm.pin, f"oc-d-{tag}"), root_secret=softhsm.pin
    )
    return m


def _blank_card(tmp_path: Path, **kwargs: object) -> SimulatedCard:
    state = tmp_path / f"officer-card-{uuid.uuid4().hex[:6]}"
    state.mkdir()
    clock = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()
    return SimulatedCard(state, applications=[OfficerApplication(**kwargs)], clock=lambda: clock)  # type: ignore[arg-type]


def _personalise(km: KeyManager, session: OfficerCardSession, softhsm: SoftHsm, chr: str = FKO) -> None:
    km.personalise_officer_card(
        session,
        chr,
        district=DISTRICT,
        role=Role.FIELD_KEY_OFFICER,
        district_secret=softhsm.pin,
        pin=PIN,
        templates=[wrapped(OFFICER_FINGER), wrapped(finger(102))],
    )


def _card_body(officer_chr: str, card_chr: str, **over: object) -> bytes:
    fields: dict = {
        "car": officer_chr,
        "chr": card_chr,
        "public_point": SoftwareSigner.generate().public_key(),
        "role": Role.BENEFICIARY_CARD,
        "rights": Right.NONE,
        "effective": T0_DAY,
        "expiry": date(2027, 11, 22),
        "content_digest": bytes(32),  # the officer card signs no card body without a content digest
    }
    fields.update(over)
    return build_body(**fields)


@pytest.fixture
def officer(
    km: KeyManager, softhsm: SoftHsm, tmp_path: Path
) -> tuple[OfficerCardSession, InProcessConnection]:
    conn = InProcessConnection(_blank_card(tmp_path))
    session = OfficerCardSession(conn)
    _personalise(km, session, softhsm)
    return session, conn


def test_activation_needs_pin_and_fingerprint_and_the_card_chain_validates(km: KeyManager, officer) -> None:
    session, _ = officer
    assert session.status().lifecycle is fmt.Lifecycle.OPERATIONAL
    body = _card_body(FKO, "CARD-10000000001")
    with pytest.raises(SecurityStatusError):
        session.activate_card(body)
    session.verify_pin_code(PIN)
    with pytest.raises(SecurityStatusError, match="SECURITY_STATUS_NOT_SATISFIED"):
        session.activate_card(body)  # PIN alone is not enough
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 7)))
    card_cert = session.activate_card(body)
    chain = [*km.chain(FKO), card_cert]
    result = validate_chain(chain, km.anchor(), now=km.now(), revocations=km.revocation_store())
    assert result.leaf.chr == "CARD-10000000001" and result.role is Role.BENEFICIARY_CARD
    second = session.activate_card(_card_body(FKO, "CARD-10000000002"))  # same power session
    ledger = session.read_ledger()
    assert [e.card_chr for e in ledger.entries] == ["CARD-10000000001", "CARD-10000000002"]
    assert [e.seq for e in ledger.entries] == [1, 2]
    assert ledger.entries[1].when.isoformat() == "2026-11-23T10:00:00+00:00"
    assert second.chr == "CARD-10000000002"
    audit = [e["action"] for e in km.audit.entries()]
    assert audit[-2:] == ["officer.issue", "officer.card.personalise"]


@pytest.mark.parametrize(("revoked_at", "counts"), [("10:30", True), ("09:30", False)])
def test_district_reads_back_the_ledger_for_payment(
    km: KeyManager, softhsm: SoftHsm, officer, revoked_at: str, counts: bool
) -> None:
    session, _ = officer
    session.verify_pin_code(PIN)
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 17)))
    for i in range(2):
        session.activate_card(_card_body(FKO, f"CARD-{i}"))  # card clock: 10:00
    assert len(km.read_officer_ledger(session).entries) == 2
    hh, mm = map(int, revoked_at.split(":"))
    km.revoke(FKO, by=DISTRICT, at=datetime(2026, 11, 23, hh, mm, tzinfo=UTC))
    km.publish(by=DISTRICT, secret=softhsm.pin)
    if counts:  # revoked after the camp: the activations still count
        assert [e.card_chr for e in km.read_officer_ledger(session).entries] == ["CARD-0", "CARD-1"]
    else:  # activations after the officer's revocation are refused, naming the rule
        with pytest.raises(errors.RevokedError, match="INFKO-PAT-0007 was revoked"):
            km.read_officer_ledger(session)
    reads = [e for e in km.audit.entries() if e["action"] == "officer.ledger.read"]
    assert reads[0]["details"]["activations"] == 2


def test_wrong_pin_blocks_after_three_tries(officer) -> None:
    session, _ = officer
    with pytest.raises(WrongPinError) as exc:
        session.verify_pin_code("000000")
    assert exc.value.attempts_remaining == 2
    with pytest.raises(WrongPinError):
        session.verify_pin_code("000001")
    with pytest.raises(WrongPinError) as exc:
        session.verify_pin_code("000002")
    assert exc.value.attempts_remaining == 0
    with pytest.raises(AuthBlockedError):
        session.verify_pin_code(PIN)  # even the right PIN: blocked
    assert session.status().pin_tries_left == 0
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 8)))
    with pytest.raises(SecurityStatusError):
        session.activate_card(_card_body(FKO, "CARD-1"))


def test_right_pin_but_wrong_finger_is_refused_and_counted(officer) -> None:
    session, _ = officer
    session.verify_pin_code(PIN)
    with pytest.raises(FingerprintMismatchError) as exc:
        session.verify_fingerprint(wrapped(finger(999)))
    assert exc.value.attempts_remaining == fmt.BIO_MAX_TRIES - 1
    assert exc.value.rule == "fingerprint-mismatch"
    with pytest.raises(SecurityStatusError):
        session.activate_card(_card_body(FKO, "CARD-1"))
    assert session.read_ledger().entries == ()
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 9)))  # a match resets the counter
    assert session.status().bio_tries_left == fmt.BIO_MAX_TRIES


def test_verification_does_not_survive_a_power_cycle(officer) -> None:
    session, conn = officer
    session.verify_pin_code(PIN)
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 10)))
    conn.power_cycle()
    session = OfficerCardSession(conn)
    with pytest.raises(SecurityStatusError):
        session.activate_card(_card_body(FKO, "CARD-1"))


def test_card_signs_only_beneficiary_bodies_under_its_own_name_and_rights(officer) -> None:
    session, _ = officer
    session.verify_pin_code(PIN)
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 11)))
    with pytest.raises(IncorrectDataError):  # a terminal certificate signed by an FKO card
        session.activate_card(_card_body(FKO, "INTRM-ROGUE", role=Role.POS_TERMINAL, rights=Right.DEBIT))
    with pytest.raises(IncorrectDataError):  # another officer's name as issuer
        session.activate_card(_card_body("INFKO-OTHER", "CARD-1"))
    with pytest.raises(IncorrectDataError):  # more than 90 days after the card clock (2026-11-23)
        session.activate_card(_card_body(FKO, "CARD-1", effective=date(2027, 2, 22)))
    assert session.read_ledger().entries == ()
    session.activate_card(_card_body(FKO, "CARD-1", effective=date(2027, 2, 21)))  # a renewal camp: 90 days
    assert len(session.read_ledger().entries) == 1


def test_facility_operator_card_cannot_activate(km: KeyManager, softhsm: SoftHsm, tmp_path: Path) -> None:
    session = OfficerCardSession(InProcessConnection(_blank_card(tmp_path)))
    km.personalise_officer_card(
        session,
        "INFOP-HOSP-0042",
        district=DISTRICT,
        role=Role.FACILITY_OPERATOR,
        district_secret=softhsm.pin,
        pin=PIN,
        templates=[wrapped(OFFICER_FINGER)],
    )
    session.verify_pin_code(PIN)
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 15)))
    with pytest.raises(ConditionsNotSatisfiedError):
        session.activate_card(_card_body("INFOP-HOSP-0042", "CARD-1"))
    assert session.read_ledger().entries == ()


def test_personalisation_is_closed_after_lock(officer, km: KeyManager, softhsm: SoftHsm) -> None:
    session, _ = officer
    for action in (session.generate_key, session.lock, lambda: session.set_pin("1111")):
        with pytest.raises(ConditionsNotSatisfiedError):
            action()
    with pytest.raises(ServiceError, match="already OPERATIONAL"):
        _personalise(km, session, softhsm, chr="INFKO-PAT-0008")


def test_altered_or_truncated_ledger_is_detected(officer) -> None:
    session, _ = officer
    session.verify_pin_code(PIN)
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 12)))
    for i in range(3):
        session.activate_card(_card_body(FKO, f"CARD-{i}"))
    challenge = bytes(16)
    page = fmt.LedgerPage.parse(session._cmd(fmt.OfficerIns.READ_LEDGER, challenge, le=65536))
    cert = session.certificate()
    args = (cert.chr, cert.public_point, challenge)
    assert len(fmt.verify_ledger(*args, page.raw_entries, page.count, page.head, page.signature)) == 3
    forged = bytearray(page.raw_entries)
    forged[fmt.LEDGER_ENTRY_SIZE + 10] ^= 1  # rename the second card
    with pytest.raises(errors.SignatureInvalidError, match="do not chain"):
        fmt.verify_ledger(*args, bytes(forged), page.count, page.head, page.signature)
    with pytest.raises(errors.FormatError, match="the card signed 3"):
        fmt.verify_ledger(
            *args, page.raw_entries[: 2 * fmt.LEDGER_ENTRY_SIZE], page.count, page.head, page.signature
        )
    with pytest.raises(errors.SignatureInvalidError):  # claims fewer activations than the card signed
        fmt.verify_ledger(*args, page.raw_entries[: 2 * fmt.LEDGER_ENTRY_SIZE], 2, page.head, page.signature)
    with pytest.raises(errors.SignatureInvalidError):  # replay of an old answer to a new challenge
        fmt.verify_ledger(
            cert.chr, cert.public_point, b"\x01" * 16, page.raw_entries, 3, page.head, page.signature
        )


def test_full_ledger_refuses_further_activations(km: KeyManager, softhsm: SoftHsm, tmp_path: Path) -> None:
    session = OfficerCardSession(InProcessConnection(_blank_card(tmp_path, ledger_capacity=2)))
    _personalise(km, session, softhsm)
    session.verify_pin_code(PIN)
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 13)))
    session.activate_card(_card_body(FKO, "CARD-1"))
    session.activate_card(_card_body(FKO, "CARD-2"))
    with pytest.raises(NotEnoughMemoryError):
        session.activate_card(_card_body(FKO, "CARD-3"))
    assert len(session.read_ledger().entries) == 2


@pytest.mark.pcsc
def test_officer_card_through_pcscd(km: KeyManager, softhsm: SoftHsm, tmp_path: Path, serve_card) -> None:
    """The same rules over the real PC/SC stack: personalise, wrong PIN, wrong finger, activation."""
    from cardsvc.card.pcsc import PcscConnection

    served = serve_card(slot=1, card=_blank_card(tmp_path))
    conn = PcscConnection(served.reader, exclusive=True)
    try:
        session = OfficerCardSession(conn)
        _personalise(km, session, softhsm)
        with pytest.raises(WrongPinError):
            session.verify_pin_code("999999")
        session.verify_pin_code(PIN)
        with pytest.raises(FingerprintMismatchError):
            session.verify_fingerprint(wrapped(finger(555)))
        with pytest.raises(SecurityStatusError):
            session.activate_card(_card_body(FKO, "CARD-PCSC-1"))
        session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 14)))
        cert = session.activate_card(_card_body(FKO, "CARD-PCSC-1"))
        assert validate_chain([*km.chain(FKO), cert], km.anchor(), now=km.now()).leaf.chr == "CARD-PCSC-1"
        assert [e.card_chr for e in session.read_ledger().entries] == ["CARD-PCSC-1"]
    finally:
        conn.close()


@pytest.mark.pcsc
def test_cli_personalises_a_card_in_a_reader(tmp_path: Path, serve_card) -> None:
    from click.testing import CliRunner

    from keymgmt.cli import main

    env = {
        "KEYMGMT_HOME": str(tmp_path / "ks"),
        "KEYMGMT_SCRYPT_N": "1024",
        "KEYMGMT_ROOT_SECRET": "root pw",
        "KEYMGMT_DISTRICT_SECRET": "district pw",
        "KEYMGMT_OFFICER_PIN": PIN,
    }

    def run(*args: str, **extra: str):
        return CliRunner().invoke(main, ["--now", "2026-11-23T09:00:00Z", *args], env={**env, **extra})

    assert run("init-root", "INROOT00001", KEYMGMT_NEW_KEY_SECRET="root pw").exit_code == 0
    assert run("add-district", DISTRICT, KEYMGMT_NEW_KEY_SECRET="district pw").exit_code == 0
    raw = tmp_path / "thumb.min"
    raw.write_bytes(encode_compact(OFFICER_FINGER))
    served = serve_card(slot=1, card=_blank_card(tmp_path))
    result = run(
        "personalise-officer-card", FKO, "--district", DISTRICT, "--role", "fko", "--reader", served.reader,
        "--template", str(raw),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"officer card personalised: {FKO} (FIELD_KEY_OFFICER)" in result.output
    again = run(
        "personalise-officer-card", "INFKO-2", "--district", DISTRICT, "--role", "fko",
        "--reader", served.reader, "--template", str(raw),
    )  # fmt: skip
    assert again.exit_code == 1 and "already OPERATIONAL" in again.output
    ledger = run("read-ledger", "--reader", served.reader, "--json", str(tmp_path / "ledger.json"))
    assert ledger.exit_code == 0, ledger.output
    assert f"ledger of {FKO}: 0 activation(s), verified" in ledger.output
    assert (tmp_path / "ledger.json").read_text().count('"activations": []') == 1
    assert "audit log intact" in run("audit", "verify").output


def test_short_apdu_card_hands_over_its_ledger_in_signed_pages(
    km: KeyManager, softhsm: SoftHsm, tmp_path: Path
) -> None:
    card = _blank_card(tmp_path)
    card = SimulatedCard(
        card.state_dir,
        applications=[OfficerApplication()],
        clock=card.clock,
        max_command_apdu=261,
        max_response_apdu=258,
    )
    session = OfficerCardSession(InProcessConnection(card))
    _personalise(km, session, softhsm)
    session.verify_pin_code(PIN)
    session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 16)))
    for i in range(7):
        session.activate_card(_card_body(FKO, f"CARD-{i}"))
    ledger = session.read_ledger()
    assert [e.card_chr for e in ledger.entries] == [f"CARD-{i}" for i in range(7)]


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4"])
def test_set_pin_refuses_what_is_not_4_to_12_ascii_digits(tmp_path: Path, pin: str) -> None:
    """The card's SET PIN takes what an unblock's new PIN takes (officer.check_new_pin), nothing else."""
    session = OfficerCardSession(InProcessConnection(_blank_card(tmp_path)))
    with pytest.raises(IncorrectDataError):
        session.set_pin(pin)
    session.set_pin("2468")  # a good one is taken
