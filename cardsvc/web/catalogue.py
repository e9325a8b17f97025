"""Keep the message catalogue whole: ``python -m cardsvc.web.catalogue`` extracts every msgid from the
screens (templates and views of cardsvc/web, enrolment_station/web, point_of_service/web and
cardsvc/central/dashboard) plus the catalogued reason texts of the services (translated by the screens with
``gettext(message.problem)``), and updates translations/{en,hi}/LC_MESSAGES/messages.po keeping every
translation already made. New Hindi entries are left empty (shown in English) and listed on stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from cardsvc.web.i18n import LOCALES, TRANSLATIONS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["cardsvc/web", "enrolment_station/web", "point_of_service/web", "cardsvc/central/dashboard"]
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}


#: Msgids passed through variables (application titles, service values shown as words).
EXTRA = [
    "Hospital and paypoint terminal",
    "Enrolment station",
    "Central dashboard",
    "fingerprint",
    "override",
]


def service_texts() -> Iterable[str]:
    """Texts the services hand to the screens (their own catalogues, one home each)."""
    from point_of_service.reasons import CATALOGUE

    yield from EXTRA
    for message in CATALOGUE.values():
        yield message.problem
        yield message.next_step
    try:
        from enrolment_station.web.texts import service_texts as station_texts
    except ImportError:
        return
    yield from station_texts()


def extract() -> Catalog:
    template = Catalog(project="cardsvc screens", charset="utf-8")
    for source in SOURCES:
        directory = ROOT / source
        if not directory.exists():
            continue
        options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
        for filename, lineno, message, _comments, _ctx in extract_from_dir(
            directory, METHODS, options_map=options, keywords=KEYWORDS
        ):
            template.add(message, locations=[(f"{source}/{filename}", lineno)])
    for text in service_texts():
        template.add(text, locations=[("services", 0)])
    return template


def update(template: Catalog) -> dict[str, list[str]]:
    missing: dict[str, list[str]] = {}
    for lang in LOCALES:
        po = TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"
        po.parent.mkdir(parents=True, exist_ok=True)
        if po.exists():
            with po.open("rb") as f:
                catalog = read_po(f, locale=lang)
        else:
            catalog = Catalog(locale=lang, project="cardsvc screens", charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with po.open("wb") as f:
            write_po(f, catalog, width=110, omit_header=False, sort_output=True)
        missing[lang] = [
            str(m.id if isinstance(m.id, str) else m.id[0])
            for m in catalog
            if m.id and (not m.string or (isinstance(m.string, tuple) and not all(m.string)))
        ]
    return missing


def main() -> int:
    missing = update(extract())
    for lang, ids in missing.items():
        if lang != "en" and ids:
            print(f"{lang}: {len(ids)} untranslated")
            for msgid in ids:
                print(f"  {msgid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
