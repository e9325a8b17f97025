"""Command line of enrolment_station. Thin: every subcommand calls the camp service (camp.py).

Secrets are never arguments: the terminal key passphrase comes from ENROL_TERMINAL_PASSPHRASE or a prompt,
the FKO PIN from ENROL_FKO_PIN or a prompt. Refusals print one line ``refused (<reason>): <why>`` and exit 1.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from cardsvc.card.transport import CardError
from cardsvc.pki.errors import PkiError
from enrolment_station.errors import EligibilityError, StationError
from enrolment_station.journal import MemberException
from enrolment_station.keys import HOME_ENV, PASSPHRASE_ENV, default_home

if TYPE_CHECKING:
    from cardsvc.formats.transaction import TransactionRecord

PIN_ENV = "ENROL_FKO_PIN"


def _fail(reason: str, message: str) -> NoReturn:
    click.echo(f"refused ({reason}): {message}", err=True)
    sys.exit(1)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except EligibilityError as exc:
        click.echo(f"refused (eligibility): {len(exc.problems)} problem(s), nothing imported", err=True)
        for p in exc.problems:
            click.echo(f"  {p}", err=True)
        sys.exit(1)
    except StationError as exc:
        _fail(exc.reason, str(exc).split(": ", 1)[-1])
    except PkiError as exc:
        _fail(getattr(exc, "rule", "pki"), str(exc))
    except CardError as exc:
        _fail("card", str(exc))


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    return str(click.prompt(prompt, hide_input=True))


class Ctx:
    def __init__(self, home: Path, operator: str, camp_id: str | None) -> None:
        self.home = home
        self.operator = operator
        self.camp_id = camp_id

    def camp(self, reader: Any = None) -> Any:
        from enrolment_station.camp import Camp

        passphrase = _secret(PASSPHRASE_ENV, "terminal key passphrase").encode()
        camp_id = self.camp_id or time.strftime("CAMP-%Y%m%d")
        return Camp(
            self.home,
            passphrase=passphrase,
            operator=self.operator,
            camp_id=camp_id,
            reader=reader,
            progress=lambda msg: click.echo(f"  .. {msg}"),
        )


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Station home (default ${HOME_ENV} or ~/.enrol).",
)
@click.option("--operator", envvar="ENROL_OPERATOR", default=None, help="Who is at the keyboard (journaled).")
@click.option("--camp", "camp_id", envvar="ENROL_CAMP", default=None, help="Camp id (default CAMP-<date>).")
@click.pass_context
def main(ctx: click.Context, home: Path | None, operator: str | None, camp_id: str | None) -> None:
    """Enrolment station: eligibility lists, FKO session, capture, personalisation, hand-over."""
    ctx.obj = Ctx(home or default_home(), operator or getpass.getuser(), camp_id)


@main.command()
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The terminal's key.enc from keymgmt (holders/<CHR>/key.enc).",
)
@click.option(
    "--chain",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="keymgmt export-chain output for the terminal.",
)
@click.option(
    "--bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="keymgmt export-bundle output.",
)
@click.option(
    "--dedup-key",
    default=None,
    help="Central's de-duplication public key (65-byte point, hex): uploads seal templates to it.",
)
@click.pass_obj
def install(obj: Ctx, key_file: Path, chain: Path, bundle: Path, dedup_key: str | None) -> None:
    """Install the station's terminal key, chain and trust bundle into the station home."""
    from enrolment_station.keys import install as do_install

    with _refusals():
        point = bytes.fromhex(dedup_key) if dedup_key else None
        do_install(obj.home, key_file=key_file, chain_file=chain, bundle_dir=bundle, dedup_point=point)
    click.echo(f"station home {obj.home} installed")


