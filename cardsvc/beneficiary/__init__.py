"""Beneficiary card: host session, card protocol, offline verification (docs/card-layout.md).

Formats of the stored objects live in cardsvc/formats/profile.py; the card side in
hardware_sims/card/apps/beneficiary.py.
"""

from cardsvc.beneficiary.errors import (
    BalanceError,
    BeneficiaryCardError,
    OfflineLimitError,
    RecordMismatchError,
)
from cardsvc.beneficiary.protocol import (
    BENEFICIARY_AID,
    Attestation,
    AuthKind,
    Authorisation,
    CardStatus,
    Lifecycle,
)
from cardsvc.beneficiary.session import ApduCounter, BeneficiarySession, PublicPart, sign_authorisation

__all__ = [
    "BENEFICIARY_AID",
    "ApduCounter",
    "Attestation",
    "AuthKind",
    "Authorisation",
    "BalanceError",
    "BeneficiaryCardError",
    "BeneficiarySession",
    "CardStatus",
    "Lifecycle",
    "OfflineLimitError",
    "PublicPart",
    "RecordMismatchError",
    "sign_authorisation",
]
