"""Key-management service: the key ceremony, issuance, revocation and publication as plain functions.

The CLI (keymgmt/cli.py) is a thin shell over :class:`KeyManager`. Every action is checked against the same
rules a verifier applies (cardsvc.pki.chain) before anything is written, and is recorded in the audit log,
signed by the key that performed it. Time is injected (``now=``) so ceremonies are reproducible in tests.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardsvc.pki.bundle import TrustBundle, apply_bundle
from cardsvc.pki.chain import TrustAnchor, ValidatedChain, validate_chain
from cardsvc.pki.cvc import CvCertificate, check_reference, issue_certificate, self_signed_root
from cardsvc.pki.errors import KeyCustodyError, PkiError
from cardsvc.pki.officer import Lifecycle, Unblock, check_unblock, sign_unblock
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationList,
    RevocationReason,
    RevocationStore,
    SubjectKind,
    build_revocation_list,
    decode_time,
    encode_time,
)
from cardsvc.pki.rights import DEFAULT_RIGHTS, Right, Role
from cardsvc.pki.signer import FileSigner, Pkcs11Signer, ScryptCost, Signer, key_id
from keymgmt.audit import AuditLog, verify_log
from keymgmt.keystore import Keystore, KeystoreError

if TYPE_CHECKING:
    from cardsvc.pki.officer_card import OfficerCardSession, VerifiedLedger

#: What the ceremony grants a holder when the operator names no rights: cardsvc.pki's defaults, and RENEW for
#: enrolment terminals (a station renews cards and lowers a split card's original: COMMIT RENEWAL and the
#: split's balance-setting record need it; ROLE_MAX_RIGHTS allows it).
DEFAULT_GRANTS: dict[Role, Right] = {
    **DEFAULT_RIGHTS,
    Role.ENROLMENT_TERMINAL: DEFAULT_RIGHTS[Role.ENROLMENT_TERMINAL] | Right.RENEW,
}

OFFICER_ROLES = frozenset({Role.FIELD_KEY_OFFICER, Role.FACILITY_OPERATOR})
TERMINAL_ROLES = frozenset({Role.ENROLMENT_TERMINAL, Role.POS_TERMINAL})
KIND_OF_ROLE = {
    Role.DISTRICT: SubjectKind.DISTRICT,
    Role.FIELD_KEY_OFFICER: SubjectKind.OFFICER,
    Role.FACILITY_OPERATOR: SubjectKind.OFFICER,
    Role.ENROLMENT_TERMINAL: SubjectKind.TERMINAL,
    Role.POS_TERMINAL: SubjectKind.TERMINAL,
    Role.BENEFICIARY_CARD: SubjectKind.CARD,
}


class ServiceError(PkiError):
    """An operator request the key-management policy refuses (wrong tier, duplicate, unknown holder)."""

    rule = "refused"


@dataclass(frozen=True)
class FileCustody:
    """Keep the new key in the keystore, encrypted under ``passphrase`` (kept out of repr and logs)."""

    passphrase: bytes = field(repr=False)


@dataclass(frozen=True)
class Pkcs11Custody:
    """Generate the new key in a PKCS#11 token (the production option)."""

    module: str
    token: str
    pin: str = field(repr=False)
    key_label: str


Custody = FileCustody | Pkcs11Custody


def utc_now() -> datetime:
    return datetime.now(UTC)


def add_years(d: date, years: int) -> date:
    year = d.year + years
    return date(year, d.month, min(d.day, calendar.monthrange(year, d.month)[1]))


