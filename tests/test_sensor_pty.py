"""pyfingerprint, unchanged, against the simulator over a real pseudo-terminal (the acceptance flows)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hardware_sims.fingers import impression
from hardware_sims.sensor.control import ControlClient, ControlError
from hardware_sims.sensor.simulator import SensorSimulator


def enrol(fp, sim: SensorSimulator, finger: int) -> int:
    """pyfingerprint's own example enrol flow; returns the stored position."""
    sim.place(finger, 0)
    assert fp.readImage()
    fp.convertImage(0x01)
    position, _ = fp.searchTemplate()
    assert position == -1, "finger already enrolled"
    sim.lift()
    assert not fp.readImage()
    sim.place(finger, 1)
    assert fp.readImage()
    fp.convertImage(0x02)
    assert fp.compareCharacteristics() > 0
    assert fp.createTemplate()
    return int(fp.storeTemplate())


def search(fp, sim: SensorSimulator, finger: int, k: int) -> tuple[int, int]:
    sim.place(finger, k)
    assert fp.readImage()
    fp.convertImage(0x01)
    return tuple(fp.searchTemplate())  # type: ignore[return-value]


def test_enrol_then_search_finds_the_same_finger_and_not_another(pyfp, sensor_sim) -> None:
    pos3 = enrol(pyfp, sensor_sim, 3)
    pos4 = enrol(pyfp, sensor_sim, 4)
    assert (pos3, pos4) == (0, 1)
    assert pyfp.getTemplateCount() == 2
    found, score = search(pyfp, sensor_sim, 3, 2)
    assert found == pos3 and score > 0
    assert search(pyfp, sensor_sim, 4, 3)[0] == pos4
    assert search(pyfp, sensor_sim, 5, 0) == (-1, -1)


def test_different_fingers_do_not_merge_or_compare(pyfp, sensor_sim) -> None:
    sensor_sim.place(3, 0)
    pyfp.readImage()
    pyfp.convertImage(0x01)
    sensor_sim.place(6, 0)
    pyfp.readImage()
    pyfp.convertImage(0x02)
    assert pyfp.compareCharacteristics() == 0
    assert pyfp.createTemplate() is False


def test_library_survives_a_restart_of_the_simulator(tmp_path: Path, finger_masters) -> None:
    from pyfingerprint.pyfingerprint import PyFingerprint

    with SensorSimulator(tmp_path) as sim:
        fp = PyFingerprint(sim.port, 57600)
        enrol(fp, sim, 5)
        fp._PyFingerprint__serial.close()
    with SensorSimulator(tmp_path) as sim:
        fp = PyFingerprint(sim.port, 57600)
        assert fp.getTemplateIndex(0)[0] is True
        assert search(fp, sim, 5, 2)[0] == 0
        fp.loadTemplate(0, 0x02)
        assert fp.compareCharacteristics() > 0
        fp._PyFingerprint__serial.close()


def test_download_image_is_the_placed_image_at_four_bits(pyfp, sensor_sim, tmp_path: Path) -> None:
    image = impression(4, 1)
    sensor_sim.place(image)
    assert pyfp.readImage()
    for size in (32, 256):
        pyfp.setMaxPacketSize(size)
        pyfp.downloadImage(str(tmp_path / f"img{size}.png"))
        got = np.asarray(Image.open(tmp_path / f"img{size}.png"))
        assert got.shape == (288, 256)
        assert np.array_equal(got, (image >> 4) * 17)


def test_characteristics_upload_download_round_trip(pyfp, sensor_sim) -> None:
    sensor_sim.place(3, 0)
    pyfp.readImage()
    pyfp.convertImage(0x01)
    data = pyfp.downloadCharacteristics(0x01)
    assert len(data) == 512 and bytes(data[:2]) == b"ZS"
    assert pyfp.uploadCharacteristics(0x02, data) is True
    assert pyfp.compareCharacteristics() > 0  # buffer 2 now holds the same finger


def test_password_security_level_and_random(pyfp, sensor_sim) -> None:
    from pyfingerprint.pyfingerprint import PyFingerprint

    assert pyfp.setPassword(0xCAFE)
    stranger = PyFingerprint(sensor_sim.port, 57600, 0xFFFFFFFF, 0x1234)
    assert stranger.verifyPassword() is False
    with pytest.raises(Exception, match="0x21"):  # anything else: "verify the password first"
        stranger.getTemplateCount()
    stranger._PyFingerprint__serial.close()
    assert pyfp.verifyPassword()  # one session per module: the stranger's failure logged everyone out
    pyfp.setSecurityLevel(5)
    assert pyfp.getSecurityLevel() == 5
    assert pyfp.generateRandomNumber() != pyfp.generateRandomNumber()


def test_convert_reports_messy_image_for_a_blank_glass(pyfp, sensor_sim) -> None:
    smear = np.full((288, 256), 200, dtype=np.uint8)
    smear[104:124, :] = np.tile(np.array([90, 200], dtype=np.uint8), 128)  # a thin strip, not a finger
    sensor_sim.place(smear)
    assert pyfp.readImage()
    with pytest.raises(Exception, match="too messy"):
        pyfp.convertImage(0x01)


