"""The message catalogue and local formats: English (en_IN) and Hindi (hi_IN).

The ``.po`` files under translations/ are the source (committed); the ``.mo`` files are compiled from them
at app creation when missing or older, so a fresh clone works without a build step.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Request
from flask_babel import format_date, format_datetime, format_decimal, get_locale

TRANSLATIONS = Path(__file__).parent / "translations"

#: Language code shown to the user -> Babel locale used for numbers and dates.
LOCALES: dict[str, str] = {"en": "en_IN", "hi": "hi_IN"}
LANG_COOKIE = "lang"


def compile_catalogues(directory: Path = TRANSLATIONS) -> list[Path]:
    """Compile every ``messages.po`` whose ``.mo`` is missing or older; returns the files written."""
    written = []
    for po in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as src:
            catalog = read_po(src, locale=po.parent.parent.name)
        tmp = mo.with_suffix(".mo.tmp")
        with tmp.open("wb") as out:
            write_mo(out, catalog)
        tmp.replace(mo)
        written.append(mo)
    return written


def usable_translations() -> Path:
    """The package's catalogues, compiled in place; or, when the package is read-only (an installed
    wheel), compiled into a private temporary copy."""
    try:
        compile_catalogues(TRANSLATIONS)
        return TRANSLATIONS
    except OSError:
        import shutil
        import tempfile

        copy = Path(tempfile.mkdtemp(prefix="cardsvc-web-")) / "translations"
        shutil.copytree(TRANSLATIONS, copy)
        compile_catalogues(copy)
        return copy


def choose_language(request: Request) -> str:
    """``?lang=`` first, then the cookie, then the browser's Accept-Language; English otherwise."""
    asked = request.args.get("lang")
    if asked in LOCALES:
        return asked
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LOCALES:
        return cookie
    return request.accept_languages.best_match(list(LOCALES)) or "en"


def current_language() -> str:
    locale = get_locale()
    return locale.language if locale is not None and locale.language in LOCALES else "en"


def money(paise: int) -> str:
    """Rupees with the local digit grouping (12,34,567.00 in India)."""
    return "₹\u00a0" + format_decimal(Decimal(paise) / 100, format="#,##,##0.00")


def number(value: int | float) -> str:
    return format_decimal(value)


def when(ts: int | float | None, fmt: str = "medium") -> str:
    """A unix time as a local date and time (India Standard Time is the default zone)."""
    if ts is None:
        return "—"
    return format_datetime(datetime.fromtimestamp(ts, UTC), fmt)


def day(ts: int | float | date | None) -> str:
    """A unix time, or a calendar date, as a local date only (policy years, periods)."""
    if ts is None:
        return "—"
    if isinstance(ts, date):
        return format_date(ts, "medium")
    return format_date(datetime.fromtimestamp(ts, UTC), "medium")


def duration(seconds: int | None) -> str:
    """Hours or days, for "offline for ..." (translated)."""
    from flask_babel import gettext, ngettext

    if seconds is None:
        return gettext("never synchronised")
    if seconds < 3600:
        return ngettext("%(num)s minute", "%(num)s minutes", max(0, seconds) // 60)
    hours = seconds // 3600
    if hours < 48:
        return ngettext("%(num)s hour", "%(num)s hours", hours)
    return ngettext("%(num)s day", "%(num)s days", hours // 24)
