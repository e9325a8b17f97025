"""WSGI entry for any server: ``gunicorn 'cardsvc.central.wsgi:app'``.

Settings come from CARDSVC_DATABASE_URL / DATABASE_URL and CARDSVC_MAX_CONTENT_LENGTH.
"""

from __future__ import annotations

from cardsvc.central.app import create_app

app = create_app()
