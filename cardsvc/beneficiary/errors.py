"""Errors of the beneficiary card host side: what went wrong, said so a clerk or engineer can act on it."""

from __future__ import annotations


class BeneficiaryCardError(Exception):
    """Base of the beneficiary-card host errors."""


class BalanceError(BeneficiaryCardError):
    """The card refused a debit: its balance (plus any held block) does not cover the amount (6986)."""


class OfflineLimitError(BeneficiaryCardError):
    """The card refused a debit: too many or too much since the last acknowledged sync (6984)."""


class RecordMismatchError(BeneficiaryCardError):
    """The card's signed record does not match what the terminal asked for."""
