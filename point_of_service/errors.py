"""The POS error hierarchy: every refusal carries a catalogued :class:`Reason` and a technical detail."""

from __future__ import annotations

from point_of_service.reasons import ClerkMessage, Reason, message_for


class PosError(Exception):
    """Root of POS errors. ``reason`` is what the clerk is told; ``detail`` is what the engineer reads."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)

    @property
    def message(self) -> ClerkMessage:
        return message_for(self.reason)


class SignInError(PosError):
    """The clerk could not sign in."""


class VerificationError(PosError):
    """The beneficiary card or member was refused; ``step`` names the pipeline step that failed."""

    def __init__(self, reason: Reason, detail: str = "", *, step: str = "") -> None:
        self.step = step
        super().__init__(reason, detail)


class TransactionError(PosError):
    """A hospital or paypoint action was refused before or by the card."""


class CatalogueError(PosError):
    """A package catalogue was refused."""


class SyncError(PosError):
    """Central was unreachable (``retryable``) or refused what we sent."""

    def __init__(self, reason: Reason, detail: str = "", *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(reason, detail)


class TerminalSetupError(PosError):
    """The terminal's own key, certificate or configuration is missing or wrong."""
