"""Terminal authentication on a card: the card-side state machine (cardsvc.pki.termauth) hosted by a small
test application on the simulated card OS. Templates are readable only after a terminal proved a chain
holding READ_TEMPLATES over the card's fresh challenge; every attack is refused and nothing is read.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cardsvc.card.errors import SecurityStatusError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.session import ApplicationSession
from cardsvc.pki.chain import TrustAnchor
from cardsvc.pki.cvc import CvCertificate, issue_certificate, self_signed_root
from cardsvc.pki.errors import PkiError
from cardsvc.pki.revocation import RevocationEntry, RevocationStore, SubjectKind, build_revocation_list
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import SoftwareSigner
from cardsvc.pki.termauth import (
    MSE_SET_DST_P1P2,
    PSO_VERIFY_CERTIFICATE_P1P2,
    TA_CAR_TAG,
    TaIns,
    TerminalAuthVerifier,
    sign_terminal_auth,
    terminal_auth_commands,
)
from hardware_sims.card.access import ALWAYS, NEVER, Op, TerminalRight
from hardware_sims.card.apdu import CommandApdu
from hardware_sims.card.application import Application, CardServices, Response
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import IsoError
from hardware_sims.card.iso import SW
from tests.fixtures.keys import PKI_NOW, PkiHierarchy

CARD_ID = "CARD-10000000001"
TEMPLATES = b"\x7f\x2e\x05\x81\x03\x10\x20\x30"
AID = bytes.fromhex("F05253425954410001")
EF_TEMPLATES = 0x0301


class TemplateCardApp(Application):
    """A beneficiary-card stand-in: EF 0301 (templates) readable only with TERMINAL_RIGHT(READ_TEMPLATES)."""

    aid = AID
    label = "TA TEST"
    df_fid = 0xDF30

    def __init__(self, anchor: TrustAnchor, revocations: RevocationStore | None = None) -> None:
        self.anchor = anchor
        self.revocations = revocations

    def install(self, card: CardServices) -> None:
        card.create_ef(
            self,
            EF_TEMPLATES,
            len(TEMPLATES),
            {Op.READ: TerminalRight(Right.READ_TEMPLATES.name or ""), Op.UPDATE: NEVER},
            content=TEMPLATES,
        )
        card.create_ef(self, 0x0302, 4, {Op.READ: ALWAYS, Op.UPDATE: NEVER}, content=b"prof")

    def _verifier(self, card: CardServices) -> TerminalAuthVerifier:
        ram = card.ram(self)
        if "ta" not in ram:
            now = datetime.fromtimestamp(card.now(), tz=UTC)
            ram["ta"] = TerminalAuthVerifier(
                self.anchor, card_id=CARD_ID, now=now, revocations=self.revocations
            )
        verifier = ram["ta"]
        assert isinstance(verifier, TerminalAuthVerifier)
        return verifier

    def process(self, apdu: CommandApdu, card: CardServices) -> Response:
        ta = self._verifier(card)
        try:
            if apdu.ins == TaIns.MSE_SET_DST and apdu.p1p2 == MSE_SET_DST_P1P2:
                if apdu.data[:1] != bytes([TA_CAR_TAG]):
                    raise IsoError(SW.WRONG_DATA, "MSE:SET DST needs 83 CAR")
                ta.set_issuer(apdu.data[2:].decode("ascii"))
            elif apdu.ins == TaIns.PSO_VERIFY_CERTIFICATE and apdu.p1p2 == PSO_VERIFY_CERTIFICATE_P1P2:
                ta.verify_certificate(apdu.data)
            elif apdu.ins == TaIns.EXTERNAL_AUTHENTICATE:
                challenge, card.session.challenge = card.session.challenge, None  # one use only
                rights = ta.authenticate(challenge, apdu.data)
                card.session.grant_terminal_rights(*rights.names())
            else:
                return super().process(apdu, card)
        except PkiError as exc:
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, str(exc)) from None
        return b"", SW.OK


class TaTestSession(ApplicationSession):
    AID = AID

    def authenticate(self, chain: list[CvCertificate], signer: SoftwareSigner, terminal_chr: str) -> None:
        for cla, ins, p1, p2, data in terminal_auth_commands(chain):
            self.protocol.send_apdu(cla, ins, p1, p2, data)
        challenge = self.get_challenge(8)
        sig = sign_terminal_auth(signer, challenge=challenge, card_id=CARD_ID, terminal_chr=terminal_chr)
        self.protocol.send_apdu(0x80, TaIns.EXTERNAL_AUTHENTICATE, 0, 0, sig)

    def read_templates(self) -> bytes:
        return self.read_binary(EF_TEMPLATES)


def _card(tmp_path: Path, h: PkiHierarchy, revocations: RevocationStore | None = None) -> SimulatedCard:
    state = tmp_path / f"ta-{uuid.uuid4().hex[:6]}"
    state.mkdir()
    return SimulatedCard(
        state, applications=[TemplateCardApp(h.anchor, revocations)], clock=lambda: PKI_NOW.timestamp()
    )


def _session(tmp_path: Path, h: PkiHierarchy, revocations: RevocationStore | None = None) -> TaTestSession:
    return TaTestSession(InProcessConnection(_card(tmp_path, h, revocations)))


def test_certified_terminal_reads_templates_after_authenticating(pki_hierarchy_soft, tmp_path: Path) -> None:
    h = pki_hierarchy_soft
    s = _session(tmp_path, h)
    t = h.pos_terminal
    s.authenticate(h.chain_of(t), t.signer, t.chr)
    assert s.read_templates() == TEMPLATES


def test_terminal_without_a_certificate_reads_nothing(pki_hierarchy_soft, tmp_path: Path) -> None:
    s = _session(tmp_path, pki_hierarchy_soft)
    assert s.read_binary(0x0302) == b"prof"  # the public part is readable
    with pytest.raises(SecurityStatusError):
        s.read_templates()


def test_terminal_lacking_the_right_is_not_granted_it(pki_hierarchy_soft, tmp_path: Path) -> None:
    h = pki_hierarchy_soft
    weak = h.issue(h.district, "INTRM-POS-WEAK", Role.POS_TERMINAL, rights=Right.READ_PROFILE)
    s = _session(tmp_path, h)
    s.authenticate(h.chain_of(weak), weak.signer, weak.chr)
    with pytest.raises(SecurityStatusError):
        s.read_templates()


def test_stolen_certificate_without_the_key_is_refused(pki_hierarchy_soft, tmp_path: Path) -> None:
    h = pki_hierarchy_soft
    s = _session(tmp_path, h)
    with pytest.raises(SecurityStatusError):  # the real chain, but signed with a thief's key
        s.authenticate(h.chain_of(h.pos_terminal), SoftwareSigner.generate(), h.pos_terminal.chr)
    with pytest.raises(SecurityStatusError):
        s.read_templates()


def test_chain_from_a_rogue_root_is_refused_at_the_first_link(pki_hierarchy_soft, tmp_path: Path) -> None:
    h = pki_hierarchy_soft
    rogue = SoftwareSigner.generate()
    rogue_root = self_signed_root(rogue, chr=h.root.chr, effective=date(2026, 1, 1), expiry=date(2030, 1, 1))
    term_key = SoftwareSigner.generate()
    term = issue_certificate(
        rogue,
        car=rogue_root.chr,
        chr="INTRM-POS-ROGUE",
        public_point=term_key.public_key(),
        role=Role.DISTRICT,
        rights=Right.all(),
        effective=date(2026, 1, 1),
        expiry=date(2030, 1, 1),
    )
    s = _session(tmp_path, h)
    with pytest.raises(SecurityStatusError, match="SECURITY_STATUS_NOT_SATISFIED"):
        s.authenticate([term], term_key, term.chr)


def test_replayed_authentication_and_power_cycle_grant_nothing(pki_hierarchy_soft, tmp_path: Path) -> None:
    h = pki_hierarchy_soft
    t = h.pos_terminal
    conn = InProcessConnection(_card(tmp_path, h))
    s = TaTestSession(conn)
    for cla, ins, p1, p2, data in terminal_auth_commands(h.chain_of(t)):
        s.protocol.send_apdu(cla, ins, p1, p2, data)
    challenge = s.get_challenge(8)
    sig = sign_terminal_auth(t.signer, challenge=challenge, card_id=CARD_ID, terminal_chr=t.chr)
    s.protocol.send_apdu(0x80, TaIns.EXTERNAL_AUTHENTICATE, 0, 0, sig)
    assert s.read_templates() == TEMPLATES
    conn.power_cycle()
    s = TaTestSession(conn)
    with pytest.raises(SecurityStatusError):
        s.read_templates()
    for cla, ins, p1, p2, data in terminal_auth_commands(h.chain_of(t)):
        s.protocol.send_apdu(cla, ins, p1, p2, data)
    s.get_challenge(8)  # a new challenge: the recorded signature no longer fits
    with pytest.raises(SecurityStatusError):
        s.protocol.send_apdu(0x80, TaIns.EXTERNAL_AUTHENTICATE, 0, 0, sig)


def test_revoked_terminal_is_refused_by_the_card(pki_hierarchy_soft, tmp_path: Path) -> None:
    h = pki_hierarchy_soft
    store = h.revocation_store()
    rl = build_revocation_list(
        h.district.signer,
        issuer=h.district.chr,
        version=1,
        issued_at=PKI_NOW,
        entries=[
            RevocationEntry(h.pos_terminal.chr, SubjectKind.TERMINAL, datetime(2026, 11, 1, tzinfo=UTC))
        ],
    )
    store.offer(rl, now=PKI_NOW, issuer_chain=[h.district.cert])
    s = _session(tmp_path, h, store)
    with pytest.raises(SecurityStatusError):
        s.authenticate(h.chain_of(h.pos_terminal), h.pos_terminal.signer, h.pos_terminal.chr)
    e = h.enrolment_terminal
    s.authenticate(h.chain_of(e), e.signer, e.chr)  # another terminal still works
    assert s.read_templates() == TEMPLATES


def test_verifier_names_the_rule_for_out_of_order_links(pki_hierarchy_soft) -> None:
    h = pki_hierarchy_soft
    v = TerminalAuthVerifier(h.anchor, card_id=CARD_ID, now=PKI_NOW)
    with pytest.raises(PkiError, match="before MSE:SET DST"):
        v.verify_certificate(h.district.cert.encode())
    with pytest.raises(PkiError, match="neither the root nor verified"):
        v.set_issuer(h.district.chr)
    v.set_issuer(h.root.chr)
    with pytest.raises(PkiError, match="untrusted-root"):
        v.verify_certificate(h.pos_terminal.cert.encode())
    with pytest.raises(PkiError, match="without a GET CHALLENGE"):
        v.authenticate(None, b"\x00" * 64)


@pytest.mark.pcsc
def test_terminal_authentication_through_pcscd(pki_hierarchy_soft, tmp_path: Path, serve_card) -> None:
    from cardsvc.card.pcsc import PcscConnection

    h = pki_hierarchy_soft
    served = serve_card(slot=1, card=_card(tmp_path, h))
    conn = PcscConnection(served.reader)
    try:
        s = TaTestSession(conn)
        with pytest.raises(SecurityStatusError):
            s.read_templates()
        t = h.enrolment_terminal
        s.authenticate(h.chain_of(t), t.signer, t.chr)
        assert s.read_templates() == TEMPLATES
    finally:
        conn.close()
