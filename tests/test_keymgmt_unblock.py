"""Unblocking an officer card at the DKMA, through the real pcscd + vpcd + pyscard stack.

The card (served on a vpcd slot, reached with pyscard) only obeys a RESET RETRY COUNTER signed by its own
district over its fresh GET CHALLENGE, its CHR and what is unblocked; the district certificate presented
with it must chain to the root the card holds. keymgmt's unblock-officer-card checks the card against the
keystore first (district, record, revocation), signs, sends, and writes a signed audit entry (no PIN).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cardsvc.card.errors import AuthBlockedError, WrongPinError
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.transport import CardRemovedError
from cardsvc.pki import officer as fmt
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.officer_card import FingerprintMismatchError, OfficerCardSession, UnblockRefusedError
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import ScryptCost
from hardware_sims.card.apps.officer import OfficerApplication
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.faults import FaultInjector
from keymgmt.service import FileCustody, KeyManager, ServiceError
from point_of_service.errors import SignInError
from point_of_service.reasons import Reason
from point_of_service.services.signin import sign_in
from tests.fixtures.pcsc import ServedCard
from tests.test_keymgmt_officer_card import _card_body, finger, impression, wrapped

pytestmark = pytest.mark.pcsc

DISTRICT, OTHER_DISTRICT = "INDKMA-PATNA1", "INDKMA-GAYA01"
SECRET = "district pw"
CLERK, FKO = "INCLK-PAT-0042", "INFKO-PAT-0007"
OLD_PIN, NEW_PIN = "58203147", "71946285"
KM_NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CARD_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
OFFICER_FINGER = finger(101)
WRONG_FINGER = finger(555)
REINSERT_WAIT = 30.0


@pytest.fixture
def km(tmp_path: Path) -> KeyManager:
    m = KeyManager(tmp_path / "ks", actor="dkma-desk-2", now=lambda: KM_NOW, scrypt_cost=ScryptCost(n=2**10))
    m.init_root("INROOT00001", FileCustody(b"root pw"))
    for district in (DISTRICT, OTHER_DISTRICT):
        m.add_district(district, FileCustody(SECRET.encode()), root_secret="root pw")
    return m


@dataclass
class Officer:
    """A personalised officer card in a vpcd reader and the DKMA's PC/SC connection to it."""

    served: ServedCard
    conn: PcscConnection
    faults: FaultInjector
    cert: CvCertificate | None  # None while the card is in PERSONALISATION

    @property
    def session(self) -> OfficerCardSession:
        return OfficerCardSession(self.conn)

    def status(self) -> fmt.Status:
        return self.session.status()

    def reinsert(self) -> None:
        self.served.insert()
        self.conn.reconnect(wait=REINSERT_WAIT)


@pytest.fixture
def officer_card(
    km: KeyManager, tmp_path: Path, serve_card: Callable[..., ServedCard]
) -> Iterator[Callable[..., Officer]]:
    officers: list[Officer] = []

    def make(
        chr: str = CLERK, *, role: Role = Role.FACILITY_OPERATOR, district: str = DISTRICT, lock: bool = True
    ) -> Officer:
        state = tmp_path / f"officer-{uuid.uuid4().hex[:6]}"
        state.mkdir()
        faults = FaultInjector()
        card = SimulatedCard(
            state, applications=[OfficerApplication(anchor=km.anchor())], faults=faults,
            clock=lambda: CARD_NOW.timestamp(),
        )  # fmt: skip
        served = serve_card(slot=len(officers), card=card)
        o = Officer(served, PcscConnection(served.reader, exclusive=True), faults, None)
        officers.append(o)
        if not lock:  # left in PERSONALISATION
            o.session.generate_key()
            return o
        o.cert = km.personalise_officer_card(
            o.session, chr, district=district, role=role, district_secret=SECRET, pin=OLD_PIN,
            templates=[wrapped(OFFICER_FINGER)],
        )  # fmt: skip
        return o

    yield make
    for o in officers:
        o.conn.close()


def _block_pin(o: Officer) -> None:
    for _ in range(fmt.PIN_MAX_TRIES):
        with pytest.raises(WrongPinError):
            o.session.verify_pin_code("00000000")
    assert o.status().pin_tries_left == 0


def _block_fingerprint(o: Officer) -> None:
    for _ in range(fmt.BIO_MAX_TRIES):
        with pytest.raises(FingerprintMismatchError):
            o.session.verify_fingerprint(wrapped(WRONG_FINGER))
    assert o.status().bio_tries_left == 0


