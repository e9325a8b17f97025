"""The printed card face: head of household's name and photo (if captured), card number, QR of the number.

Every label is bilingual, Hindi then English ("नाम / Name"), drawn with a font whose character map covers the
whole string: Lohit Devanagari (Debian's ``fonts-lohit-deva``, in scripts/setup.sh; it also covers Latin) for
anything with Devanagari in it, DejaVu Sans for Latin-only values. Pillow shapes Devanagari with libraqm
(conjuncts and vowel signs in place).

PNG with Pillow (for the card printer's driver) and PDF with fpdf2 (CR80 card size, for an office printer).
The QR code (segno) carries only the card number: nothing a finder could misuse.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import segno
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

#: ISO/IEC 7810 ID-1 (CR80) at 300 dpi: 85.60 x 53.98 mm.
WIDTH_PX, HEIGHT_PX = 1011, 638
WIDTH_MM, HEIGHT_MM = 85.6, 53.98
PROGRAMME = "Rashtriya Swasthya Bima Yojana"
PROGRAMME_HI = "राष्ट्रीय स्वास्थ्य बीमा योजना"
#: The face's labels, Hindi / English.
LABELS = {
    "name": "नाम / Name",
    "household": "परिवार / Household",
    "village": "गाँव / Village",
    "valid": "वैध / Valid",
    "card": "कार्ड संख्या / Card no.",
    "no_photo": "फ़ोटो नहीं / No photo",
}
#: Fonts tried for text with Devanagari in it, then for Latin-only text (first whose character map covers
#: the whole string; Debian paths, then names FreeType finds on its own).
DEVANAGARI_FONTS = (
    "/usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansDevanagari-Regular.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansDevanagari-Regular.ttf",
)
LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVuSans.ttf")
Fill = str | tuple[int, int, int]


@dataclass(frozen=True)
class CardFace:
    card_id: str
    head_name: str
    household_id: str
    village_code: str
    policy: str
    photo_png: bytes | None = None

    def qr_png(self, scale: int = 8) -> bytes:
        buf = io.BytesIO()
        segno.make(self.card_id, error="m").save(buf, kind="png", scale=scale, border=2)
        return buf.getvalue()

    def render(self) -> Image.Image:
        img = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "white")
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 0, WIDTH_PX, 100), fill=(0, 90, 140))
        _text(draw, (30, 6), PROGRAMME_HI, 36, "white")
        _text(draw, (30, 54), PROGRAMME, 30, "white")
        grey = (70, 70, 70)
        photo_box = (30, 120, 290, 450)
        if self.photo_png:
            with Image.open(io.BytesIO(self.photo_png)) as p:
                photo = p.convert("RGB").resize((photo_box[2] - photo_box[0], photo_box[3] - photo_box[1]))
            img.paste(photo, photo_box[:2])
        else:
            draw.rectangle(photo_box, outline=(120, 120, 120), width=3)
            _text(draw, (45, 270), LABELS["no_photo"], 24, (120, 120, 120))
        x = 320
        _text(draw, (x, 112), LABELS["name"], 24, grey)
        _text(draw, (x, 142), self.head_name, 40, "black")
        rows = (("household", self.household_id), ("village", self.village_code), ("valid", self.policy))
        for i, (key, value) in enumerate(rows):
            _text(draw, (x, 205 + 60 * i), LABELS[key], 24, grey)
            _text(draw, (x, 232 + 60 * i), value, 28, "black")
        _text(draw, (30, 472), LABELS["card"], 24, grey)
        _text(draw, (30, 505), self.card_id, 48, "black")
        with Image.open(io.BytesIO(self.qr_png())) as q:
            qr = q.convert("RGB").resize((230, 230), Image.Resampling.NEAREST)
        img.paste(qr, (WIDTH_PX - 260, HEIGHT_PX - 260))
        return img

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.render().save(buf, format="PNG", dpi=(300, 300))
        return buf.getvalue()

    def pdf(self) -> bytes:
        pdf = FPDF(orientation="L", unit="mm", format=(HEIGHT_MM, WIDTH_MM))
        pdf.set_auto_page_break(False)
        pdf.add_page()
        pdf.image(io.BytesIO(self.png()), x=0, y=0, w=WIDTH_MM, h=HEIGHT_MM)
        pdf.set_title(f"Card {self.card_id}")
        return bytes(pdf.output())

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        png, pdf = directory / f"{self.card_id}.png", directory / f"{self.card_id}.pdf"
        png.write_bytes(self.png())
        pdf.write_bytes(self.pdf())
        return png, pdf


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, fill: Fill) -> None:
    """Draw ``text`` with the first font that covers every one of its characters."""
    draw.text(xy, text, fill=fill, font=font_for(text, size))


def has_devanagari(text: str) -> bool:
    return any("\u0900" <= ch <= "\u097f" for ch in text)


def font_for(text: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first installed font whose character map holds every character of ``text`` (Devanagari fonts first
    when it has Devanagari); Pillow's own font only when none is installed."""
    order = DEVANAGARI_FONTS + LATIN_FONTS if has_devanagari(text) else LATIN_FONTS + DEVANAGARI_FONTS
    needed = {ord(ch) for ch in text if not ch.isspace()}
    for name in order:
        covered = font_coverage(name)
        if covered and needed <= covered:
            return ImageFont.truetype(name, size)
    return ImageFont.load_default(size)


@cache
def font_coverage(name: str) -> frozenset[int]:
    """The code points a font file maps to glyphs (empty when it cannot be loaded)."""
    from fontTools.ttLib import TTFont

    try:
        path = name if Path(name).is_absolute() else ImageFont.truetype(name, 10).path
        with TTFont(path, lazy=True) as font:
            return frozenset(font.getBestCmap() or {})
    except (OSError, AttributeError, KeyError):
        return frozenset()