@main.command("import")
@click.argument("list_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_(obj: Ctx, list_file: Path) -> None:
    """Import an eligibility list (CSV, docs/station.md); any bad row refuses the whole file."""
    with _refusals(), obj.camp() as camp:
        listing = camp.import_list(list_file)
    click.echo(f"imported {len(listing.households)} households, {listing.rows} members")


@main.command()
@click.pass_obj
def status(obj: Ctx) -> None:
    """Households by status, cards by state, sessions and uploads waiting."""
    with _refusals(), obj.camp() as camp:
        j = camp.journal
        click.echo(f"households: {json.dumps(j.households_by_status(), sort_keys=True)}")
        cards: dict[str, int] = {}
        for row in j.cards():
            cards[row["state"]] = cards.get(row["state"], 0) + 1
        click.echo(f"cards: {json.dumps(cards, sort_keys=True)}")
        click.echo(f"uploads waiting: {len(j.pending_uploads())}")


# -- hardware helpers ------------------------------------------------------------------------------------
def _sensor_reader(sensor_port: str, control: str | None) -> tuple[Any, Any]:
    from cardsvc.bio.capture import FingerprintSensor
    from enrolment_station.fingers import SensorFingerReader

    placer = None
    if control:
        from hardware_sims.sensor.control import ControlClient

        placer = ControlClient(control)
    sensor = FingerprintSensor(sensor_port)
    sensor.open()
    return sensor, SensorFingerReader(sensor, placer=placer)


def _open_session(camp: Any, fko_reader: str, reader: Any) -> Any:
    from cardsvc.card.pcsc import PcscConnection

    conn = PcscConnection(fko_reader, exclusive=True, wait=30)
    click.echo("FKO: enter the PIN, then place your finger")
    pin = _secret(PIN_ENV, "FKO PIN")
    camp.open_session(conn, pin=pin, fingerprint=reader.officer_probe)
    return conn


_sensor_options: list[Callable[[Any], Any]] = [
    click.option("--sensor", "sensor_port", required=True, help="Serial port of the fingerprint sensor."),
    click.option("--sensor-control", default=None, help="Simulator control socket: place scripted fingers."),
    click.option("--fko-reader", required=True, help="PC/SC reader holding the FKO card."),
]


def sensor_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_sensor_options):
        fn = option(fn)
    return fn


@main.command("open-session")
@sensor_options
@click.pass_obj
def open_session(obj: Ctx, sensor_port: str, sensor_control: str | None, fko_reader: str) -> None:
    """Check that the FKO can open the camp here (card, PIN, fingerprint); the session is journaled."""
    with _refusals(), obj.camp() as camp:
        sensor, reader = _sensor_reader(sensor_port, sensor_control)
        try:
            conn = _open_session(camp, fko_reader, reader)
            click.echo(f"session {camp.fko.session_id} open for {camp.fko.fko_chr}, camp {camp.camp_id}")
            conn.close()
        finally:
            sensor.close()


def _exceptions(child: tuple[int, ...], absent: tuple[int, ...]) -> dict[int, MemberException]:
    out = {m: MemberException.CHILD for m in child}
    out.update({m: MemberException.ABSENT for m in absent})
    return out


def _unavailable(injured: tuple[str, ...], missing: tuple[str, ...]) -> dict[int, dict[int, MemberException]]:
    out: dict[int, dict[int, MemberException]] = {}
    for values, reason in (
        (injured, MemberException.INJURED_FINGER),
        (missing, MemberException.MISSING_FINGER),
    ):
        for v in values:
            member, _, finger = v.partition(":")
            if not member.isdigit() or not finger.isdigit():
                raise click.BadParameter(f"{v!r}: use MEMBER:FINGER, e.g. 2:7")
            out.setdefault(int(member), {})[int(finger)] = reason
    return out


