"""Terminal keys from CV certificate chains, validated to the root with ``cardsvc.pki``.

With a trust anchor configured (``TRUST_ANCHOR``), central trusts only the root key: a terminal is known by
the certificate chain registered for it, checked on every lookup (signatures, tiers, rights, validity,
issuer revocations); its revocation time comes from the PKI's signed lists (``REVOCATIONS``, any
``RevocationLookup``) or central's own register, whichever is earlier. Without an anchor, the plain keys of
:class:`~cardsvc.central.services.terminals.DbTerminalDirectory` are used.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from cardsvc.central.errors import AuthenticationError, ConflictError, UnprocessableError
from cardsvc.central.models import Terminal, TerminalStatus
from cardsvc.central.services.terminals import TerminalInfo, public_key_bytes
from cardsvc.formats.batch import CampCard, TransactionItem, id_hex, load_public_key
from cardsvc.formats.profile import card_chr, reference_id
from cardsvc.pki.chain import RevocationLookup, TrustAnchor, ValidatedChain, validate_chain
from cardsvc.pki.cvc import CvCertificate, start_of_day
from cardsvc.pki.errors import PkiError
from cardsvc.pki.rights import Role

TERMINAL_ROLES: Final = frozenset({Role.ENROLMENT_TERMINAL, Role.POS_TERMINAL})


def _validate_terminal_chain(
    chain: Sequence[CvCertificate], anchor: TrustAnchor, now: int, revocations: RevocationLookup | None
) -> ValidatedChain:
    """Validate as of the leaf's own start, so a revoked terminal is still identified (its revocation time
    is then compared with what it signed); issuers' revocations are checked by the PKI as usual."""
    if not chain:
        raise AuthenticationError("bad_terminal_certificate", "no certificate chain")
    try:
        validated = validate_chain(
            list(chain),
            anchor,
            now=datetime.fromtimestamp(now, UTC),
            revocations=revocations,
            signed_at=start_of_day(chain[-1].effective),
        )
    except PkiError as exc:
        raise AuthenticationError("bad_terminal_certificate", str(exc)) from None
    if validated.role not in TERMINAL_ROLES:
        raise AuthenticationError(
            "not_a_terminal", f"{validated.leaf.chr} is a {validated.role.name} certificate, not a terminal's"
        )
    return validated


def _revoked_at(
    validated: ValidatedChain, anchor: TrustAnchor, revocations: RevocationLookup | None
) -> int | None:
    if revocations is None:
        return None
    path = (anchor.chr, *(c.chr for c in validated.certificates[:-1]))
    revocation = revocations.revocation_of(validated.leaf.chr, path)
    return None if revocation is None else int(revocation.revoked_at.timestamp())


class CertifiedTerminalDirectory:
    """A :class:`TerminalDirectory` over registered CV certificate chains (see module docstring)."""

    def __init__(
        self, session: Session, anchor: TrustAnchor, now: int, revocations: RevocationLookup | None = None
    ) -> None:
        self.session, self.anchor, self.now, self.revocations = session, anchor, now, revocations

    def lookup(self, terminal_id: str) -> TerminalInfo:
        row = self.session.get(Terminal, terminal_id)
        if row is None:
            raise AuthenticationError("unknown_terminal", f"terminal {terminal_id} is not registered")
        if not row.certificate_chain:
            raise AuthenticationError(
                "uncertified_terminal", f"terminal {terminal_id} has no certificate chain registered"
            )
        chain = [CvCertificate.parse(base64.b64decode(c)) for c in row.certificate_chain]
        validated = _validate_terminal_chain(chain, self.anchor, self.now, self.revocations)
        times = [t for t in (row.revoked_at, _revoked_at(validated, self.anchor, self.revocations)) if t]
        return TerminalInfo(
            id=row.id,
            public_key=load_public_key(validated.leaf.public_point, f"key of terminal {terminal_id}"),
            facility_id=row.facility_id,
            revoked_at=min(times) if times else None,
        )


