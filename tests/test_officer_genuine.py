"""Officer card genuineness (AUTHENTICATE) and the probe encoded once in verify_member.

A fake operator card that presents the genuine certificate and answers "PIN OK, fingerprint OK" but does
not hold the certified key, or replays a genuine signature, is refused at POS sign-in; the genuine card
passes. In-process simulated cards (fast); the officer application is the real one.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from cardsvc.beneficiary.verify import verify_card, verify_member
from cardsvc.bio.iso19794 import decode_compact
from cardsvc.bio.matcher import Matcher
from cardsvc.card.errors import ConditionsNotSatisfiedError, WrongLengthError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.pki import officer as fmt
from cardsvc.pki.errors import FormatError, SignatureInvalidError
from cardsvc.pki.officer_card import (
    OfficerAuthentication,
    OfficerCardSession,
    OfficerNotGenuineError,
    OfficerNotVerifiedError,
)
from hardware_sims.card.apdu import CommandApdu
from hardware_sims.card.application import CardServices, Response
from hardware_sims.card.apps.officer import OfficerApplication
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import IsoError
from hardware_sims.card.iso import SW
from point_of_service.errors import SignInError
from point_of_service.journal import Journal
from point_of_service.probe import probe_bytes
from point_of_service.reasons import Reason
from point_of_service.services.signin import Clerk, sign_in
from tests.fixtures.beneficiary import CARD_NOW, BeneficiaryCard
from tests.fixtures.pos import (
    OPERATOR_CHR,
    OPERATOR_FINGER,
    OPERATOR_PIN,
    POS_CARD_NOW,
    PosWorld,
    capture_of,
    finger_template,
)

CHALLENGE_A = bytes(range(16))
CHALLENGE_B = bytes(range(1, 17))


def _card(state: Path, app: OfficerApplication) -> SimulatedCard:
    return SimulatedCard(state, applications=[app], rng=random.Random(99), clock=lambda: CARD_NOW.timestamp())


def _sign_in(world: PosWorld, card: SimulatedCard, journal: Journal, challenge: bytes = CHALLENGE_A) -> Clerk:
    return sign_in(
        InProcessConnection(card),
        pin=OPERATOR_PIN,
        capture=capture_of(OPERATOR_FINGER, 2),
        anchor=world.pki.anchor,
        districts=world.trust(journal).districts,
        now=POS_CARD_NOW,
        journal=journal,
        revocations=world.trust(journal).store,
        finger_attempts=2,
        rng=lambda n: challenge[:n],
    )


def _refusal(world: PosWorld, card: SimulatedCard, journal: Journal, challenge: bytes = CHALLENGE_A) -> str:
    with pytest.raises(SignInError) as info:
        _sign_in(world, card, journal, challenge)
    assert info.value.reason is Reason.OPERATOR_NOT_GENUINE, info.value.detail
    (event,) = journal.events(kind="signin")
    assert event.outcome == "refused" and event.reason == Reason.OPERATOR_NOT_GENUINE.value
    return info.value.detail


class ImpostorOfficer(OfficerApplication):
    """Answers like the officer card (PIN, match-on-card) with its OWN key behind a copied certificate."""

    def _put_certificate(self, apdu: CommandApdu, card: CardServices) -> Response:
        with card.transaction():  # no check that the certificate carries this card's key
            self._put_blob(card, 0x0201, 512, apdu.data)
        return b"", SW.OK


class LegacyOfficer(OfficerApplication):
    """A card that replays PIN / fingerprint answers but knows no AUTHENTICATE (as before this change)."""

    def _authenticate(self, apdu: CommandApdu, card: CardServices) -> Response:
        raise IsoError(SW.INS_NOT_SUPPORTED, "no such instruction")


class ReplayingOfficer(OfficerApplication):
    """Answers AUTHENTICATE with a recorded genuine answer, whatever the challenge."""

    def __init__(self, recorded: bytes) -> None:
        super().__init__()
        self.recorded = recorded

    def _authenticate(self, apdu: CommandApdu, card: CardServices) -> Response:
        return self.recorded, SW.OK


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite")


def _verified_session(card: SimulatedCard) -> OfficerCardSession:
    session = OfficerCardSession(InProcessConnection(card))
    session.verify_pin_code(OPERATOR_PIN)
    session.verify_fingerprint(probe_bytes(finger_template(OPERATOR_FINGER, 2)))
    return session


def test_genuine_operator_card_signs_in(pos_world: PosWorld, tmp_path: Path, journal: Journal) -> None:
    clerk = _sign_in(pos_world, pos_world.officer_card(tmp_path / "op"), journal)
    assert clerk.chr == OPERATOR_CHR
    (event,) = journal.events(kind="signin")
    assert event.outcome == "ok"


def test_impostor_with_copied_certificate_is_refused(
    pos_world: PosWorld, tmp_path: Path, journal: Journal
) -> None:
    (tmp_path / "fake").mkdir()
    card = _card(tmp_path / "fake", ImpostorOfficer())
    session = OfficerCardSession(InProcessConnection(card))
    assert session.generate_key() != pos_world.operator_cert.public_point
    session.put_certificate(pos_world.operator_cert)
    session.put_templates([probe_bytes(finger_template(OPERATOR_FINGER, 0))])
    session.set_pin(OPERATOR_PIN)
    session.lock()
    card.power_off()
    # it presents the genuine certificate and passes PIN and fingerprint ...
    assert OfficerCardSession(InProcessConnection(card)).certificate() == pos_world.operator_cert
    # ... but cannot sign under the certified key
    assert "did not prove" in _refusal(pos_world, card, journal)
    assert Reason.OPERATOR_NOT_GENUINE.value == "operator-card-not-genuine"


def test_card_without_authenticate_is_refused(pos_world: PosWorld, tmp_path: Path, journal: Journal) -> None:
    card = _card(pos_world.copy("operator", tmp_path / "legacy"), LegacyOfficer())
    assert "refused to prove" in _refusal(pos_world, card, journal)


def test_recorded_signature_cannot_be_replayed(pos_world: PosWorld, tmp_path: Path, journal: Journal) -> None:
    genuine = pos_world.officer_card(tmp_path / "op")
    proof = _verified_session(genuine).authenticate(CHALLENGE_A)
    assert isinstance(proof, OfficerAuthentication) and proof.flags == fmt.AUTH_FULLY_VERIFIED
    cert = pos_world.operator_cert
    fmt.verify_officer_auth(cert.chr, cert.public_point, CHALLENGE_A, proof.flags, proof.signature)
    with pytest.raises(SignatureInvalidError):
        fmt.verify_officer_auth(cert.chr, cert.public_point, CHALLENGE_B, proof.flags, proof.signature)
    recorded = fmt.encode_auth_response(proof.flags, proof.signature)
    genuine.power_off()

    replay = _card(pos_world.copy("operator", tmp_path / "replay"), ReplayingOfficer(recorded))
    # the recording is a real answer: for the challenge it was made for, it would pass ...
    assert _sign_in(pos_world, replay, Journal(tmp_path / "other.sqlite"), CHALLENGE_A).chr == OPERATOR_CHR
    replay.power_off()
    # ... a terminal's fresh challenge refuses it
    _refusal(pos_world, replay, journal, CHALLENGE_B)


def test_flags_say_what_was_verified_in_this_power_session(pos_world: PosWorld, tmp_path: Path) -> None:
    card = pos_world.officer_card(tmp_path / "op")
    session = OfficerCardSession(InProcessConnection(card))
    with pytest.raises(OfficerNotVerifiedError, match="PIN and fingerprint not verified"):
        session.authenticate(CHALLENGE_A)
    assert session.authenticate(CHALLENGE_A, require=fmt.AuthFlag(0)).flags == fmt.AuthFlag(0)
    session.verify_pin_code(OPERATOR_PIN)
    with pytest.raises(OfficerNotVerifiedError, match="fingerprint not verified") as info:
        session.authenticate(CHALLENGE_A)
    assert info.value.flags == fmt.AuthFlag.PIN_VERIFIED
    session.verify_fingerprint(probe_bytes(finger_template(OPERATOR_FINGER, 2)))
    assert session.authenticate(CHALLENGE_B).flags == fmt.AUTH_FULLY_VERIFIED
    card.power_off()  # a power cycle clears both
    again = OfficerCardSession(InProcessConnection(card))
    assert again.authenticate(CHALLENGE_A, require=fmt.AuthFlag(0)).flags == fmt.AuthFlag(0)


def test_a_flag_cannot_be_upgraded_by_the_host(pos_world: PosWorld, tmp_path: Path) -> None:
    card = pos_world.officer_card(tmp_path / "op")
    proof = OfficerCardSession(InProcessConnection(card)).authenticate(CHALLENGE_A, require=fmt.AuthFlag(0))
    cert = pos_world.operator_cert
    with pytest.raises(SignatureInvalidError):
        fmt.verify_officer_auth(
            cert.chr, cert.public_point, CHALLENGE_A, fmt.AUTH_FULLY_VERIFIED, proof.signature
        )


def test_challenge_length_and_life_cycle(pos_world: PosWorld, tmp_path: Path) -> None:
    card = pos_world.officer_card(tmp_path / "op")
    session = OfficerCardSession(InProcessConnection(card))
    for bad in (bytes(7), bytes(33)):
        with pytest.raises(FormatError, match="8-32 bytes"):
            session.authenticate(bad)
        with pytest.raises(WrongLengthError):
            session.protocol.send_apdu(fmt.OFFICER_CLA, fmt.OfficerIns.AUTHENTICATE, 0, 0, bad, 256)
    assert session.authenticate(bytes(8), require=fmt.AuthFlag(0)).challenge == bytes(8)
    assert session.authenticate(bytes(32), require=fmt.AuthFlag(0)).challenge == bytes(32)
    card.power_off()
    (tmp_path / "blank").mkdir()
    blank = OfficerCardSession(InProcessConnection(_card(tmp_path / "blank", OfficerApplication())))
    blank.generate_key()
    with pytest.raises(ConditionsNotSatisfiedError):  # 6985: not in the operational life cycle
        blank.protocol.send_apdu(fmt.OFFICER_CLA, fmt.OfficerIns.AUTHENTICATE, 0, 0, CHALLENGE_A, 256)


def test_authentication_message_is_domain_separated(pos_world: PosWorld, tmp_path: Path) -> None:
    """An AUTHENTICATE signature is never an activation (7F4E body) or a ledger statement, and back."""
    message = fmt.officer_auth_message(OPERATOR_CHR, CHALLENGE_A, fmt.AUTH_FULLY_VERIFIED)
    assert message.startswith(b"RSBY-OFFICER-AUTH\x01")
    assert not message.startswith(fmt.LEDGER_DOMAIN) and not message.startswith(b"\x7f\x4e")
    card = pos_world.officer_card(tmp_path / "op")
    session = OfficerCardSession(InProcessConnection(card))
    page = fmt.LedgerPage.parse(
        session.protocol.send_apdu(fmt.OFFICER_CLA, fmt.OfficerIns.READ_LEDGER, 0, 0, CHALLENGE_A, 256)
    )
    cert = pos_world.operator_cert
    for flags in (fmt.AuthFlag(0), fmt.AUTH_FULLY_VERIFIED):  # a ledger signature is no authentication
        with pytest.raises(SignatureInvalidError):
            fmt.verify_officer_auth(cert.chr, cert.public_point, CHALLENGE_A, flags, page.signature)
    proof = session.authenticate(CHALLENGE_A, require=fmt.AuthFlag(0))
    forged = dataclasses.replace(page, signature=proof.signature)
    with pytest.raises(SignatureInvalidError):
        fmt.verify_ledger_page(cert.chr, cert.public_point, CHALLENGE_A, forged)


def test_not_genuine_error_is_typed(pos_world: PosWorld, tmp_path: Path) -> None:
    card = _card(pos_world.copy("operator", tmp_path / "legacy"), LegacyOfficer())
    with pytest.raises(OfficerNotGenuineError) as info:
        OfficerCardSession(InProcessConnection(card)).authenticate(CHALLENGE_A)
    assert info.value.rule == "officer-not-genuine" and info.value.subject == OPERATOR_CHR


# ------------------------------------------------------------------ verify_member: probe encoded once
def test_verify_member_encodes_the_probe_once_with_the_same_result(
    activated_card: BeneficiaryCard, mocker: MockerFixture
) -> None:
    w = activated_card.world
    session, card = verify_card(
        InProcessConnection(activated_card.card),
        anchor=w.anchor,
        district_certificates=w.district_certificates,
        revocations=None,
        terminal_chain=w.pos.chain,
        terminal_signer=w.pos.holder.signer,
        now=CARD_NOW,
        rng=random.Random(4).randbytes,
    )
    matcher = Matcher()
    templates, _ = session.read_templates(status=card.status)
    own = [t for t in templates if t.member_index == 1]
    assert len(own) >= 2
    for probe in (w.probe(1, 2), w.probe(1, 7), w.probe(3, 2)):
        expected = max(
            (matcher.verify(probe, decode_compact(t.compact), card=True) for t in own), key=lambda r: r.score
        )
        spy = mocker.spy(matcher, "encode")
        result = verify_member(session, card, 1, probe, matcher)
        assert spy.call_count == 1 + len(own)  # the probe once, each stored template once
        mocker.stop(spy)
        assert result == expected
    assert verify_member(session, card, 1, w.probe(1, 2), matcher).matched
    assert not verify_member(session, card, 1, w.probe(3, 2), matcher).matched
