"""The station's identity: its terminal key (keymgmt custody, encrypted at rest), chain and trust bundle.

Layout of the station home (``enrol --home DIR``, env ``ENROL_HOME``)::

    HOME/terminal/key.enc     the terminal key as keymgmt wrote it (scrypt + AES-GCM PKCS#8, mode 0600)
    HOME/terminal/chain.cvc   root + district + terminal certificates (``keymgmt export-chain``)
    HOME/bundle/              the trust bundle (``keymgmt export-bundle``): root, districts, lists
    HOME/journal.sqlite       the camp journal

The key is decrypted into memory only while the station runs. The sealing key for fingerprint templates in
the journal is derived from the terminal key (HKDF), so templates at rest are as safe as the key is.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cardsvc.formats.profile import reference_id
from cardsvc.pki.bundle import TrustBundle, apply_bundle
from cardsvc.pki.chain import TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import FormatError, PkiError, PointError
from cardsvc.pki.revocation import RevocationStore
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import FileSigner, Signer, SoftwareSigner, load_public_point
from cardsvc.tlv import strict_codec
from enrolment_station.errors import KeyError_

HOME_ENV = "ENROL_HOME"
PASSPHRASE_ENV = "ENROL_TERMINAL_PASSPHRASE"
SEAL_INFO = b"rsby-station-journal-seal-v1"
DEDUP_KEY_FILE = "central-dedup.pub"
parse_all = strict_codec(FormatError).parse_all


def chr_id(reference: str) -> int:
    """The 8-byte identifier of a CHR in upload batches and records (cardsvc.formats.profile.reference_id)."""
    return reference_id(reference)


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".enrol"


def read_chain(raw: bytes) -> list[CvCertificate]:
    """Concatenated CV certificates (as ``keymgmt export-chain`` writes), the self-signed root dropped."""
    try:
        certs = [CvCertificate.parse(bytes(item)) for item in parse_all(raw)]
    except FormatError as exc:
        raise KeyError_(f"the chain file is not a concatenation of CV certificates: {exc}") from None
    return [c for c in certs if not c.self_signed]


def install(
    home: Path, *, key_file: Path, chain_file: Path, bundle_dir: Path, dedup_point: bytes | None = None
) -> None:
    """Copy the terminal key, its chain and the trust bundle (and central's de-duplication public point,
    to which camp uploads seal the card templates) into a new station home."""
    terminal = home / "terminal"
    terminal.mkdir(parents=True, exist_ok=True)
    if (terminal / "key.enc").exists():
        raise KeyError_(f"{terminal / 'key.enc'} exists; a station home is installed once")
    read_chain(chain_file.read_bytes())  # refuse garbage early
    TrustBundle.read(bundle_dir)
    if dedup_point is not None:
        _dedup_public_key(dedup_point)  # a P-256 point or refuse, before anything is copied
    shutil.copyfile(key_file, terminal / "key.enc")
    os.chmod(terminal / "key.enc", 0o600)
    shutil.copyfile(chain_file, terminal / "chain.cvc")
    if (home / "bundle").exists():
        shutil.rmtree(home / "bundle")
    shutil.copytree(bundle_dir, home / "bundle")
    if dedup_point is not None:
        (home / DEDUP_KEY_FILE).write_text(dedup_point.hex() + "\n")


@dataclass
class StationIdentity:
    """What the station signs with and verifies against, loaded and checked for ``now``."""

    terminal: Signer
    chain: list[CvCertificate]
    bundle: TrustBundle
    revocations: RevocationStore
    seal_key: bytes

    @property
    def chr(self) -> str:
        return self.chain[-1].chr

    @property
    def terminal_id(self) -> int:
        return chr_id(self.chr)

    @property
    def anchor(self) -> TrustAnchor:
        return self.bundle.anchor

    @classmethod
    def load(cls, home: Path, passphrase: bytes, *, now: datetime) -> StationIdentity:
        """Unlock the terminal key and check its chain as any verifier would (ENROL right, not revoked)."""
        try:
            signer = FileSigner.load(home / "terminal" / "key.enc", passphrase)
            chain = read_chain((home / "terminal" / "chain.cvc").read_bytes())
            bundle = TrustBundle.read(home / "bundle")
            store = apply_bundle(bundle, now=now)
        except (PkiError, OSError) as exc:
            raise KeyError_(f"cannot load the station identity from {home}: {exc}") from None
        identity = cls.of(signer, chain, bundle, store, now=now)
        identity.home = home
        return identity

    @classmethod
    def of(
        cls,
        signer: Signer,
        chain: list[CvCertificate],
        bundle: TrustBundle,
        store: RevocationStore,
        *,
        now: datetime,
        seal_secret: bytes | None = None,
    ) -> StationIdentity:
        if not chain or chain[-1].public_point != signer.public_key():
            raise KeyError_("the terminal key does not match the last certificate of the chain")
        if chain[-1].role is not Role.ENROLMENT_TERMINAL:
            raise KeyError_(f"{chain[-1].chr} is a {chain[-1].role.name}, not an enrolment terminal")
        try:
            validate_chain(chain, bundle.anchor, now=now, required=Right.ENROL, revocations=store)
        except PkiError as exc:
            raise KeyError_(f"the station's certificate is not valid: {exc}") from None
        if seal_secret is None:
            seal_secret = _private_bytes(signer)
        seal_key = HKDF(hashes.SHA256(), 32, salt=None, info=SEAL_INFO).derive(seal_secret)
        return cls(signer, chain, bundle, store, seal_key)

    home: Path | None = None

    def dedup_key(self) -> ec.EllipticCurvePublicKey | None:
        """Central's de-duplication public key (HOME/central-dedup.pub, 65-byte point in hex), if any."""
        if self.home is None or not (self.home / DEDUP_KEY_FILE).exists():
            return None
        path = self.home / DEDUP_KEY_FILE
        try:
            point = bytes.fromhex(path.read_text().strip())
        except ValueError:
            raise KeyError_(f"{path} does not hold a hex public point") from None
        return _dedup_public_key(point)

    # -- sealing of templates in the journal -----------------------------------------------------------
    def seal(self, data: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.seal_key).encrypt(nonce, data, context.encode())

    def unseal(self, blob: bytes, context: str) -> bytes:
        try:
            return AESGCM(self.seal_key).decrypt(blob[:12], blob[12:], context.encode())
        except InvalidTag:
            raise KeyError_(f"sealed data for {context} does not open with this station's key") from None


def _dedup_public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """Central's de-duplication key from its 65-byte point; KeyError_ (saying why) when it is not one."""
    try:
        return load_public_point(point)
    except PointError as exc:
        raise KeyError_(f"central's de-duplication key is refused: {exc.message}") from None


def _private_bytes(signer: Signer) -> bytes:
    """The private scalar of an in-memory signer (file custody); the seal key is derived from it."""
    if isinstance(signer, SoftwareSigner):
        return signer._key.private_numbers().private_value.to_bytes(32, "big")
    raise KeyError_("the station needs its terminal key in file custody (key.enc) to seal templates")
