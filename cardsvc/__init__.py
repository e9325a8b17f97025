"""Shared core of the benefit-card system: card protocol, formats, biometrics and the central service."""

__version__ = "0.1.0"
