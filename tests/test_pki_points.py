"""P-256 public points have one decoder and one encoder (cardsvc.pki.signer.load_public_point / point_of):
bad points (wrong length, wrong prefix, off the curve) are refused with PointError everywhere they arrive —
the PKI, a beneficiary card session, central's batches, the enrolment station's de-duplication key."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.formats.batch import load_public_key
from cardsvc.formats.errors import FieldValueError
from cardsvc.pki.errors import FormatError, PointError
from cardsvc.pki.signer import load_public_point, point_of
from enrolment_station.errors import KeyError_
from enrolment_station.keys import DEDUP_KEY_FILE, StationIdentity, install
from tests.fixtures.beneficiary import BeneficiaryCard
from tests.fixtures.station import TERMINAL, TERMINAL_PASSPHRASE, StationWorld

P = 2**256 - 2**224 + 2**192 + 2**96 - 1  # the P-256 field prime


def _key(seed: int) -> ec.EllipticCurvePublicKey:
    scalar = random.Random(seed).randrange(1, 2**255)
    return ec.derive_private_key(scalar, ec.SECP256R1()).public_key()


GOOD = point_of(_key(1))
X, Y = GOOD[1:33], GOOD[33:]


def test_a_point_round_trips_through_the_one_encoder_and_decoder() -> None:
    assert len(GOOD) == 65 and GOOD[0] == 0x04
    assert point_of(load_public_point(GOOD)) == GOOD
    assert point_of(load_public_point(bytearray(GOOD))) == GOOD


@pytest.mark.parametrize(
    ("point", "says"),
    [
        (b"", "got 0 bytes"),
        (b"\x04", "got 1 bytes"),
        (GOOD[:-1], "got 64 bytes"),
        (GOOD + b"\x00", "got 66 bytes"),
        (b"\x05" + GOOD[1:], "prefix 05"),
        (b"\x02" + X, "got 33 bytes"),  # compressed, where only the uncompressed point is allowed
    ],
    ids=["empty", "prefix-only", "short", "long", "wrong-prefix", "compressed"],
)
def test_wrong_length_or_prefix_is_a_point_error(point: bytes, says: str) -> None:
    with pytest.raises(PointError, match=says) as refused:
        load_public_point(point)
    assert isinstance(refused.value, FormatError) and refused.value.rule == "format"  # old catches still hold


@pytest.mark.parametrize(
    "point",
    [
        b"\x04" + bytes(64),  # (0, 0)
        b"\x04" + X + ((int.from_bytes(Y, "big") + 1) % P).to_bytes(32, "big"),  # Y off by one
        b"\x04" + (P + 1).to_bytes(32, "big") + Y,  # coordinate not reduced mod p (wraps to 1)
    ],
    ids=["origin", "y-plus-one", "x-wrapped"],
)
def test_coordinates_off_the_curve_are_a_point_error(point: bytes) -> None:
    with pytest.raises(PointError, match="not a point on P-256"):
        load_public_point(point)


def test_compressed_points_only_where_asked() -> None:
    compressed = _key(1).public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    assert point_of(load_public_point(compressed, compressed=True)) == GOOD
    with pytest.raises(PointError, match="65-byte uncompressed or 33-byte compressed"):
        load_public_point(compressed[:-1], compressed=True)
    with pytest.raises(PointError):
        load_public_point(b"\x04" + X, compressed=True)  # 33 bytes, but an uncompressed prefix


def test_central_batches_refuse_a_bad_card_key_naming_where() -> None:
    assert point_of(load_public_key(GOOD)) == GOOD
    with pytest.raises(FieldValueError, match=r"batch.items\[3\].card_key is not a P-256 point"):
        load_public_key(b"\x04" + bytes(64), "batch.items[3].card_key")


def test_a_card_session_refuses_a_bad_card_key_before_reading(activated_card: BeneficiaryCard) -> None:
    session = activated_card.pos_session()
    with pytest.raises(PointError):
        session.read_log(card_key=b"\x04" + bytes(64))
    assert session.card_certificate is not None
    assert session.read_log(card_key=session.card_certificate.public_point) == []  # a fresh card's log


def _install(world: StationWorld, home: Path, dedup_point: bytes | None) -> None:
    key_file = world.km.store.holder_dir(TERMINAL) / "key.enc"
    install(home, key_file=key_file, chain_file=world.tmp / "terminal.chain", bundle_dir=world.tmp / "bundle",
            dedup_point=dedup_point)  # fmt: skip


@pytest.mark.parametrize("bad", [GOOD[:-1], b"\x04" + bytes(64)], ids=["short", "off-curve"])
def test_station_install_refuses_a_bad_dedup_key_before_copying_anything(
    station_world: StationWorld, tmp_path: Path, bad: bytes
) -> None:
    home = tmp_path / "station-x"
    with pytest.raises(KeyError_, match="de-duplication key is refused"):
        _install(station_world, home, bad)
    assert not (home / "terminal" / "key.enc").exists()  # not half-installed: the right key can follow
    _install(station_world, home, GOOD)
    identity = StationIdentity.load(home, TERMINAL_PASSPHRASE, now=datetime.now(UTC))
    dedup = identity.dedup_key()
    assert dedup is not None and point_of(dedup) == GOOD


def test_station_refuses_a_damaged_dedup_key_file(station_world: StationWorld, tmp_path: Path) -> None:
    home = tmp_path / "station-y"
    _install(station_world, home, GOOD)
    identity = StationIdentity.load(home, TERMINAL_PASSPHRASE, now=datetime.now(UTC))
    (home / DEDUP_KEY_FILE).write_text((b"\x04" + bytes(64)).hex() + "\n")
    with pytest.raises(KeyError_, match="not a point on P-256"):
        identity.dedup_key()
    (home / DEDUP_KEY_FILE).write_text("not hex\n")
    with pytest.raises(KeyError_, match="does not hold a hex public point"):
        identity.dedup_key()
