"""Key ceremony through the service layer: root and district keys in SoftHSM2, policy refusals, revocation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cardsvc.pki import errors
from cardsvc.pki.chain import validate_chain
from cardsvc.pki.revocation import RevocationList, RevocationReason, RevocationStore, SubjectKind
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import ScryptCost, SoftwareSigner
from keymgmt.audit import verify_log
from keymgmt.service import FileCustody, KeyManager, Pkcs11Custody, ServiceError
from tests.fixtures.keys import SoftHsm

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROOT = "INROOT00001"
PATNA = "INDKMA-PATNA1"
GAYA = "INDKMA-GAYA01"


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def km(tmp_path: Path, softhsm: SoftHsm, clock: Clock) -> KeyManager:
    """A keystore whose root key is in token "rootca" and district keys in token "dkma"."""
    tag = uuid.uuid4().hex[:8]
    m = KeyManager(tmp_path / "home", actor="asha", now=clock, scrypt_cost=ScryptCost(n=2**10))
    m.init_root(ROOT, Pkcs11Custody(softhsm.module, "rootca", softhsm.pin, f"root-{tag}"))
    for district in (PATNA, GAYA):
        m.add_district(
            district,
            Pkcs11Custody(softhsm.module, "dkma", softhsm.pin, f"{district}-{tag}"),
            root_secret=softhsm.pin,
        )
    return m


def _terminal(km: KeyManager, pin: str, chr: str = "INTRM-POS-0001", district: str = PATNA) -> None:
    km.register_terminal(
        chr,
        district=district,
        role=Role.POS_TERMINAL,
        district_secret=pin,
        terminal_passphrase=b"terminal pw",
    )


def test_ceremony_keeps_root_and_district_keys_in_the_token(km: KeyManager, softhsm: SoftHsm) -> None:
    home = km.store.home
    assert json.loads((home / "root" / "custody.json").read_text())["kind"] == "pkcs11"
    assert not (home / "root" / "key.enc").exists()
    assert not (home / "districts" / PATNA / "key.enc").exists()
    _terminal(km, softhsm.pin)
    officer_key = SoftwareSigner.generate()
    km.issue_officer(
        "INFKO-PAT-0007",
        district=PATNA,
        role=Role.FIELD_KEY_OFFICER,
        district_secret=softhsm.pin,
        public_point=officer_key.public_key(),
    )
    assert km.verify("INTRM-POS-0001", required=Right.READ_TEMPLATES).leaf.role is Role.POS_TERMINAL
    assert (
        km.verify("INFKO-PAT-0007", required=Right.ACTIVATE_CARD).leaf.public_point
        == officer_key.public_key()
    )
    # a terminal elsewhere holds only the root certificate and the chain
    root = km.store.root_certificate()
    chain = [c.encode() for c in km.chain("INTRM-POS-0001")]
    assert validate_chain(chain, km.anchor(), now=T0).leaf.chr == "INTRM-POS-0001"
    assert root.expiry == date(2046, 11, 23)
    # the terminal key is on disk only encrypted, and it unlocks with its passphrase
    assert b"PRIVATE KEY" not in (home / "holders" / "INTRM-POS-0001" / "key.enc").read_bytes()
    signer = km.load_signer("INTRM-POS-0001", "terminal pw")
    assert signer.public_key() == km.store.certificate("INTRM-POS-0001").public_point


def test_refusals_store_nothing_and_say_why(km: KeyManager, softhsm: SoftHsm) -> None:
    before = set(km.store.all_certificates())
    with pytest.raises(errors.RoleRightsError, match="POS_TERMINAL may never hold CERTIFY"):
        km.register_terminal(
            "INTRM-BAD",
            district=PATNA,
            role=Role.POS_TERMINAL,
            district_secret=softhsm.pin,
            terminal_passphrase=b"pw",
            rights=Right.CERTIFY,
        )
    assert not (km.store.home / "holders" / "INTRM-BAD").exists()
    with pytest.raises(errors.KeyCustodyError, match="wrong PIN"):
        _terminal(km, "not-the-pin", chr="INTRM-X")
    _terminal(km, softhsm.pin)
    with pytest.raises(ServiceError, match="already exists"):
        _terminal(km, softhsm.pin)
    with pytest.raises(ServiceError, match="not an officer role"):
        km.issue_officer(
            "INFKO-X",
            district=PATNA,
            role=Role.POS_TERMINAL,
            district_secret=softhsm.pin,
            public_point=b"\x04",
        )
    assert set(km.store.all_certificates()) == before | {"INTRM-POS-0001"}


def test_small_district_cannot_certify_beyond_its_own_rights(km: KeyManager, softhsm: SoftHsm) -> None:
    tag = uuid.uuid4().hex[:8]
    km.add_district(
        "INDKMA-SMALL",
        Pkcs11Custody(softhsm.module, "dkma", softhsm.pin, f"small-{tag}"),
        root_secret=softhsm.pin,
        rights=Right.CERTIFY | Right.READ_PROFILE,
    )
    with pytest.raises(errors.RightsEscalationError, match="claims READ_TEMPLATES,DEBIT,PROOF_OF_LIFE"):
        _terminal(km, softhsm.pin, chr="INTRM-SMALL", district="INDKMA-SMALL")


def test_certificates_never_outlive_their_issuer(tmp_path: Path, clock: Clock) -> None:
    m = KeyManager(tmp_path, actor="t", now=clock, scrypt_cost=ScryptCost(n=2**10))
    m.init_root(ROOT, FileCustody(b"root pw"), years=2)
    cert = m.add_district(PATNA, FileCustody(b"district pw"), root_secret="root pw", years=10)
    assert cert.expiry == date(2028, 11, 23)
    clock.t = datetime(2028, 11, 24, tzinfo=UTC)
    with pytest.raises(errors.ExpiredError):
        m.verify(PATNA)


def test_revocation_takes_effect_when_published_and_only_after_its_time(
    km: KeyManager, softhsm: SoftHsm
) -> None:
    _terminal(km, softhsm.pin)
    at = T0 + timedelta(hours=1)
    km.revoke("INTRM-POS-0001", by=PATNA, reason=RevocationReason.STOLEN, at=at)
    assert km.verify("INTRM-POS-0001", at=T0 + timedelta(hours=2))  # not yet published
    rl, path = km.publish(by=PATNA, secret=softhsm.pin)
    assert (rl.version, path.name) == (1, f"{PATNA}.v1.rl")
    assert km.verify("INTRM-POS-0001", at=at - timedelta(seconds=1))
    with pytest.raises(errors.RevokedError, match="reason STOLEN"):
        km.verify("INTRM-POS-0001", at=at)
    # what terminals receive: the binary list, verified against the root and the district chain
    store = RevocationStore(km.anchor())
    store.offer(path.read_bytes(), now=T0, issuer_chain=km.chain(PATNA))
    km.revoke("CARD-10000000001", by=PATNA, kind=SubjectKind.CARD, reason=RevocationReason.LOST)
    rl2, _ = km.publish(by=PATNA, secret=softhsm.pin)
    assert rl2.version == 2 and {e.subject for e in rl2.entries} == {"INTRM-POS-0001", "CARD-10000000001"}
    store.offer(rl2, now=T0, issuer_chain=km.chain(PATNA))
    with pytest.raises(errors.RollbackError):
        store.offer(RevocationList.parse(path.read_bytes()), now=T0, issuer_chain=km.chain(PATNA))


def test_revocation_authority_follows_the_tiers(km: KeyManager, softhsm: SoftHsm) -> None:
    _terminal(km, softhsm.pin)
    with pytest.raises(ServiceError, match=f"{GAYA} did not certify INTRM-POS-0001"):
        km.revoke("INTRM-POS-0001", by=GAYA)
    with pytest.raises(ServiceError, match="only the root or a district revokes"):
        km.revoke(GAYA, by="INTRM-POS-0001")
    with pytest.raises(ServiceError, match="say what it is"):
        km.revoke("CARD-UNKNOWN", by=PATNA)
    with pytest.raises(ServiceError, match=f"{PATNA} did not certify {GAYA}"):
        km.revoke(GAYA, by=PATNA)
    km.revoke(GAYA, by=ROOT, reason=RevocationReason.KEY_COMPROMISE)
    km.publish(by=ROOT, secret=softhsm.pin)
    with pytest.raises(errors.RevokedError):
        km.verify(GAYA)
    with pytest.raises(ServiceError, match="already revoked"):
        km.revoke(GAYA, by=ROOT)


def test_every_action_is_in_the_signed_audit_log(km: KeyManager, softhsm: SoftHsm) -> None:
    _terminal(km, softhsm.pin)
    km.revoke("INTRM-POS-0001", by=PATNA)
    km.publish(by=PATNA, secret=softhsm.pin)
    with pytest.raises(errors.RevokedError):
        km.verify("INTRM-POS-0001")
    entries = list(km.audit.entries())
    assert [e["action"] for e in entries] == [
        "root.init",
        "district.add",
        "district.add",
        "terminal.register",
        "revoke",
        "list.publish",
        "chain.verify",
    ]
    assert entries[3]["signer"] == PATNA and entries[1]["signer"] == ROOT
    assert entries[-1]["details"]["rule"] == "revoked"
    assert all(e["actor"] == "asha" for e in entries)
    assert verify_log(km.audit, public_keys=km.audit_public_keys()) == len(entries)
    assert km.verify_audit() == len(entries)
    raw = km.store.audit_path.read_text()
    assert softhsm.pin not in raw and "terminal pw" not in raw


def test_terminals_apply_exported_bundles_and_refuse_rollback(
    km: KeyManager, softhsm: SoftHsm, tmp_path: Path
) -> None:
    from cardsvc.pki.bundle import TrustBundle, apply_bundle

    _terminal(km, softhsm.pin)
    km.revoke("INTRM-POS-0001", by=PATNA, at=T0)
    km.publish(by=PATNA, secret=softhsm.pin)
    km.export_bundle(tmp_path / "b1")
    km.revoke("CARD-7", by=PATNA, kind=SubjectKind.CARD, at=T0)
    km.publish(by=PATNA, secret=softhsm.pin)
    km.export_bundle(tmp_path / "b2")

    terminal_store = apply_bundle(TrustBundle.read(tmp_path / "b2"), now=T0)
    assert terminal_store.version_of(PATNA) == 2
    assert terminal_store.revocation_of("CARD-7", [ROOT, PATNA]) is not None
    with pytest.raises(errors.RollbackError, match="v1 is older than v2"):
        apply_bundle(TrustBundle.read(tmp_path / "b1"), now=T0, store=terminal_store)
    with pytest.raises(errors.RevokedError):
        validate_chain(km.chain("INTRM-POS-0001"), km.anchor(), now=T0, revocations=terminal_store)
    assert [e["action"] for e in km.audit.entries()][-1] == "bundle.export"


def test_custody_repr_hides_the_passphrase_and_token_pin() -> None:
    """A custody object ends up in tracebacks and debug logs: its secret must not."""
    file_custody = FileCustody(b"correct horse battery")
    token_custody = Pkcs11Custody("/usr/lib/softhsm/libsofthsm2.so", "dkma", "73915024", "root-key")
    assert "correct horse" not in repr(file_custody)
    assert "73915024" not in repr(token_custody)
    assert "root-key" in repr(token_custody)  # the non-secret fields stay visible for diagnosis
