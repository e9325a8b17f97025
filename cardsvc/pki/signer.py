"""Where a private key lives does not matter to the rest of the code: one :class:`Signer` interface.

All signatures are ECDSA P-256 over SHA-256, returned as raw r||s (64 bytes, as in CV certificates); public
keys travel as the 65-byte uncompressed point (04 || X || Y).

* :class:`SoftwareSigner` - key in memory (tests, simulators, short-lived keys).
* :class:`FileSigner` - key at rest in a file: PKCS#8 DER encrypted with AES-256-GCM under a scrypt key.
* :class:`Pkcs11Signer` - key inside a PKCS#11 token (SoftHSM2 in tests, an HSM in production); SoftHSM2
  refuses CKM_ECDSA_SHA256, so we hash here and sign the digest with CKM_ECDSA.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cardsvc.formats.errors import SignatureError
from cardsvc.formats.transaction import sign_raw, verify_raw_signature
from cardsvc.pki.errors import KeyCustodyError, PointError, SignatureInvalidError

CURVE = ec.SECP256R1()
POINT_LEN = 65
COMPRESSED_POINT_LEN = 33
SIGNATURE_LEN = 64


@runtime_checkable
class Signer(Protocol):
    """A P-256 private key, wherever it lives."""

    def public_key(self) -> bytes:
        """The 65-byte uncompressed public point."""
        ...

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 over ``data``; raw r||s, 64 bytes."""
        ...


