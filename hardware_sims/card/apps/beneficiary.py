"""Beneficiary card application (one card per household), hosted by the simulated card OS.

Commands, status and signed messages come from cardsvc/beneficiary/protocol.py, stored objects from
cardsvc/formats/profile.py, records from cardsvc/formats/transaction.py, certificates and terminal
authentication from cardsvc/pki: the same pure code terminals run. Documented in docs/card-layout.md.

Life cycle: BLANK -> PERSONALISING (first key generation or write by an ENROL terminal) -> ACTIVATED (PUT
CERTIFICATE: the FKO-signed certificate carries this card's key, id, policy period and the content digest
of what the card stores, and the card commits to the hashes of those objects) -> BLOCKED / SUPERSEDED
(central authorisation). Before activation an ENROL terminal may WIPE and restart. Every state change is
one journal transaction, so a tear leaves the old or the new state.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from cardsvc.beneficiary import protocol as fmt
from cardsvc.formats.errors import FormatError as RecordFormatError
from cardsvc.formats.profile import (
    ContentHashes,
    HouseholdProfile,
    parse_photos,
    parse_templates,
    reference_id,
    split_tlvs,
)
from cardsvc.formats.transaction import GENESIS_PREV_HASH, RecordType, TransactionRecord, chain_hash
from cardsvc.pki.chain import TrustAnchor, check_extensions, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import verify_signature
from cardsvc.pki.termauth import TerminalAuthVerifier

from ..access import ALWAYS, NEVER, AccessCondition, Op, TerminalRight
from ..apdu import CommandApdu
from ..application import Application, CardServices, Response
from ..errors import IsoError
from ..iso import SW
from ..security import KeyObject

STATE_KEY = "app.beneficiary.state"
RAM_TA = "ta"
RECORD_LENGTH = 124
_ENROL = TerminalRight("ENROL")


def _right(r: Right) -> TerminalRight:
    return TerminalRight(r.name or "")


@dataclass
class CardState:
    """Persistent application state (simulator-internal JSON object, one journal object)."""

    lifecycle: int = fmt.Lifecycle.BLANK
    counter: int = 0
    last_link: str = GENESIS_PREV_HASH.hex()
    balances: dict[str, int] = field(default_factory=dict)
    blocks: list[list[int]] = field(default_factory=list)  # [counter, scheme, amount]
    block_years: dict[str, str] = field(default_factory=dict)  # block counter -> policy it was opened in
    nonces: list[list[Any]] = field(default_factory=list)  # [nonce hex, counter]
    max_count: int = 0
    max_amount: int = 0
    since_count: int = 0
    since_amount: int = 0
    synced_counter: int = 0
    auth_serial: int = 0
    hashes: list[str] = field(default_factory=list)  # committed at activation
    policy: str = ""
    lengths: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    debited: dict[str, int] = field(default_factory=dict)  # counter -> amount debited (for re-sync)
    renewal: dict[str, Any] = field(default_factory=dict)  # open renewal: serial, policy, covers
    scheduled: dict[str, Any] = field(default_factory=dict)  # committed renewal whose year has not started
    unanswered: list[int] = field(default_factory=list)  # [first, last] card-made records central lacks

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> CardState:
        return cls(**json.loads(raw)) if raw else cls()


class BeneficiaryApplication(Application):
    """A household card. ``card_id`` is the chip's serial (CARD-<n>); ``anchor`` the root key it trusts."""

    aid = fmt.BENEFICIARY_AID
    label = "RSBY BENEFICIARY"
    df_fid = 0xDF20

    def __init__(self, *, card_id: str, anchor: TrustAnchor, log_capacity: int = fmt.LOG_CAPACITY) -> None:
        self.card_id = card_id
        self.anchor = anchor
        self.log_capacity = log_capacity

    # ------------------------------------------------------------------ install and state
    def install(self, card: CardServices) -> None:
        read_profile: AccessCondition = _right(Right.READ_PROFILE) | _ENROL
        card.create_ef(
            self,
            fmt.FileId.CERTIFICATES,
            fmt.FILE_SIZES[fmt.FileId.CERTIFICATES],
            {Op.READ: ALWAYS, Op.UPDATE: NEVER},
            sfi=1,
        )
        card.create_ef(
            self,
            fmt.FileId.PROFILE,
            fmt.FILE_SIZES[fmt.FileId.PROFILE],
            {Op.READ: read_profile, Op.UPDATE: NEVER},
            sfi=2,
        )
        card.create_ef(
            self,
            fmt.FileId.TEMPLATES,
            fmt.FILE_SIZES[fmt.FileId.TEMPLATES],
            {Op.READ: _right(Right.READ_TEMPLATES), Op.UPDATE: NEVER},
            sfi=3,
        )
        card.create_ef(
            self, fmt.FileId.LOG, self.log_capacity * RECORD_LENGTH, {Op.READ: NEVER, Op.UPDATE: NEVER}
        )
        card.create_key_slot(self, fmt.CARD_KEY_REF, {Op.USE: NEVER, Op.GENERATE: NEVER})
        card.store.put(STATE_KEY, CardState().encode())

    def _state(self, card: CardServices) -> CardState:
        return CardState.decode(card.store.get(STATE_KEY))

    def _put_state(self, card: CardServices, state: CardState) -> None:
        card.store.put(STATE_KEY, state.encode())

    def _lifecycle(self, state: CardState, *allowed: fmt.Lifecycle, what: str) -> None:
        if state.lifecycle not in allowed:
            names = "/".join(a.name for a in allowed)
            raise IsoError(
                SW.CONDITIONS_NOT_SATISFIED,
                f"{what} needs life cycle {names}, card is {fmt.Lifecycle(state.lifecycle).name}",
            )

    def _object(self, card: CardServices, fid: int) -> bytes:
        try:
            raw = card.read_file(self, fid)
        except IsoError:
            return b""
        return raw[2 : 2 + int.from_bytes(raw[:2], "big")]

    def _has_photos(self, card: CardServices) -> bool:
        return card.fs.child(card.app_df(self), fmt.FileId.PHOTOS) is not None

    def _key_generated(self, card: CardServices) -> bool:
        key = card.objects.key(card.app_df(self), fmt.CARD_KEY_REF)
        return key is not None and key.generated

    def _verifier(self, card: CardServices) -> TerminalAuthVerifier:
        ram = card.ram(self)
        verifier = ram.get(RAM_TA)
        if not isinstance(verifier, TerminalAuthVerifier):
            now = datetime.fromtimestamp(card.now(), tz=UTC)
            verifier = TerminalAuthVerifier(self.anchor, card_id=self.card_id, now=now)
            ram[RAM_TA] = verifier
        return verifier

    # ------------------------------------------------------------------ dispatch
    def process(self, apdu: CommandApdu, card: CardServices) -> Response:
        self._take_effect(card)  # a renewal committed ahead of its year is taken on from its first day
        handlers = {
            fmt.BenIns.GET_STATUS: self._get_status,
            fmt.BenIns.MSE_SET_DST: self._mse_set_dst,
            fmt.BenIns.PSO_VERIFY_CERTIFICATE: self._pso_verify_certificate,
            fmt.BenIns.EXTERNAL_AUTHENTICATE: self._external_authenticate,
            fmt.BenIns.GENERATE_KEY: self._generate_key,
            fmt.BenIns.WRITE_OBJECT: self._write_object,
            fmt.BenIns.ALLOCATE_PHOTOS: self._allocate_photos,
            fmt.BenIns.WIPE: self._wipe,
            fmt.BenIns.PUT_CERTIFICATE: self._put_certificate,
            fmt.BenIns.COMMIT_RENEWAL: self._commit_renewal,
            fmt.BenIns.INTERNAL_AUTHENTICATE: self._internal_authenticate,
            fmt.BenIns.DEBIT: self._debit,
            fmt.BenIns.READ_LOG: self._read_log,
            fmt.BenIns.AUTHORISE: self._authorise,
        }
        handler = handlers.get(apdu.ins)  # type: ignore[call-overload]
        if handler is None:
            return super().process(apdu, card)
        try:
            result: Response = handler(apdu, card)
        except (RecordFormatError, PkiError) as exc:
            raise IsoError(SW.WRONG_DATA, str(exc)) from None
        return result

    # ------------------------------------------------------------------ status
    def _status(self, card: CardServices, state: CardState) -> fmt.CardStatus:
        start = end = None
        if state.policy:
            p = state.policy
            start = datetime.strptime(p[:8], "%Y%m%d").date()
            end = datetime.strptime(p[8:], "%Y%m%d").date()
        lengths = [
            len(self._object(card, f))
            for f in (fmt.FileId.CERTIFICATES, fmt.FileId.PROFILE, fmt.FileId.TEMPLATES, fmt.FileId.PHOTOS)
        ]
        wallets = tuple(
            fmt.Wallet(int(s), b, sum(a for _, sc, a in state.blocks if sc == int(s)))
            for s, b in sorted(state.balances.items(), key=lambda kv: int(kv[0]))
        )
        return fmt.CardStatus(
            lifecycle=fmt.Lifecycle(state.lifecycle), card_id=self.card_id, counter=state.counter,
            usable=card.store.usable, free=card.store.free(), max_count=state.max_count,
            max_amount=state.max_amount, since_sync_count=state.since_count,
            since_sync_amount=state.since_amount, synced_counter=state.synced_counter,
            log_capacity=self.log_capacity, policy_start=start, policy_end=end,
            object_lengths=(lengths[0], lengths[1], lengths[2], lengths[3]),
            key_generated=self._key_generated(card), auth_serial=state.auth_serial, wallets=wallets,
            renewal_open=int(state.renewal.get("serial", 0)), renewal_scheduled=self._scheduled(state),
            unanswered=(state.unanswered[0], state.unanswered[1]) if state.unanswered else None,
        )  # fmt: skip

    @staticmethod
    def _scheduled(state: CardState) -> tuple[int, date, date] | None:
        if not state.scheduled:
            return None
        return (int(state.scheduled["serial"]), *fmt.parse_policy(state.scheduled["policy"].encode()))

    def _get_status(self, apdu: CommandApdu, card: CardServices) -> Response:
        return self._status(card, self._state(card)).encode(), SW.OK

    # ------------------------------------------------------------------ terminal authentication
    def _mse_set_dst(self, apdu: CommandApdu, card: CardServices) -> Response:
        items = split_tlvs(apdu.data, "MSE:SET DST")
        if apdu.p1p2 != 0x81B6 or len(items) != 1 or items[0][0] != 0x83:
            raise IsoError(SW.WRONG_DATA, "MSE:SET DST takes P1P2 81B6 and 83 <CAR>")
        self._verifier(card).set_issuer(items[0][1].decode("ascii", "replace"))
        return b"", SW.OK

    def _pso_verify_certificate(self, apdu: CommandApdu, card: CardServices) -> Response:
        if apdu.p1p2 != 0x00BE:
            raise IsoError(SW.INCORRECT_P1P2, "PSO:VERIFY CERTIFICATE takes P1P2 00BE")
        try:
            self._verifier(card).verify_certificate(apdu.data)
        except PkiError as exc:
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, f"certificate refused: {exc}") from None
        return b"", SW.OK

    def _external_authenticate(self, apdu: CommandApdu, card: CardServices) -> Response:
        challenge, card.session.challenge = card.session.challenge, None  # one proof per challenge
        verifier = self._verifier(card)
        try:
            rights = verifier.authenticate(challenge, apdu.data)
        except PkiError as exc:
            raise IsoError(
                SW.SECURITY_STATUS_NOT_SATISFIED, f"terminal authentication failed: {exc}"
            ) from None
        card.session.grant_terminal_rights(
            *rights.names(), terminal_id=verifier.chain[-1].chr.encode("ascii")
        )
        return b"", SW.OK

    def _terminal_chr(self, card: CardServices) -> str:
        if card.session.terminal_id is None:
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, "no authenticated terminal")
        return card.session.terminal_id.decode("ascii")

    # ------------------------------------------------------------------ personalisation
    def _generate_key(self, apdu: CommandApdu, card: CardServices) -> Response:
        if apdu.p1 == 0x01:  # read the public key (a station completing a torn personalisation)
            if not self._key_generated(card):
                raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, "no card key generated")
            return card.public_key(self, fmt.CARD_KEY_REF), SW.OK
        if apdu.p1 != 0x00:
            raise IsoError(SW.INCORRECT_P1P2, "GENERATE KEY takes P1 00 (generate) or 01 (read)")
        state = self._state(card)
        self._lifecycle(state, fmt.Lifecycle.BLANK, fmt.Lifecycle.PERSONALISING, what="GENERATE KEY")
        card.require(_ENROL, card.app_df(self), "GENERATE KEY")
        scope = card.app_df(self)
        slot = card.objects.key(scope, fmt.CARD_KEY_REF)
        if slot is None:
            raise IsoError(SW.REFERENCE_NOT_FOUND, "card key slot missing")
        with card.transaction():
            key = slot.generate(card.random(40))
            card.objects.put_key(scope, key)
            card.write_file(self, fmt.FileId.CERTIFICATES, 0, b"\x00\x00")  # a new key voids any certificate
            state.lifecycle = fmt.Lifecycle.PERSONALISING
            self._put_state(card, state)
        return key.public, SW.OK

    def _write_object(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        try:
            fid = fmt.OBJECT_FILES[fmt.ObjectId(apdu.p1)]
        except ValueError:
            raise IsoError(SW.INCORRECT_P1P2, f"unknown object {apdu.p1:02X}") from None
        if fid == fmt.FileId.NEXT_PROFILE:  # the renewal's staged profile: only while a renewal is open
            self._lifecycle(state, fmt.Lifecycle.ACTIVATED, what="WRITE OBJECT (next profile)")
            if not state.renewal:
                raise IsoError(
                    SW.CONDITIONS_NOT_SATISFIED, "no renewal is open (AUTHORISE RENEW_POLICY first)"
                )
        else:
            self._lifecycle(state, fmt.Lifecycle.BLANK, fmt.Lifecycle.PERSONALISING, what="WRITE OBJECT")
        card.require(_ENROL, card.app_df(self), "WRITE OBJECT")
        if len(apdu.data) < 3:
            raise IsoError(SW.WRONG_LENGTH, "WRITE OBJECT data = offset (2) || bytes")
        offset = int.from_bytes(apdu.data[:2], "big")
        if fid == fmt.FileId.PHOTOS and not self._has_photos(card):
            raise IsoError(SW.FILE_NOT_FOUND, "ALLOCATE PHOTOS first")
        with card.transaction():
            card.write_file(self, fid, offset, apdu.data[2:])
            if state.lifecycle == fmt.Lifecycle.BLANK and fid != fmt.FileId.NEXT_PROFILE:
                state.lifecycle = fmt.Lifecycle.PERSONALISING
                self._put_state(card, state)
        return b"", SW.OK

    def _allocate_photos(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        self._lifecycle(state, fmt.Lifecycle.BLANK, fmt.Lifecycle.PERSONALISING, what="ALLOCATE PHOTOS")
        card.require(_ENROL, card.app_df(self), "ALLOCATE PHOTOS")
        if len(apdu.data) != 2:
            raise IsoError(SW.WRONG_LENGTH, "ALLOCATE PHOTOS data = size (2)")
        if self._has_photos(card):
            raise IsoError(SW.FILE_EXISTS, "the photo EF exists (WIPE to start again)")
        size = int.from_bytes(apdu.data, "big")
        rules: dict[Op, AccessCondition] = {Op.READ: _right(Right.READ_PROFILE) | _ENROL, Op.UPDATE: NEVER}
        with card.transaction():  # 6A84 from the store when the card is full
            card.create_ef(self, fmt.FileId.PHOTOS, size + 2, rules, sfi=4)
            state.lifecycle = fmt.Lifecycle.PERSONALISING
            self._put_state(card, state)
        return b"", SW.OK

    def _wipe(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        self._lifecycle(state, fmt.Lifecycle.BLANK, fmt.Lifecycle.PERSONALISING, what="WIPE")
        card.require(_ENROL, card.app_df(self), "WIPE")
        scope = card.app_df(self)
        with card.transaction():
            for fid in (fmt.FileId.CERTIFICATES, fmt.FileId.PROFILE, fmt.FileId.TEMPLATES):
                card.write_file(self, fid, 0, bytes(card.file(self, fid).size))
            photos = card.fs.child(scope, fmt.FileId.PHOTOS)
            if photos is not None:
                card.fs.delete(photos.path)
            card.objects.put_key(scope, KeyObject(fmt.CARD_KEY_REF, {Op.USE: NEVER, Op.GENERATE: NEVER}))
            self._put_state(card, CardState())
        return b"", SW.OK

    # ------------------------------------------------------------------ activation
    def _put_certificate(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        self._lifecycle(state, fmt.Lifecycle.PERSONALISING, what="PUT CERTIFICATE")
        card.require(_ENROL, card.app_df(self), "PUT CERTIFICATE")
        profile_raw = self._object(card, fmt.FileId.PROFILE)
        templates_raw = self._object(card, fmt.FileId.TEMPLATES)
        photos_raw = self._object(card, fmt.FileId.PHOTOS)
        card_raw, fko_raw, profile, hashes = self._check_certificates(
            card, apdu.data, profile_raw, templates_raw, photos_raw
        )
        with card.transaction():
            blob = card_raw + fko_raw  # the district certificate comes from the verifier's trust bundle
            card.write_file(self, fmt.FileId.CERTIFICATES, 0, len(blob).to_bytes(2, "big") + blob)
            card.checkpoint("certificate written")
            state.lifecycle = fmt.Lifecycle.ACTIVATED
            state.hashes = [h.hex() for h in (hashes.profile, hashes.templates, hashes.photos)]
            state.policy = profile.policy_start.strftime("%Y%m%d") + profile.policy_end.strftime("%Y%m%d")
            state.balances = {str(s.scheme_id): s.cover_paise for s in profile.schemes}
            state.max_count, state.max_amount = profile.limits.max_count, profile.limits.max_amount
            self._put_state(card, state)
        return b"", SW.OK

    def _check_certificates(
        self, card: CardServices, data: bytes, profile_raw: bytes, templates_raw: bytes, photos_raw: bytes
    ) -> tuple[bytes, bytes, HouseholdProfile, ContentHashes]:
        """PUT CERTIFICATE's and COMMIT RENEWAL's checks of ``card CVC || FKO CVC [|| district CVC]`` against
        the objects given: key, id, role, issuer, policy period, content digest, FKO signature (and chain)."""
        parts = fmt.split_certificates(data)
        if len(parts) not in (2, 3):
            raise IsoError(SW.WRONG_DATA, "certificates = the card CVC, the FKO CVC [, the district CVC]")
        card_raw, fko_raw = parts[0], parts[1]
        cert = CvCertificate.parse(card_raw)
        fko = CvCertificate.parse(fko_raw)
        if len(parts) == 3:  # the whole chain to the root, checked at the card's clock (or at the start of
            district = CvCertificate.parse(parts[2])  # a period starting within RENEWAL_WINDOW)
            now = datetime.fromtimestamp(card.now(), tz=UTC)
            at = cert.not_before if now < cert.not_before <= now + fmt.RENEWAL_WINDOW else now
            try:
                validate_chain([district, fko, cert], self.anchor, now=at)
            except PkiError as exc:
                raise IsoError(SW.WRONG_DATA, f"certificate chain refused: {exc}") from None
        if not self._key_generated(card) or cert.public_point != card.public_key(self, fmt.CARD_KEY_REF):
            raise IsoError(SW.WRONG_DATA, "certificate does not carry this card's key")
        try:
            profile = HouseholdProfile.parse(profile_raw)
            templates = parse_templates(templates_raw)
            parse_photos(photos_raw)
        except RecordFormatError as exc:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, f"stored objects incomplete: {exc}") from None
        if not templates:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, "no fingerprint templates written")
        if profile.card_id != self.card_id or cert.chr != self.card_id:
            raise IsoError(
                SW.WRONG_DATA,
                f"certificate/profile name {cert.chr}/{profile.card_id}, card is {self.card_id}",
            )
        if cert.role is not Role.BENEFICIARY_CARD or cert.car != fko.chr or profile.fko_id != fko.chr:
            raise IsoError(
                SW.WRONG_DATA, "certificate is not a beneficiary card certificate by the profile's FKO"
            )
        if (cert.effective, cert.expiry) != (profile.policy_start, profile.policy_end):
            raise IsoError(SW.WRONG_DATA, "certificate validity differs from the profile's policy period")
        cert.verify_signed_by(fko.public_point)
        hashes = ContentHashes.of(profile_raw, templates_raw, photos_raw)
        try:  # the FKO-signed digest must be the digest of what this card stores
            check_extensions(cert)
        except PkiError as exc:
            raise IsoError(SW.WRONG_DATA, f"certificate refused: {exc}") from None
        if not hmac.compare_digest(cert.content_digest or b"", hashes.digest()):
            raise IsoError(SW.WRONG_DATA, "the FKO-certified content digest differs from the stored objects")
        return card_raw, fko_raw, profile, hashes

    # ------------------------------------------------------------------ renewal
    def _open_renewal(self, card: CardServices, state: CardState, auth: fmt.Authorisation) -> None:
        """AUTHORISE RENEW_POLICY: note the new period and cover and make room for the staged profile. The
        card stays ACTIVATED with the old year's profile, certificate, hashes and wallet until COMMIT."""
        assert auth.policy is not None
        self._lifecycle(state, fmt.Lifecycle.ACTIVATED, what="AUTHORISE RENEW_POLICY")
        if state.scheduled:
            serial, start = state.scheduled["serial"], state.scheduled["policy"][:8]
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, f"renewal {serial} is committed and starts {start}")
        self._check_period(card, state, *auth.policy)
        start, end = auth.policy
        scope = card.app_df(self)
        size = fmt.FILE_SIZES[fmt.FileId.PROFILE]
        if card.fs.child(scope, fmt.FileId.NEXT_PROFILE) is None:  # 6A84 from the store when the card is full
            rules: dict[Op, AccessCondition] = {Op.READ: _ENROL, Op.UPDATE: NEVER}
            card.create_ef(self, fmt.FileId.NEXT_PROFILE, size, rules)
        else:
            card.write_file(
                self, fmt.FileId.NEXT_PROFILE, 0, bytes(card.file(self, fmt.FileId.NEXT_PROFILE).size)
            )
        state.renewal = {
            "serial": auth.serial,
            "policy": start.strftime("%Y%m%d") + end.strftime("%Y%m%d"),
            "covers": [[s, c] for s, c in auth.covers],
        }

    def _check_period(self, card: CardServices, state: CardState, start: date, end: date) -> None:
        """A renewed period must extend the current one; one starting after today must start within
        RENEWAL_WINDOW and after the current period ends (it is held until then: no two periods at once)."""
        if state.policy and end.strftime("%Y%m%d") <= state.policy[8:]:
            raise IsoError(
                SW.WRONG_DATA, f"renewal to {end} does not extend the policy (ends {state.policy[8:]})"
            )
        today = self._today(card)
        if start <= today:
            return
        if start > today + fmt.RENEWAL_WINDOW:
            raise IsoError(
                SW.WRONG_DATA,
                f"the renewed year starts {start}, more than {fmt.RENEWAL_WINDOW.days} days after {today}",
            )
        if state.policy and start.strftime("%Y%m%d") <= state.policy[8:]:
            raise IsoError(
                SW.WRONG_DATA,
                f"the renewed year starts {start}, inside the current one (ends {state.policy[8:]})",
            )

    @staticmethod
    def _today(card: CardServices) -> date:
        return datetime.fromtimestamp(card.now(), tz=UTC).date()

    def _commit_renewal(self, apdu: CommandApdu, card: CardServices) -> Response:
        """The staged profile and the FKO's new certificate replace the old ones, the wallet takes the new
        cover (one signed RENEWAL record per scheme, answered), all in ONE transaction."""
        state = self._state(card)
        self._lifecycle(state, fmt.Lifecycle.ACTIVATED, what="COMMIT RENEWAL")
        card.require(_right(Right.RENEW), card.app_df(self), "COMMIT RENEWAL")
        if not state.renewal:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, "no renewal is open (AUTHORISE RENEW_POLICY first)")
        if state.blocks:
            raise IsoError(
                SW.CONDITIONS_NOT_SATISFIED,
                f"{len(state.blocks)} open block(s): settle or release them before the renewal",
            )
        time, operator, certificates = fmt.parse_commit_renewal(apdu.data)
        terminal = self._terminal_chr(card)
        old = HouseholdProfile.parse(self._object(card, fmt.FileId.PROFILE))
        new_raw = self._object(card, fmt.FileId.NEXT_PROFILE)
        templates_raw = self._object(card, fmt.FileId.TEMPLATES)
        photos_raw = self._object(card, fmt.FileId.PHOTOS)
        card_raw, fko_raw, new, hashes = self._check_certificates(
            card, certificates, new_raw, templates_raw, photos_raw
        )
        granted = state.renewal
        policy = new.policy_start.strftime("%Y%m%d") + new.policy_end.strftime("%Y%m%d")
        if policy != granted["policy"]:
            raise IsoError(SW.WRONG_DATA, f"the new profile's policy {policy} is not the authorised one")
        covers = [[s.scheme_id, s.cover_paise] for s in new.schemes]
        if covers != granted["covers"]:
            raise IsoError(SW.WRONG_DATA, "the new profile's cover is not the authorised one")
        if (new.household_id, new.members) != (old.household_id, old.members):
            raise IsoError(SW.WRONG_DATA, "a renewal keeps the household and its members")
        self._check_period(card, state, new.policy_start, new.policy_end)  # the card's clock moved on
        renewal = {
            "serial": int(granted["serial"]), "policy": policy, "covers": covers,
            "limits": [new.limits.max_count, new.limits.max_amount],
            "hashes": [h.hex() for h in (hashes.profile, hashes.templates, hashes.photos)],
            "certificates": (card_raw + fko_raw).hex(), "terminal": reference_id(terminal),
            "operator": operator,
        }  # fmt: skip
        if new.policy_start > self._today(card):  # held: the current year, profile and wallet stay in force
            with card.transaction():
                state.renewal, state.scheduled = {}, renewal
                self._put_state(card, state)
            return b"", SW.OK
        return b"".join(self._apply_renewal(card, state, renewal, new_raw, time)), SW.OK

    def _take_effect(self, card: CardServices) -> None:
        """A scheduled renewal takes effect at the card's first command on or after its start date: the
        RENEWAL records are made then, so every debit of the old year comes before them in the log."""
        state = self._state(card)
        if not state.scheduled or self._today(card) < fmt.parse_policy(state.scheduled["policy"].encode())[0]:
            return
        new_raw = self._object(card, fmt.FileId.NEXT_PROFILE)
        self._apply_renewal(card, state, state.scheduled, new_raw, int(card.now()), answered=False)

    def _apply_renewal(
        self,
        card: CardServices,
        state: CardState,
        renewal: dict[str, Any],
        new_raw: bytes,
        time: int,
        *,
        answered: bool = True,
    ) -> list[bytes]:
        """The new profile and certificate replace the old, the wallet takes the new cover (one signed
        RENEWAL record per scheme), the staged profile EF goes: ONE transaction. Records no terminal is
        ``answered`` with (a held renewal taking effect) are shown in status 8E until central acknowledges
        them (SYNC_ACK), so the next terminal reads them from the log."""
        covers = renewal["covers"]
        number, reference = _card_number(self.card_id), int(renewal["serial"])
        wallet = {key: 0 for key in state.balances}
        wallet.update((str(sid), cover) for sid, cover in covers)
        records: list[bytes] = []
        link = bytes.fromhex(state.last_link)
        for key in sorted(wallet, key=int):  # every scheme, those left out of the new cover set to 0
            after = wallet[key]
            record = TransactionRecord(
                record_type=RecordType.RENEWAL, card_id=number, counter=state.counter + len(records) + 1,
                scheme_id=int(key), amount=after, balance_after=after, time=time,
                terminal_id=int(renewal["terminal"]), operator_id=int(renewal["operator"]), facility_id=0,
                reference=reference, member_index=0, prev_hash=link,
            )  # fmt: skip
            raw = record.signed_part() + card.sign(self, fmt.CARD_KEY_REF, record.signed_part())
            records.append(raw)
            link = chain_hash(raw)
        with card.transaction():
            card.write_file(self, fmt.FileId.PROFILE, 0, len(new_raw).to_bytes(2, "big") + new_raw)
            old_size = card.file(self, fmt.FileId.PROFILE).size
            tail = old_size - 2 - len(new_raw)
            if tail > 0:  # no byte of the old profile stays behind the new one
                card.write_file(self, fmt.FileId.PROFILE, 2 + len(new_raw), bytes(tail))
            blob = bytes.fromhex(renewal["certificates"])
            card.write_file(self, fmt.FileId.CERTIFICATES, 0, len(blob).to_bytes(2, "big") + blob)
            card.checkpoint("renewal profile and certificate written")
            for raw in records:
                slot = (int.from_bytes(raw[10:14], "big") - 1) % self.log_capacity
                card.write_file(self, fmt.FileId.LOG, slot * RECORD_LENGTH, raw)
            card.checkpoint("renewal records written")
            staged = card.fs.child(card.app_df(self), fmt.FileId.NEXT_PROFILE)
            if staged is not None:
                card.fs.delete(staged.path)
            state.counter += len(records)
            state.last_link = link.hex()
            state.hashes = list(renewal["hashes"])
            state.policy = renewal["policy"]
            state.balances = {str(sid): cover for sid, cover in covers}
            state.max_count, state.max_amount = renewal["limits"]
            state.renewal, state.scheduled = {}, {}
            if not answered:
                first = state.unanswered[0] if state.unanswered else state.counter - len(records) + 1
                state.unanswered = [first, state.counter]
            self._put_state(card, state)
        return records

    # ------------------------------------------------------------------ clone check
    def _internal_authenticate(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        if not self._key_generated(card):
            raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, "no card key generated")
        if not fmt.MIN_CHALLENGE <= len(apdu.data) <= fmt.MAX_CHALLENGE:
            raise IsoError(SW.WRONG_LENGTH, "INTERNAL AUTHENTICATE takes an 8-32 byte challenge")
        if state.hashes:
            hashes = ContentHashes(*(bytes.fromhex(h) for h in state.hashes))
        else:  # not activated: attest what is stored now
            hashes = ContentHashes.of(
                *(
                    self._object(card, f)
                    for f in (fmt.FileId.PROFILE, fmt.FileId.TEMPLATES, fmt.FileId.PHOTOS)
                )
            )
        answer = fmt.Attestation(fmt.Lifecycle(state.lifecycle), state.counter, hashes, b"")
        message = fmt.attestation_message(apdu.data, self.card_id, answer.fields())
        signature = card.sign(self, fmt.CARD_KEY_REF, message)
        return answer.fields() + fmt.tlv(fmt.IaTag.SIGNATURE, signature), SW.OK

    # ------------------------------------------------------------------ debit
    def _debit(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        self._lifecycle(state, fmt.Lifecycle.ACTIVATED, what="DEBIT")
        req = fmt.DebitRequest.parse(apdu.data)
        card.require(
            _right(fmt.RIGHT_FOR_RECORD[req.record_type]), card.app_df(self), f"{req.record_type.name}"
        )
        terminal = self._terminal_chr(card)
        for nonce, counter in state.nonces:  # a terminal retrying after a crash gets the same record
            if nonce == req.nonce.hex():
                return self._log_record(card, counter), SW.OK
        key = str(req.scheme_id)
        if key not in state.balances:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"no scheme {req.scheme_id} on this card")
        profile = HouseholdProfile.parse(self._object(card, fmt.FileId.PROFILE))
        if req.member_index >= len(profile.members):
            raise IsoError(SW.WRONG_DATA, f"no member {req.member_index} in this household")
        before = state.balances[key]
        after, blocks = self._apply(state, req, before, card)
        debited = max(0, before - after)
        over = state.since_count + 1 > state.max_count or state.since_amount + debited > state.max_amount
        if req.record_type in fmt.DEBITING and over:
            raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, "offline limit reached: the card must sync")
        record = TransactionRecord(
            record_type=req.record_type, card_id=_card_number(self.card_id), counter=state.counter + 1,
            scheme_id=req.scheme_id, amount=req.amount, balance_after=after, time=req.time,
            terminal_id=reference_id(terminal), operator_id=req.operator_id, facility_id=req.facility_id,
            reference=req.reference, member_index=req.member_index, prev_hash=bytes.fromhex(state.last_link),
        )  # fmt: skip
        signature = card.sign(self, fmt.CARD_KEY_REF, record.signed_part())
        raw = record.signed_part() + signature
        with card.transaction():
            slot = (record.counter - 1) % self.log_capacity
            card.write_file(self, fmt.FileId.LOG, slot * RECORD_LENGTH, raw)
            card.checkpoint("log record written")
            state.counter = record.counter
            state.last_link = chain_hash(raw).hex()
            state.balances[key] = after
            state.blocks = blocks
            if req.record_type is RecordType.BLOCK:  # the policy year that pays the admission
                state.block_years[str(record.counter)] = state.policy
            elif req.record_type in (RecordType.SETTLE, RecordType.RELEASE):
                state.block_years.pop(str(req.reference), None)
            state.nonces = [*state.nonces, [req.nonce.hex(), record.counter]][-fmt.NONCE_MEMORY :]
            if req.record_type in fmt.DEBITING:
                state.since_count += 1
                state.since_amount += debited
                state.debited[str(record.counter)] = debited
            self._put_state(card, state)
        return raw, SW.OK

    def _apply(
        self, state: CardState, req: fmt.DebitRequest, before: int, card: CardServices
    ) -> tuple[int, list[list[int]]]:
        """The balance after ``req`` (docs/formats.md expected_balance) and the new pending blocks."""
        blocks = [list(b) for b in state.blocks]
        rt = req.record_type
        if rt in (RecordType.BLOCK, RecordType.CASH):
            if req.amount == 0 or req.amount > before:
                raise IsoError(SW.COMMAND_NOT_ALLOWED, f"balance {before} does not cover {req.amount}")
            if rt is RecordType.BLOCK:
                if len(blocks) >= fmt.MAX_PENDING_BLOCKS:
                    raise IsoError(SW.NOT_ENOUGH_MEMORY, "too many open blocks: settle or release one")
                blocks.append([state.counter + 1, req.scheme_id, req.amount])
            return before - req.amount, blocks
        if rt in (RecordType.SETTLE, RecordType.RELEASE):
            match = [b for b in blocks if b[0] == req.reference and b[1] == req.scheme_id]
            if not match:
                raise IsoError(SW.REFERENCE_NOT_FOUND, f"no open block with counter {req.reference}")
            held = match[0][2]
            blocks.remove(match[0])
            if rt is RecordType.RELEASE and req.amount != 0:
                raise IsoError(SW.WRONG_DATA, "RELEASE carries amount 0")
            if state.block_years.get(str(req.reference), state.policy) != state.policy:
                # opened in a policy year a held renewal has since replaced: the admission is paid from
                # that year's hold, and what is left of the hold goes with that year, not to this wallet
                if req.amount > held:
                    raise IsoError(
                        SW.COMMAND_NOT_ALLOWED,
                        f"the previous year's hold {held} does not cover {req.amount}",
                    )
                return before, blocks
            if rt is RecordType.RELEASE:
                return before + held, blocks
            if req.amount > before + held:
                raise IsoError(
                    SW.COMMAND_NOT_ALLOWED, f"balance {before} + held {held} does not cover {req.amount}"
                )
            return before + held - req.amount, blocks
        if rt is RecordType.PROOF_OF_LIFE:
            if req.amount != 0:
                raise IsoError(SW.WRONG_DATA, "PROOF_OF_LIFE carries amount 0")
            return before, blocks
        # TOP_UP / RENEWAL / SPLIT: only with a central authorisation naming this card, scheme and amount
        auth = self._check_authorisation(req.authorisation, card, state)
        if rt is RecordType.SPLIT:
            # part of the cover moved to a split card: the balance is lowered by the authorised amount (a
            # SPLIT record, amount = the paise lowered), never below zero
            if auth.kind is not fmt.AuthKind.SPLIT or auth.scheme_id != req.scheme_id or auth.value == 0:
                raise IsoError(SW.WRONG_DATA, f"the authorisation is not a SPLIT of scheme {req.scheme_id}")
            if auth.value > before:
                raise IsoError(
                    SW.COMMAND_NOT_ALLOWED, f"balance {before} does not cover the split {auth.value}"
                )
            if req.amount != auth.value:
                raise IsoError(SW.WRONG_DATA, f"the split lowers {auth.value}, not {req.amount}")
            state.auth_serial = auth.serial
            return before - auth.value, blocks
        wanted = fmt.AuthKind.TOP_UP if rt is RecordType.TOP_UP else fmt.AuthKind.RENEWAL
        if auth.kind is not wanted or auth.scheme_id != req.scheme_id or auth.value != req.amount:
            raise IsoError(
                SW.WRONG_DATA,
                f"the authorisation is not a {wanted.name} of {req.amount} on scheme {req.scheme_id}",
            )
        state.auth_serial = auth.serial
        after = before + req.amount if rt is RecordType.TOP_UP else req.amount
        if after > 0xFFFF_FFFF:
            raise IsoError(SW.WRONG_DATA, "balance would overflow")
        return after, blocks

    def _log_record(self, card: CardServices, counter: int) -> bytes:
        slot = (counter - 1) % self.log_capacity
        raw = card.read_file(self, fmt.FileId.LOG, slot * RECORD_LENGTH, RECORD_LENGTH)
        if int.from_bytes(raw[10:14], "big") != counter:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"record {counter} has left the cyclic log")
        return raw

    def _read_log(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        if not card.session.security.terminal_rights:
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, "READ LOG needs an authenticated terminal")
        asked = int.from_bytes(apdu.data, "big") if len(apdu.data) == 4 else apdu.p1p2  # counters are u32
        first = max(asked, 1, state.counter - self.log_capacity + 1)
        room = max(1, (apdu.ne or 256) // RECORD_LENGTH)
        out = b"".join(
            self._log_record(card, c) for c in range(first, min(state.counter, first + room - 1) + 1)
        )
        return out, SW.OK

    # ------------------------------------------------------------------ central authorisations
    def _check_authorisation(self, data: bytes, card: CardServices, state: CardState) -> fmt.Authorisation:
        auth = fmt.Authorisation.parse(data)
        now = datetime.fromtimestamp(card.now(), tz=UTC)
        if auth.card_id != self.card_id:
            raise IsoError(SW.WRONG_DATA, f"authorisation names card {auth.card_id}")
        if auth.serial <= state.auth_serial:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, f"authorisation serial {auth.serial} already used")
        if auth.chain:
            try:
                validated = validate_chain([auth.chain], self.anchor, now=now)
            except PkiError as exc:
                raise IsoError(
                    SW.SECURITY_STATUS_NOT_SATISFIED, f"authorisation signer refused: {exc}"
                ) from None
            if validated.leaf.role is not Role.DISTRICT:
                raise IsoError(
                    SW.SECURITY_STATUS_NOT_SATISFIED, "authorisations come from the root or a district"
                )
            point = validated.leaf.public_point
        else:
            point = self.anchor.public_point
        try:
            verify_signature(point, auth.signed_bytes(), auth.signature, subject=self.card_id)
        except PkiError:
            raise IsoError(
                SW.SECURITY_STATUS_NOT_SATISFIED, "authorisation signature does not verify"
            ) from None
        return auth

    def _authorise(self, apdu: CommandApdu, card: CardServices) -> Response:
        state = self._state(card)
        self._lifecycle(state, fmt.Lifecycle.ACTIVATED, fmt.Lifecycle.BLOCKED, what="AUTHORISE")
        auth = self._check_authorisation(apdu.data, card, state)
        if auth.kind is fmt.AuthKind.SYNC_ACK:
            if auth.value > state.counter:
                raise IsoError(
                    SW.WRONG_DATA, f"acknowledges counter {auth.value}, card is at {state.counter}"
                )
            synced = max(state.synced_counter, auth.value)
            left = {c: a for c, a in state.debited.items() if int(c) > synced}
            state.synced_counter, state.debited = synced, left
            if state.unanswered:  # central holds the card-made records up to ``synced``
                first, last = state.unanswered
                state.unanswered = [] if synced >= last else [max(first, synced + 1), last]
            state.since_count, state.since_amount = len(left), sum(left.values())
        elif auth.kind is fmt.AuthKind.SUPERSEDE:
            state.lifecycle = fmt.Lifecycle.SUPERSEDED
            state.renewal, state.scheduled = {}, {}
        elif auth.kind is not fmt.AuthKind.RENEW_POLICY:
            raise IsoError(SW.WRONG_DATA, f"{auth.kind.name} travels with DEBIT, not AUTHORISE")
        state.auth_serial = auth.serial
        with card.transaction():
            if auth.kind is fmt.AuthKind.RENEW_POLICY:
                self._open_renewal(card, state, auth)
            self._put_state(card, state)
        return b"", SW.OK


def _card_number(card_id: str) -> int:
    from cardsvc.formats.profile import card_number

    return card_number(card_id)
