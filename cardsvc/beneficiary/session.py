"""Host session for the beneficiary card application: domain verbs over the card-host stack.

Formats from cardsvc/beneficiary/protocol.py and cardsvc/formats/profile.py. Everything the card signs is
verified here before it is returned (attestations, transaction records), so callers get checked objects
or a typed error. See docs/card-layout.md.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.errors import (
    BalanceError,
    BeneficiaryCardError,
    OfflineLimitError,
    RecordMismatchError,
)
from cardsvc.card.errors import ApduError
from cardsvc.card.iso import SW
from cardsvc.card.session import ApplicationSession
from cardsvc.card.transport import CardConnection
from cardsvc.formats.profile import (
    HouseholdProfile,
    ProfileFormatError,
    StoredPhoto,
    StoredTemplate,
    encode_photos,
    encode_templates,
    parse_photos,
    parse_templates,
)
from cardsvc.formats.transaction import RECORD_LENGTH, RecordType, TransactionRecord
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.signer import Signer, load_public_point, verify_signature
from cardsvc.pki.termauth import sign_terminal_auth, terminal_auth_commands


@dataclass
class ApduCounter:
    """What a session cost on the wire: commands, bytes sent and received (incl. status words)."""

    apdus: int = 0
    sent: int = 0
    received: int = 0

    def reset(self) -> None:
        self.apdus = self.sent = self.received = 0


class CountingConnection:
    """A CardConnection that counts every APDU on the wire (GET RESPONSE and SELECTs included)."""

    def __init__(self, inner: CardConnection, counter: ApduCounter) -> None:
        self.inner = inner
        self.counter = counter

    @property
    def atr(self) -> bytes:
        return bytes(getattr(self.inner, "atr", b"") or b"")

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = self.inner.send_and_receive(apdu)
        self.counter.apdus += 1
        self.counter.sent += len(apdu)
        self.counter.received += len(data) + 2
        return data, sw

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass(frozen=True)
class OfflineState:
    """Offline limits (from the profile) and their use since the synced counter."""

    max_count: int
    max_amount: int
    count: int
    amount: int
    synced_counter: int
    counter: int

    @property
    def debits_left(self) -> int:
        return max(0, self.max_count - self.count)

    @property
    def amount_left(self) -> int:
        return max(0, self.max_amount - self.amount)


@dataclass(frozen=True)
class PublicPart:
    """What any reader may read: status and the certificates (card, then FKO)."""

    status: fmt.CardStatus
    card_certificate: CvCertificate | None
    fko_certificate: CvCertificate | None


class BeneficiarySession(ApplicationSession):
    """Talk to the beneficiary application (selected on construction).

    ``counter`` counts every APDU and byte on the wire since the session was opened (SELECTs included).
    """

    AID = fmt.BENEFICIARY_AID

    def __init__(self, connection: CardConnection, **kwargs: Any) -> None:
        self.counter = ApduCounter()
        self.card_certificate: CvCertificate | None = None
        super().__init__(CountingConnection(connection, self.counter), **kwargs)

    def _cmd(self, ins: fmt.BenIns, data: bytes = b"", *, p1: int = 0, p2: int = 0, le: int = 0,
             sensitive: bool = False) -> bytes:  # fmt: skip
        return self.protocol.send_apdu(fmt.BENEFICIARY_CLA, ins, p1, p2, data, le, sensitive=sensitive)

    @property
    def _le(self) -> int:
        return min(65536, self.limits.max_response_data)

    # --- public -------------------------------------------------------------------------------------
    def status(self) -> fmt.CardStatus:
        return fmt.CardStatus.parse(self._cmd(fmt.BenIns.GET_STATUS, le=self._le))

    def _read_object(self, fid: fmt.FileId, length: int, *, sensitive: bool = False) -> bytes:
        """The object after its 2-byte length prefix, in as few READ BINARYs as the card allows."""
        if length == 0:
            return b""
        raw = self.read_binary(fid, offset=0, length=length + 2, sensitive=sensitive)
        if int.from_bytes(raw[:2], "big") != length:
            raise BeneficiaryCardError(
                f"EF {fid:04X} holds {int.from_bytes(raw[:2], 'big')} bytes, status said {length}"
            )
        return raw[2:]

    def read_public(self, status: fmt.CardStatus | None = None) -> PublicPart:
        status = status or self.status()
        raw = self._read_object(fmt.FileId.CERTIFICATES, status.object_lengths[0])
        if not raw:
            return PublicPart(status, None, None)
        parts = fmt.split_certificates(raw)
        if len(parts) != 2:
            raise ProfileFormatError(
                f"EF 0101 holds {len(parts)} certificates, not the card's and the FKO's"
            )
        card, fko = (CvCertificate.parse(p) for p in parts)
        self.card_certificate = card
        return PublicPart(status, card, fko)

    def read_profile(self, status: fmt.CardStatus | None = None) -> tuple[HouseholdProfile, bytes]:
        """The household profile (needs READ_PROFILE or ENROL) and its exact bytes (for the digest)."""
        status = status or self.status()
        raw = self._read_object(fmt.FileId.PROFILE, status.object_lengths[1])
        return HouseholdProfile.parse(raw), raw

    def read_templates(self, member: int | None = None, status: fmt.CardStatus | None = None
                       ) -> tuple[tuple[StoredTemplate, ...], bytes]:  # fmt: skip
        """Templates (after terminal authentication with READ_TEMPLATES): all, or one member's."""
        status = status or self.status()
        raw = self._read_object(fmt.FileId.TEMPLATES, status.object_lengths[2], sensitive=True)
        templates = parse_templates(raw)
        if member is not None:
            templates = tuple(t for t in templates if t.member_index == member)
        return templates, raw

    def read_photos(self, status: fmt.CardStatus | None = None) -> tuple[StoredPhoto, ...]:
        status = status or self.status()
        return parse_photos(self._read_object(fmt.FileId.PHOTOS, status.object_lengths[3]))

    # --- authentication -----------------------------------------------------------------------------
    def internal_authenticate(self, challenge: bytes, card_id: str, public_point: bytes) -> fmt.Attestation:
        """Fresh challenge signed by the card key (clone check); raises SignatureInvalidError otherwise."""
        answer = fmt.Attestation.parse(self._cmd(fmt.BenIns.INTERNAL_AUTHENTICATE, challenge, le=self._le))
        message = fmt.attestation_message(challenge, card_id, answer.fields())
        verify_signature(public_point, message, answer.signature, subject=card_id)
        return answer

    def terminal_authenticate(self, chain: Sequence[CvCertificate], signer: Signer, card_id: str) -> None:
        """Prove the terminal's chain to the card; its rights then hold for this power session."""
        for cla, ins, p1, p2, data in terminal_auth_commands(chain):
            self.protocol.send_apdu(cla, ins, p1, p2, data)
        challenge = self.get_challenge(8)
        proof = sign_terminal_auth(signer, challenge=challenge, card_id=card_id, terminal_chr=chain[-1].chr)
        self._cmd(fmt.BenIns.EXTERNAL_AUTHENTICATE, proof)

    # --- personalisation (enrolment station, terminal authenticated with ENROL) ---------------------
    def generate_key(self) -> bytes:
        """A new card key pair; its public point (PointError if the card answers anything else)."""
        point = self._cmd(fmt.BenIns.GENERATE_KEY, le=256)
        load_public_point(point)
        return point

    def public_key(self) -> bytes:
        """The card key's public point (GENERATE KEY P1=01); to complete a torn personalisation."""
        point = self._cmd(fmt.BenIns.GENERATE_KEY, p1=0x01, le=256)
        load_public_point(point)
        return point

    def _write(self, obj: fmt.ObjectId, data: bytes, *, sensitive: bool = False) -> None:
        blob = len(data).to_bytes(2, "big") + data
        chunk = max(1, min(self.limits.max_command_data, 65535) - 2)
        for pos in range(0, len(blob), chunk):
            self._cmd(fmt.BenIns.WRITE_OBJECT, pos.to_bytes(2, "big") + blob[pos : pos + chunk], p1=obj,
                      sensitive=sensitive)  # fmt: skip

    def write_profile(self, profile: HouseholdProfile) -> None:
        self._write(fmt.ObjectId.PROFILE, profile.encode())

    def write_templates(self, templates: Sequence[StoredTemplate]) -> None:
        self._write(fmt.ObjectId.TEMPLATES, encode_templates(templates), sensitive=True)

    def write_photos(self, photos: Sequence[StoredPhoto]) -> None:
        """Photos are optional; the card answers 6A84 (NotEnoughMemoryError) when they do not fit."""
        data = encode_photos(photos)
        self._cmd(fmt.BenIns.ALLOCATE_PHOTOS, len(data).to_bytes(2, "big"))
        self._write(fmt.ObjectId.PHOTOS, data)

    def wipe(self) -> None:
        """Erase a card that is not yet activated (restart a torn personalisation)."""
        self._cmd(fmt.BenIns.WIPE)

    def put_certificate(
        self,
        card_certificate: CvCertificate,
        fko_certificate: CvCertificate,
        district_certificate: CvCertificate | None = None,
    ) -> None:
        """Activation: the card checks key, id, policy period, the content digest of what it stores and the
        FKO's signature (with the district certificate: the whole chain to its root key), then commits.
        Needs an ENROL terminal."""
        data = card_certificate.encode() + fko_certificate.encode()
        if district_certificate is not None:
            data += district_certificate.encode()
        self._cmd(fmt.BenIns.PUT_CERTIFICATE, data)

    # --- transactions (point of service) -------------------------------------------------------------
    def debit(
        self,
        record_type: RecordType,
        *,
        scheme_id: int,
        amount: int,
        time: int,
        operator_id: int,
        facility_id: int,
        reference: int = 0,
        member_index: int = 0,
        nonce: bytes | None = None,
        authorisation: fmt.Authorisation | None = None,
        card_key: bytes | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> TransactionRecord:
        """One card transaction; the returned record is verified against the card key and the request.

        Keep ``nonce`` in the terminal journal BEFORE sending: after a crash, call again with the same
        nonce and the card returns the same record instead of debiting twice.
        """
        request = fmt.DebitRequest(record_type, scheme_id, amount, time, operator_id, facility_id, reference,
                                   member_index, nonce or rng(fmt.NONCE_LENGTH),
                                   authorisation.encode() if authorisation else b"")  # fmt: skip
        try:
            raw = self._cmd(fmt.BenIns.DEBIT, request.encode(), le=256)
        except ApduError as exc:
            if exc.sw == SW.REFERENCE_DATA_NOT_USABLE:
                raise OfflineLimitError(
                    "offline limit reached: the card must be synced with central"
                ) from exc
            if exc.sw == SW.COMMAND_NOT_ALLOWED:
                raise BalanceError(f"balance does not cover {amount} paise") from exc
            raise
        record = TransactionRecord.parse(raw)
        self._check_record(record, request, card_key)
        return record

    def _point(self, card_key: bytes | None) -> bytes:
        if card_key is not None:
            return card_key
        if self.card_certificate is None:
            self.read_public()
        assert self.card_certificate is not None
        return self.card_certificate.public_point

    def _check_record(self, record: TransactionRecord, req: fmt.DebitRequest, card_key: bytes | None) -> None:
        record.verify(load_public_point(self._point(card_key)))
        expected = (req.record_type, req.scheme_id, req.amount, req.time, req.operator_id, req.facility_id,
                    req.reference, req.member_index)  # fmt: skip
        got = (record.record_type, record.scheme_id, record.amount, record.time, record.operator_id,
               record.facility_id, record.reference, record.member_index)  # fmt: skip
        if got != expected:
            raise RecordMismatchError("the card's record does not match the request")

    def read_log(
        self, from_counter: int = 1, *, card_key: bytes | None = None, to_counter: int | None = None
    ) -> list[TransactionRecord]:
        """Records from ``from_counter`` on (those still in the cyclic log), each verified; up to
        ``to_counter`` only when given (no further READ LOG once it is read)."""
        key = load_public_point(self._point(card_key))
        out: list[TransactionRecord] = []
        nxt = from_counter
        while to_counter is None or nxt <= to_counter:
            raw = self._cmd(fmt.BenIns.READ_LOG, nxt.to_bytes(4, "big"), le=self._le)
            if not raw:
                break
            for i in range(0, len(raw), RECORD_LENGTH):
                record = TransactionRecord.parse(raw[i : i + RECORD_LENGTH])
                record.verify(key)
                out.append(record)
            nxt = out[-1].counter + 1
        if to_counter is not None:
            out = [r for r in out if r.counter <= to_counter]
        return out

    def offline_limits(self) -> OfflineState:
        """The offline risk limits and how much of them is used since the last acknowledged sync."""
        st = self.status()
        return OfflineState(st.max_count, st.max_amount, st.since_sync_count, st.since_sync_amount,
                            st.synced_counter, st.counter)  # fmt: skip

    def authorise(self, authorisation: fmt.Authorisation) -> None:
        """Present a central-signed authorisation (sync acknowledgement, supersede, renewal opening)."""
        self._cmd(fmt.BenIns.AUTHORISE, authorisation.encode())

    # --- renewal and split (enrolment station, terminal authenticated with ENROL and RENEW) -----------
    def open_renewal(self, authorisation: fmt.Authorisation) -> None:
        """AUTHORISE RENEW_POLICY: the card notes the new period and cover and makes room for the staged
        profile; it stays ACTIVATED with the old year's data until :meth:`commit_renewal`."""
        if authorisation.kind is not fmt.AuthKind.RENEW_POLICY:
            raise ValueError("open_renewal takes a RENEW_POLICY authorisation")
        self.authorise(authorisation)

    def write_next_profile(self, profile: HouseholdProfile) -> None:
        """Stage the new year's profile (ENROL; only while a renewal is open)."""
        self._write(fmt.ObjectId.NEXT_PROFILE, profile.encode())

    def commit_renewal(
        self,
        card_certificate: CvCertificate,
        fko_certificate: CvCertificate,
        district_certificate: CvCertificate | None = None,
        *,
        time: int,
        operator_id: int,
    ) -> list[TransactionRecord]:
        """COMMIT RENEWAL (RENEW): the card checks the new certificate against the staged profile and the
        authorised period and cover, then in one transaction replaces profile and certificate and sets
        each wallet; the RENEWAL records it made (one per scheme) are returned, each verified.

        A period starting after the card's today (within ``fmt.RENEWAL_WINDOW``) is held instead: the card
        answers no record and keeps its current year until the start date (GET STATUS shows it as
        ``renewal_scheduled``); it makes the RENEWAL records then. Returns [] in that case."""
        certs = card_certificate.encode() + fko_certificate.encode()
        if district_certificate is not None:
            certs += district_certificate.encode()
        raw = self._cmd(
            fmt.BenIns.COMMIT_RENEWAL, fmt.commit_renewal_data(time, operator_id, certs), le=self._le
        )
        if not raw and card_certificate.effective > datetime.fromtimestamp(time, tz=UTC).date():
            return []  # held until the new year starts
        if not raw or len(raw) % RECORD_LENGTH:
            raise BeneficiaryCardError(f"COMMIT RENEWAL answered {len(raw)} bytes, not whole records")
        key = load_public_point(card_certificate.public_point)
        records = [
            TransactionRecord.parse(raw[i : i + RECORD_LENGTH]) for i in range(0, len(raw), RECORD_LENGTH)
        ]
        for record in records:
            record.verify(key)
            if record.record_type is not RecordType.RENEWAL or record.time != time:
                raise RecordMismatchError("the card's renewal record does not match the request")
        self.card_certificate = card_certificate
        return records

    def split_cover(
        self,
        authorisation: fmt.Authorisation,
        *,
        time: int,
        operator_id: int,
        nonce: bytes | None = None,
        card_key: bytes | None = None,
    ) -> TransactionRecord:
        """Lower this card's balance of the authorisation's scheme by its value (cover moved to a split
        card): a card-signed SPLIT record (amount = the paise lowered, balance_after = what is left). Raises
        :class:`BalanceError` when the balance does not carry the split."""
        if authorisation.kind is not fmt.AuthKind.SPLIT:
            raise ValueError("split_cover takes a SPLIT authorisation")
        wallet = self.status().wallet(authorisation.scheme_id)
        if wallet.balance < authorisation.value:
            raise BalanceError(
                f"balance {wallet.balance} of scheme {authorisation.scheme_id} does not carry the split "
                f"of {authorisation.value}"
            )
        return self.debit(
            RecordType.SPLIT, scheme_id=authorisation.scheme_id, amount=authorisation.value, time=time,
            operator_id=operator_id, facility_id=0, reference=authorisation.serial, nonce=nonce,
            authorisation=authorisation, card_key=card_key,
        )  # fmt: skip

    def acknowledge_sync(self, authorisation: fmt.Authorisation) -> None:
        """Reset the offline counters: central acknowledges holding every record up to a counter."""
        if authorisation.kind is not fmt.AuthKind.SYNC_ACK:
            raise ValueError("acknowledge_sync takes a SYNC_ACK authorisation")
        self.authorise(authorisation)


def sign_authorisation(signer: Signer, auth: fmt.Authorisation, chain: CvCertificate | None = None
                       ) -> fmt.Authorisation:  # fmt: skip
    """Central side: sign ``auth`` with the root key (no chain) or a district key (its certificate)."""
    from dataclasses import replace

    unsigned = replace(auth, chain=chain.encode() if chain else b"", signature=b"")
    return replace(unsigned, signature=signer.sign(unsigned.signed_bytes()))


def digest_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "ApduCounter",
    "BeneficiarySession",
    "CountingConnection",
    "OfflineState",
    "PublicPart",
    "sign_authorisation",
]