def test_control_socket_places_lifts_and_rejects_bad_requests(pyfp, sensor_sim) -> None:
    client = ControlClient(sensor_sim.control_path)
    assert client.place(3, impression=1, quality="wet")["quality"] == "wet"
    assert pyfp.readImage()
    assert client.status()["finger_present"] is True
    client.lift()
    assert not pyfp.readImage()
    with pytest.raises(ControlError, match="unknown quality"):
        client.place(3, quality="oily")
    with pytest.raises(ControlError, match="non-negative"):
        client.request(op="place", finger=-1)
    with pytest.raises(ControlError, match="unknown op"):
        client.request(op="explode")


def test_byte_rate_model_paces_answers_at_the_configured_baud(finger_masters, tmp_path: Path) -> None:
    from pyfingerprint.pyfingerprint import PyFingerprint

    slept: list[float] = []
    with SensorSimulator(serial_timing=True, sleep=slept.append) as sim:
        fp = PyFingerprint(sim.port, 57600)
        sim.place(3, 0)
        fp.readImage()
        slept.clear()
        fp.downloadImage(str(tmp_path / "a.png"))
        at_57600 = sum(slept)
        fp.setBaudRate(115200)
        slept.clear()
        fp.downloadImage(str(tmp_path / "b.png"))
        at_115200 = sum(slept)
        fp._PyFingerprint__serial.close()
    # 36,864 image bytes + 288 packet frames of 11 bytes + the ack, 10 bits a byte
    assert at_57600 == pytest.approx((36_864 + 289 * 11 + 1) * 10 / 57_600, rel=0.05)
    assert at_115200 == pytest.approx(at_57600 / 2, rel=0.05)


def test_cli_serve_prints_the_pty_first_and_place_lift_work(tmp_path: Path, finger_masters) -> None:
    from pyfingerprint.pyfingerprint import PyFingerprint

    sock = tmp_path / "ctl.sock"
    hwsim = [sys.executable, "-c", "from hardware_sims.cli import main; main()"]
    server = subprocess.Popen(
        [*hwsim, "sensor", "serve", "--control", str(sock), "--state", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        fp = PyFingerprint(port, 57600)
        assert fp.verifyPassword() and not fp.readImage()
        placed = subprocess.run(
            [*hwsim, "sensor", "place", "--control", str(sock), "--finger", "3", "--quality", "dry"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert '"dry"' in placed.stdout
        assert fp.readImage()
        subprocess.run([*hwsim, "sensor", "lift", "--control", str(sock)], check=True, capture_output=True)
        assert not fp.readImage()
        fp._PyFingerprint__serial.close()
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
    assert not sock.exists()


def test_cli_place_without_a_running_simulator_says_so(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hardware_sims.cli import main

    missing = tmp_path / "nobody.sock"
    result = CliRunner().invoke(main, ["sensor", "place", "--control", str(missing), "--finger", "1"])
    assert result.exit_code != 0
    assert "sensor control socket" in result.output and str(missing) in result.output


@pytest.fixture
def bulk_fp(sensor_sim: SensorSimulator):
    """The capture driver's module: pyfingerprint with its packet reader replaced by a bulk one."""
    from cardsvc.bio.capture import _bulk_module

    fp = _bulk_module()(sensor_sim.port, 57600, 0xFFFFFFFF, 0x00000000)
    assert fp.verifyPassword()
    yield fp
    fp._PyFingerprint__serial.close()


def test_bulk_reader_downloads_the_same_image_and_keeps_every_command(bulk_fp, sensor_sim) -> None:
    image = impression(4, 1)
    sensor_sim.place(image)
    assert bulk_fp.readImage()
    for size in (32, 128, 256):  # packets of every size the module allows
        bulk_fp.setMaxPacketSize(size)
        got = bulk_fp.download_image_array()
        assert got.shape == (288, 256) and got.dtype == np.uint8
        assert np.array_equal(got, (image >> 4) * 17)
    sensor_sim.lift()
    assert enrol(bulk_fp, sensor_sim, 3) == 0  # pyfingerprint's own flows, through the bulk reader
    assert search(bulk_fp, sensor_sim, 3, 2)[0] == 0
    assert search(bulk_fp, sensor_sim, 5, 0) == (-1, -1)


class _Wire:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = 1) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out

    def isOpen(self) -> bool:  # pyserial's name, asked by pyfingerprint's __del__
        return False


def _packet(kind: int, payload: bytes, checksum_delta: int = 0) -> bytes:
    length = len(payload) + 2
    checksum = (kind + (length >> 8) + (length & 0xFF) + sum(payload) + checksum_delta) & 0xFFFF
    return (
        b"\xef\x01\xff\xff\xff\xff"
        + bytes([kind])
        + length.to_bytes(2, "big")
        + payload
        + checksum.to_bytes(2, "big")
    )


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (_packet(0x07, b"\x00", checksum_delta=1), "checksum is wrong"),
        (b"\xee\x01" + _packet(0x07, b"\x00")[2:], "valid header"),
        (_packet(0x02, bytes(64))[:40], "of a packet's 66 bytes"),  # the line went quiet mid-packet
        (b"\xef\x01\xff", "of a packet's 9 header bytes"),
    ],
)
def test_bulk_reader_refuses_a_bad_packet_as_pyfingerprint_does(wire: bytes, message: str) -> None:
    from cardsvc.bio.capture import _bulk_module

    fp = object.__new__(_bulk_module())
    fp._PyFingerprint__serial = _Wire(wire)
    with pytest.raises(Exception, match=message):
        fp._PyFingerprint__readPacket()
