"""Commands of the central service: ``cardsvc serve``, ``cardsvc db upgrade``, ``cardsvc central ...`` and
``cardsvc bench ingest``. Thin: each calls a service function."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

DATABASE_OPTION = click.option(
    "--database-url",
    envvar=["CARDSVC_DATABASE_URL", "DATABASE_URL"],
    default="sqlite:///cardsvc-central.db",
    show_default=True,
    help="SQLAlchemy URL: SQLite (embedded) or postgresql://... (production).",
)


def _hex_id(value: str) -> int:
    try:
        number = int(value, 16)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not hexadecimal") from None
    if not 0 <= number < 1 << 64:
        raise click.BadParameter(f"{value!r} does not fit in 8 bytes")
    return number


KEY_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@DATABASE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--server",
    type=click.Choice(["gunicorn", "dev"]),
    default="gunicorn",
    show_default=True,
    help="gunicorn for production; dev is Flask's single-process server.",
)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, help="gunicorn threads per worker.")
@click.option("--central-key-file", type=KEY_FILE, default=None, envvar="CARDSVC_CENTRAL_KEY_FILE",
              help="Signing key for revocation lists, the catalogue and authorisations (encrypted key file; "
                   "passphrase from CARDSVC_KEY_PASSPHRASE).")  # fmt: skip
@click.option(
    "--central-key-chr", envvar="CARDSVC_CENTRAL_KEY_CHR", default=None, help="Its holder reference."
)
@click.option("--central-key-chain", type=KEY_FILE, default=None, envvar="CARDSVC_CENTRAL_KEY_CHAIN",
              help="The district's certificate (absent for the root key).")  # fmt: skip
def serve(
    database_url: str, host: str, port: int, server: str, workers: int, threads: int,
    central_key_file: Path | None, central_key_chr: str | None, central_key_chain: Path | None,
) -> None:  # fmt: skip
    """Run the central service (migrating the database first)."""
    import os

    from cardsvc.central.app import create_app

    config: dict[str, Any] = {"DATABASE_URL": database_url}
    if central_key_file is not None:
        from cardsvc.central.services.publish import load_central_key

        if not central_key_chr:
            raise click.BadParameter("--central-key-chr is required with --central-key-file")
        passphrase = os.environ.get("CARDSVC_KEY_PASSPHRASE") or click.prompt(
            "Key passphrase", hide_input=True
        )
        config["CENTRAL_KEY"] = load_central_key(
            central_key_file, passphrase.encode(), central_key_chr, central_key_chain
        )
    app = create_app(config)
    if server == "dev":
        app.run(host=host, port=port, threaded=True)
        return
    from gunicorn.app.base import BaseApplication

    from cardsvc.central.extensions import get_db

    get_db(app).dispose()  # no pooled connection may cross the fork into the workers

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")

        def load(self) -> Any:
            return app

    _Gunicorn().run()


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@DATABASE_OPTION
@click.option("--revision", default="head", show_default=True)
def db_upgrade(database_url: str, revision: str) -> None:
    """Apply the Alembic migrations up to REVISION."""
    from cardsvc.central.extensions import make_engine
    from cardsvc.central.migrate import upgrade

    engine = make_engine(database_url)
    upgrade(engine, revision)
    engine.dispose()
    click.echo(f"database at {revision}")


@click.group()
def central() -> None:
    """Central administration: facilities, terminals, reconciliation, settlement, reports, authorisations."""


def _session(database_url: str) -> Any:
    from cardsvc.central.extensions import Database
    from cardsvc.central.migrate import upgrade

    database = Database(database_url)
    upgrade(database.engine)
    return database


@central.command("add-facility")
@DATABASE_OPTION
@click.argument("facility_id", type=int)
@click.argument("name")
@click.option("--district", required=True)
@click.option("--lat", type=float, required=True)
@click.option("--lon", type=float, required=True)
def add_facility_command(
    database_url: str, facility_id: int, name: str, district: str, lat: float, lon: float
) -> None:
    """Register a hospital or paypoint with its coordinates."""
    from cardsvc.central.services.terminals import add_facility

    database = _session(database_url)
    with database.sessions() as session:
        add_facility(session, facility_id, name, district, lat, lon)
        session.commit()
    database.dispose()
    click.echo(f"facility {facility_id} added")


@central.command("add-terminal")
@DATABASE_OPTION
@click.argument("terminal_id")
@click.argument("public_key_pem", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--facility", type=int, default=None)
def add_terminal_command(
    database_url: str, terminal_id: str, public_key_pem: Path, facility: int | None
) -> None:
    """Register TERMINAL_ID (16 hex digits) with its P-256 public key (PEM file)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from cardsvc.central.services.terminals import register_terminal

    key = load_pem_public_key(public_key_pem.read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise click.BadParameter("the key must be an EC P-256 public key", param_hint="PUBLIC_KEY_PEM")
    database = _session(database_url)
    with database.sessions() as session:
        register_terminal(session, _hex_id(terminal_id), key, int(time.time()), facility)
        session.commit()
    database.dispose()
    click.echo(f"terminal {terminal_id} registered")


@central.command("revoke-terminal")
@DATABASE_OPTION
@click.argument("terminal_id")
def revoke_terminal_command(database_url: str, terminal_id: str) -> None:
    """Revoke TERMINAL_ID from now on."""
    from cardsvc.central.services.terminals import revoke_terminal

    database = _session(database_url)
    with database.sessions() as session:
        revoke_terminal(session, _hex_id(terminal_id), int(time.time()))
        session.commit()
    database.dispose()
    click.echo(f"terminal {terminal_id} revoked")


@central.command("add-package")
@DATABASE_OPTION
@click.argument("code", type=int)
@click.argument("name")
@click.option("--price-paise", type=int, required=True)
@click.option("--valid-from", type=int, default=None, help="Unix seconds (default: now).")
@click.option("--category", default="general", show_default=True, help="e.g. obstetrics, surgery.")
def add_package_command(
    database_url: str, code: int, name: str, price_paise: int, valid_from: int | None, category: str
) -> None:
    """Add the next version of package CODE to the catalogue terminals download."""
    from cardsvc.central.services.catalogue import add_package_version

    database = _session(database_url)
    with database.sessions() as session:
        package = add_package_version(
            session, code, name, price_paise, valid_from or int(time.time()), category
        )
        session.commit()
        click.echo(f"package {code} version {package.version}: {name}, {price_paise} paise")
    database.dispose()


@central.command("reconcile")
@DATABASE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reconcile_command(database_url: str, as_json: bool) -> None:
    """Rebuild every card's ledger and record new flags."""
    from cardsvc.central.services.reconcile import reconcile

    database = _session(database_url)
    with database.sessions() as session:
        report = reconcile(session, int(time.time()))
    database.dispose()
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
        return
    click.echo(f"{report.records} records of {report.cards} cards; {report.new_flags} new flags")
    for kind, count in sorted(report.flags.items()):
        click.echo(f"  {kind}: {count}")


def _day_start(text: str) -> int:
    from datetime import UTC, datetime

    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date YYYY-MM-DD") from None


@central.command("settle")
@DATABASE_OPTION
@click.argument("facility_id", type=int)
@click.option("--from", "start", required=True, help="First day of the period, YYYY-MM-DD (UTC).")
@click.option("--to", "end", required=True, help="Day after the period, YYYY-MM-DD (UTC, excluded).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the claims.")
@click.option("--json", "as_json", is_flag=True, help="Print the settlement as JSON.")
def settle_command(
    database_url: str, facility_id: int, start: str, end: str, csv_path: Path | None, as_json: bool
) -> None:
    """Settle FACILITY_ID for a period: payable and held claims (recorded once per facility and period)."""
    from cardsvc.central.errors import ServiceError
    from cardsvc.central.services.settlement import run_settlement

    database = _session(database_url)
    try:
        with database.sessions() as session:
            settlement, created = run_settlement(
                session, facility_id, _day_start(start), _day_start(end), now=int(time.time())
            )
    except ServiceError as exc:
        raise click.ClickException(exc.reason) from None
    finally:
        database.dispose()
    if csv_path is not None:
        csv_path.write_text(settlement.to_csv(), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(settlement.to_json(), sort_keys=True))
        return
    state = "recorded" if created else "already recorded (unchanged)"
    click.echo(f"facility {facility_id} {start}..{end}: run {settlement.run_id} {state}")
    click.echo(f"  payable: {len(settlement.payable)} claims, {settlement.payable_paise} paise")
    click.echo(f"  held:    {len(settlement.held)} claims, {settlement.held_paise} paise")
    for claim in settlement.held:
        click.echo(f"    card {claim.card_id} counter {claim.counter}: {'; '.join(claim.reasons)}")


@central.command("report")
@DATABASE_OPTION
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def report_command(database_url: str, out_dir: Path) -> None:
    """Coverage and use by district, scheme, gender and age band: CSV, PNG charts and report.html."""
    from cardsvc.central.services.reports import build_report, write_report

    database = _session(database_url)
    with database.sessions() as session:
        report = build_report(session, int(time.time()))
    database.dispose()
    for name, path in write_report(report, out_dir).items():
        click.echo(f"{name}: {path}")


PASSPHRASE_OPTION = click.option(
    "--passphrase", envvar="CARDSVC_KEY_PASSPHRASE", prompt=True, hide_input=True,
    help="Passphrase of the encrypted key file (or CARDSVC_KEY_PASSPHRASE).",
)  # fmt: skip


@central.command("dedup")
@DATABASE_OPTION
@click.option("--key-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Central's de-duplication key (encrypted key file, cardsvc.pki format).")  # fmt: skip
@PASSPHRASE_OPTION
@click.option("--json", "as_json", is_flag=True)
def dedup_command(database_url: str, key_file: Path, passphrase: str, as_json: bool) -> None:
    """Search newly received camp templates against their district's gallery; flag likely duplicates."""
    from cardsvc.central.services.dedup import deduplicate, load_dedup_key

    key = load_dedup_key(key_file, passphrase.encode())
    database = _session(database_url)
    with database.sessions() as session:
        report = deduplicate(session, key, int(time.time()))
    database.dispose()
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
        return
    click.echo(f"{report.searched_cards} cards searched against {report.gallery_templates} templates; "
               f"{len(report.pairs)} likely duplicate pairs, {report.new_flags} new flags")  # fmt: skip
    for a, b, score in report.pairs:
        click.echo(f"  {a} ~ {b}: score {score}")
    for card in report.unreadable:
        click.echo(f"  card {card}: templates not sealed to this key")


@central.command("resolve-flag")
@DATABASE_OPTION
@click.argument("flag_id", type=int)
@click.option("--by", required=True, help="Who reviewed it.")
@click.option("--note", required=True, help="Why it is cleared.")
def resolve_flag_command(database_url: str, flag_id: int, by: str, note: str) -> None:
    """Clear a reviewed finding: it no longer holds claims or authorisations."""
    from cardsvc.central.errors import ServiceError
    from cardsvc.central.services.flags import resolve_flag

    database = _session(database_url)
    try:
        with database.sessions() as session:
            flag = resolve_flag(session, flag_id, by=by, note=note, now=int(time.time()))
    except ServiceError as exc:
        raise click.ClickException(exc.reason) from None
    finally:
        database.dispose()
    click.echo(f"flag {flag.id} ({flag.kind}) resolved")


@central.command("revoke-card")
@DATABASE_OPTION
@click.argument("card_id")
def revoke_card_command(database_url: str, card_id: str) -> None:
    """Blacklist CARD_ID (16 hex digits) from now on (lost, replaced, cloned)."""
    from cardsvc.central.errors import ServiceError
    from cardsvc.central.services.terminals import revoke_card

    database = _session(database_url)
    try:
        with database.sessions() as session:
            revoke_card(session, _hex_id(card_id), int(time.time()))
            session.commit()
    except ServiceError as exc:
        raise click.ClickException(exc.reason) from None
    finally:
        database.dispose()
    click.echo(f"card {card_id} revoked")


@central.command("authorise")
@DATABASE_OPTION
@click.argument("kind", type=click.Choice(["renew", "split", "replace", "top_up", "renewal", "supersede",
                                           "sync_ack"]))  # fmt: skip
@click.argument("card_id")
@click.option("--key-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Central's (root or district) signing key, encrypted key file.")  # fmt: skip
@PASSPHRASE_OPTION
@click.option("--chr", "holder", required=True, help="The signing key's holder reference (CHR).")
@click.option("--chain", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The district's CV certificate (absent when signing with the root key).")  # fmt: skip
@click.option("--member", "members", type=int, multiple=True, help="Split card: member index (repeatable).")
@click.option("--value", type=int, default=None, help="top_up: paise added; renewal: the new balance.")
def authorise_command(
    database_url: str, kind: str, card_id: str, key_file: Path, passphrase: str, holder: str,
    chain: Path | None, members: tuple[int, ...], value: int | None,
) -> None:  # fmt: skip
    """Sign an authorisation for CARD_ID; stations and cards fetch it from GET /api/v1/authorisations."""
    from cardsvc.central.errors import ServiceError
    from cardsvc.central.services.authorise import (
        CardKind,
        StationKind,
        issue_card_authorisation,
        issue_station_authorisation,
    )
    from cardsvc.central.services.publish import load_central_key

    key = load_central_key(key_file, passphrase.encode(), holder, chain)
    database = _session(database_url)
    card = f"{_hex_id(card_id):016x}"
    now = int(time.time())
    try:
        with database.sessions() as session:
            if kind in {k.value for k in StationKind}:
                issued = issue_station_authorisation(
                    session, key, StationKind(kind), card, now=now, members=list(members) or None
                )
            else:
                issued = issue_card_authorisation(session, key, CardKind(kind), card, now=now, value=value)
    except ServiceError as exc:
        raise click.ClickException(exc.reason) from None
    finally:
        database.dispose()
    click.echo(f"authorisation {issued.id} ({issued.kind}) for card {card}, valid until {issued.not_after}")
    for mark in issued.marks:
        click.echo(f"  note: {mark}")


@click.command("ingest")
@click.option("--records", default=20_000, show_default=True, help="Transaction records to ingest.")
@click.option("--batch-size", default=2_000, show_default=True, help="Records per uploaded batch.")
@click.option("--repeats", default=3, show_default=True, help="Runs per backend (median reported).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_ingest(records: int, batch_size: int, repeats: int, as_json: bool) -> None:
    """Transactions ingested+verified+reconciled per second on SQLite and PostgreSQL, beside the raw
    ECDSA verification rate of the same run (target: at least half of it)."""
    from cardsvc.central.benchmark import run_ingest_benchmark

    if not run_ingest_benchmark(records=records, batch_size=batch_size, repeats=repeats, as_json=as_json):
        raise SystemExit(1)


def register(main: click.Group) -> None:
    """Attach the central service's commands to ``cardsvc``."""
    main.add_command(serve)
    main.add_command(db)
    main.add_command(central)
    if "report" not in main.commands:  # `cardsvc report`: the same command as `cardsvc central report`
        main.add_command(report_command, name="report")
    bench = main.commands.get("bench")
    if not isinstance(bench, click.Group):
        raise RuntimeError("cardsvc has no 'bench' group to attach 'ingest' to")
    bench.add_command(bench_ingest)