def register_certified_terminal(
    session: Session, terminal_id: int, chain: Sequence[CvCertificate], anchor: TrustAnchor, now: int,
    facility_id: int | None = None, revocations: RevocationLookup | None = None,
) -> Terminal:  # fmt: skip
    """Register a terminal by its certificate chain (district down to the terminal), checked first."""
    validated = _validate_terminal_chain(chain, anchor, now, revocations)
    hex_id = id_hex(terminal_id)
    if session.get(Terminal, hex_id) is not None:
        raise ConflictError("terminal_exists", f"terminal {hex_id} is already registered")
    terminal = Terminal(
        id=hex_id,
        public_key=validated.leaf.public_point,
        certificate_chain=[base64.b64encode(c.encode()).decode("ascii") for c in chain],
        facility_id=facility_id,
        status=TerminalStatus.ACTIVE,
        registered_at=now,
        revoked_at=None,
    )
    session.add(terminal)
    return terminal


class CardCertifier:
    """Checks, at camp ingest, that an FKO certified each card's key (``CampCard.card_chain``) under the
    configured root: the chain validates, its leaf is a BENEFICIARY_CARD whose holder reference is
    ``CARD-<card id>``, whose public point is the camp's ``card_key``, and whose issuer is the camp's FKO."""

    def __init__(self, anchor: TrustAnchor, now: int, revocations: RevocationLookup | None = None) -> None:
        self.anchor, self.now, self.revocations = anchor, now, revocations

    def check(self, card: CampCard, card_key: bytes, where: str) -> None:
        """``card_key``: the card's key as an uncompressed SEC1 point. Raises UnprocessableError."""
        if not card.card_chain:
            raise UnprocessableError(
                "uncertified_card", f"{where}: no card_chain, and central checks card certificates"
            )
        try:
            chain = [CvCertificate.parse(c) for c in card.card_chain]
            validated = validate_chain(
                chain,
                self.anchor,
                now=datetime.fromtimestamp(self.now, UTC),
                revocations=self.revocations,
                signed_at=start_of_day(chain[-1].effective),
            )
        except PkiError as exc:
            raise UnprocessableError("bad_card_certificate", f"{where}: {exc}") from None
        leaf = validated.leaf
        problem = None
        if validated.role is not Role.BENEFICIARY_CARD:
            problem = f"the certificate of {leaf.chr} is a {validated.role.name}'s, not a card's"
        elif leaf.chr != card_chr(card.card_id):
            problem = f"the certificate is for {leaf.chr}, the camp reports {card_chr(card.card_id)}"
        elif leaf.public_point != card_key:
            problem = f"the certificate of {leaf.chr} certifies another key than the camp's card_key"
        elif reference_id(leaf.car) != card.fko_id:
            problem = f"{leaf.chr} was activated by {leaf.car}, not by the camp's FKO {id_hex(card.fko_id)}"
        if problem is not None:
            raise UnprocessableError("bad_card_certificate", f"{where}: {problem}")

    def certify_records(
        self,
        items: Sequence[TransactionItem],
        parsed: Sequence[tuple[Any, ...]],
        registered: dict[str, bytes],
    ) -> dict[str, bytes]:
        """Transaction items of cards central does not know yet may carry the card's chain: it must
        validate to the root at each record's time, name ``CARD-<card id>`` and certify the item's key."""
        certified: dict[str, bytes] = {}
        checked: set[tuple[tuple[bytes, ...], int]] = set()
        for index, (item, fields) in enumerate(zip(items, parsed, strict=True)):
            card_hex = f"{fields[2]:016x}"
            if not item.card_chain or card_hex in registered:
                continue
            where = f"batch.items[{index}]"
            record_time = int(fields[7])
            if (item.card_chain, record_time) in checked:
                continue
            try:
                chain = [CvCertificate.parse(c) for c in item.card_chain]
                at = datetime.fromtimestamp(record_time, UTC)  # validity and revocations as of the record
                validated = validate_chain(
                    chain, self.anchor, now=at, revocations=self.revocations, signed_at=at
                )
            except PkiError as exc:
                raise UnprocessableError("bad_card_certificate", f"{where}: {exc}") from None
            leaf = validated.leaf
            point = public_key_bytes(load_public_key(item.card_key))
            if validated.role is not Role.BENEFICIARY_CARD or leaf.chr != card_chr(fields[2]):
                raise UnprocessableError(
                    "bad_card_certificate", f"{where}: the chain's leaf {leaf.chr} is not card {card_hex}'s"
                )
            if leaf.public_point != point or certified.get(card_hex, point) != point:
                raise UnprocessableError(
                    "bad_card_certificate", f"{where}: card {card_hex}'s certificate certifies another key"
                )
            certified[card_hex] = point
            checked.add((item.card_chain, record_time))
        return certified