@main.command()
@click.argument("household_id")
@sensor_options
@click.option("--reader", required=True, help="PC/SC reader for the beneficiary card.")
@click.option("--child", type=int, multiple=True, help="Member number of a young child (no fingers).")
@click.option("--absent", type=int, multiple=True, help="Member number of a member not at the camp.")
@click.option("--injured", multiple=True, help="MEMBER:FINGER injured (another finger is taken).")
@click.option("--missing", multiple=True, help="MEMBER:FINGER missing (another finger is taken).")
@click.pass_obj
def household(obj: Ctx, household_id: str, sensor_port: str, sensor_control: str | None, fko_reader: str,
              reader: str, child: tuple[int, ...], absent: tuple[int, ...], injured: tuple[str, ...],
              missing: tuple[str, ...]) -> None:  # fmt: skip
    """Capture, personalise, activate, print and hand over one household's card."""
    from cardsvc.card.pcsc import PcscConnection

    with _refusals():
        sensor, fingers = _sensor_reader(sensor_port, sensor_control)
        try:
            with obj.camp(fingers) as camp:
                _open_session(camp, fko_reader, fingers)
                with PcscConnection(reader, exclusive=True, wait=60) as conn:
                    result = camp.enrol_household(
                        household_id,
                        conn,
                        member_exceptions=_exceptions(child, absent),
                        unavailable=_unavailable(injured, missing),
                    )
                click.echo(
                    f"{household_id}: card {result.card_id} activated and handed over"
                    + (f" ({result.recovered})" if result.recovered else "")
                )
        finally:
            sensor.close()


@main.command()
@click.argument("household_id")
@sensor_options
@click.option("--reader", required=True, help="PC/SC reader for the beneficiary card.")
@click.pass_obj
def personalise(
    obj: Ctx, household_id: str, sensor_port: str, sensor_control: str | None, fko_reader: str, reader: str
) -> None:
    """Write and activate the card of a captured household (or finish a torn one)."""
    from cardsvc.card.pcsc import PcscConnection

    with _refusals():
        sensor, fingers = _sensor_reader(sensor_port, sensor_control)
        try:
            with obj.camp(fingers) as camp:
                _open_session(camp, fko_reader, fingers)
                with PcscConnection(reader, exclusive=True, wait=60) as conn:
                    result = camp.personalise(conn, household_id)
                click.echo(
                    f"{household_id}: card {result.card_id} activated"
                    + (f" ({result.recovered})" if result.recovered else "")
                )
        finally:
            sensor.close()


@main.command()
@click.argument("household_id")
@click.argument("member_no", type=int)
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def photo(obj: Ctx, household_id: str, member_no: int, image: Path) -> None:
    """Record a member's photo (any image Pillow reads, up to 5 MB, at least 120x160 px; kept as PNG, at
    most 600 px) for the card face. The same check as the station screen's photo step."""
    from enrolment_station.photos import record_photo

    with _refusals(), obj.camp() as camp:
        record_photo(camp.journal, household_id, member_no, image.read_bytes())
    click.echo(f"photo of {household_id} member {member_no} recorded")


@main.command()
@click.argument("card_id")
@click.option("--member", type=int, default=None, help="Member number who receives it (default the head).")
@click.pass_obj
def handover(obj: Ctx, card_id: str, member: int | None) -> None:
    """Print the card face (PNG and PDF) and record the hand-over: the card's last step."""
    with _refusals(), obj.camp() as camp:
        png, pdf = camp.hand_over(card_id, member)
    click.echo(f"{card_id} handed over; card face {png} and {pdf}")


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the signed batches here (for a USB stick).",
)
@click.option("--url", default=None, help="Central service base URL: send the batches now.")
@click.pass_obj
def upload(obj: Ctx, out: Path | None, url: str | None) -> None:
    """Build the signed camp batch of new cards; write and/or send every batch not yet acknowledged."""
    from enrolment_station.upload import send_pending

    with _refusals(), obj.camp() as camp:
        batches = camp.upload_batches(out)
        for b in batches:
            click.echo(
                f"batch {b.batch.seq} {b.batch.kind.value}: {len(b.batch.items)} item(s), "
                f"content hash {b.content_hash().hex()[:16]}"
            )
        if url:
            receipts = send_pending(camp.journal, camp.identity, url, now=camp.now)
            click.echo(f"central acknowledged {len(receipts)} batch(es)")


