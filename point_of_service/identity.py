"""The terminal's own identity: its CHR, the 8-byte id central knows it by, its key (encrypted at rest,
scrypt + AES-GCM as keymgmt writes it) and its certificate chain to the root.

Home layout (``POS_HOME`` or ``--home``)::

    terminal.json   {"chr": "INTRM-POS-0001", "terminal_id": "000000005ec00001", "facility_id": 17,
                     "central_url": "http://127.0.0.1:8000"}
    terminal.chain  root + district + terminal CV certificates, concatenated (keymgmt export-chain)
    key.enc         the terminal's private key, encrypted (keymgmt register-terminal / FileSigner)
    journal.sqlite  the journal (point_of_service.journal)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cardsvc.formats.profile import reference_id as profile_reference_id
from cardsvc.pki.chain import RevocationLookup, TrustAnchor, ValidatedChain, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import FormatError, PkiError, RevokedError
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import FileSigner, Signer
from cardsvc.tlv import strict_codec
from point_of_service.errors import TerminalSetupError
from point_of_service.reasons import Reason

#: The chain file is certificates back to back (strict BER-TLV, cardsvc/tlv.py; errors as the PKI's).
parse_all = strict_codec(FormatError).parse_all

CONFIG_FILE = "terminal.json"
CHAIN_FILE = "terminal.chain"
KEY_FILE = "key.enc"
JOURNAL_FILE = "journal.sqlite"


def reference_id(chr: str) -> int:
    """The 8-byte id an officer or terminal CHR is written as in card records (cardsvc.formats.profile)."""
    return profile_reference_id(chr)


def parse_chain_file(data: bytes) -> list[CvCertificate]:
    try:
        return [CvCertificate.parse(item.encoded) for item in parse_all(data)]
    except PkiError as exc:
        raise TerminalSetupError(Reason.TERMINAL_NOT_SET_UP, f"chain file unreadable: {exc}") from None


@dataclass(frozen=True)
class TerminalIdentity:
    """What the terminal proves itself with to cards (terminal authentication) and to central (signing)."""

    chr: str
    terminal_id: int
    facility_id: int
    anchor: TrustAnchor
    chain: tuple[CvCertificate, ...]  # district .. terminal (root excluded: it is the anchor)
    signer: Signer
    central_url: str = ""

    @property
    def certificate(self) -> CvCertificate:
        return self.chain[-1]

    def validate(self, *, now: datetime, revocations: RevocationLookup | None = None) -> ValidatedChain:
        """The terminal's own chain must hold at ``now`` (a revoked terminal stops working)."""
        try:
            validated = validate_chain(
                list(self.chain), self.anchor, now=now, required=Right.DEBIT, revocations=revocations
            )
        except RevokedError as exc:
            raise TerminalSetupError(Reason.TERMINAL_REVOKED, str(exc)) from None
        except PkiError as exc:
            raise TerminalSetupError(Reason.TERMINAL_NOT_SET_UP, f"{exc.rule}: {exc}") from None
        if validated.role is not Role.POS_TERMINAL:
            raise TerminalSetupError(
                Reason.TERMINAL_NOT_SET_UP,
                f"{validated.leaf.chr} is a {validated.role.name}, not a POS terminal",
            )
        return validated


def install(
    home: Path, *, chain_file: Path, key_file: Path, terminal_id: int, facility_id: int, central_url: str = ""
) -> None:
    """Set a terminal up from the district's files (chain from keymgmt export-chain, the encrypted key)."""
    certs = parse_chain_file(chain_file.read_bytes())
    if len(certs) < 2 or certs[0].role is not Role.ROOT:
        raise TerminalSetupError(Reason.TERMINAL_NOT_SET_UP, "the chain file must start with the root")
    point = FileSigner.stored_public_key(key_file)
    if point != certs[-1].public_point:
        raise TerminalSetupError(
            Reason.TERMINAL_NOT_SET_UP, "the key file does not belong to the certificate"
        )
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(chain_file, home / CHAIN_FILE)
    # The key file is created 0600 (not copied with the umask, then narrowed): never readable by others.
    fd = os.open(home / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_file.read_bytes())
    (home / KEY_FILE).chmod(0o600)  # a re-install over an older file keeps 0600 too
    config = {
        "chr": certs[-1].chr,
        "terminal_id": f"{terminal_id:016x}",
        "facility_id": facility_id,
        "central_url": central_url,
    }
    (home / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load(home: Path, passphrase: bytes, *, signer: Signer | None = None) -> TerminalIdentity:
    """Load the identity; the key is decrypted with ``passphrase`` (never stored, never logged)."""
    try:
        config = json.loads((home / CONFIG_FILE).read_text())
        certs = parse_chain_file((home / CHAIN_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise TerminalSetupError(Reason.TERMINAL_NOT_SET_UP, f"{home}: {exc}") from None
    try:
        anchor = TrustAnchor.from_certificate(certs[0])
        key = signer or FileSigner.load(home / KEY_FILE, passphrase)
    except (OSError, PkiError) as exc:
        raise TerminalSetupError(Reason.TERMINAL_NOT_SET_UP, f"terminal key or root: {exc}") from None
    return TerminalIdentity(
        chr=config["chr"],
        terminal_id=int(config["terminal_id"], 16),
        facility_id=int(config["facility_id"]),
        anchor=anchor,
        chain=tuple(certs[1:]),
        signer=key,
        central_url=config.get("central_url", ""),
    )
