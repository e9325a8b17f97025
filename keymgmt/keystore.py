"""The keystore directory (``--home DIR`` or env KEYMGMT_HOME): one place that knows where things live.

Layout (documented in docs/keymgmt.md)::

    HOME/
      root/root.cvc                 self-signed root certificate
      root/custody.json             where the root key is: {"kind": "file", "file": "key.enc"} or
                                    {"kind": "pkcs11", "module": ..., "token": ..., "label": ...}
      root/key.enc                  (file custody) scrypt + AES-GCM encrypted PKCS#8
      districts/<CHR>/cert.cvc, custody.json, key.enc
      holders/<CHR>/cert.cvc        officers and terminals
      holders/<CHR>/holder.json     {"role": ..., "district": ...}
      holders/<CHR>/key.enc         terminals (and demo officers): the holder's key, encrypted at rest
      revocations/<ISSUER>.json     revocations recorded by ISSUER, and the last published list version
      lists/<ISSUER>.v<N>.rl        every published revocation list (binary, docs/certificates.md)
      audit.log                     hash-chained audit log (keymgmt/audit.py)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardsvc.pki.cvc import CvCertificate, check_reference
from cardsvc.pki.errors import KeyCustodyError, PkiError

HOME_ENV = "KEYMGMT_HOME"


class KeystoreError(PkiError):
    rule = "keystore"


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".keymgmt"


def _write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeystoreError(f"{path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Keystore:
    home: Path

    # -- paths --------------------------------------------------------------------------------------------
    @property
    def root_dir(self) -> Path:
        return self.home / "root"

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.log"

    @property
    def lists_dir(self) -> Path:
        return self.home / "lists"

    def district_dir(self, chr: str) -> Path:
        return self.home / "districts" / check_reference(chr, "district reference")

    def holder_dir(self, chr: str) -> Path:
        return self.home / "holders" / check_reference(chr, "holder reference")

    def revocations_path(self, issuer: str) -> Path:
        return self.home / "revocations" / f"{check_reference(issuer, 'issuer')}.json"

    def list_path(self, issuer: str, version: int) -> Path:
        return self.lists_dir / f"{check_reference(issuer, 'issuer')}.v{version}.rl"

    # -- certificates ---------------------------------------------------------------------------------------
    def has_root(self) -> bool:
        return (self.root_dir / "root.cvc").exists()

    def root_certificate(self) -> CvCertificate:
        path = self.root_dir / "root.cvc"
        if not path.exists():
            raise KeystoreError(f"no root in {self.home}: run `keymgmt init-root` first")
        return CvCertificate.parse(path.read_bytes())

    def entity_dir(self, chr: str) -> Path:
        """The directory of a root, district or holder reference."""
        if self.has_root() and self.root_certificate().chr == chr:
            return self.root_dir
        for d in (self.district_dir(chr), self.holder_dir(chr)):
            if (d / "cert.cvc").exists():
                return d
        raise KeystoreError(f"{chr} is not known in keystore {self.home}")

    def certificate(self, chr: str) -> CvCertificate:
        d = self.entity_dir(chr)
        name = "root.cvc" if d == self.root_dir else "cert.cvc"
        return CvCertificate.parse((d / name).read_bytes())

    def exists(self, chr: str) -> bool:
        try:
            self.entity_dir(chr)
        except KeystoreError:
            return False
        return True

    def save_certificate(self, directory: Path, cert: CvCertificate) -> None:
        name = "root.cvc" if cert.self_signed else "cert.cvc"
        _write_new(directory / name, cert.encode())

    def all_certificates(self) -> dict[str, CvCertificate]:
        out: dict[str, CvCertificate] = {}
        if self.has_root():
            root = self.root_certificate()
            out[root.chr] = root
        for group in ("districts", "holders"):
            base = self.home / group
            if base.is_dir():
                for d in sorted(base.iterdir()):
                    if (d / "cert.cvc").exists():
                        cert = CvCertificate.parse((d / "cert.cvc").read_bytes())
                        out[cert.chr] = cert
        return out

    def chain(self, chr: str) -> list[CvCertificate]:
        """Certificates from the district down to ``chr`` (the root is the trust anchor, not included)."""
        root = self.root_certificate()
        if chr == root.chr:
            return []
        certs = [self.certificate(chr)]
        while certs[0].car != root.chr:
            if len(certs) > 4:
                raise KeystoreError(f"chain of {chr} does not reach the root")
            certs.insert(0, self.certificate(certs[0].car))
        return certs

    # -- json side files ------------------------------------------------------------------------------
    @staticmethod
    def read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeystoreError(f"{path} is missing") from None
        except json.JSONDecodeError as exc:
            raise KeystoreError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise KeystoreError(f"{path} does not hold a JSON object")
        return data

    @staticmethod
    def write_json(path: Path, data: dict[str, Any], *, new: bool = False) -> None:
        raw = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
        if new:
            _write_new(path, raw)
        else:
            _write_replace(path, raw)

    @staticmethod
    def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
        _write_new(path, data, mode)

    def custody(self, chr: str) -> tuple[Path, dict[str, Any]]:
        d = self.entity_dir(chr)
        path = d / "custody.json"
        if not path.exists():
            raise KeyCustodyError(f"{chr} has no private key in this keystore (no {path.name})")
        return d, self.read_json(path)