@main.command()
@sensor_options
@click.pass_obj
def ledger(obj: Ctx, sensor_port: str, sensor_control: str | None, fko_reader: str) -> None:
    """Read back the FKO card's ledger, compare it with the journal and queue it for upload."""
    with _refusals():
        sensor, fingers = _sensor_reader(sensor_port, sensor_control)
        try:
            with obj.camp(fingers) as camp:
                conn = _open_session(camp, fko_reader, fingers)
                check = camp.ledger()
                conn.close()
        finally:
            sensor.close()
    click.echo(check.describe())
    if not check.matches:
        sys.exit(1)


@main.command()
@click.option("--reader", required=True, help="PC/SC reader holding the card to renew.")
@click.option(
    "--authorisation",
    "auth_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Central's RENEW_POLICY card authorisation for this card (binary, docs/card-layout.md).",
)
@click.option(
    "--station-authorisation",
    "station_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Central's RENEW for this station (JSON), when central issued one.",
)
@sensor_options
@click.pass_obj
def renew(obj: Ctx, reader: str, auth_file: Path, station_file: Path | None, sensor_port: str,
          sensor_control: str | None, fko_reader: str) -> None:  # fmt: skip
    """Renew the card in the reader for a new policy year: new profile, FKO-certified, new cover."""
    from cardsvc.card.pcsc import PcscConnection
    from enrolment_station.authorisation import SignedAuthorisation
    from enrolment_station.reissue import renew_until_done

    with _refusals():
        auth = _card_authorisation(auth_file)
        station = SignedAuthorisation.parse(station_file.read_bytes()) if station_file else None
        sensor, fingers = _sensor_reader(sensor_port, sensor_control)
        try:
            with obj.camp(fingers) as camp:
                _open_session(camp, fko_reader, fingers)
                with PcscConnection(reader, exclusive=True, wait=30) as conn:
                    result = renew_until_done(
                        camp.personaliser, conn, auth, now=camp.now(), fko=camp.session(),
                        station_authorisation=station,
                    )  # fmt: skip
        finally:
            sensor.close()
    p = result.profile
    cover = ", ".join(f"scheme {s.scheme_id}: {s.cover_paise / 100:.2f}" for s in p.schemes)
    click.echo(
        f"{result.card_id} renewed for {p.policy_start} to {p.policy_end} ({cover}; {result.apdus} APDUs)"
    )
    if result.takes_effect is not None:
        click.echo(f"the card keeps its current year until {result.takes_effect}, then takes on the new one")


def _card_authorisation(path: Path) -> Any:
    from cardsvc.beneficiary.protocol import Authorisation

    try:
        return Authorisation.parse(path.read_bytes())
    except ValueError as exc:
        _fail("authorisation", f"{path} is not a card authorisation: {exc}")


def _reissue(
    obj: Ctx,
    kind: str,
    card_id: str,
    auth_file: Path,
    sensor_port: str,
    sensor_control: str | None,
    fko_reader: str,
    reader: str,
    lowering_files: tuple[Path, ...] = (),
) -> None:
    from cardsvc.card.pcsc import PcscConnection
    from enrolment_station.authorisation import AuthKind, SignedAuthorisation
    from enrolment_station.reissue import issue_authorised, lower_original

    with _refusals():
        signed = SignedAuthorisation.parse(auth_file.read_bytes())
        lowering = [_card_authorisation(f) for f in lowering_files]
        sensor, fingers = _sensor_reader(sensor_port, sensor_control)
        try:
            with obj.camp(fingers) as camp:
                _open_session(camp, fko_reader, fingers)
                if AuthKind(kind) is AuthKind.SPLIT:
                    click.echo(f"insert the original card {card_id}: its cover is lowered first")
                    with PcscConnection(reader, exclusive=True, wait=60) as original:
                        lowered = lower_original(
                            camp.personaliser, original, signed.authorisation, lowering, now=camp.now()
                        )
                    for r in lowered:
                        click.echo(_lowered_words(card_id, r))
                    click.echo("remove the original card and insert the blank card")
                with PcscConnection(reader, exclusive=True, wait=60) as conn:
                    result = issue_authorised(
                        camp.personaliser, conn, signed, AuthKind(kind), card_id, now=camp.now(),
                        fko=camp.fko, lowering=lowering,
                    )  # fmt: skip
                camp.hand_over(result.card_id)
        finally:
            sensor.close()
    click.echo(f"{kind} card {result.card_id} for {result.household_id} activated and handed over")


