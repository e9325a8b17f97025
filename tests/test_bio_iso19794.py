"""ISO/IEC 19794-2 codecs: vendor records from a commercial extractor, round trips, malformed input."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.bio.errors import TemplateFormatError
from cardsvc.bio.iso19794 import (
    CardSortOrder,
    IsoRecord,
    IsoView,
    decode_compact,
    decode_template,
    encode_compact,
    encode_template,
    minutiae_fitting_short_apdu,
    quantise_for_card,
    unwrap_verify_template,
    wrap_verify_template,
)
from cardsvc.bio.template import FingerTemplate, Minutia, MinutiaKind


def vendor_records(fvc_dir: Path) -> list[Path]:
    records = sorted(fvc_dir.glob("DB*_B/*.iso"))
    assert len(records) == 320, "expected 4 databases x 80 vendor records"
    return records


@pytest.mark.fvc
def test_every_vendor_record_decodes_and_reencodes_byte_for_byte(fvc_dir: Path) -> None:
    for path in vendor_records(fvc_dir):
        data = path.read_bytes()
        record = IsoRecord.parse(data)
        assert record.encode() == data, path.name
        t = record.views[0].template
        # the SecuGen SDK was given every image resampled to its 300 x 400 sensor size at 500 dpi
        assert (record.width, record.height, record.x_resolution, record.y_resolution) == (300, 400, 197, 197)
        assert 10 <= len(t.minutiae) <= 120
        assert all(0 <= m.x < 300 and 0 <= m.y < 400 for m in t.minutiae)
        assert {m.kind for m in t.minutiae} <= {MinutiaKind.ENDING, MinutiaKind.BIFURCATION}
        assert all(0 <= m.angle < 360 for m in t.minutiae)


@pytest.mark.fvc
def test_first_vendor_record_has_exact_known_minutiae(fvc_dir: Path) -> None:
    data = (fvc_dir / "DB1_B" / "101_1.iso").read_bytes()
    t = decode_template(data)
    assert len(data) == 180 and len(t.minutiae) == 25
    first = t.minutiae[0]
    raw = data[28:34]  # the first minutia, decoded by hand
    assert first.kind == raw[0] >> 6
    assert first.x == struct.unpack(">H", raw[0:2])[0] & 0x3FFF
    assert first.y == struct.unpack(">H", raw[2:4])[0] & 0x3FFF
    assert first.angle == pytest.approx(raw[4] * 360 / 256)


@pytest.mark.fvc
@pytest.mark.parametrize("db", ["DB1_B", "DB2_B", "DB3_B", "DB4_B"])
def test_mindtct_minutiae_land_on_the_vendor_ones_with_the_same_iso_angle_sign(
    fvc_dir: Path, db: str
) -> None:
    """Proves the angle convention: our extractor's ISO angles agree with a commercial extractor's."""
    from cardsvc.bio.extract import extract_template, load_image

    agree_same, agree_mirrored, matched, total = 0, 0, 0, 0
    for name in ("101_1", "103_4", "106_7"):
        image = load_image(str(fvc_dir / db / f"{name}.tif"))
        ours = extract_template(image, quality=False)
        vendor = decode_template((fvc_dir / db / f"{name}.iso").read_bytes())
        sx, sy = 300 / image.shape[1], 400 / image.shape[0]  # vendor image was stretched to 300 x 400
        ours_xy = np.array([(m.x * sx, m.y * sy) for m in ours.minutiae])
        for v in vendor.minutiae:
            total += 1
            d = np.hypot(ours_xy[:, 0] - v.x, ours_xy[:, 1] - v.y)
            j = int(d.argmin())
            if d[j] > 6:
                continue
            matched += 1
            # the stretch changes directions: map the vendor's back into the original image
            t = np.radians(v.angle)
            back = np.degrees(np.arctan2(np.sin(t) / sy, np.cos(t) / sx))
            mine = ours.minutiae[j].angle
            agree_same += abs((back - mine + 180) % 360 - 180) < 22.5
            agree_mirrored += abs((-back - mine + 180) % 360 - 180) < 22.5
    assert matched >= 0.5 * total
    assert agree_same >= 0.85 * matched
    assert agree_mirrored <= 0.25 * matched


def _template(minutiae: list[Minutia], **kw: int) -> FingerTemplate:
    return FingerTemplate(
        minutiae=tuple(minutiae), width=kw.pop("width", 300), height=kw.pop("height", 400), **kw
    )


minutia_strategy = st.builds(
    Minutia,
    x=st.integers(0, 299),
    y=st.integers(0, 399),
    angle=st.integers(0, 255).map(lambda a: a * 360 / 256),
    kind=st.sampled_from(list(MinutiaKind)),
    quality=st.integers(0, 100),
)


@settings(max_examples=60, deadline=None)
@given(
    views=st.lists(
        st.tuples(
            st.lists(minutia_strategy, max_size=40),
            st.integers(0, 10),
            st.integers(0, 15),
            st.sampled_from([0, 1, 2, 3, 8]),
            st.integers(0, 100),
            st.binary(max_size=12),
        ),
        min_size=1,
        max_size=3,
    ),
    device=st.integers(0, 0xFFFF),
)
def test_record_round_trip(views: list, device: int) -> None:
    record = IsoRecord(
        views=tuple(
            IsoView(
                _template(ms, finger_position=fp, impression_type=imp, quality=q),
                view_number=vn,
                extended_data=ext,
            )
            for ms, fp, vn, imp, q, ext in views
        ),
        width=300,
        height=400,
        capture_device=device,
    )
    data = record.encode()
    again = IsoRecord.parse(data)
    assert again.encode() == data
    assert [v.template.minutiae for v in again.views] == [v.template.minutiae for v in record.views]
    assert again.capture_device == device


@settings(max_examples=60, deadline=None)
@given(st.lists(minutia_strategy, max_size=60))
def test_compact_round_trip_moves_minutiae_by_at_most_the_quantisation_step(ms: list[Minutia]) -> None:
    t = _template(ms, width=300, height=400)
    back = decode_compact(encode_compact(t))
    assert len(back.minutiae) == len(ms)
    for a, b in zip(ms, back.minutiae, strict=True):
        assert abs(a.x - b.x) <= 1.5 and abs(a.y - b.y) <= 1.5  # 0.1 mm = 1.97 px at 197/cm
        assert abs((a.angle - b.angle + 180) % 360 - 180) <= 360 / 128 + 1e-9
        assert a.kind == b.kind
    assert encode_compact(back) == encode_compact(t)  # quantising twice changes nothing more


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=400).map(lambda b: b[: len(b) - len(b) % 3]))
def test_verify_wrapping_round_trip(compact: bytes) -> None:
    compact = bytes(c if c >> 6 != 3 else c & 0x7F for c in compact)
    wrapped = wrap_verify_template(compact)
    assert wrapped[:2] == b"\x7f\x2e"
    assert unwrap_verify_template(wrapped) == compact


def test_verify_wrapping_layout_and_capacity() -> None:
    compact = bytes(range(30))
    assert wrap_verify_template(compact) == b"\x7f\x2e\x20\x81\x1e" + compact
    long = bytes(3 * 60)
    assert wrap_verify_template(long)[:7] == b"\x7f\x2e\x81\xb7\x81\x81\xb4"
    assert minutiae_fitting_short_apdu() in (82, 83)


def test_tall_images_are_shifted_onto_the_card_grid() -> None:
    """A 560-pixel-tall image spans 28 mm, more than the 25.5 mm the card format can address."""
    ms = [Minutia(100, y, 90.0) for y in (10, 200, 400, 550)]
    compact = encode_compact(_template(ms, width=296, height=560))
    assert len(compact) == 9  # 540 px (27.4 mm) do not fit: the window keeps three of the four
    vs = [compact[i + 1] for i in range(0, len(compact), 3)]
    assert max(vs) <= 255 and min(vs) >= 0


def test_card_sort_order_and_max_minutiae() -> None:
    ms = [Minutia(50 + 3 * i, 300 - 7 * i, 0.0, quality=i) for i in range(20)]
    t = _template(ms)
    by_y = decode_compact(encode_compact(t, sort=CardSortOrder.Y_ASCENDING))
    assert [m.y for m in by_y.minutiae] == sorted(m.y for m in by_y.minutiae)
    best = decode_compact(encode_compact(t, max_minutiae=5))
    assert len(best.minutiae) == 5
    assert {m.x for m in best.minutiae} == {round(round((50 + 3 * i) / 1.97) * 1.97) for i in range(15, 20)}


def test_quantise_for_card_keeps_template_metadata() -> None:
    t = _template([Minutia(100, 100, 45.0)], quality=77, finger_position=2)
    q = quantise_for_card(t)
    assert q.quality == 77 and q.finger_position == 2 and q.extra["card_quantised"] is True


# --------------------------------------------------------------------------------------- malformed input


def _valid_record() -> bytes:
    return encode_template(_template([Minutia(10, 20, 90.0, MinutiaKind.BIFURCATION, 60)], quality=50))


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"XMR\x00" + d[4:], "wrong magic"),
        (lambda d: _patch(d, 4, b" 30\x00"), "unsupported version"),
        (lambda d: d[:-1], "length mismatch"),
        (lambda d: d + b"\x00", "length mismatch"),
        (lambda d: d[:20], "truncated"),
        (lambda d: _patch(d, 8, struct.pack(">I", len(d) - 6))[:-6], "count overflow|truncated"),
        (lambda d: _patch(d, 24, b"\x0b"), "bad finger position 11"),
        (lambda d: _patch(d, 25, b"\x05"), "bad impression type 5"),
        (lambda d: _patch(d, 26, b"\x65"), "quality 101"),
        (lambda d: _patch(d, 27, b"\x05"), "count overflow|truncated"),
        (lambda d: _patch(d, 14, struct.pack(">H", 10)), "outside the 10x400 image"),
        (lambda d: _patch(d, 16, struct.pack(">H", 20)), "outside the 300x20 image"),
        (lambda d: _patch(d, 18, b"\x00\x00"), "resolution"),
        (lambda d: _patch(d, 22, b"\x00"), "no finger view"),
        (lambda d: _patch(d, 28, bytes([0xC0 | d[28] & 0x3F])), "reserved minutia type"),
        (lambda d: _patch(d, 30, bytes([0x40 | d[30]])), "reserved bits"),
        (lambda d: _patch(d, 33, b"\xc8"), "quality 200"),
        (lambda d: _patch(d, 34, b"\x00\x09"), "extended data of 9 bytes is truncated"),
    ],
)
def test_malformed_records_are_refused_with_a_clear_error(mutate, message: str) -> None:
    with pytest.raises(TemplateFormatError, match=message):
        IsoRecord.parse(mutate(_valid_record()))


def test_encoder_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(TemplateFormatError, match="outside the 300x400 image"):
        encode_template(_template([Minutia(300, 5, 0.0)]))
    with pytest.raises(TemplateFormatError, match="finger position 12"):
        encode_template(_template([], finger_position=12))
    with pytest.raises(TemplateFormatError, match="do not fit a view"):
        encode_template(_template([Minutia(1, 1, 0.0)] * 256))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x7f\x2f\x02\x81\x00", "expected tag 7F2E"),
        (b"\x7f\x2e\x05\x81\x03\x01\x02", "does not match"),
        (b"\x7f\x2e\x05\x82\x03\x01\x02\x03", "expected tag 81"),
        (b"\x7f\x2e\x04\x81\x02\x01\x02", "3 bytes each"),
        (b"\x7f\x2e\x83\x00", "BER length"),
        (b"\x7f\x2e\x00", "7F2E is empty"),
        (b"\x7f\x2e", "truncated before a length"),
    ],
)
def test_malformed_verify_templates_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(TemplateFormatError, match=message):
        unwrap_verify_template(data)


def test_compact_decoder_refuses_partial_and_reserved_minutiae() -> None:
    with pytest.raises(TemplateFormatError, match="3 bytes each"):
        decode_compact(b"\x01\x02")
    with pytest.raises(TemplateFormatError, match="reserved minutia type"):
        decode_compact(b"\x01\x02\xc0")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_corruption_of_a_record_is_either_refused_cleanly_or_still_round_trips(
    data: st.DataObject,
) -> None:
    """Strict decoding: a damaged record never escapes as IndexError/struct.error, nor parses into
    something that would encode differently."""
    ms = [Minutia(10 + 7 * i, 20 + 5 * i, 11.25 * i, MinutiaKind.ENDING, 40) for i in range(8)]
    original = bytearray(encode_template(_template(ms, quality=60)))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(original) - 1))
        if kind == "flip":
            original[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del original[pos:]
            if not original:
                original = bytearray(b"F")
        else:
            original[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    blob = bytes(original)
    try:
        record = IsoRecord.parse(blob)
    except TemplateFormatError:
        return
    assert record.encode() == blob


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=12).map(lambda b: b"\x7f\x2e" + b)))
def test_arbitrary_bytes_never_crash_the_card_decoders(blob: bytes) -> None:
    for decoder in (unwrap_verify_template, decode_compact, IsoRecord.parse):
        with contextlib.suppress(TemplateFormatError):
            decoder(blob)


def test_template_reprs_carry_no_minutiae() -> None:
    """A template in a log line, traceback or test report must not spell out the finger's minutiae."""
    template = FingerTemplate(
        (
            Minutia(123, 217, 45.0, MinutiaKind.ENDING, 80),
            Minutia(201, 99, 300.0, MinutiaKind.BIFURCATION, 60),
        ),
        width=256,
        height=288,
        quality=71,
    )
    record = IsoRecord(views=(IsoView(template),), width=256, height=288)
    for text in (repr(template), str(template), repr(record)):
        assert "217" not in text and "201" not in text and "Minutia(" not in text
        assert "2 minutiae" in text  # still says what it is
