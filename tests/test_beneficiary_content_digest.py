"""The FKO's activation signature covers the household data (DESIGN.md, "Trust model").

The card certificate carries the content digest (profile, templates, photos) the FKO signed. These tests
show what that buys a verifier: a chip-level attacker who rewrites the profile (or the templates) AND the
hashes the card committed to is still refused, because the FKO's signature does not cover the new content;
the officer card never signs a card body without the digest; the card refuses a certificate for content
other than what it stores. Real officer and beneficiary card applications, in process.
"""

from __future__ import annotations

import hashlib
import random
from datetime import date
from pathlib import Path

import pytest

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.verify import CardRefusedError, RefusalReason, verify_card
from cardsvc.card.errors import IncorrectDataError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.profile import encode_templates
from cardsvc.pki.cvc import CertificateExtension, CvCertificate, build_body, issue_certificate
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import SoftwareSigner
from tests.fixtures.beneficiary import (
    CARD_ID,
    CARD_NOW,
    FKO_CHR,
    POLICY_END,
    POLICY_START,
    BeneficiaryCard,
    BeneficiaryWorld,
    household_profile,
)


def _refusal(c: BeneficiaryCard) -> CardRefusedError:
    w = c.world
    with pytest.raises(CardRefusedError) as info:
        verify_card(
            InProcessConnection(c.card), anchor=w.anchor, district_certificates=w.district_certificates,
            revocations=None, terminal_chain=w.pos.chain, terminal_signer=w.pos.holder.signer,
            now=CARD_NOW, rng=random.Random(3).randbytes,
        )  # fmt: skip
    return info.value


def _chip_rewrite(c: BeneficiaryCard, old: bytes, new: bytes) -> None:
    """What an attacker with chip-level write access does: change an object and the committed hash."""
    assert len(old) == len(new)
    c.card.power_off()
    objects = list((c.state / "objects").iterdir())
    [target] = [p for p in objects if old in p.read_bytes()]
    before = target.read_bytes()
    start = before.index(old)
    after = before.replace(old, new)
    target.write_bytes(after)
    # the EF holds length (2) || object: hash the object as the card does
    length = int.from_bytes(before[:2], "big")
    assert start + len(old) <= 2 + length
    old_hash, new_hash = (hashlib.sha256(b[2 : 2 + length]).hexdigest() for b in (before, after))
    [state] = [p for p in objects if old_hash.encode() in p.read_bytes()]
    state.write_bytes(state.read_bytes().replace(old_hash.encode(), new_hash.encode()))
    c.card.power_on()


def _attested(c: BeneficiaryCard) -> fmt.Attestation:
    s = c.session()
    public = s.read_public()
    assert public.card_certificate is not None
    return s.internal_authenticate(bytes(16), CARD_ID, public.card_certificate.public_point)


def test_rewritten_profile_and_hashes_are_refused_because_the_fko_did_not_sign_them(
    activated_card: BeneficiaryCard,
) -> None:
    """A member swapped for another person, and the card's stored profile hash made consistent."""
    c = activated_card
    genuine = household_profile().encode()
    forged = genuine.replace(b"Anil Kumar", b"Amit Kumar")
    before = _attested(c)
    _chip_rewrite(c, b"Anil Kumar", b"Amit Kumar")
    # the chip's own commitment now agrees with the forged profile: only the FKO signature can tell
    after = _attested(c)
    assert after.hashes.profile == hashlib.sha256(forged).digest() != before.hashes.profile
    refusal = _refusal(c)
    assert refusal.reason is RefusalReason.PROFILE_TAMPERED
    assert "FKO certified" in refusal.detail


def test_rewritten_templates_and_hashes_are_refused_before_any_finger_is_taken(
    activated_card: BeneficiaryCard,
) -> None:
    """Another person's minutiae written in, the template hash made consistent: refused at verify_card,
    which reads no template (the attested template hash no longer matches the certified digest)."""
    c = activated_card
    old = c.world.stored_templates()[0].compact[:12]
    new = bytes(reversed(old))
    forged = encode_templates(c.world.stored_templates()).replace(old, new)
    _chip_rewrite(c, old, new)
    assert _attested(c).hashes.templates == hashlib.sha256(forged).digest()  # consistent on the chip
    assert _refusal(c).reason is RefusalReason.PROFILE_TAMPERED