def _lowered_words(card_id: str, record: TransactionRecord) -> str:
    """A split's lowering of the original card (its SPLIT record) in words, amounts in rupees."""
    return (
        f"card {card_id}: cover of scheme {record.scheme_id} lowered by {record.amount / 100:.2f} for the "
        f"split card, {record.balance_after / 100:.2f} left (card record {record.counter})"
    )


def _reissue_command(kind: str, doc: str) -> None:
    @main.command(kind, help=doc)
    @click.argument("card_id")
    @click.option(
        "--authorisation",
        "auth_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        required=True,
        help="Central's signed authorisation (JSON, docs/station.md).",
    )
    @sensor_options
    @click.option("--reader", required=True, help="PC/SC reader holding the new blank card.")
    @click.pass_obj
    def command(obj: Ctx, card_id: str, auth_file: Path, sensor_port: str, sensor_control: str | None,
                fko_reader: str, reader: str, **extra: Any) -> None:  # fmt: skip
        _reissue(obj, kind, card_id, auth_file, sensor_port, sensor_control, fko_reader, reader,
                 tuple(extra.get("lowering_files", ())))  # fmt: skip

    if kind == "split":
        click.option(
            "--card-authorisation",
            "lowering_files",
            multiple=True,
            required=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Central's SPLIT card authorisation lowering the original card (one per scheme; binary).",
        )(command)


_reissue_command(
    "split",
    "Issue a split card (part of the cover, some members) for CARD_ID's household; the original card's "
    "cover is lowered on its chip first (insert it when asked).",
)
_reissue_command("replace", "Issue a replacement for the lost card CARD_ID (it is recorded as superseded).")


@main.command()
@click.option(
    "--list", "list_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True
)
@sensor_options
@click.option("--reader", required=True, help="PC/SC reader for the beneficiary cards.")
@click.option(
    "--simulate-cards",
    type=int,
    default=0,
    help="Serve this many blank simulated cards in --reader's vpcd slot, one per household.",
)
@click.option("--upload-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.pass_obj
def camp(obj: Ctx, list_file: Path, sensor_port: str, sensor_control: str | None, fko_reader: str,
         reader: str, simulate_cards: int, upload_dir: Path | None) -> None:  # fmt: skip
    """A scripted camp (demo): import, open the session, enrol every listed household, ledger, upload."""
    from enrolment_station.scripted import run_camp

    with _refusals():
        sensor, fingers = _sensor_reader(sensor_port, sensor_control)
        try:
            with obj.camp(fingers) as c:
                summary = run_camp(
                    c,
                    list_file,
                    fingers=fingers,
                    fko_reader=fko_reader,
                    reader=reader,
                    pin=_secret(PIN_ENV, "FKO PIN"),
                    simulate_cards=simulate_cards,
                    upload_dir=upload_dir,
                    echo=click.echo,
                )
        finally:
            sensor.close()
    click.echo(summary)


@main.command()
@click.option("--households", type=int, default=3, help="Households of five members to time.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench(households: int, json_out: Path | None) -> None:
    """Station time per household of five (no waiting for fingers) against its ceiling; exit 1 if over."""
    from enrolment_station.bench import main as bench_main

    sys.exit(bench_main(households=households, json_out=json_out))


def _register_web() -> None:
    from enrolment_station.web.serve import register

    register(main)


_register_web()
