"""The central service: ingest from the field, reconciliation, settlement, lists and reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """See :func:`cardsvc.central.app.create_app` (imported lazily to keep ``cardsvc --help`` fast)."""
    from cardsvc.central.app import create_app as factory

    return factory(config)
