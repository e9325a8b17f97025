"""Configuration defaults; ``create_app(config)`` overrides them, then the environment (CARDSVC_*)."""

from __future__ import annotations

import os
import time
from typing import Any, Final

DEFAULTS: Final[dict[str, Any]] = {
    "DATABASE_URL": "sqlite:///cardsvc-central.db",
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,  # one batch of 20,000 records is about 5 MB of JSON
    "AUTH_WINDOW_SECONDS": 300,
    "MIGRATE_ON_START": True,
    "CLOCK": time.time,  # injected: tests pass a fixed clock
    "TRUST_ANCHOR": None,  # cardsvc.pki TrustAnchor: terminals are then known by certificate chains
    "REVOCATIONS": None,  # cardsvc.pki RevocationLookup (e.g. RevocationStore) for terminal revocations
    "DASHBOARD": True,  # register the staff dashboard blueprint (cardsvc/central/dashboard)
    "CENTRAL_KEY": None,  # services.publish.CentralKey: signs revocation lists, the catalogue, authorisations
}


def from_environment() -> dict[str, Any]:
    """Settings from CARDSVC_DATABASE_URL (or DATABASE_URL) and CARDSVC_MAX_CONTENT_LENGTH."""
    settings: dict[str, Any] = {}
    url = os.environ.get("CARDSVC_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        settings["DATABASE_URL"] = url
    if limit := os.environ.get("CARDSVC_MAX_CONTENT_LENGTH"):
        settings["MAX_CONTENT_LENGTH"] = int(limit)
    return settings
