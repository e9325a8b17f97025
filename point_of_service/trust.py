"""What the terminal trusts offline, persisted in the journal's key/value table so it survives restarts:
district certificates, the newest signed revocation list of each issuer (a rollback stays refused after a
restart), central's register of revoked cards, operators and terminals, central's own signed revocation list
(cards, terminals by certificate or, when central knows only a plain key, by record id, and facility
operators by their record id), and the package catalogue.

Central signs its list with the root's or a district's key, but numbers its versions apart from the DKMA's
lists of the same issuer: it is kept in a store of its own (``central_lists``), which the main store
consults, so every check that takes ``trust.store`` sees central's revocations too."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cardsvc.pki.bundle import TrustBundle, apply_bundle
from cardsvc.pki.chain import Revocation, TrustAnchor
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.revocation import RevocationList, RevocationStore, operator_subject, terminal_subject
from point_of_service.catalogue import Catalogue, check_not_rollback, verify_catalogue
from point_of_service.errors import CatalogueError, TerminalSetupError
from point_of_service.journal import Journal
from point_of_service.reasons import Reason

_LISTS = "trust.lists"
_DISTRICTS = "trust.districts"
_CENTRAL = "trust.central_revocations"
_CATALOGUE = "trust.catalogue"
_CATALOGUE_HISTORY = "trust.catalogue_versions"
_CENTRAL_LIST = "trust.central_list"

log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class TrustState:
    """Loaded from and saved to ``journal``; every change is persisted before it is used."""

    journal: Journal
    anchor: TrustAnchor
    store: RevocationStore
    districts: dict[str, CvCertificate] = field(default_factory=dict)
    central: dict[str, dict[str, int]] = field(default_factory=dict)
    catalogue: Catalogue | None = None
    #: the revocation list central signed (GET /revocations ``signed_list``), consulted by ``store``
    central_lists: RevocationStore | None = None

    def __post_init__(self) -> None:
        if self.central_lists is None:
            self.central_lists = RevocationStore(self.anchor)
        if self.central_lists not in self.store.also:
            self.store.also.append(self.central_lists)

    @classmethod
    def load(
        cls, journal: Journal, anchor: TrustAnchor, *, districts: Mapping[str, CvCertificate] | None = None
    ) -> TrustState:
        store = RevocationStore(anchor)
        for wire in journal.get(_LISTS, {}).values():
            rl = RevocationList.parse(base64.b64decode(wire))
            store.lists[rl.issuer] = rl  # verified when it was installed
        known = {
            chr_: CvCertificate.parse(base64.b64decode(c)) for chr_, c in journal.get(_DISTRICTS, {}).items()
        }
        known.update(districts or {})
        catalogue_wire = journal.get(_CATALOGUE)
        catalogue = None
        if catalogue_wire is not None:
            catalogue = Catalogue.from_body(catalogue_wire)
        central_lists = RevocationStore(anchor)
        central_wire = journal.get(_CENTRAL_LIST)
        if central_wire is not None:
            rl = RevocationList.parse(base64.b64decode(central_wire))
            central_lists.lists[rl.issuer] = rl  # verified when it was installed
        return cls(journal, anchor, store, known, journal.get(_CENTRAL, {}), catalogue, central_lists)

    # --- signed lists (trust bundle from the district) ---------------------------------------------
    def apply_bundle(self, bundle: TrustBundle, *, now: datetime) -> list[str]:
        """Install the bundle's districts and lists (each verified; an older list is refused)."""
        if bundle.anchor != self.anchor:
            raise TerminalSetupError(
                Reason.TERMINAL_NOT_SET_UP, f"bundle root {bundle.anchor.chr} is not ours"
            )
        before = {i: rl.version for i, rl in self.store.lists.items()}
        try:
            apply_bundle(bundle, now=now, store=self.store)
        except PkiError as exc:
            raise TerminalSetupError(Reason.TERMINAL_NOT_SET_UP, f"{exc.rule}: {exc}") from None
        self.districts.update(bundle.districts)
        self._save_lists()
        return [f"{i} v{rl.version}" for i, rl in self.store.lists.items() if before.get(i) != rl.version]

    def _save_lists(self) -> None:
        with self.journal.transaction():
            self.journal.put(_LISTS, {i: _b64(rl.encode()) for i, rl in self.store.lists.items()})
            self.journal.put(_DISTRICTS, {c: _b64(cert.encode()) for c, cert in self.districts.items()})

    # --- central's register (GET /revocations) -----------------------------------------------------
    def set_central_revocations(self, payload: Mapping[str, Any], *, now: datetime | None = None) -> None:
        """Keep central's register; with ``signed_list`` in it, verify and install central's signed list.

        A signed list that does not verify (or rolls back) is refused and journalled; the one held stays.
        """
        central = {
            kind: {str(e["id"]): int(e["revoked_at"]) for e in payload.get(kind, [])}
            for kind in ("terminals", "operators", "cards")
        }
        self.central = central
        self.journal.put(_CENTRAL, central)
        signed = payload.get("signed_list")
        if isinstance(signed, str):
            try:
                self.install_central_list(base64.b64decode(signed), now=now)
            except (PkiError, TerminalSetupError, ValueError) as exc:
                why = f"{exc.rule}: {exc}" if isinstance(exc, PkiError) else str(exc)
                log.warning("central's signed revocation list refused: %s", why)
                self.journal.log(
                    "trust.central_list", at=int(payload.get("issued_at") or 0), outcome="refused",
                    detail={"why": why},
                )  # fmt: skip

    def install_central_list(self, wire: bytes, *, now: datetime | None = None) -> bool:
        """Verify central's signed revocation list (root key, or a district key whose certificate this
        terminal holds) and keep it; False when it is the list already held. ``now``: when to check the
        signer's certificate (default: the list's own signed issue time). Raises PkiError (bad signature,
        rollback) or TerminalSetupError (signed by a district this terminal does not know)."""
        rl = RevocationList.parse(wire)
        chain: list[CvCertificate] = []
        if rl.issuer != self.anchor.chr:
            district = self.districts.get(rl.issuer)
            if district is None:
                raise TerminalSetupError(
                    Reason.TERMINAL_NOT_SET_UP,
                    f"central's list is signed by {rl.issuer}, a district not held",
                )
            chain = [district]
        assert self.central_lists is not None
        if not self.central_lists.offer(rl, now=now or rl.issued_at, issuer_chain=chain):
            return False
        self.central_lists.lists = {rl.issuer: rl}  # central signs with one key: its newest list is the list
        self.journal.put(_CENTRAL_LIST, _b64(rl.encode()))
        return True

    def central_list_version(self) -> int:
        """The version of central's signed list held (0: none)."""
        assert self.central_lists is not None
        return max((rl.version for rl in self.central_lists.lists.values()), default=0)

    def central_revoked_at(self, kind: str, hex_id: str) -> int | None:
        """When central revoked a card, operator or terminal known by its record id (16 hex digits): the
        earlier of its unsigned register and its signed list (``TRM-<id>`` for terminals it knows by a
        plain key, ``OP-<id>`` for operators), so a revocation stripped from the register still counts."""
        times = [self.central.get(kind, {}).get(hex_id)]
        subject = {"terminals": terminal_subject, "operators": operator_subject}.get(kind)
        if subject is not None and self.central_lists is not None:
            for rl in self.central_lists.lists.values():
                entry = rl.entry_for(subject(int(hex_id, 16)))
                if entry is not None:
                    times.append(int(entry.revoked_at.timestamp()))
        return min((t for t in times if t is not None), default=None)

    def revocation_of(self, chr: str, issuer_path: tuple[str, ...]) -> Revocation | None:
        return self.store.revocation_of(chr, issuer_path)

    # --- package catalogue -------------------------------------------------------------------------
    def install_catalogue(self, wire: bytes, *, now: datetime) -> bool:
        """Verify and install a signed catalogue; False if it is the one already held."""
        catalogue = verify_catalogue(wire, self.anchor, now=now, revocations=self.store)
        if not check_not_rollback(catalogue, self.catalogue):
            return False
        history = dict(self.journal.get(_CATALOGUE_HISTORY, {}))
        history[str(catalogue.version)] = catalogue.body()
        with self.journal.transaction():
            self.journal.put(_CATALOGUE, catalogue.body())
            self.journal.put(_CATALOGUE_HISTORY, history)
        self.catalogue = catalogue
        return True

    def catalogue_version(self, version: int) -> Catalogue:
        """An older version (an admission made under v2 is settled against v2's rate)."""
        body = self.journal.get(_CATALOGUE_HISTORY, {}).get(str(version))
        if body is None:
            raise CatalogueError(Reason.UNKNOWN_PACKAGE, f"catalogue v{version} is not held")
        return Catalogue.from_body(body)

    def current_catalogue(self) -> Catalogue:
        if self.catalogue is None:
            raise CatalogueError(Reason.UNKNOWN_PACKAGE, "no package catalogue installed; sync first")
        return self.catalogue


def utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
