"""The R30x packet format, the image upload packing and the 512-byte characteristics layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware_sims.fingers import impression
from hardware_sims.sensor import characteristics as chars
from hardware_sims.sensor.device import pack_image, unpack_image
from hardware_sims.sensor.protocol import Packet, PacketReader, PacketType, split_data

packets = st.builds(
    Packet,
    address=st.integers(0, 0xFFFFFFFF),
    type=st.sampled_from(list(PacketType)),
    payload=st.binary(min_size=1, max_size=256),
)


def test_known_verify_password_packet_bytes() -> None:
    # verifyPassword(0) as every R30x datasheet shows it
    wire = Packet(0xFFFFFFFF, PacketType.COMMAND, bytes([0x13, 0, 0, 0, 0])).encode()
    assert wire.hex() == "ef01ffffffff010007130000000000 1b".replace(" ", "")


@given(st.lists(packets, min_size=1, max_size=5), st.integers(1, 50))
def test_reader_reassembles_packets_split_anywhere(seq: list[Packet], chunk: int) -> None:
    wire = b"".join(p.encode() for p in seq)
    reader = PacketReader()
    got: list[Packet] = []
    for i in range(0, len(wire), chunk):
        got += reader.feed(wire[i : i + chunk])
    assert got == seq


def test_reader_drops_corrupted_packet_and_resynchronises() -> None:
    good = Packet(1, PacketType.COMMAND, b"\x01").encode()
    bad = bytearray(Packet(1, PacketType.COMMAND, b"\x0f").encode())
    bad[-1] ^= 0xFF  # wrong checksum
    got = PacketReader().feed(b"\x00\x17garbage" + bytes(bad) + good)
    assert got == [Packet(1, PacketType.COMMAND, b"\x01")]


def test_split_data_uses_packet_size_and_ends_with_end_packet() -> None:
    parts = split_data(7, bytes(range(200)), 64)
    assert [len(p.payload) for p in parts] == [64, 64, 64, 8]
    assert [p.type for p in parts] == [PacketType.DATA] * 3 + [PacketType.END_DATA]
    assert b"".join(p.payload for p in parts) == bytes(range(200))


def test_image_packing_keeps_the_top_four_bits_in_36864_bytes() -> None:
    image = impression(3, 0)
    packed = pack_image(image)
    assert len(packed) == 36_864
    assert np.array_equal(unpack_image(packed), (image >> 4) * 17)
    # left pixel in the high nibble, as pyfingerprint draws it
    assert packed[0] >> 4 == image[0, 0] >> 4 and packed[0] & 0x0F == image[0, 1] >> 4


def test_characteristics_round_trip_and_corruption_detected() -> None:
    entries = bytes(range(6 * 40))
    c = chars.Characteristics(256, 288, 55, entries)
    raw = c.encode()
    assert len(raw) == 512 and raw[:2] == b"ZS"
    assert chars.Characteristics.parse(raw) == c
    broken = bytearray(raw)
    broken[100] ^= 1
    with pytest.raises(chars.CharacteristicsError, match="checksum"):
        chars.Characteristics.parse(bytes(broken))
    with pytest.raises(chars.CharacteristicsError, match="512"):
        chars.Characteristics.parse(raw[:500])
    with pytest.raises(chars.CharacteristicsError, match="magic"):
        chars.Characteristics.parse(b"XX" + raw[2:])


def test_characteristics_carry_exactly_what_nbis_extracted(finger_masters) -> None:
    """The sensor's record rebuilt for bozorth3 is byte for byte what nbis-py itself would write."""
    import io

    import nbis
    from PIL import Image

    image = impression(4, 0)
    c = chars.convert_image(image)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    settings = nbis.NbisExtractorSettings(
        min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=False, ppi=500.0
    )
    native = nbis.new_nbis_extractor(settings).extract_minutiae(buf.getvalue()).to_iso_19794_2_2005()
    if c.count == native[25]:  # fewer than 80 minutiae: nothing was dropped
        assert c.iso_record() == native
    assert 12 <= c.count <= 80


def test_blank_image_is_messy_and_same_finger_scores_above_other_finger(finger_masters) -> None:
    blank = np.full((288, 256), 230, dtype=np.uint8)
    with pytest.raises(chars.ConversionError) as err:
        chars.convert_image(blank)
    assert err.value.code == 0x06
    a, b, other = (chars.convert_image(impression(s, k)) for s, k in ((5, 0), (5, 1), (6, 0)))
    threshold = chars.SECURITY_THRESHOLDS[3]
    assert chars.match_score(a, b) >= threshold > chars.match_score(a, other)
