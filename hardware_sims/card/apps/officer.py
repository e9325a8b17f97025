"""Officer card application (FKO / facility operator), hosted by the simulated card OS.

Formats and command numbers come from cardsvc/pki/officer.py (shared with the host session); certificate
checks use cardsvc/pki/cvc.py, the same pure code terminals run. See docs/keymgmt.md ("Officer cards").

Personalisation (life cycle PERSONALISATION): GENERATE KEY, PUT CERTIFICATE, PUT TEMPLATES, SET PIN, LOCK.
Operational: ISO VERIFY of PIN 81, VERIFY BIOMETRIC (match-on-card), ACTIVATE CARD (needs PIN AND
fingerprint in this power session; appends to the ledger in the same transaction), READ LEDGER (signed),
AUTHENTICATE (signs a terminal's challenge under its own domain prefix: proves the card holds the key),
RESET RETRY COUNTER (CLA 80 INS 2C: the card's own district, by a signature over the card's GET CHALLENGE,
sets a new PIN and/or gives the fingerprint its tries back; the card checks the district certificate
against the trust anchor it was given).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from cardsvc.beneficiary.protocol import RENEWAL_WINDOW
from cardsvc.pki import officer as fmt
from cardsvc.pki.chain import TrustAnchor, check_extensions, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import FormatError, PkiError, SignatureInvalidError, ValidationError
from cardsvc.pki.rights import ISSUABLE_BY, Right, Role

from ..access import NEVER, AccessCondition, Op, Pin
from ..apdu import CommandApdu
from ..application import Application, CardServices, Response
from ..errors import IsoError
from ..iso import SW, sw_tries_left
from ..security import PinObject

EF_STATE = 0x0200  # lifecycle(1) | bio tries left(1) | ledger count(2) | ledger head(32)
EF_CERT = 0x0201  # length(2) | officer CV certificate
EF_TEMPLATES = 0x0202  # length(2) | 7F2E templates
EF_LEDGER = 0x0203  # capacity x 64-byte entries
STATE_SIZE = 36
CERT_SIZE = 512
TEMPLATES_SIZE = 1200
RAM_BIO_OK = "bio_ok"

_MATCHER: Any = None


def _matcher() -> Any:
    """The bio engineer's matcher, created once (its calibration table is loaded lazily)."""
    global _MATCHER
    if _MATCHER is None:
        from cardsvc.bio.matcher import Matcher

        _MATCHER = Matcher()
    return _MATCHER


