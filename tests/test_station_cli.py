"""The `enrol` command line: refusals print one line per problem and exit 1; the scripted camp runs
unattended through pcscd + vpcd (simulated blank cards it serves itself) and the sensor simulator's control
socket, as the demo runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from enrolment_station.cli import main
from enrolment_station.journal import CardState, Journal
from hardware_sims.sensor.simulator import SensorSimulator
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.station import FKO_PIN, TERMINAL_PASSPHRASE, StationWorld

HEADER = "household_id,village_code,member_no,name,gender,year_of_birth,relation\n"


def _run(world: StationWorld, *args: str) -> tuple[int, str]:
    env = {"ENROL_TERMINAL_PASSPHRASE": TERMINAL_PASSPHRASE.decode(), "ENROL_FKO_PIN": FKO_PIN,
           "ENROL_OPERATOR": "op-cli"}  # fmt: skip
    result = CliRunner().invoke(main, ["--home", str(world.home), "--camp", "CAMP-CLI", *args], env=env)
    return result.exit_code, result.output


def test_import_refusal_lists_every_bad_line_and_imports_nothing(
    station_world: StationWorld, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "HH-0001,123456,1,Asha Devi,F,1970,HEAD\nHH-0002,12,1,xxx,F,1970,HEAD\n")
    code, out = _run(station_world, "import", str(bad))
    assert code == 1
    assert "refused (eligibility): 2 problem(s), nothing imported" in out
    assert "line 3, village_code: '12' is not a 6-digit village code" in out
    assert "line 3, name" in out
    code, out = _run(station_world, "status")
    assert code == 0 and "households: {}" in out
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "HH-0001,123456,1,Asha Devi,F,1970,HEAD\n")
    assert _run(station_world, "import", str(good)) == (
        0,
        "  .. imported 1 households (1 members) from good.csv\nimported 1 households, 1 members\n",
    )
    code, out = _run(station_world, "handover", "CARD-1")
    assert code == 1 and out.startswith("refused (household): card CARD-1 is unknown to this station")


def test_wrong_passphrase_is_refused(station_world: StationWorld) -> None:
    result = CliRunner().invoke(
        main, ["--home", str(station_world.home), "status"], env={"ENROL_TERMINAL_PASSPHRASE": "wrong"}
    )
    assert result.exit_code == 1 and "refused (station-keys)" in result.output


@pytest.mark.pcsc
def test_scripted_camp_runs_unattended(
    station_world: StationWorld,
    sensor_sim: SensorSimulator,
    serve_card: Callable[..., ServedCard],
    pcscd: object,
    tmp_path: Path,
) -> None:
    fko = serve_card(slot=1, card=station_world.fko_card)
    listing = tmp_path / "camp.csv"
    listing.write_text(
        HEADER + "HH-0101,204101,1,Ramvati Devi,F,1958,HEAD\nHH-0102,204101,1,Jagdish Prasad,M,1966,HEAD\n"
    )
    reader = fko.reader.replace("01", "00")
    code, out = _run(
        station_world, "camp", "--list", str(listing), "--sensor", sensor_sim.port,
        "--sensor-control", str(tmp_path / "sensor.sock"), "--fko-reader", fko.reader, "--reader", reader,
        "--simulate-cards", "2", "--upload-dir", str(tmp_path / "upload"),
    )  # fmt: skip
    assert code == 0, out
    assert "[2/2] HH-0102: card CARD-" in out
    assert "camp CAMP-CLI: 2 card(s) issued, 0 household(s) refused, ledger matches" in out
    assert len(list((tmp_path / "upload").glob("camp-*.json"))) == 1
    journal = Journal(station_world.home / "journal.sqlite", now=station_world.now, operator="check")
    assert len(journal.cards(state=CardState.HANDED_OVER)) == 2
    assert {e["operator"] for e in journal.events("card.handover")} == {"op-cli"}


def test_photo_is_recorded_and_printed_on_the_card_face(station_world: StationWorld, tmp_path: Path) -> None:
    from PIL import Image

    good = tmp_path / "good.csv"
    good.write_text(HEADER + "HH-0001,123456,1,Asha Devi,F,1970,HEAD\n")
    assert _run(station_world, "import", str(good))[0] == 0
    Image.new("RGB", (900, 1200), (200, 30, 30)).save(tmp_path / "asha.jpg")
    code, out = _run(station_world, "photo", "HH-0001", "1", str(tmp_path / "asha.jpg"))
    assert code == 0, out
    code, out = _run(station_world, "photo", "HH-0001", "2", str(tmp_path / "asha.jpg"))
    assert code == 1 and "has no member 2" in out
    journal = Journal(station_world.home / "journal.sqlite", now=station_world.now, operator="check")
    png = journal.photo("HH-0001", 1)
    assert png is not None and png.startswith(b"\x89PNG")
    from enrolment_station.cardface import CardFace

    face = CardFace("CARD-7", "Asha Devi", "HH-0001", "123456", "2026-11-23 to 2027-11-22", png).render()
    red, green, blue = face.getpixel((100, 200))  # type: ignore[misc]
    assert red > 180 and green < 60 and blue < 60  # the photo is on the face (resampled)


def test_renew_and_split_refuse_bad_authorisations_before_touching_a_card(
    station_world: StationWorld, tmp_path: Path
) -> None:
    junk = tmp_path / "auth.bin"
    junk.write_bytes(b"\x71\x00not an authorisation")
    hardware = ["--sensor", "/dev/null", "--fko-reader", "NO READER"]
    code, out = _run(station_world, "renew", "--reader", "NO READER", "--authorisation", str(junk), *hardware)
    assert code == 1 and "refused (authorisation):" in out and "is not a card authorisation" in out
    station = tmp_path / "station.json"
    station.write_text("{}")
    split = ["split", "CARD-1", "--authorisation", str(station), "--reader", "NO READER", *hardware]
    code, out = _run(station_world, *split)
    assert code == 2 and "--card-authorisation" in out  # a split needs central's SPLIT for the original card
    code, out = _run(station_world, *split, "--card-authorisation", str(junk))
    assert code == 1 and "refused (authorisation):" in out