def test_card_certified_without_a_digest_is_refused(
    activated_card: BeneficiaryCard, beneficiary_world: BeneficiaryWorld
) -> None:
    """A card whose certificate binds only its key (as before this change, or made by a rogue tool under a
    genuine district) is refused by the chain rules: the household data is not certified."""
    w = beneficiary_world
    c = activated_card
    s = c.session()
    public = s.read_public()
    assert public.card_certificate is not None and public.card_certificate.content_digest is not None
    fko_key = SoftwareSigner.generate()
    fko = issue_certificate(
        w.pki.district.signer, car=w.pki.district.chr, chr=FKO_CHR, public_point=fko_key.public_key(),
        role=Role.FIELD_KEY_OFFICER, rights=w.fko_certificate.rights, effective=w.fko_certificate.effective,
        expiry=w.fko_certificate.expiry,
    )  # fmt: skip
    bare = issue_certificate(
        fko_key, car=FKO_CHR, chr=CARD_ID, public_point=public.card_certificate.public_point,
        role=Role.BENEFICIARY_CARD, rights=Right.NONE, effective=POLICY_START, expiry=POLICY_END,
    )  # fmt: skip
    old = public.card_certificate.encode() + public.fko_certificate.encode()  # type: ignore[union-attr]
    new = bare.encode() + fko.encode()
    c.card.power_off()
    [ef] = [p for p in (c.state / "objects").iterdir() if old in p.read_bytes()]
    raw = ef.read_bytes()
    ef.write_bytes(raw.replace(len(old).to_bytes(2, "big") + old, len(new).to_bytes(2, "big") + new))
    c.card.power_on()
    refusal = _refusal(c)
    assert refusal.reason is RefusalReason.CHAIN_INVALID
    assert "content-digest" in refusal.detail


# ------------------------------------------------------------------------------------------ activation
def test_officer_card_signs_the_digest_and_never_a_bare_card_body(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path
) -> None:
    w = beneficiary_world
    _, officer = w.officer_session(tmp_path)
    point = SoftwareSigner.generate().public_key()
    count = officer.status().ledger_count
    fields: dict = {
        "car": FKO_CHR, "chr": CARD_ID, "public_point": point, "role": Role.BENEFICIARY_CARD,
        "rights": Right.NONE, "effective": POLICY_START, "expiry": POLICY_END,
    }  # fmt: skip
    with pytest.raises(IncorrectDataError):  # 6A80: no content digest
        officer.activate_card(build_body(**fields))
    unknown = CertificateExtension((2, 999, 7816, 2, 42), b"x")
    with pytest.raises(IncorrectDataError):  # 6A80: an extension the officer card does not know
        officer.activate_card(build_body(**fields, content_digest=w.content_digest(), extensions=[unknown]))
    assert officer.status().ledger_count == count  # nothing signed, nothing recorded
    body = build_body(**fields, content_digest=w.content_digest())
    cert = officer.activate_card(body)
    assert cert.content_digest == w.content_digest()
    ledger = officer.read_ledger(rng=random.Random(1).randbytes)
    assert ledger.entries[-1].body_hash == hashlib.sha256(body).digest()  # the ledger covers the digest


def test_card_refuses_a_certificate_for_other_content(
    unactivated_card: BeneficiaryCard, beneficiary_world: BeneficiaryWorld, tmp_path: Path
) -> None:
    """The FKO certified a different household (fewer members) than the card stores: 6A80, not activated;
    the certificate for what it stores then activates it."""
    w = beneficiary_world
    s = unactivated_card.session()
    s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
    point = s.public_key()
    _, officer = w.officer_session(tmp_path)
    other = household_profile(members=4).content_digest(w.stored_templates())
    wrong = officer.activate_card(w.card_body(point, digest=other))
    with pytest.raises(IncorrectDataError):
        s.put_certificate(wrong, w.fko_certificate, w.pki.district.cert)
    assert s.status().lifecycle is fmt.Lifecycle.PERSONALISING
    right = officer.activate_card(w.card_body(point))
    s.put_certificate(right, w.fko_certificate, w.pki.district.cert)
    assert s.status().lifecycle is fmt.Lifecycle.ACTIVATED


def test_card_refuses_a_validly_chained_certificate_without_a_digest(
    unactivated_card: BeneficiaryCard, beneficiary_world: BeneficiaryWorld
) -> None:
    """An FKO key certified by the genuine district signs the card key without the digest (a tool that
    bypasses the officer card): the card refuses it; the same key signing the digest is accepted."""
    w = beneficiary_world
    s = unactivated_card.session()
    s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
    point = s.public_key()
    fko_key = SoftwareSigner.generate()
    fko = issue_certificate(
        w.pki.district.signer, car=w.pki.district.chr, chr=FKO_CHR, public_point=fko_key.public_key(),
        role=Role.FIELD_KEY_OFFICER, rights=w.fko_certificate.rights, effective=date(2026, 1, 1),
        expiry=date(2030, 12, 31),
    )  # fmt: skip

    def signed(body: bytes) -> CvCertificate:
        return CvCertificate.parse_body(body).with_signature(fko_key.sign(body))

    bare = build_body(car=FKO_CHR, chr=CARD_ID, public_point=point, role=Role.BENEFICIARY_CARD,
                      rights=Right.NONE, effective=POLICY_START, expiry=POLICY_END)  # fmt: skip
    for certificates in ((fko, w.pki.district.cert), (fko,)):  # with and without the district
        with pytest.raises(IncorrectDataError):
            s.put_certificate(signed(bare), *certificates)
        assert s.status().lifecycle is fmt.Lifecycle.PERSONALISING
    s.put_certificate(signed(w.card_body(point)), fko, w.pki.district.cert)
    assert s.status().lifecycle is fmt.Lifecycle.ACTIVATED