class OfficerApplication(Application):
    """An officer card; ``threshold`` is the match-on-card decision score (-10 log10 FMR).

    ``anchor``: the root key the card trusts for district certificates (an unblock's); without one the card
    can never be unblocked (RESET RETRY COUNTER answers 6985).
    """

    aid = fmt.OFFICER_AID
    label = "RSBY OFFICER"
    df_fid = 0xDF10

    def __init__(
        self,
        *,
        ledger_capacity: int = fmt.LEDGER_CAPACITY,
        threshold: float = 40.0,
        anchor: TrustAnchor | None = None,
    ) -> None:
        self.ledger_capacity = ledger_capacity
        self.threshold = threshold
        self.anchor = anchor

    # ------------------------------------------------------------------ install and state
    def install(self, card: CardServices) -> None:
        internal: dict[Op, AccessCondition] = {Op.READ: NEVER, Op.UPDATE: NEVER}
        card.create_ef(self, EF_STATE, STATE_SIZE, internal,
                       content=bytes([fmt.Lifecycle.PERSONALISATION, fmt.BIO_MAX_TRIES]) + bytes(34))
        card.create_ef(self, EF_CERT, CERT_SIZE, internal)
        card.create_ef(self, EF_TEMPLATES, TEMPLATES_SIZE, internal)
        card.create_ef(self, EF_LEDGER, self.ledger_capacity * fmt.LEDGER_ENTRY_SIZE, internal)
        # Until SET PIN the PIN is a random value nobody knows.
        card.create_pin(self, PinObject(fmt.PIN_REF, card.random(8).hex()[:12].encode(),
                                        max_tries=fmt.PIN_MAX_TRIES, tries_left=fmt.PIN_MAX_TRIES,
                                        min_length=fmt.PIN_MIN_LENGTH, max_length=fmt.PIN_MAX_LENGTH))
        card.create_key_slot(self, fmt.OFFICER_KEY_REF, {Op.USE: NEVER, Op.GENERATE: NEVER})

    def _state(self, card: CardServices) -> tuple[fmt.Lifecycle, int, int, bytes]:
        raw = card.read_file(self, EF_STATE)
        return fmt.Lifecycle(raw[0]), raw[1], int.from_bytes(raw[2:4], "big"), raw[4:36]

    def _put_state(self, card: CardServices, lc: fmt.Lifecycle, bio: int, count: int, head: bytes) -> None:
        card.write_file(self, EF_STATE, 0, bytes([lc, bio]) + count.to_bytes(2, "big") + head)

    def _require_lifecycle(self, card: CardServices, wanted: fmt.Lifecycle, what: str) -> None:
        lc = self._state(card)[0]
        if lc is not wanted:
            raise IsoError(
                SW.CONDITIONS_NOT_SATISFIED, f"{what} needs life cycle {wanted.name}, card is {lc.name}"
            )

    def _blob(self, card: CardServices, fid: int) -> bytes:
        raw = card.read_file(self, fid)
        return raw[2:2 + int.from_bytes(raw[:2], "big")]

    def _put_blob(self, card: CardServices, fid: int, size: int, data: bytes) -> None:
        if len(data) + 2 > size:
            raise IsoError(SW.NOT_ENOUGH_MEMORY, f"{len(data)} bytes do not fit in EF {fid:04X}")
        card.write_file(self, fid, 0, len(data).to_bytes(2, "big") + data)

    def _certificate(self, card: CardServices) -> CvCertificate:
        raw = self._blob(card, EF_CERT)
        if not raw:
            raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, "no officer certificate written")
        return CvCertificate.parse(raw)

    # ------------------------------------------------------------------ dispatch
    def process(self, apdu: CommandApdu, card: CardServices) -> Response:
        handlers = {
            fmt.OfficerIns.GET_STATUS: self._get_status,
            fmt.OfficerIns.GENERATE_KEY: self._generate_key,
            fmt.OfficerIns.PUT_CERTIFICATE: self._put_certificate,
            fmt.OfficerIns.PUT_TEMPLATES: self._put_templates,
            fmt.OfficerIns.SET_PIN: self._set_pin,
            fmt.OfficerIns.LOCK: self._lock,
            fmt.OfficerIns.GET_CERTIFICATE: self._get_certificate,
            fmt.OfficerIns.VERIFY_BIOMETRIC: self._verify_biometric,
            fmt.OfficerIns.ACTIVATE_CARD: self._activate_card,
            fmt.OfficerIns.READ_LEDGER: self._read_ledger,
            fmt.OfficerIns.AUTHENTICATE: self._authenticate,
            fmt.OfficerIns.RESET_RETRY_COUNTER: self._reset_retry_counter,
        }
        handler = handlers.get(apdu.ins)  # type: ignore[call-overload]
        if handler is None:
            return super().process(apdu, card)
        try:
            result: Response = handler(apdu, card)
        except FormatError as exc:
            raise IsoError(SW.WRONG_DATA, str(exc)) from None
        return result

    # ------------------------------------------------------------------ personalisation
    def _get_status(self, apdu: CommandApdu, card: CardServices) -> Response:
        lc, bio, count, _ = self._state(card)
        pin = card.objects.pin(card.app_df(self), fmt.PIN_REF)
        tries = pin.tries_left if pin else 0
        return fmt.Status(lc, tries, bio, count, self.ledger_capacity).encode(), SW.OK

    def _generate_key(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._require_lifecycle(card, fmt.Lifecycle.PERSONALISATION, "GENERATE KEY")
        scope = card.app_df(self)
        slot = card.objects.key(scope, fmt.OFFICER_KEY_REF)
        if slot is None:
            raise IsoError(SW.REFERENCE_NOT_FOUND, "officer key slot missing")
        with card.transaction():
            key = slot.generate(card.random(40))
            card.objects.put_key(scope, key)
            self._put_blob(card, EF_CERT, CERT_SIZE, b"")  # a new key invalidates any certificate
        return key.public, SW.OK

    def _put_certificate(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._require_lifecycle(card, fmt.Lifecycle.PERSONALISATION, "PUT CERTIFICATE")
        cert = CvCertificate.parse(apdu.data)
        if cert.public_point != card.public_key(self, fmt.OFFICER_KEY_REF):
            raise IsoError(SW.WRONG_DATA, "certificate does not carry this card's officer key")
        if cert.role not in (Role.FIELD_KEY_OFFICER, Role.FACILITY_OPERATOR):
            raise IsoError(SW.WRONG_DATA, f"a {cert.role.name} certificate does not belong here")
        with card.transaction():
            self._put_blob(card, EF_CERT, CERT_SIZE, apdu.data)
        return b"", SW.OK

    def _put_templates(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._require_lifecycle(card, fmt.Lifecycle.PERSONALISATION, "PUT TEMPLATES")
        from cardsvc.bio.iso19794 import unwrap_verify_template

        for template in fmt.split_templates(apdu.data):
            try:
                if not unwrap_verify_template(template):
                    raise IsoError(SW.WRONG_DATA, "empty template")
            except ValueError as exc:
                raise IsoError(SW.WRONG_DATA, f"bad template: {exc}") from None
        with card.transaction():
            self._put_blob(card, EF_TEMPLATES, TEMPLATES_SIZE, apdu.data)
        return b"", SW.OK

    def _set_pin(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._require_lifecycle(card, fmt.Lifecycle.PERSONALISATION, "SET PIN")
        pin = fmt.check_new_pin(apdu.data)  # 4-12 ASCII digits, as an unblock's new PIN (else 6A80)
        with card.transaction():
            card.create_pin(self, PinObject(fmt.PIN_REF, pin, max_tries=fmt.PIN_MAX_TRIES,
                                            tries_left=fmt.PIN_MAX_TRIES, min_length=fmt.PIN_MIN_LENGTH,
                                            max_length=fmt.PIN_MAX_LENGTH))
        return b"", SW.OK

    def _lock(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._require_lifecycle(card, fmt.Lifecycle.PERSONALISATION, "LOCK")
        self._certificate(card)
        if not self._blob(card, EF_TEMPLATES):
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, "no fingerprint templates written")
        with card.transaction():
            self._put_state(card, fmt.Lifecycle.OPERATIONAL, fmt.BIO_MAX_TRIES, 0, fmt.GENESIS_HEAD)
        return b"", SW.OK

    def _get_certificate(self, apdu: CommandApdu, card: CardServices) -> Response:
        return self._certificate(card).encode(), SW.OK

    # ------------------------------------------------------------------ operational
    def _verify_biometric(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._require_lifecycle(card, fmt.Lifecycle.OPERATIONAL, "VERIFY BIOMETRIC")
        from cardsvc.bio.iso19794 import decode_compact, unwrap_verify_template

        lc, bio, count, head = self._state(card)
        if bio == 0:
            raise IsoError(SW.AUTH_METHOD_BLOCKED, "fingerprint verification is blocked")
        try:
            probe = decode_compact(unwrap_verify_template(apdu.data))
        except ValueError as exc:
            raise IsoError(SW.WRONG_DATA, f"bad probe template: {exc}") from None
        ram = card.ram(self)
        ram.pop(RAM_BIO_OK, None)
        # decrement first and persist (tearing cannot buy tries), as for PINs
        with card.transaction():
            self._put_state(card, lc, bio - 1, count, head)
        card.checkpoint("bio counter decremented")
        matcher = _matcher()
        best = max(
            matcher.compare(probe, decode_compact(unwrap_verify_template(t)))
            for t in fmt.split_templates(self._blob(card, EF_TEMPLATES))
        )
        if best >= self.threshold:
            with card.transaction():
                self._put_state(card, lc, fmt.BIO_MAX_TRIES, count, head)
            ram[RAM_BIO_OK] = True
            return b"", SW.OK
        return b"", sw_tries_left(bio - 1)

    def _activate_card(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._require_lifecycle(card, fmt.Lifecycle.OPERATIONAL, "ACTIVATE CARD")
        card.require(Pin(fmt.PIN_REF), card.app_df(self), "ACTIVATE CARD")
        if not card.ram(self).get(RAM_BIO_OK):
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, "ACTIVATE CARD needs a matching fingerprint")
        own = self._certificate(card)
        body = CvCertificate.parse_body(apdu.data)
        today = datetime.fromtimestamp(card.now(), tz=UTC)
        if Role.BENEFICIARY_CARD not in ISSUABLE_BY[own.role] or Right.ACTIVATE_CARD not in own.rights:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, f"{own.chr} ({own.role.name}) may not activate cards")
        if body.role is not Role.BENEFICIARY_CARD:
            raise IsoError(SW.WRONG_DATA, f"officer cards certify beneficiary cards, not {body.role.name}")
        if body.car != own.chr:
            raise IsoError(SW.WRONG_DATA, f"body names issuer {body.car}, this card is {own.chr}")
        try:  # the FKO signs the household content digest too, never a bare key (docs/certificates.md)
            check_extensions(body)
        except ValidationError as exc:
            raise IsoError(SW.WRONG_DATA, str(exc)) from None
        if body.rights & ~own.rights:
            raise IsoError(SW.WRONG_DATA, "body claims rights this officer does not hold")
        if not own.valid_at(today):
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, f"officer certificate not valid on {today:%Y-%m-%d}")
        if body.effective > today.date() + RENEWAL_WINDOW:  # renewal camps run before the year starts
            raise IsoError(
                SW.WRONG_DATA,
                f"body effective date {body.effective} is more than {RENEWAL_WINDOW.days} days ahead",
            )
        lc, bio, count, head = self._state(card)
        if count >= self.ledger_capacity:
            raise IsoError(SW.NOT_ENOUGH_MEMORY, "activation ledger is full: return the card to the district")
        body_hash = hashlib.sha256(apdu.data).digest()
        entry = fmt.LedgerEntry(count + 1, int(card.now()), body.chr, body_hash).encode()
        with card.transaction():
            card.write_file(self, EF_LEDGER, count * fmt.LEDGER_ENTRY_SIZE, entry)
            card.checkpoint("ledger entry staged")
            self._put_state(card, lc, bio, count + 1, fmt.next_head(head, entry))
        return card.sign(self, fmt.OFFICER_KEY_REF, apdu.data), SW.OK

    def _read_ledger(self, apdu: CommandApdu, card: CardServices) -> Response:
        if not 8 <= len(apdu.data) <= 32:
            raise IsoError(SW.WRONG_LENGTH, "READ LEDGER takes an 8-32 byte challenge")
        own = self._certificate(card)
        _, _, count, head = self._state(card)
        first = min(apdu.p1p2, count)
        # as many entries as fit in Ne: short-APDU hosts read the ledger in pages, each one signed
        fit = max(0, (apdu.ne - fmt.LEDGER_PAGE_OVERHEAD) // fmt.LEDGER_ENTRY_SIZE)
        n = min(count - first, fit)
        if n == 0 and count > first:
            raise IsoError(SW.WRONG_LENGTH, f"Le must be at least {fmt.LEDGER_PAGE_OVERHEAD + 64}")
        size = fmt.LEDGER_ENTRY_SIZE
        entries = card.read_file(self, EF_LEDGER, first * size, n * size) if n else b""
        statement = fmt.ledger_statement(own.chr, count, head, apdu.data)
        signature = card.sign(self, fmt.OFFICER_KEY_REF, statement)
        return fmt.encode_ledger_response(count, head, first, entries, signature), SW.OK

    def _authenticate(self, apdu: CommandApdu, card: CardServices) -> Response:
        """Prove possession of the officer key to a terminal (POS sign-in) for its fresh challenge.

        The signed message carries its own domain prefix and says whether PIN and fingerprint were verified
        in this power session, so a terminal learns both facts from the chip that holds the key.
        """
        self._require_lifecycle(card, fmt.Lifecycle.OPERATIONAL, "AUTHENTICATE")
        try:
            challenge = fmt.check_auth_challenge(apdu.data)
        except FormatError as exc:
            raise IsoError(SW.WRONG_LENGTH, str(exc)) from None
        own = self._certificate(card)
        flags = fmt.AuthFlag(0)
        if card.satisfied(Pin(fmt.PIN_REF), card.app_df(self)):
            flags |= fmt.AuthFlag.PIN_VERIFIED
        if card.ram(self).get(RAM_BIO_OK):
            flags |= fmt.AuthFlag.FINGERPRINT_VERIFIED
        message = fmt.officer_auth_message(own.chr, challenge, flags)
        return fmt.encode_auth_response(flags, card.sign(self, fmt.OFFICER_KEY_REF, message)), SW.OK

    def _reset_retry_counter(self, apdu: CommandApdu, card: CardServices) -> Response:
        """ISO RESET RETRY COUNTER with the card's own district as the security condition (no PUK).

        The card's GET CHALLENGE is consumed by this command whatever its outcome, so an authorisation
        works once and only in the power session it was made for. Checks, each with its own status word:
        OPERATIONAL (6985), a trust anchor (6985), the challenge (6984), the district certificate chains to
        the anchor (6982), the district issued this card (6A88), the authorisation names this card (6A88),
        the district signature (6982). Then the new PIN and the tries in ONE transaction.
        """
        challenge, card.session.challenge = card.session.challenge, None
        if apdu.p1p2 != 0:
            raise IsoError(SW.INCORRECT_P1P2, "RESET RETRY COUNTER (officer) takes P1P2 = 0000")
        self._require_lifecycle(card, fmt.Lifecycle.OPERATIONAL, "RESET RETRY COUNTER")
        if self.anchor is None:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, "no trust anchor on this card: cannot be unblocked")
        auth, new_pin = fmt.UnblockAuthorisation.parse(apdu.data)
        if challenge is None or not hmac.compare_digest(challenge, auth.challenge):
            raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, "authorisation not for this card's last challenge")
        now = datetime.fromtimestamp(card.now(), tz=UTC)
        try:
            district = validate_chain([auth.district], self.anchor, now=now).leaf
        except PkiError as exc:
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, f"district certificate refused: {exc}") from None
        own = self._certificate(card)
        if district.role is not Role.DISTRICT or district.chr != own.car:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"{district.chr} is not this card's issuer ({own.car})")
        if auth.officer_chr != own.chr:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"authorisation for {auth.officer_chr}, not this card")
        try:
            auth.verify()
        except SignatureInvalidError:
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, "district signature does not verify") from None
        scope = card.app_df(self)
        pin = card.objects.pin(scope, fmt.PIN_REF)
        if pin is None:
            raise IsoError(SW.REFERENCE_NOT_FOUND, "officer PIN missing")
        lc, _, count, head = self._state(card)
        with card.transaction():
            if new_pin is not None:
                card.objects.put_pin(scope, replace(pin, value=new_pin, tries_left=pin.max_tries))
                card.checkpoint("new PIN staged")
            if auth.what & fmt.Unblock.FINGERPRINT:
                self._put_state(card, lc, fmt.BIO_MAX_TRIES, count, head)
                card.checkpoint("fingerprint tries staged")
        # nothing verified survives a reset: the officer proves the new PIN (and finger) afresh
        card.session.security.verified_pins.discard((scope, fmt.PIN_REF))
        card.ram(self).pop(RAM_BIO_OK, None)
        return b"", SW.OK