def load_public_point(point: bytes, *, compressed: bool = False) -> ec.EllipticCurvePublicKey:
    """Decode a P-256 public point: the 65-byte uncompressed SEC1 encoding 04 || X || Y (also the 33-byte
    compressed 02/03 || X when ``compressed``). The project's one place that turns bytes into a public key.

    Raises :class:`~cardsvc.pki.errors.PointError` (a FormatError) for a wrong length or prefix, or for
    coordinates that are not a point on the curve."""
    point = bytes(point)
    uncompressed = len(point) == POINT_LEN and point[0] == 0x04
    short = compressed and len(point) == COMPRESSED_POINT_LEN and point[0] in (0x02, 0x03)
    if not (uncompressed or short):
        shape = f"{POINT_LEN}-byte uncompressed"
        if compressed:
            shape += f" or {COMPRESSED_POINT_LEN}-byte compressed"
        prefix = f", prefix {point[0]:02x}" if point else ""
        raise PointError(f"public key must be a {shape} P-256 point, got {len(point)} bytes{prefix}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, point)
    except ValueError:
        raise PointError("public key is not a point on P-256") from None


def point_of(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Encode a P-256 public key as its 65-byte uncompressed point 04 || X || Y (what certificates, cards and
    batches carry); the inverse of :func:`load_public_point`."""
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def verify_signature(point: bytes, data: bytes, signature: bytes, *, subject: str = "") -> None:
    """Raise SignatureInvalidError unless ``signature`` (raw r||s) is valid for ``data`` under ``point``.

    The raw-signature check itself is the project convention's one home,
    :func:`cardsvc.formats.transaction.verify_raw_signature`; this adds the point parsing and the PKI error.
    """
    if len(signature) != SIGNATURE_LEN:
        raise SignatureInvalidError(
            f"signature must be {SIGNATURE_LEN} bytes r||s, got {len(signature)}", subject=subject
        )
    key = load_public_point(point)
    try:
        verify_raw_signature(key, data, signature)
    except SignatureError:
        raise SignatureInvalidError(
            "signature does not verify under the issuer's key", subject=subject
        ) from None


def key_id(point: bytes) -> str:
    """Short fingerprint of a public key for logs and listings (never the key itself)."""
    return hashlib.sha256(point).hexdigest()[:16]


class SoftwareSigner:
    """A key held in memory."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise KeyCustodyError(f"only P-256 keys are supported, got {private_key.curve.name}")
        self._key = private_key

    @classmethod
    def generate(cls) -> SoftwareSigner:
        return cls(ec.generate_private_key(CURVE))

    def public_key(self) -> bytes:
        return point_of(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        return sign_raw(self._key, data)

    def __repr__(self) -> str:
        return f"SoftwareSigner(key_id={key_id(self.public_key())})"


# ----------------------------------------------------------------------------------------------------
# Keys at rest: scrypt + AES-256-GCM around PKCS#8 DER
# ----------------------------------------------------------------------------------------------------

KEYFILE_FORMAT = "cardsvc-encrypted-pkcs8-v1"


@dataclass(frozen=True)
class ScryptCost:
    """scrypt parameters. The default costs about 0.1 s and 32 MiB; tests pass a cheap one."""

    n: int = 2**15
    r: int = 8
    p: int = 1


def _kdf(passphrase: bytes, salt: bytes, cost: ScryptCost) -> bytes:
    return Scrypt(salt=salt, length=32, n=cost.n, r=cost.r, p=cost.p).derive(passphrase)


def encrypt_private_key(
    private_key: ec.EllipticCurvePrivateKey,
    passphrase: bytes,
    *,
    cost: ScryptCost | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Serialise ``private_key`` as an encrypted key file (JSON envelope, documented in docs/keymgmt.md)."""
    if not passphrase:
        raise KeyCustodyError("refusing to store a private key under an empty passphrase")
    cost = cost or ScryptCost()
    salt, nonce = rng(16), rng(12)
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    header: dict[str, Any] = {
        "format": KEYFILE_FORMAT,
        "kdf": {
            "name": "scrypt",
            "n": cost.n,
            "r": cost.r,
            "p": cost.p,
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "aes-256-gcm", "nonce": base64.b64encode(nonce).decode()},
        "public_point": point_of(private_key.public_key()).hex(),
    }
    aad = json.dumps(header, sort_keys=True).encode()
    ciphertext = AESGCM(_kdf(passphrase, salt, cost)).encrypt(nonce, pkcs8, aad)
    header["ciphertext"] = base64.b64encode(ciphertext).decode()
    return (json.dumps(header, indent=1, sort_keys=True) + "\n").encode()


def decrypt_private_key(blob: bytes, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """Inverse of :func:`encrypt_private_key`; a wrong passphrase or altered file raises KeyCustodyError."""
    try:
        header = json.loads(blob)
        ciphertext = base64.b64decode(header.pop("ciphertext"))
        if header.get("format") != KEYFILE_FORMAT:
            raise KeyCustodyError(f"not a {KEYFILE_FORMAT} key file (format={header.get('format')!r})")
        kdf = header["kdf"]
        cost = ScryptCost(n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"]))
        salt = base64.b64decode(kdf["salt"])
        nonce = base64.b64decode(header["cipher"]["nonce"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyCustodyError(f"key file is malformed: {exc.__class__.__name__}") from None
    aad = json.dumps(header, sort_keys=True).encode()
    try:
        pkcs8 = AESGCM(_kdf(passphrase, salt, cost)).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise KeyCustodyError("wrong passphrase, or the key file was altered") from None
    key = serialization.load_der_private_key(pkcs8, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyCustodyError("key file does not hold an EC private key")
    if point_of(key.public_key()).hex() != header.get("public_point"):
        raise KeyCustodyError("key file's public point does not match its private key")
    return key


class FileSigner(SoftwareSigner):
    """A key stored encrypted at rest; decrypted into memory only when loaded for signing."""

    def __init__(self, path: Path, private_key: ec.EllipticCurvePrivateKey) -> None:
        super().__init__(private_key)
        self.path = path

    @classmethod
    def create(
        cls,
        path: Path,
        passphrase: bytes,
        *,
        cost: ScryptCost | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> FileSigner:
        """Generate a new key and write it encrypted to ``path`` (refuses to overwrite, mode 0600)."""
        key = ec.generate_private_key(CURVE)
        blob = encrypt_private_key(key, passphrase, cost=cost, rng=rng)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyCustodyError(f"key file {path} already exists; refusing to overwrite it") from None
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        return cls(path, key)

    @classmethod
    def load(cls, path: Path, passphrase: bytes) -> FileSigner:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KeyCustodyError(f"no key file at {path}") from None
        return cls(path, decrypt_private_key(blob, passphrase))

    @staticmethod
    def stored_public_key(path: Path) -> bytes:
        """The public point recorded in a key file, without the passphrase."""
        try:
            return bytes.fromhex(json.loads(path.read_bytes())["public_point"])
        except (OSError, ValueError, KeyError) as exc:
            raise KeyCustodyError(f"cannot read public key from {path}: {exc}") from None

    def __repr__(self) -> str:
        return f"FileSigner(path={str(self.path)!r}, key_id={key_id(self.public_key())})"


# ----------------------------------------------------------------------------------------------------
# Keys in a PKCS#11 token
# ----------------------------------------------------------------------------------------------------

SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


def find_softhsm_module() -> str | None:
    """Path of SoftHSM2's PKCS#11 module, or None (env PKCS11_MODULE wins)."""
    env = os.environ.get("PKCS11_MODULE")
    if env:
        return env
    for cand in SOFTHSM_MODULE_CANDIDATES:
        if os.path.exists(cand):
            return cand
    return None


@dataclass
class _PooledSession:
    session: Any
    pin_digest: bytes
    refs: int


# PKCS#11 login state is per token and per process: a second C_Login fails (UserAlreadyLoggedIn) and closing
# any logged-in session logs out all of them. So signers on one token share one logged-in session.
_POOL_LOCK = threading.Lock()
_POOL: dict[tuple[str, str], _PooledSession] = {}


def _acquire_session(module_path: str, token_label: str, pin: str) -> Any:
    import pkcs11

    digest = hashlib.sha256(pin.encode()).digest()
    key = (module_path, token_label)
    with _POOL_LOCK:
        entry = _POOL.get(key)
        if entry is not None:
            if not hmac.compare_digest(entry.pin_digest, digest):
                raise KeyCustodyError(f"wrong PIN for token {token_label!r}")
            entry.refs += 1
            return entry.session
        try:
            lib = pkcs11.lib(module_path)
            token = lib.get_token(token_label=token_label)
            session = token.open(user_pin=pin, rw=True)
        except pkcs11.PinIncorrect:
            raise KeyCustodyError(f"wrong PIN for token {token_label!r}") from None
        except pkcs11.PinLocked:
            raise KeyCustodyError(f"the user PIN of token {token_label!r} is locked") from None
        except (pkcs11.NoSuchToken, pkcs11.PKCS11Error, RuntimeError) as exc:
            raise KeyCustodyError(
                f"cannot open PKCS#11 token {token_label!r} via {module_path}: {exc.__class__.__name__}"
            ) from None
        _POOL[key] = _PooledSession(session=session, pin_digest=digest, refs=1)
        return session


def _release_session(module_path: str, token_label: str) -> None:
    with _POOL_LOCK:
        entry = _POOL.get((module_path, token_label))
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs <= 0:
            del _POOL[(module_path, token_label)]
            entry.session.close()


class Pkcs11Signer:
    """A P-256 key inside a PKCS#11 token, found by its label. The private key never leaves the token.

    The (shared) logged-in session stays open while the signer lives; call :meth:`close` or use ``with``.
    """

    def __init__(self, module_path: str, token_label: str, pin: str, key_label: str) -> None:
        import pkcs11  # local: only key custody needs the PKCS#11 binding

        self.module_path = module_path
        self.token_label = token_label
        self.key_label = key_label
        self._closed = False
        self._session = _acquire_session(module_path, token_label, pin)
        try:
            self._private: Any = self._session.get_key(
                object_class=pkcs11.ObjectClass.PRIVATE_KEY, key_type=pkcs11.KeyType.EC, label=key_label
            )
            public = self._session.get_key(
                object_class=pkcs11.ObjectClass.PUBLIC_KEY, key_type=pkcs11.KeyType.EC, label=key_label
            )
        except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned) as exc:
            self.close()
            raise KeyCustodyError(
                f"token {token_label!r} has no single EC key pair labelled {key_label!r} "
                f"({exc.__class__.__name__})"
            ) from None
        self._point = _point_from_ec_point_attr(bytes(public[pkcs11.Attribute.EC_POINT]))

    @classmethod
    def generate(cls, module_path: str, token_label: str, pin: str, key_label: str) -> Pkcs11Signer:
        """Generate a non-extractable P-256 key pair in the token under ``key_label`` (refuses duplicates)."""
        import pkcs11
        from pkcs11.util.ec import encode_named_curve_parameters

        session = _acquire_session(module_path, token_label, pin)
        try:
            existing = list(session.get_objects({pkcs11.Attribute.LABEL: key_label}))
            if existing:
                raise KeyCustodyError(f"token {token_label!r} already holds a key labelled {key_label!r}")
            params = session.create_domain_parameters(
                pkcs11.KeyType.EC,
                {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True,
            )
            params.generate_keypair(
                store=True,
                label=key_label,
                private_template={pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False},
            )
        except pkcs11.PKCS11Error as exc:
            raise KeyCustodyError(
                f"cannot generate a key in token {token_label!r}: {exc.__class__.__name__}"
            ) from None
        finally:
            _release_session(module_path, token_label)
        return cls(module_path, token_label, pin, key_label)

    def public_key(self) -> bytes:
        return self._point

    def sign(self, data: bytes) -> bytes:
        import pkcs11

        if self._closed:
            raise KeyCustodyError(f"signer for {self.key_label!r} in token {self.token_label!r} is closed")
        digest = hashlib.sha256(data).digest()
        sig = bytes(self._private.sign(digest, mechanism=pkcs11.Mechanism.ECDSA))
        if len(sig) != SIGNATURE_LEN:
            raise KeyCustodyError(f"token returned a {len(sig)}-byte signature, expected raw r||s")
        return sig

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release_session(self.module_path, self.token_label)

    def __enter__(self) -> Pkcs11Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kid = key_id(self._point)
        return f"Pkcs11Signer(token={self.token_label!r}, key={self.key_label!r}, key_id={kid})"


def _point_from_ec_point_attr(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give the bare point)."""
    if len(value) == POINT_LEN and value[0] == 0x04:
        return value
    if len(value) == POINT_LEN + 2 and value[0] == 0x04 and value[1] == POINT_LEN:
        return value[2:]
    raise KeyCustodyError(f"unexpected CKA_EC_POINT encoding ({len(value)} bytes)")
