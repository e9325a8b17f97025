"""Shared web layer of the operator screens (station, point of service, central dashboard).

Why one layer: every screen must look and behave the same for people with little training — the same large
controls, the same status bar, the same language switch, one message catalogue (English and Hindi) and the
local number and date formats. Nothing is loaded from outside the machine: every asset is served from this
package and the Content-Security-Policy header forbids anything else.

Public API: :func:`init_web` (call once from each app factory), :data:`LOCALES`, :func:`compile_catalogues`.
"""

from __future__ import annotations

from cardsvc.web.i18n import LOCALES, compile_catalogues
from cardsvc.web.setup import init_web

__all__ = ["LOCALES", "compile_catalogues", "init_web"]
