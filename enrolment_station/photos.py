"""Member photos: ONE check for the CLI (`enrol photo`) and the station screen's photo step.

An image is refused when it is not an image Pillow reads, larger than :data:`MAX_UPLOAD_BYTES` as sent, or
smaller than :data:`MIN_WIDTH` x :data:`MIN_HEIGHT` (too small to see a face). An accepted image is kept in
the journal as PNG at most :data:`MAX_SIDE` px (what the printed card face draws); a retake replaces it. A
refused photo changes nothing in the journal (fingers and other members' photos stay).

At personalisation :func:`card_photo` turns a kept photo into what the card stores: a JPEG of
:data:`CARD_PHOTO_SIZE` px (centre-cropped to that shape) at the highest quality of :data:`CARD_QUALITIES`
that fits :data:`CARD_PHOTO_BYTES` (five such photos fit the card's photo budget, docs/card-layout.md).
"""

from __future__ import annotations

import io

from enrolment_station.errors import HouseholdError, PhotoError
from enrolment_station.journal import Journal

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MIN_WIDTH, MIN_HEIGHT = 120, 160
MAX_SIDE = 600
CARD_PHOTO_SIZE = (96, 120)
CARD_PHOTO_BYTES = 1_500
CARD_QUALITIES = (85, 75, 65, 55, 45, 35, 25, 15)


def prepare_photo(data: bytes) -> bytes:
    """The photo as the journal keeps it (PNG, at most MAX_SIDE px), or a PhotoError saying why not."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_UPLOAD_BYTES:
        raise PhotoError("too_large", f"{len(data)} bytes, more than {MAX_UPLOAD_BYTES}")
    if not data:
        raise PhotoError("not_image", "empty file")
    try:
        with Image.open(io.BytesIO(data)) as original:
            width, height = original.size
            if width < MIN_WIDTH or height < MIN_HEIGHT:
                raise PhotoError("too_small", f"{width}x{height} px, at least {MIN_WIDTH}x{MIN_HEIGHT}")
            rgb = original.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PhotoError("not_image", f"not an image: {exc}") from None
    rgb.thumbnail((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return buf.getvalue()


def record_photo(journal: Journal, household_id: str, member_no: int, data: bytes) -> bytes:
    """Check and record (or replace) a member's photo; returns the PNG kept."""
    try:
        journal.household(household_id).member(member_no)
    except KeyError:
        raise HouseholdError(f"household {household_id} has no member {member_no}") from None
    png = prepare_photo(data)
    journal.store_photo(household_id, member_no, png)
    return png


def card_photo(png: bytes) -> bytes:
    """A kept photo as the card stores it: JPEG, CARD_PHOTO_SIZE px, at most CARD_PHOTO_BYTES (colour at
    the best quality that fits, else greyscale). Deterministic: the same photo gives the same bytes."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(png)) as original:
        rgb = ImageOps.fit(original.convert("RGB"), CARD_PHOTO_SIZE, Image.Resampling.LANCZOS)
    for image in (rgb, rgb.convert("L")):
        for quality in CARD_QUALITIES:
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=quality, optimize=True)
            if len(buf.getvalue()) <= CARD_PHOTO_BYTES:
                return buf.getvalue()
    raise PhotoError("too_large", f"no JPEG of {CARD_PHOTO_SIZE} px fits {CARD_PHOTO_BYTES} bytes")
