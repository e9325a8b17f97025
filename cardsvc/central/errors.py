"""The service's error hierarchy. Every refusal has an HTTP status, a stable code and a human reason.

Routes never build error responses themselves: they raise, and one handler renders
``{"error": code, "reason": text}``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal the client can act on."""

    status = 400

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class MalformedError(ServiceError):
    """The request or batch could not be parsed."""

    status = 400


class AuthenticationError(ServiceError):
    """The request is not signed, or not by a key we know, or is stale or replayed."""

    status = 401


class ForbiddenError(ServiceError):
    """The signer is known but not allowed (revoked)."""

    status = 403


class NotFoundError(ServiceError):
    status = 404


class ConflictError(ServiceError):
    """The content contradicts what central already holds."""

    status = 409


class TooLargeError(ServiceError):
    status = 413


class UnprocessableError(ServiceError):
    """Well-formed but fails verification (a signature, a key, a chain)."""

    status = 422