class KeyManager:
    """All key-management actions over one keystore directory."""

    def __init__(
        self,
        home: Path,
        *,
        actor: str,
        now: Callable[[], datetime] = utc_now,
        scrypt_cost: ScryptCost | None = None,
    ) -> None:
        self.store = Keystore(home)
        self.actor = actor
        self._now = now
        self._cost = scrypt_cost
        self.audit = AuditLog(self.store.audit_path, now=now)

    # -- helpers ------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        t = self._now()
        if t.tzinfo is None:
            raise ValueError("the clock must return timezone-aware UTC times")
        return t

    def anchor(self) -> TrustAnchor:
        return TrustAnchor.from_certificate(self.store.root_certificate())

    def _create_key(self, directory: Path, custody: Custody) -> Signer:
        if isinstance(custody, FileCustody):
            signer: Signer = FileSigner.create(directory / "key.enc", custody.passphrase, cost=self._cost)
            self.store.write_json(directory / "custody.json", {"kind": "file", "file": "key.enc"}, new=True)
            return signer
        signer = Pkcs11Signer.generate(custody.module, custody.token, custody.pin, custody.key_label)
        self.store.write_json(
            directory / "custody.json",
            {"kind": "pkcs11", "module": custody.module, "token": custody.token, "label": custody.key_label},
            new=True,
        )
        return signer

    def load_signer(self, chr: str, secret: str | bytes) -> Signer:
        """Unlock ``chr``'s key: ``secret`` is the key file's passphrase or the token's user PIN."""
        directory, custody = self.store.custody(chr)
        text = secret.decode() if isinstance(secret, bytes) else secret
        if custody.get("kind") == "file":
            signer: Signer = FileSigner.load(directory / str(custody["file"]), text.encode())
        elif custody.get("kind") == "pkcs11":
            signer = Pkcs11Signer(str(custody["module"]), str(custody["token"]), text, str(custody["label"]))
        else:
            raise KeyCustodyError(f"{chr}: unknown key custody {custody.get('kind')!r}")
        if signer.public_key() != self.store.certificate(chr).public_point:
            raise KeyCustodyError(f"{chr}: the key in custody does not match its certificate")
        return signer

    @staticmethod
    def _close(signer: Signer) -> None:
        if isinstance(signer, Pkcs11Signer):
            signer.close()

    def _expiry(self, issuer: CvCertificate, years: int) -> date:
        return min(add_years(self.now().date(), years), issuer.expiry)

    def _record(
        self,
        action: str,
        subject: str,
        details: dict[str, Any],
        signer: Signer | None,
        signer_ref: str | None,
    ) -> None:
        self.audit.append(
            actor=self.actor,
            action=action,
            subject=subject,
            details=details,
            signer=signer,
            signer_ref=signer_ref,
        )

    def _issue_checked(
        self,
        issuer_chr: str,
        issuer_signer: Signer,
        *,
        chr: str,
        public_point: bytes,
        role: Role,
        rights: Right,
        years: int,
    ) -> CvCertificate:
        """Issue, then validate the new chain exactly as a verifier would before anything is stored."""
        check_reference(chr, "holder reference")
        if self.store.exists(chr):
            raise ServiceError(
                f"{chr} already exists in this keystore; references are never reused", subject=chr
            )
        issuer = self.store.certificate(issuer_chr)
        cert = issue_certificate(
            issuer_signer,
            car=issuer_chr,
            chr=chr,
            public_point=public_point,
            role=role,
            rights=rights,
            effective=self.now().date(),
            expiry=self._expiry(issuer, years),
        )
        validate_chain(
            [*self.store.chain(issuer_chr), cert],
            self.anchor(),
            now=self.now(),
            revocations=self.revocation_store(),
        )
        return cert

    # -- ceremony -------------------------------------------------------------------------------------------
    def init_root(self, chr: str, custody: Custody, *, years: int = 20) -> CvCertificate:
        if self.store.has_root():
            raise ServiceError(f"keystore {self.store.home} already has a root", subject=chr)
        check_reference(chr, "root reference")
        self.store.root_dir.mkdir(parents=True, exist_ok=True)
        signer = self._create_key(self.store.root_dir, custody)
        try:
            today = self.now().date()
            cert = self_signed_root(signer, chr=chr, effective=today, expiry=add_years(today, years))
            self.store.save_certificate(self.store.root_dir, cert)
            self._record(
                "root.init",
                chr,
                {"key_id": key_id(cert.public_point), "expiry": str(cert.expiry)},
                signer,
                chr,
            )
        finally:
            self._close(signer)
        return cert

    def add_district(
        self, chr: str, custody: Custody, *, root_secret: str, rights: Right | None = None, years: int = 10
    ) -> CvCertificate:
        root_cert = self.store.root_certificate()
        root = self.load_signer(root_cert.chr, root_secret)
        try:
            directory = self.store.district_dir(chr)
            if self.store.exists(chr):
                raise ServiceError(f"{chr} already exists in this keystore", subject=chr)
            directory.mkdir(parents=True, exist_ok=True)
            signer = self._create_key(directory, custody)
            try:
                cert = self._issue_checked(
                    root_cert.chr,
                    root,
                    chr=chr,
                    public_point=signer.public_key(),
                    role=Role.DISTRICT,
                    rights=DEFAULT_GRANTS[Role.DISTRICT] if rights is None else rights,
                    years=years,
                )
            except PkiError:
                if isinstance(custody, FileCustody):
                    self._discard(directory)
                raise
            finally:
                self._close(signer)
            self.store.save_certificate(directory, cert)
            self._record("district.add", chr, self._cert_details(cert), root, root_cert.chr)
        finally:
            self._close(root)
        return cert

    def register_terminal(
        self,
        chr: str,
        *,
        district: str,
        role: Role,
        district_secret: str,
        terminal_passphrase: bytes,
        rights: Right | None = None,
        years: int = 3,
    ) -> CvCertificate:
        """Generate a terminal key (encrypted at rest in the keystore) and certify it under ``district``."""
        if role not in TERMINAL_ROLES:
            raise ServiceError(f"{role.name} is not a terminal role", subject=chr)
        return self._issue_holder(
            chr, district, role, district_secret, rights, years, custody=FileCustody(terminal_passphrase)
        )

    def issue_officer(
        self,
        chr: str,
        *,
        district: str,
        role: Role,
        district_secret: str,
        public_point: bytes | None = None,
        key_custody: Custody | None = None,
        rights: Right | None = None,
        years: int = 3,
    ) -> CvCertificate:
        """Certify an officer's key: ``public_point`` generated on the officer's card, or (demo, no card)
        a key generated here under ``key_custody``."""
        if role not in OFFICER_ROLES:
            raise ServiceError(f"{role.name} is not an officer role", subject=chr)
        if (public_point is None) == (key_custody is None):
            raise ServiceError("give exactly one of the officer's public key or a custody for a new key")
        return self._issue_holder(
            chr,
            district,
            role,
            district_secret,
            rights,
            years,
            custody=key_custody,
            public_point=public_point,
        )

    def personalise_officer_card(
        self,
        session: OfficerCardSession,
        chr: str,
        *,
        district: str,
        role: Role,
        district_secret: str,
        pin: str,
        templates: Sequence[bytes],
        rights: Right | None = None,
        years: int = 3,
    ) -> CvCertificate:
        """Personalise a blank officer card in a reader: key generated ON the card, certificate issued
        under ``district`` (same checks as any issuance), then certificate, fingerprint templates (each
        7F2E-wrapped compact minutiae) and PIN written and the card locked."""
        if not templates:
            raise ServiceError("an officer card needs at least one fingerprint template", subject=chr)
        status = session.status()
        if status.lifecycle is not Lifecycle.PERSONALISATION:
            raise ServiceError(f"the card in the reader is already {status.lifecycle.name}", subject=chr)
        point = session.generate_key()
        cert = self.issue_officer(
            chr,
            district=district,
            role=role,
            district_secret=district_secret,
            public_point=point,
            rights=rights,
            years=years,
        )
        session.put_certificate(cert)
        session.put_templates(templates)
        session.set_pin(pin)
        session.lock()
        self._record(
            "officer.card.personalise",
            chr,
            {"key_id": key_id(point), "fingers": len(templates), "on_card_key": True},
            None,
            None,
        )
        return cert

    def read_officer_ledger(self, session: OfficerCardSession) -> VerifiedLedger:
        """Read back an officer card's activation ledger (after a camp): the card's signature and hash
        chain are verified, and the officer's chain must validate for the time of the last activation
        (activations made before a revocation still count). Recorded in the audit log."""
        ledger = session.read_ledger()
        chain = [*self.store.chain(ledger.officer.car), ledger.officer]
        last = ledger.entries[-1].when if ledger.entries else None
        validate_chain(
            chain, self.anchor(), now=self.now(), revocations=self.revocation_store(), signed_at=last
        )
        self._record(
            "officer.ledger.read",
            ledger.officer.chr,
            {"activations": len(ledger.entries), "head": ledger.head.hex()},
            None,
            None,
        )
        return ledger

    def unblock_officer_card(
        self,
        session: OfficerCardSession,
        *,
        district: str,
        district_secret: str,
        what: Unblock,
        new_pin: str | None = None,
    ) -> CvCertificate:
        """Unblock the officer card in a reader (docs/keymgmt.md, "Unblocking an officer card").

        The card must be OPERATIONAL, certified by ``district`` from this keystore (the certificate on the
        card the one on record) and its officer not revoked (published or merely recorded). ``district``'s
        key signs an authorisation for the card's fresh challenge, its CHR and ``what``; the card checks it
        and sets ``new_pin`` (PIN unblock) and/or resets the fingerprint tries in one transaction. The
        audit entry, signed by the district, names the card and what was unblocked, never the PIN.
        """
        try:  # before the card is touched: the same check the command's encoder makes
            what = check_unblock(what, None if new_pin is None else new_pin.encode("utf-8"))
        except PkiError as exc:
            raise ServiceError(f"cannot unblock: {exc}") from None
        status = session.status()
        if status.lifecycle is not Lifecycle.OPERATIONAL:
            raise ServiceError(
                f"the card in the reader is {status.lifecycle.name}: only an OPERATIONAL card is unblocked"
            )
        cert = session.certificate()
        if cert.car != district:
            raise ServiceError(
                f"{cert.chr} was issued by {cert.car}, not {district}: only its own district can unblock it",
                subject=cert.chr,
            )
        if not self.store.exists(cert.chr) or self.store.certificate(cert.chr) != cert:
            raise ServiceError(
                f"{cert.chr}: the certificate on this card is not the one {district} issued (not on record)",
                subject=cert.chr,
            )
        revoked = [e for e in self._pending(district)["entries"] if e["subject"] == cert.chr]
        if revoked:
            raise ServiceError(
                f"{cert.chr} is revoked ({revoked[0]['reason'].lower()}): issue a new card, do not unblock",
                subject=cert.chr,
            )
        validate_chain(
            [*self.store.chain(district), cert],
            self.anchor(),
            now=self.now(),
            revocations=self.revocation_store(),
        )
        signer = self.load_signer(district, district_secret)
        try:
            authorisation = sign_unblock(
                signer, self.store.certificate(district), cert.chr, session.unblock_challenge(), what
            )
            session.reset_retry_counter(authorisation, new_pin)
            self._record(
                "officer.card.unblock",
                cert.chr,
                {
                    "district": district,
                    "unblocked": what.names(),
                    "key_id": key_id(cert.public_point),
                    "tries_before": {"code": status.pin_tries_left, "fingerprint": status.bio_tries_left},
                },
                signer,
                district,
            )
        finally:
            self._close(signer)
        return cert

    def _issue_holder(
        self,
        chr: str,
        district: str,
        role: Role,
        district_secret: str,
        rights: Right | None,
        years: int,
        *,
        custody: Custody | None,
        public_point: bytes | None = None,
    ) -> CvCertificate:
        district_cert = self.store.certificate(district)
        if district_cert.role is not Role.DISTRICT:
            raise ServiceError(f"{district} is a {district_cert.role.name}, not a district", subject=chr)
        if self.store.exists(chr):
            raise ServiceError(f"{chr} already exists in this keystore", subject=chr)
        issuer = self.load_signer(district, district_secret)
        try:
            directory = self.store.holder_dir(chr)
            holder_signer: Signer | None = None
            if custody is not None:
                directory.mkdir(parents=True, exist_ok=True)
                holder_signer = self._create_key(directory, custody)
                public_point = holder_signer.public_key()
                self._close(holder_signer)
            assert public_point is not None
            try:
                cert = self._issue_checked(
                    district,
                    issuer,
                    chr=chr,
                    public_point=public_point,
                    role=role,
                    rights=DEFAULT_GRANTS[role] if rights is None else rights,
                    years=years,
                )
            except PkiError:
                if holder_signer is not None:
                    self._discard(directory)
                raise
            directory.mkdir(parents=True, exist_ok=True)
            self.store.save_certificate(directory, cert)
            self.store.write_json(
                directory / "holder.json", {"role": role.name, "district": district}, new=True
            )
            action = "terminal.register" if role in TERMINAL_ROLES else "officer.issue"
            details = self._cert_details(cert) | {"key_in_keystore": custody is not None}
            self._record(action, chr, details, issuer, district)
        finally:
            self._close(issuer)
        return cert

    @staticmethod
    def _discard(directory: Path) -> None:
        for p in directory.iterdir():
            p.unlink()
        directory.rmdir()

    @staticmethod
    def _cert_details(cert: CvCertificate) -> dict[str, Any]:
        return {
            "role": cert.role.name,
            "issuer": cert.car,
            "rights": cert.rights.names(),
            "effective": str(cert.effective),
            "expiry": str(cert.expiry),
            "key_id": key_id(cert.public_point),
        }

    # -- revocation -----------------------------------------------------------------------------------------
    def _pending(self, issuer: str) -> dict[str, Any]:
        path = self.store.revocations_path(issuer)
        if not path.exists():
            return {"issuer": issuer, "published_version": 0, "entries": []}
        return self.store.read_json(path)

    def revoke(
        self,
        subject: str,
        *,
        by: str,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        kind: SubjectKind | None = None,
        at: datetime | None = None,
    ) -> RevocationEntry:
        """Record a revocation by ``by`` (root or district); it takes effect for verifiers when published.

        A district revokes only holders it certified (and beneficiary cards); only the root revokes districts.
        ``at`` (default now) may be earlier than now, e.g. the time a key was reported stolen.
        """
        check_reference(subject, "subject")
        root = self.store.root_certificate()
        by_cert = self.store.certificate(by)
        if by_cert.role not in (Role.ROOT, Role.DISTRICT):
            raise ServiceError(
                f"{by} is a {by_cert.role.name}; only the root or a district revokes", subject=subject
            )
        if self.store.exists(subject):
            target = self.store.certificate(subject)
            if target.role is Role.ROOT:
                raise ServiceError(
                    "the root cannot be revoked by a list; roll the root over instead", subject=subject
                )
            if by != root.chr and target.car != by:
                raise ServiceError(
                    f"{by} did not certify {subject} (its issuer is {target.car}); it cannot revoke it",
                    subject=subject,
                )
            kind = kind or KIND_OF_ROLE[target.role]
        elif kind is None:
            raise ServiceError(
                f"{subject} is not in this keystore: say what it is (e.g. a card) to revoke it",
                subject=subject,
            )
        when = at or self.now()
        entry = RevocationEntry(subject=subject, kind=kind, revoked_at=when, reason=reason)
        encode_time(when)  # in range for the list format
        pending = self._pending(by)
        if any(e["subject"] == subject for e in pending["entries"]):
            raise ServiceError(f"{subject} is already revoked by {by}", subject=subject)
        pending["entries"].append(
            {
                "subject": subject,
                "kind": kind.name,
                "revoked_at": int(when.timestamp()),
                "reason": reason.name,
            }
        )
        self.store.write_json(self.store.revocations_path(by), pending)
        self._record(
            "revoke",
            subject,
            {
                "by": by,
                "kind": kind.name,
                "reason": reason.name,
                "revoked_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            None,
            None,
        )
        return entry

    def publish(self, *, by: str, secret: str) -> tuple[RevocationList, Path]:
        """Sign the next version of ``by``'s list (all its revocations so far) and store it under lists/."""
        pending = self._pending(by)
        version = int(pending["published_version"]) + 1
        entries = [
            RevocationEntry(
                subject=e["subject"],
                kind=SubjectKind[e["kind"]],
                revoked_at=decode_time(int(e["revoked_at"]).to_bytes(4, "big")),
                reason=RevocationReason[e["reason"]],
            )
            for e in pending["entries"]
        ]
        signer = self.load_signer(by, secret)
        try:
            rl = build_revocation_list(
                signer, issuer=by, version=version, issued_at=self.now(), entries=entries
            )
            # check it as a terminal would before publishing
            RevocationStore(self.anchor()).offer(rl, now=self.now(), issuer_chain=self.store.chain(by))
            path = self.store.list_path(by, version)
            self.store.write_new(path, rl.encode())
            pending["published_version"] = version
            self.store.write_json(self.store.revocations_path(by), pending)
            self._record(
                "list.publish",
                by,
                {"version": version, "entries": len(entries), "file": path.name},
                signer,
                by,
            )
        finally:
            self._close(signer)
        return rl, path

    def published_lists(self) -> list[RevocationList]:
        """The newest published list of every issuer."""
        newest: dict[str, RevocationList] = {}
        if self.store.lists_dir.is_dir():
            for p in self.store.lists_dir.glob("*.rl"):
                rl = RevocationList.parse(p.read_bytes())
                if rl.issuer not in newest or rl.version > newest[rl.issuer].version:
                    newest[rl.issuer] = rl
        return list(newest.values())

    def export_bundle(self, directory: Path) -> TrustBundle:
        """Write what terminals carry: root, district certificates, newest lists (cardsvc/pki/bundle.py)."""
        certs = self.store.all_certificates()
        bundle = TrustBundle(
            root=self.store.root_certificate(),
            districts={c.chr: c for c in certs.values() if c.role is Role.DISTRICT},
            lists=self.published_lists(),
        )
        apply_bundle(bundle, now=self.now())  # refuse to export what a terminal would refuse
        bundle.write(directory)
        versions = {rl.issuer: rl.version for rl in bundle.lists}
        self._record("bundle.export", str(directory.name), {"lists": versions}, None, None)
        return bundle

    def revocation_store(self) -> RevocationStore:
        store = RevocationStore(self.anchor())
        for rl in self.published_lists():
            chain = [] if rl.issuer == store.anchor.chr else self.store.chain(rl.issuer)
            store.offer(rl, now=self.now(), issuer_chain=chain)
        return store

    # -- inspection -----------------------------------------------------------------------------------------
    def chain(self, chr: str) -> list[CvCertificate]:
        return self.store.chain(chr)

    def verify(self, chr: str, *, at: datetime | None = None, required: Right = Right.NONE) -> ValidatedChain:
        """Validate ``chr``'s chain as a terminal would: root key only, published revocation lists."""
        when = at or self.now()
        details: dict[str, Any] = {"at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "required": required.names()}
        try:
            result = validate_chain(
                self.store.chain(chr),
                self.anchor(),
                now=when,
                required=required,
                revocations=self.revocation_store(),
            )
        except PkiError as exc:
            self._record("chain.verify", chr, details | {"result": "refused", "rule": exc.rule}, None, None)
            raise
        self._record("chain.verify", chr, details | {"result": "valid"}, None, None)
        return result

    def verify_certificates(
        self,
        certs: Sequence[CvCertificate],
        *,
        bundle: Path | None = None,
        at: datetime | None = None,
        required: Right = Right.NONE,
    ) -> ValidatedChain:
        """Validate certificates (e.g. from a chain file) against a trust bundle or this keystore."""
        when = at or self.now()
        subject = certs[-1].chr if certs else "-"
        details: dict[str, Any] = {"at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "bundle": bundle is not None}
        try:
            if bundle is not None:
                trust = TrustBundle.read(bundle)
                anchor, store = trust.anchor, apply_bundle(trust, now=when)
            else:
                anchor, store = self.anchor(), self.revocation_store()
            result = validate_chain(certs, anchor, now=when, required=required, revocations=store)
        except PkiError as exc:
            self._record(
                "chain.verify", subject, details | {"result": "refused", "rule": exc.rule}, None, None
            )
            raise
        self._record("chain.verify", subject, details | {"result": "valid"}, None, None)
        return result

    def audit_public_keys(self) -> dict[str, bytes]:
        return {chr: cert.public_point for chr, cert in self.store.all_certificates().items()}

    def verify_audit(self) -> int:
        return verify_log(self.audit, public_keys=self.audit_public_keys())


__all__ = [
    "Custody",
    "FileCustody",
    "KeyManager",
    "KeystoreError",
    "Pkcs11Custody",
    "ServiceError",
    "utc_now",
]