def _pos_sign_in(km: KeyManager, o: Officer, pin: str) -> None:
    """What the POS does when a clerk signs in (point_of_service.services.signin), over this connection."""
    o.conn.power_cycle()  # a new power session, as at the POS
    sign_in(
        o.conn, pin=pin, capture=lambda: impression(OFFICER_FINGER, 3), anchor=km.anchor(),
        districts={DISTRICT: km.store.certificate(DISTRICT)}, now=int(CARD_NOW.timestamp()),
        required=Right.NONE, finger_attempts=1, rng=os.urandom,
    )  # fmt: skip


def _unblock(km: KeyManager, o: Officer, what: fmt.Unblock, new_pin: str | None = NEW_PIN) -> None:
    km.unblock_officer_card(
        o.session, district=DISTRICT, district_secret=SECRET, what=what,
        new_pin=new_pin if what & fmt.Unblock.PIN else None,
    )  # fmt: skip


def _authorisation(
    km: KeyManager, o: Officer, *, signed_by: str = DISTRICT, presented: str = DISTRICT,
    what: fmt.Unblock = fmt.Unblock.PIN,
) -> fmt.UnblockAuthorisation:  # fmt: skip
    """An authorisation for the card's fresh challenge, signed by ``signed_by``'s key and presented with
    ``presented``'s certificate (what a forger or a misconfigured DKMA would send)."""
    assert o.cert is not None
    signer = km.load_signer(signed_by, SECRET)
    return fmt.sign_unblock(
        signer, km.store.certificate(presented), o.cert.chr, o.session.unblock_challenge(), what
    )


def _unblock_entries(km: KeyManager) -> list[dict]:
    return [e for e in km.audit.entries() if e["action"] == "officer.card.unblock"]


def test_blocked_pin_is_unblocked_with_a_new_pin_and_the_card_keeps_its_key_and_ledger(
    km: KeyManager, officer_card: Callable[..., Officer]
) -> None:
    o = officer_card()
    ledger_before = o.session.read_ledger()
    _block_pin(o)
    with pytest.raises(SignInError) as refused:
        _pos_sign_in(km, o, OLD_PIN)
    assert refused.value.reason is Reason.OPERATOR_PIN_BLOCKED

    _unblock(km, o, fmt.Unblock.PIN)

    assert o.status().pin_tries_left == fmt.PIN_MAX_TRIES
    with pytest.raises(SignInError) as old:
        _pos_sign_in(km, o, OLD_PIN)
    assert old.value.reason is Reason.OPERATOR_WRONG_PIN
    _pos_sign_in(km, o, NEW_PIN)  # PIN, fingerprint and the card's signature under its certified key
    assert o.session.certificate() == o.cert
    ledger_after = o.session.read_ledger()
    assert (ledger_after.count, ledger_after.head) == (ledger_before.count, ledger_before.head)
    assert o.status().lifecycle is fmt.Lifecycle.OPERATIONAL

    [entry] = _unblock_entries(km)
    assert (entry["actor"], entry["subject"], entry["signer"]) == ("dkma-desk-2", CLERK, DISTRICT)
    assert entry["details"]["unblocked"] == ["PIN"]
    log = km.store.audit_path.read_text()
    assert NEW_PIN not in log and OLD_PIN not in log
    assert km.verify_audit() == len(list(km.audit.entries()))


def test_blocked_fingerprint_is_unblocked_and_the_fko_activates_again(
    km: KeyManager, officer_card: Callable[..., Officer]
) -> None:
    o = officer_card(FKO, role=Role.FIELD_KEY_OFFICER)
    s = o.session
    s.verify_pin_code(OLD_PIN)
    s.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 4)))
    s.activate_card(_card_body(FKO, "CARD-1"))
    _block_fingerprint(o)
    with pytest.raises(AuthBlockedError):
        o.session.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 5)))

    _unblock(km, o, fmt.Unblock.FINGERPRINT)

    status = o.status()
    assert (status.bio_tries_left, status.pin_tries_left) == (fmt.BIO_MAX_TRIES, fmt.PIN_MAX_TRIES)
    s = o.session
    s.verify_pin_code(OLD_PIN)  # a fingerprint unblock leaves the PIN alone
    s.verify_fingerprint(wrapped(impression(OFFICER_FINGER, 6)))
    s.activate_card(_card_body(FKO, "CARD-2"))
    assert [e.card_chr for e in s.read_ledger().entries] == ["CARD-1", "CARD-2"]
    assert _unblock_entries(km)[0]["details"]["unblocked"] == ["fingerprint"]


def test_pin_and_fingerprint_together(km: KeyManager, officer_card: Callable[..., Officer]) -> None:
    o = officer_card()
    _block_pin(o)
    _block_fingerprint(o)
    _unblock(km, o, fmt.UNBLOCK_ALL)
    _pos_sign_in(km, o, NEW_PIN)
    assert _unblock_entries(km)[0]["details"]["unblocked"] == ["PIN", "fingerprint"]


