"""The printed card face is bilingual: every label in Hindi and English ("नाम / Name"), each drawn with an
installed font whose character map covers every character of it (Debian's fonts-lohit-deva, installed by
scripts/setup.sh), so no label prints as empty boxes. Not pixel-exact: the text layout calls are checked."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw

from enrolment_station.cardface import LABELS, PROGRAMME, PROGRAMME_HI, CardFace, has_devanagari


def drawn_texts(face: CardFace, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every (text, font) the face asks Pillow to lay out, in order."""
    calls: list[tuple[str, Any]] = []
    original = ImageDraw.ImageDraw.text

    def record(self: ImageDraw.ImageDraw, xy: Any, text: Any, *args: Any, **kwargs: Any) -> None:
        calls.append((str(text), kwargs.get("font")))
        original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    face.render()
    return calls


def covered(font: Any, text: str) -> list[str]:
    """The characters of ``text`` the font file has no glyph for (read from the file itself)."""
    path = getattr(font, "path", None)
    assert path and Path(path).is_file(), f"{text!r} is drawn with Pillow's built-in font, not a font file"
    with TTFont(path, lazy=True) as tt:
        cmap = tt.getBestCmap()
    return [ch for ch in text if not ch.isspace() and ord(ch) not in cmap]


def photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (300, 400), (180, 140, 110)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("with_photo", [True, False])
def test_every_label_is_hindi_and_english_in_a_font_that_covers_it(
    monkeypatch: pytest.MonkeyPatch, with_photo: bool
) -> None:
    face = CardFace("0000000000c0ffee", "Asha Devi", "HH-0001", "123456", "2026-11-23 – 2027-11-22",
                    photo() if with_photo else None)  # fmt: skip
    calls = drawn_texts(face, monkeypatch)
    texts = [t for t, _ in calls]
    expected = ["name", "household", "village", "valid", "card"] + ([] if with_photo else ["no_photo"])
    for key in expected:
        hindi, english = LABELS[key].split(" / ")
        assert has_devanagari(hindi) and english.isascii(), LABELS[key]
        assert LABELS[key] in texts, f"the {key} label is laid out as Hindi / English"
    assert PROGRAMME_HI in texts and PROGRAMME in texts
    assert "नाम / Name" in texts
    for value in ("Asha Devi", "HH-0001", "123456", "0000000000c0ffee"):
        assert value in texts
    for text, font in calls:
        missing = covered(font, text)
        assert not missing, f"{text!r}: the font has no glyph for {missing} (install fonts-lohit-deva)"
    devanagari = [t for t in texts if has_devanagari(t)]
    assert len(devanagari) == len(expected) + 1, devanagari


def test_a_head_of_household_named_in_devanagari_is_printed_in_a_covering_font(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    face = CardFace("0000000000c0ffee", "सीता देवी", "HH-0002", "123456", "2026-11-23 – 2027-11-22")
    calls = drawn_texts(face, monkeypatch)
    name = [(t, f) for t, f in calls if t == "सीता देवी"]
    assert len(name) == 1 and not covered(name[0][1], "सीता देवी")
    assert face.png().startswith(b"\x89PNG") and face.pdf().startswith(b"%PDF")
