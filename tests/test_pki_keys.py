"""Key custody: keys at rest are encrypted; token keys sign without leaving the token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cardsvc.pki.errors import KeyCustodyError
from cardsvc.pki.signer import (
    FileSigner,
    Pkcs11Signer,
    ScryptCost,
    Signer,
    SoftwareSigner,
    decrypt_private_key,
    verify_signature,
)
from tests.fixtures.keys import SoftHsm

CHEAP = ScryptCost(n=2**10)


def test_file_key_signs_after_reload_and_is_encrypted_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "district.key"
    created = FileSigner.create(path, b"correct horse", cost=CHEAP)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = FileSigner.load(path, b"correct horse")
    assert loaded.public_key() == created.public_key() == FileSigner.stored_public_key(path)
    sig = loaded.sign(b"district list v1")
    verify_signature(created.public_key(), b"district list v1", sig)
    blob = path.read_bytes()
    secret = created._key.private_numbers().private_value.to_bytes(32, "big")
    clear_pkcs8 = created._key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert secret not in blob and secret.hex().encode() not in blob
    assert clear_pkcs8 not in blob
    assert json.loads(blob)["kdf"]["name"] == "scrypt"


def test_wrong_passphrase_or_altered_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    FileSigner.create(path, b"right", cost=CHEAP)
    with pytest.raises(KeyCustodyError, match="wrong passphrase"):
        FileSigner.load(path, b"wrong")
    doc = json.loads(path.read_bytes())
    doc["kdf"]["n"] = 2**11  # downgrade/alter the parameters: bound as associated data
    with pytest.raises(KeyCustodyError, match="wrong passphrase, or the key file was altered"):
        decrypt_private_key(json.dumps(doc).encode(), b"right")
    with pytest.raises(KeyCustodyError, match="already exists"):
        FileSigner.create(path, b"right", cost=CHEAP)
    with pytest.raises(KeyCustodyError, match="empty passphrase"):
        FileSigner.create(tmp_path / "empty.key", b"", cost=CHEAP)
    with pytest.raises(KeyCustodyError, match="no key file"):
        FileSigner.load(tmp_path / "absent.key", b"right")


def test_pkcs11_key_signs_raw_signatures_and_is_found_again_by_label(softhsm: SoftHsm) -> None:
    created = Pkcs11Signer.generate(softhsm.module, "spare1", softhsm.pin, "terminal-key")
    with Pkcs11Signer(softhsm.module, "spare1", softhsm.pin, "terminal-key") as again:
        assert again.public_key() == created.public_key()
        sig = again.sign(b"hello")
        assert len(sig) == 64
        verify_signature(created.public_key(), b"hello", sig)
    created.close()
    with pytest.raises(KeyCustodyError, match="already holds a key labelled 'terminal-key'"):
        Pkcs11Signer.generate(softhsm.module, "spare1", softhsm.pin, "terminal-key")


def test_pkcs11_private_key_cannot_be_exported(softhsm: SoftHsm) -> None:
    import pkcs11

    signer = Pkcs11Signer.generate(softhsm.module, "spare2", softhsm.pin, "no-export")
    with pytest.raises(pkcs11.PKCS11Error):
        signer._private[pkcs11.Attribute.VALUE]
    assert signer._private[pkcs11.Attribute.EXTRACTABLE] is False
    signer.close()


def test_pkcs11_wrong_pin_missing_token_or_key_are_reported(softhsm: SoftHsm) -> None:
    with pytest.raises(KeyCustodyError, match="wrong PIN for token 'rootca'"):
        Pkcs11Signer(softhsm.module, "rootca", "0000", "root-key")
    with pytest.raises(KeyCustodyError, match="cannot open PKCS#11 token 'nosuch'"):
        Pkcs11Signer(softhsm.module, "nosuch", softhsm.pin, "k")
    with pytest.raises(KeyCustodyError, match="no single EC key pair labelled 'absent'"):
        Pkcs11Signer(softhsm.module, "spare3", softhsm.pin, "absent")


@pytest.mark.parametrize("kind", ["software", "file", "pkcs11"])
def test_every_signer_is_interchangeable(kind: str, tmp_path: Path, softhsm: SoftHsm) -> None:
    signer: Signer
    if kind == "software":
        signer = SoftwareSigner.generate()
    elif kind == "file":
        signer = FileSigner.create(tmp_path / "x.key", b"pw", cost=CHEAP)
    else:
        signer = Pkcs11Signer.generate(softhsm.module, "spare3", softhsm.pin, "interchangeable")
    assert isinstance(signer, Signer)
    verify_signature(signer.public_key(), b"data", signer.sign(b"data"))
