"""``init_web(app)``: Babel, CSRF, the shared templates and static files, the security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, request
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect
from markupsafe import Markup

from cardsvc.web import i18n

_HERE = Path(__file__).parent

#: Nothing but this machine: scripts, styles, images, forms and fetches all from 'self'.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'"
)


def _blueprint() -> Blueprint:
    return Blueprint(
        "web",
        __name__,
        template_folder=str(_HERE / "templates"),
        static_folder=str(_HERE / "static"),
        static_url_path="/_web/static",
    )


def data(value: object) -> Markup:
    """A value shown as written in every language (a name, a code, an id) inside a translated sentence:
    ``_("Households of camp %(camp)s", camp=data(camp_id))``; marked ``translate="no"``."""
    return Markup('<span translate="no">{}</span>').format(value)


def init_web(app: Flask, *, title: str, csrf_everywhere: bool = True) -> CSRFProtect:
    """Give ``app`` the shared look, the catalogue (en/hi), CSRF protection and the no-outside-loads policy.

    ``title`` is the application's name in the header (a msgid of the catalogue). With
    ``csrf_everywhere=False`` (central, whose API is signed per request, not cookie-authenticated) CSRF is
    checked only where a blueprint calls ``csrf.protect()``.
    """
    if not csrf_everywhere:
        app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(i18n.usable_translations()))
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Kolkata")
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Strict")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    if not app.config.get("SECRET_KEY"):
        import os

        app.config["SECRET_KEY"] = os.urandom(32)
    Babel(app, locale_selector=lambda: i18n.LOCALES[i18n.choose_language(request)])
    csrf = CSRFProtect(app)
    app.register_blueprint(_blueprint())
    app.extensions["web_title"] = title

    @app.context_processor
    def _helpers() -> dict[str, Any]:
        return {
            "app_title": app.extensions["web_title"],
            "lang": i18n.current_language(),
            "languages": {"en": "English", "hi": "हिन्दी"},
            "money": i18n.money,
            "number": i18n.number,
            "when": i18n.when,
            "day": i18n.day,
            "duration": i18n.duration,
            "data": data,
        }

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        asked = request.args.get("lang")
        if asked in i18n.LOCALES:
            response.set_cookie(i18n.LANG_COOKIE, asked, samesite="Strict", max_age=365 * 86400)
        return response

    return csrf