def test_the_card_refuses_an_authorisation_it_cannot_trust(
    km: KeyManager, officer_card: Callable[..., Officer]
) -> None:
    o = officer_card()
    _block_pin(o)

    def refused(auth: fmt.UnblockAuthorisation) -> UnblockRefusedError:
        with pytest.raises(UnblockRefusedError) as info:
            o.session.reset_retry_counter(auth, NEW_PIN)
        assert o.status().pin_tries_left == 0  # still blocked, with the old PIN
        return info.value

    other = refused(_authorisation(km, o, signed_by=OTHER_DISTRICT, presented=OTHER_DISTRICT))
    assert "not from this card's own district" in str(other)
    wrong_key = refused(_authorisation(km, o, signed_by=OTHER_DISTRICT, presented=DISTRICT))
    assert "signed by another key" in str(wrong_key)
    auth = _authorisation(km, o, what=fmt.Unblock.FINGERPRINT)
    altered = refused(replace(auth, what=fmt.UNBLOCK_ALL))  # a fingerprint permission widened to the PIN
    assert "altered" in str(altered)
    auth = _authorisation(km, o)
    o.session.reset_retry_counter(auth, NEW_PIN)  # accepted once ...
    _block_pin(o)
    replayed = refused(auth)  # ... and never again: the card's challenge was used up
    assert "replayed or stale" in str(replayed)
    o.session.unblock_challenge()
    stale = refused(auth)  # nor for a later challenge
    assert stale.sw == replayed.sw and NEW_PIN not in str(stale)
    assert _unblock_entries(km) == []  # forged or replayed here, keymgmt recorded nothing
    _unblock(km, o, fmt.Unblock.PIN)  # the genuine procedure still works after all the refusals
    o.session.verify_pin_code(NEW_PIN)


def test_a_card_still_in_personalisation_is_refused_by_the_card_and_by_keymgmt(
    km: KeyManager, officer_card: Callable[..., Officer]
) -> None:
    blocked = officer_card()
    auth = _authorisation(km, blocked)
    fresh = officer_card("INCLK-PAT-0043", lock=False)
    auth = replace(auth, challenge=fresh.session.unblock_challenge())
    with pytest.raises(UnblockRefusedError, match="not OPERATIONAL"):
        fresh.session.reset_retry_counter(auth, NEW_PIN)
    with pytest.raises(ServiceError, match="is PERSONALISATION: only an OPERATIONAL card is unblocked"):
        _unblock(km, fresh, fmt.Unblock.PIN)
    assert fresh.status().lifecycle is fmt.Lifecycle.PERSONALISATION


def test_keymgmt_refuses_another_districts_card_and_a_revoked_officer(
    km: KeyManager, officer_card: Callable[..., Officer]
) -> None:
    gaya = officer_card("INCLK-GAY-0001", district=OTHER_DISTRICT)
    _block_pin(gaya)
    with pytest.raises(ServiceError, match=f"issued by {OTHER_DISTRICT}, not {DISTRICT}"):
        _unblock(km, gaya, fmt.Unblock.PIN)
    assert gaya.status().pin_tries_left == 0

    o = officer_card()
    _block_pin(o)
    km.revoke(CLERK, by=DISTRICT)
    with pytest.raises(ServiceError, match=f"{CLERK} is revoked"):
        _unblock(km, o, fmt.Unblock.PIN)
    km.publish(by=DISTRICT, secret=SECRET)
    with pytest.raises(ServiceError, match="revoked"):
        _unblock(km, o, fmt.Unblock.PIN)
    assert o.status().pin_tries_left == 0
    assert _unblock_entries(km) == []


@pytest.mark.parametrize(
    ("what", "new_pin", "why"),
    [
        (fmt.Unblock.PIN, "12", "4-12 digits"),
        (fmt.Unblock.PIN, "١٢٣٤٥٦", "4-12 digits"),  # digits, but not the card's ASCII digits
        (fmt.Unblock.PIN, None, "new PIN goes with a PIN unblock"),
        (fmt.Unblock.FINGERPRINT, NEW_PIN, "new PIN goes with a PIN unblock"),
        (fmt.Unblock(0), None, "the PIN, the fingerprint or both"),
    ],
)
def test_keymgmt_refuses_a_bad_request_before_touching_the_card(
    km: KeyManager, officer_card: Callable[..., Officer], what: fmt.Unblock, new_pin: str | None, why: str
) -> None:
    o = officer_card()
    _block_pin(o)
    with pytest.raises(ServiceError, match=why):
        km.unblock_officer_card(
            o.session, district=DISTRICT, district_secret=SECRET, what=what, new_pin=new_pin
        )
    assert o.status().pin_tries_left == 0 and _unblock_entries(km) == []


