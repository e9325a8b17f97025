"""The shared web layer without a browser: the catalogue is complete in Hindi, compiles on a fresh clone,
languages are chosen as documented, money in the Indian format, CSRF and the no-outside-loads policy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from unittest.mock import MagicMock

import click
import pytest
from babel.messages.pofile import read_po

from cardsvc.web import LOCALES, compile_catalogues
from cardsvc.web.i18n import TRANSLATIONS

ROOT = Path(__file__).resolve().parents[1]
SCREEN_DIRS = ["cardsvc/web", "point_of_service/web", "enrolment_station/web", "cardsvc/central/dashboard"]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def pos_app() -> object:
    from point_of_service.web import create_app

    terminal = MagicMock()
    terminal.signed_in.return_value = None
    return create_app(terminal, {"SECRET_KEY": b"t"})


def test_every_screen_text_is_translated_to_hindi_with_the_same_placeholders() -> None:
    from cardsvc.web.catalogue import extract

    template = extract()
    with (TRANSLATIONS / "hi" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        hindi = read_po(f, locale="hi")
    missing, broken = [], []
    for message in template:
        if not message.id:
            continue
        translated = hindi.get(message.id)
        strings = translated.string if translated is not None else None
        if not strings or (isinstance(strings, tuple) and not all(strings)):
            missing.append(message.id)
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        for s in strings if isinstance(strings, tuple) else (strings,):
            if set(PLACEHOLDER.findall(s)) != set(PLACEHOLDER.findall(ids[0])):
                broken.append((message.id, s))
    assert not missing, f"untranslated (run python -m cardsvc.web.catalogue): {missing[:10]}"
    assert not broken, f"placeholders differ: {broken[:5]}"
    assert len(template) > 300


def test_catalogues_compile_on_a_fresh_clone(tmp_path: Path) -> None:
    copy = tmp_path / "translations"
    shutil.copytree(TRANSLATIONS, copy, ignore=shutil.ignore_patterns("*.mo"))
    written = compile_catalogues(copy)
    assert sorted(p.parent.parent.name for p in written) == sorted(LOCALES)
    assert compile_catalogues(copy) == [], "up-to-date catalogues are not rewritten"


def test_language_from_query_cookie_and_browser() -> None:
    client = pos_app().test_client()  # type: ignore[attr-defined]
    hindi = client.get("/signin?lang=hi")
    assert "क्लर्क साइन इन" in hindi.get_data(as_text=True)
    assert "lang=hi" in hindi.headers["Set-Cookie"]
    assert "क्लर्क साइन इन" in client.get("/signin").get_data(as_text=True), "the cookie keeps the choice"
    fresh = pos_app().test_client()  # type: ignore[attr-defined]
    assert "क्लर्क साइन इन" in fresh.get("/signin", headers={"Accept-Language": "hi-IN,hi;q=0.9"}).get_data(
        as_text=True
    )
    assert "Clerk sign-in" in fresh.get("/signin", headers={"Accept-Language": "fr"}).get_data(as_text=True)


def test_money_and_dates_in_the_local_format() -> None:
    from cardsvc.web.i18n import money, when

    app = pos_app()
    with app.test_request_context("/?lang=en"):  # type: ignore[attr-defined]
        assert money(123_456_789) == "₹\u00a012,34,567.89"
        assert "2027" in when(1_800_000_000)
    with app.test_request_context("/?lang=hi"):  # type: ignore[attr-defined]
        assert money(450_000) == "₹\u00a04,500.00"


def test_forms_without_the_csrf_token_are_refused() -> None:
    response = pos_app().test_client().post("/signin", data={"pin": "1234"})  # type: ignore[attr-defined]
    assert response.status_code == 400


def test_pages_load_nothing_from_outside_the_machine() -> None:
    response = pos_app().test_client().get("/signin")  # type: ignore[attr-defined]
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    for d in SCREEN_DIRS:
        for path in (ROOT / d).rglob("*"):
            if path.suffix in {".html", ".css", ".js"}:
                text = path.read_text(encoding="utf-8")
                assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), f"{path} links outside"
                assert "style=" not in text, f"{path}: inline styles are blocked by the CSP"


@pytest.mark.parametrize("module", ["point_of_service.web.serve", "enrolment_station.web.serve"])
def test_serve_commands_register_on_a_cli_group(module: str) -> None:
    import importlib

    group = click.Group("cli")
    importlib.import_module(module).register(group)
    assert "serve" in group.commands
    assert "127.0.0.1" in (group.commands["serve"].help or "")


def test_read_only_package_compiles_into_a_private_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardsvc.web import i18n

    calls: list[Path] = []
    real = i18n.compile_catalogues

    def read_only_then_real(directory: Path = TRANSLATIONS) -> list[Path]:
        calls.append(directory)
        if directory == TRANSLATIONS:
            raise PermissionError("read-only site-packages")
        return real(directory)

    monkeypatch.setattr(i18n, "compile_catalogues", read_only_then_real)
    usable = i18n.usable_translations()
    assert usable != TRANSLATIONS and (usable / "hi" / "LC_MESSAGES" / "messages.mo").exists()
