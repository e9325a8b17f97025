"""The small error hierarchy of the biometric layer: callers catch `BiometricError` or one of its kinds."""

from __future__ import annotations


class BiometricError(Exception):
    """Base of every error raised by cardsvc.bio."""


class TemplateFormatError(BiometricError, ValueError):
    """A template record (ISO/IEC 19794-2 or compact card format) is malformed or cannot be encoded."""


class ExtractionError(BiometricError):
    """An image cannot yield a usable template (wrong shape, blank, no ridges found)."""


class MatcherError(BiometricError):
    """A matcher input is inconsistent (unknown encoding version, corrupt encoded template)."""