def test_cli_unblocks_a_card_in_a_reader(km: KeyManager, officer_card: Callable[..., Officer]) -> None:
    from click.testing import CliRunner

    from keymgmt.cli import main

    o = officer_card()
    _block_pin(o)
    _block_fingerprint(o)
    o.conn.close()  # the CLI opens the reader itself (exclusively)
    env = {
        "KEYMGMT_HOME": str(km.store.home), "KEYMGMT_ACTOR": "dkma-desk-2",
        "KEYMGMT_DISTRICT_SECRET": SECRET, "KEYMGMT_OFFICER_PIN": NEW_PIN,
    }  # fmt: skip

    def run(*args: str):
        return CliRunner().invoke(main, ["--now", "2026-11-23T09:00:00Z", *args], env=env)

    nothing = run("unblock-officer-card", "--reader", o.served.reader, "--district", DISTRICT)
    assert nothing.exit_code == 1 and "--pin, --fingerprint or both" in nothing.output
    wrong = run("unblock-officer-card", "--reader", o.served.reader, "--district", OTHER_DISTRICT, "--pin")
    assert wrong.exit_code == 1 and "only its own district can unblock it" in wrong.output
    result = run(
        "unblock-officer-card", "--reader", o.served.reader, "--district", DISTRICT, "--pin", "--fingerprint"
    )
    assert result.exit_code == 0, result.output
    assert f"officer card unblocked (PIN and fingerprint): {CLERK}" in result.output
    assert NEW_PIN not in result.output
    o.conn = PcscConnection(o.served.reader, exclusive=True)
    _pos_sign_in(km, o, NEW_PIN)
    assert "audit log intact" in run("audit", "verify").output


def _torn_unblock(
    km: KeyManager, o: Officer, *, at_step: int | None = None, after_writes: int | None = None,
    torn_write: bool = False,
) -> str | None:  # fmt: skip
    """Block PIN and fingerprint, then send a PIN-and-fingerprint unblock with the card's fault armed
    (FaultInjector.arm's terms): the card is pulled mid-command and put back. Returns where it fired."""
    _block_pin(o)
    _block_fingerprint(o)
    auth = _authorisation(km, o, what=fmt.UNBLOCK_ALL)
    session = o.session  # selected before the fault is armed
    o.faults.arm(at_step=at_step, after_writes=after_writes, torn_write=torn_write)
    with pytest.raises(CardRemovedError):
        session.reset_retry_counter(auth, NEW_PIN)
    fired: str | None = o.faults.fired
    o.reinsert()
    return fired


def _torn_outcome(km: KeyManager, o: Officer) -> str:
    """After a tear and reinsertion: 'blocked' (old PIN, no tries) or 'unblocked' (new PIN); never a mix."""
    status = o.status()
    assert status.lifecycle is fmt.Lifecycle.OPERATIONAL
    if status.pin_tries_left == 0:
        assert status.bio_tries_left == 0  # both or neither: one transaction
        return "blocked"
    assert (status.pin_tries_left, status.bio_tries_left) == (fmt.PIN_MAX_TRIES, fmt.BIO_MAX_TRIES)
    with pytest.raises(WrongPinError):
        o.session.verify_pin_code(OLD_PIN)
    o.session.verify_pin_code(NEW_PIN)
    return "unblocked"


@pytest.mark.parametrize(
    ("step", "label", "outcome"),
    [
        (1, "command received", "blocked"),
        (2, "new PIN staged", "blocked"),  # inside the transaction: rolled back at the next power-up
        (3, "fingerprint tries staged", "blocked"),
        (4, "response ready", "unblocked"),  # committed, the answer lost with the card
    ],
)
def test_a_card_torn_during_the_unblock_is_still_blocked_or_unblocked_never_half(
    km: KeyManager, officer_card: Callable[..., Officer], step: int, label: str, outcome: str
) -> None:
    o = officer_card()
    fired = _torn_unblock(km, o, at_step=step)  # counted from RESET RETRY COUNTER's own command on
    assert fired == f"at step {step} ({label})"
    assert _torn_outcome(km, o) == outcome
    if outcome == "blocked":  # the DKMA simply unblocks again, with a fresh challenge
        _unblock(km, o, fmt.UNBLOCK_ALL)
        assert _torn_outcome(km, o) == "unblocked"


@pytest.mark.parametrize("write", [1, 2, 3, 4])  # a PIN-and-fingerprint unblock makes 4 persistent writes
def test_a_card_torn_at_any_write_of_the_unblock_is_blocked_or_unblocked(
    km: KeyManager, officer_card: Callable[..., Officer], write: int
) -> None:
    o = officer_card()
    fired = _torn_unblock(km, o, after_writes=write, torn_write=True)  # half of that write reaches memory
    assert fired is not None
    assert _torn_outcome(km, o) in ("blocked", "unblocked")
