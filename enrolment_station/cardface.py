"""The printed card face: head of household's name and photo (if captured), card number, QR of the number.

PNG with Pillow (for the card printer's driver) and PDF with fpdf2 (CR80 card size, for an office printer).
The QR code (segno) carries only the card number: nothing a finder could misuse.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import segno
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

#: ISO/IEC 7810 ID-1 (CR80) at 300 dpi: 85.60 x 53.98 mm.
WIDTH_PX, HEIGHT_PX = 1011, 638
WIDTH_MM, HEIGHT_MM = 85.6, 53.98
PROGRAMME = "Rashtriya Swasthya Bima Yojana"


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
        draw.rectangle((0, 0, WIDTH_PX, 90), fill=(0, 90, 140))
        font = _font(40)
        small = _font(30)
        draw.text((30, 22), PROGRAMME, fill="white", font=font)
        photo_box = (30, 120, 290, 450)
        if self.photo_png:
            with Image.open(io.BytesIO(self.photo_png)) as p:
                photo = p.convert("RGB").resize((photo_box[2] - photo_box[0], photo_box[3] - photo_box[1]))
            img.paste(photo, photo_box[:2])
        else:
            draw.rectangle(photo_box, outline=(120, 120, 120), width=3)
            draw.text((60, 270), "no photo", fill=(120, 120, 120), font=small)
        x = 320
        draw.text((x, 130), self.head_name, fill="black", font=font)
        draw.text((x, 200), f"Household {self.household_id}", fill="black", font=small)
        draw.text((x, 245), f"Village {self.village_code}", fill="black", font=small)
        draw.text((x, 290), f"Valid {self.policy}", fill="black", font=small)
        draw.text((30, 520), self.card_id, fill="black", font=_font(48))
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


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)
