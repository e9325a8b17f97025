"""Typed errors for the wire formats: every error says which field was wrong and why."""

from __future__ import annotations


class FormatError(ValueError):
    """A record or envelope could not be parsed or built."""


class RecordLengthError(FormatError):
    """The record does not have the fixed length of its format version."""


class UnsupportedVersionError(FormatError):
    """The format version byte names a version this code does not know."""


class FieldValueError(FormatError):
    """A field holds a value outside its allowed range or set."""


class SignatureError(FormatError):
    """A signature did not verify (the message does not say more, on purpose)."""
