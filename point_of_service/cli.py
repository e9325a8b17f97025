"""Command line of point_of_service. Thin: every subcommand calls a service function and prints the
clerk-facing reason (problem, then next step) on refusal, exit status 2; other errors exit 1.

Settings (options or environment): ``--home`` / POS_HOME (terminal directory, see identity.py),
POS_TERMINAL_PASSPHRASE (unlocks the terminal key; prompted otherwise), ``--card-reader`` /
POS_CARD_READER, ``--operator-reader`` / POS_OPERATOR_READER, ``--sensor`` / POS_SENSOR (the fingerprint
sensor's serial port), POS_OPERATOR_PIN (scripted sign-in; prompted without echo otherwise), ``--now``
(ISO time; demos and tests — the system clock otherwise).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from point_of_service.errors import PosError, SyncError
from point_of_service.reasons import message_for
from point_of_service.services.fallback import OverrideReason

SESSION_SECONDS = 10 * 3600
SUPERVISOR_SECONDS = 15 * 60
_CLERK = "session.clerk"
_SUPERVISOR = "session.supervisor"


@dataclass
class Settings:
    home: Path
    card_reader: str
    operator_reader: str
    sensor: str | None
    now_text: str | None

    @property
    def now(self) -> int:
        if self.now_text:
            parsed = datetime.fromisoformat(self.now_text.replace("Z", "+00:00"))
            return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
        return int(time.time())


def _refuse(exc: PosError) -> NoReturn:
    msg = message_for(exc.reason)
    click.echo(f"REFUSED ({exc.reason.value}): {msg.problem}", err=True)
    click.echo(f"next: {msg.next_step}", err=True)
    if exc.detail:
        click.echo(f"detail: {exc.detail}", err=True)
    sys.exit(2)


@contextmanager
def _clerk_errors() -> Iterator[None]:
    try:
        yield
    except PosError as exc:
        _refuse(exc)


@dataclass
class Terminal:
    """The loaded terminal: journal, identity, trust state."""

    settings: Settings
    journal: Any
    identity: Any
    trust: Any


def _terminal(settings: Settings) -> Terminal:
    from point_of_service import identity as ident
    from point_of_service.journal import Journal
    from point_of_service.trust import TrustState

    passphrase = os.environ.get("POS_TERMINAL_PASSPHRASE")
    if passphrase is None:
        passphrase = click.prompt("terminal key passphrase", hide_input=True)
    with _clerk_errors():
        identity = ident.load(settings.home, passphrase.encode())
    journal = Journal(settings.home / ident.JOURNAL_FILE)
    district = identity.chain[0]
    trust = TrustState.load(journal, identity.anchor, districts={district.chr: district})
    return Terminal(settings, journal, identity, trust)


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="POS_HOME",
    default=Path.home() / ".pos",
    show_default=True,
    help="terminal directory",
)
@click.option("--card-reader", envvar="POS_CARD_READER", default="Virtual PCD 00 00", show_default=True)
@click.option(
    "--operator-reader", envvar="POS_OPERATOR_READER", default="Virtual PCD 00 01", show_default=True
)
@click.option("--sensor", envvar="POS_SENSOR", default=None, help="fingerprint sensor serial port")
@click.option("--now", "now_text", default=None, help="ISO time instead of the clock (demos, tests)")
@click.pass_context
def main(
    ctx: click.Context,
    home: Path,
    card_reader: str,
    operator_reader: str,
    sensor: str | None,
    now_text: str | None,
) -> None:
    """Point of service: clerk sign-in, offline verification, hospital and paypoint flows."""
    ctx.obj = Settings(home, card_reader, operator_reader, sensor, now_text)


# ------------------------------------------------------------------------------------------ setup
@main.command()
@click.option(
    "--chain",
    "chain_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="root + district + terminal certificates (keymgmt export-chain)",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="the terminal's encrypted key file",
)
@click.option("--terminal-id", required=True, help="16 hex digits: the id central registered")
@click.option("--facility-id", type=int, required=True)
@click.option("--central-url", default="")
@click.pass_obj
def setup(
    settings: Settings, chain_file: Path, key_file: Path, terminal_id: str, facility_id: int, central_url: str
) -> None:
    """Install the terminal's certificate chain and key."""
    from point_of_service.identity import install

    with _clerk_errors():
        install(
            settings.home,
            chain_file=chain_file,
            key_file=key_file,
            terminal_id=int(terminal_id, 16),
            facility_id=facility_id,
            central_url=central_url,
        )
    click.echo(f"terminal set up in {settings.home}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.pass_obj
def bundle(settings: Settings, directory: Path) -> None:
    """Apply a trust bundle (districts, signed revocation lists) from DIRECTORY (keymgmt export-bundle)."""
    from cardsvc.pki.bundle import TrustBundle

    t = _terminal(settings)
    with _clerk_errors():
        changed = t.trust.apply_bundle(
            TrustBundle.read(directory), now=datetime.fromtimestamp(settings.now, UTC)
        )
    t.journal.log("bundle", at=settings.now, detail={"lists": changed})
    click.echo("lists installed: " + (", ".join(changed) or "none new"))


@main.group()
def catalogue() -> None:
    """The package catalogue (signed, versioned)."""


@catalogue.command("install")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.pass_obj
def catalogue_install(settings: Settings, file: Path) -> None:
    """Install a signed catalogue (a lower version than the one held is refused)."""
    t = _terminal(settings)
    with _clerk_errors():
        new = t.trust.install_catalogue(file.read_bytes(), now=datetime.fromtimestamp(settings.now, UTC))
    cat = t.trust.current_catalogue()
    t.journal.log(
        "catalogue", at=settings.now, detail={"version": cat.version, "issuer": cat.issuer, "new": new}
    )
    click.echo(
        f"catalogue v{cat.version} by {cat.issuer}: {len(cat.packages)} packages" + ("" if new else " (held)")
    )


@catalogue.command("show")
@click.pass_obj
def catalogue_show(settings: Settings) -> None:
    t = _terminal(settings)
    with _clerk_errors():
        cat = t.trust.current_catalogue()
    click.echo(f"catalogue v{cat.version} by {cat.issuer}")
    for p in sorted(cat.packages, key=lambda p: p.code):
        click.echo(f"  {p.code:>6}  Rs {p.rate_paise / 100:>10,.2f}  {p.category:<16} {p.name}")


# ------------------------------------------------------------------------------------------ clerk
def _capture(settings: Settings) -> Any:
    from point_of_service.probe import sensor_capture

    if not settings.sensor:
        raise click.UsageError("no fingerprint sensor: pass --sensor PORT or set POS_SENSOR")
    return sensor_capture(settings.sensor)


@main.command()
@click.option("--supervisor", is_flag=True, help="sign a supervisor in for an override (15 minutes)")
@click.pass_obj
def signin(settings: Settings, supervisor: bool) -> None:
    """Sign in with the facility operator card (operator reader): PIN and fingerprint."""
    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.card.transport import CardError
    from cardsvc.pki.rights import Right
    from point_of_service.services.signin import sign_in

    t = _terminal(settings)
    pin = os.environ.get("POS_OPERATOR_PIN") or click.prompt("operator PIN", hide_input=True)
    with _clerk_errors():
        try:
            with PcscConnection(settings.operator_reader) as conn:
                clerk = sign_in(
                    conn,
                    pin=pin,
                    capture=_capture(settings),
                    anchor=t.identity.anchor,
                    districts=t.trust.districts,
                    now=settings.now,
                    journal=t.journal,
                    revocations=t.trust.store,
                    required=Right.SUPERVISE_OVERRIDE if supervisor else Right.READ_PROFILE,
                    event="signin-supervisor" if supervisor else "signin",
                )
        except CardError as exc:
            from point_of_service.errors import SignInError
            from point_of_service.reasons import Reason

            raise SignInError(Reason.OPERATOR_CARD_MISSING, str(exc)) from None
    ttl = SUPERVISOR_SECONDS if supervisor else SESSION_SECONDS
    t.journal.put(
        _SUPERVISOR if supervisor else _CLERK,
        {
            "chr": clerk.chr,
            "rights": int(clerk.rights),
            "at": clerk.signed_in_at,
            "until": settings.now + ttl,
            "certificate": base64.b64encode(clerk.certificate.encode()).decode("ascii"),
        },
    )
    click.echo(f"signed in: {clerk.chr} ({', '.join(clerk.rights.names())})")


@main.command()
@click.pass_obj
def signout(settings: Settings) -> None:
    """End the clerk's (and any supervisor's) session."""
    t = _terminal(settings)
    t.journal.put(_CLERK, None)
    t.journal.put(_SUPERVISOR, None)
    t.journal.log("signout", at=settings.now)
    click.echo("signed out")


def _session_clerk(t: Terminal, key: str = _CLERK) -> Any:
    from cardsvc.pki.cvc import CvCertificate
    from cardsvc.pki.rights import Right
    from point_of_service.errors import SignInError
    from point_of_service.identity import reference_id
    from point_of_service.reasons import Reason
    from point_of_service.services.signin import Clerk

    stored = t.journal.get(key)
    if not stored or stored["until"] < t.settings.now:
        what = "supervisor" if key == _SUPERVISOR else "clerk"
        reason = Reason.OVERRIDE_NEEDS_SUPERVISOR if key == _SUPERVISOR else Reason.NOT_SIGNED_IN
        raise SignInError(reason, f"no {what} signed in (or the session expired)")
    cert = CvCertificate.parse(base64.b64decode(stored["certificate"]))
    return Clerk(stored["chr"], reference_id(stored["chr"]), Right(stored["rights"]), stored["at"], cert)


@contextmanager
def _visit(
    settings: Settings, member: int, finger: int, override: str | None, note: str | None
) -> Iterator[tuple[Terminal, Any, Any]]:
    """Clerk session, card verified, interrupted transactions recovered, member verified (or overridden)."""
    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.card.transport import CardError
    from point_of_service.errors import VerificationError
    from point_of_service.identity import reference_id
    from point_of_service.reasons import Reason
    from point_of_service.services.fallback import Override
    from point_of_service.services.transactions import card_io, recover_card
    from point_of_service.services.verification import override_member, verify_card, verify_member

    t = _terminal(settings)
    with _clerk_errors():
        clerk = _session_clerk(t)
        try:
            conn = PcscConnection(settings.card_reader, exclusive=True)
        except CardError as exc:
            raise VerificationError(Reason.CARD_MISSING, str(exc), step="present") from None
        try:
            visit = verify_card(
                conn, identity=t.identity, trust=t.trust, clerk=clerk, now=settings.now, journal=t.journal
            )
            st = visit.verified.status
            click.echo(
                f"card {visit.card_chr}: household {visit.verified.household_id}, counter "
                f"{visit.verified.counter}; offline since last sync: {st.since_sync_count} of {st.max_count} "
                f"debits, {st.since_sync_amount} of {st.max_amount} paise"
            )
            _echo_authorisations(visit)
            with card_io():
                rec = recover_card(
                    visit.session,
                    t.journal,
                    card_id=visit.card_id,
                    card_key=visit.card_key,
                    terminal_id=reference_id(t.identity.chr),
                    now=settings.now,
                )
            for r in rec.completed:
                click.echo(
                    f"recovered: an interrupted {r.record_type.name} of {r.amount} paise was completed "
                    f"(counter {r.counter})"
                )
            for nonce in rec.abandoned:
                click.echo(
                    f"recovered: interrupted transaction {nonce[:8]} never reached the card (not debited)"
                )
            if override:
                supervisor = _session_clerk(t, _SUPERVISOR)
                override_member(
                    visit,
                    member=member,
                    override=Override(supervisor, OverrideReason(override), note or ""),
                    clerk=clerk,
                    now=settings.now,
                    journal=t.journal,
                )
                click.echo(f"member {member}: accepted by supervised override ({override})")
            else:
                match = verify_member(
                    visit,
                    member=member,
                    finger=finger,
                    capture=_capture(settings),
                    clerk=clerk,
                    now=settings.now,
                    journal=t.journal,
                )
                if not match.matched:
                    click.echo(
                        f"member {member}: fingerprint does not match (score {match.score:.0f})", err=True
                    )
                    click.echo("fallbacks: " + ", ".join(o.value for o in match.options), err=True)
                    raise VerificationError(Reason.FINGER_MISMATCH, f"finger {finger}", step="fingerprint")
                click.echo(f"member {member}: fingerprint matched (score {match.score:.0f})")
            yield t, visit, clerk
        finally:
            conn.close()


_member = click.option(
    "--member", type=int, default=0, show_default=True, help="0 head, 1 spouse, 2-4 dependants"
)
_finger = click.option("--finger", type=int, default=2, show_default=True, help="ISO finger position placed")
_override = click.option(
    "--override",
    type=click.Choice([r.value for r in OverrideReason]),
    default=None,
    help="supervised override instead of the fingerprint (a supervisor must have signed in)",
)
_note = click.option("--note", default=None, help="the override's reason in words")


def _done(outcome: Any) -> None:
    r = outcome.record
    click.echo(
        f"{r.record_type.name}: {r.amount} paise, balance {r.balance_after} paise, card counter {r.counter}"
    )


@main.command()
@_member
@_finger
@_override
@_note
@click.pass_obj
def verify(settings: Settings, member: int, finger: int, override: str | None, note: str | None) -> None:
    """Verify the card in the card reader and the member's fingerprint (no transaction)."""
    with _visit(settings, member, finger, override, note) as (_, visit, _clerk):
        for w in visit.verified.wallets:
            click.echo(f"scheme {w.scheme_id}: balance {w.balance} paise, held {w.held} paise")


def _card_action(*options: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Any]:
    """A clerk command over one visit (card verified, member verified or overridden): its own ``options``
    and the member options, then ``act(terminal, visit, clerk, now, **its options)`` whose card record is
    printed. The command is named after ``act`` and documented by its docstring."""

    def wrap(act: Callable[..., Any]) -> Any:
        def command(
            settings: Settings,
            member: int,
            finger: int,
            override: str | None,
            note: str | None,
            **kwargs: Any,
        ) -> None:
            with _visit(settings, member, finger, override, note) as (t, visit, clerk), _clerk_errors():
                _done(act(t, visit, clerk, settings.now, **kwargs))

        command.__doc__ = act.__doc__
        decorated: Any = click.pass_obj(command)
        for option in reversed((*options, _member, _finger, _override, _note)):
            decorated = option(decorated)
        return main.command(act.__name__.replace("_", "-"))(decorated)

    return wrap


def _till(t: Terminal, clerk: Any, now: int) -> dict[str, Any]:
    return {"journal": t.journal, "identity": t.identity, "clerk": clerk, "now": now}


@_card_action(click.option("--package", "package_code", type=int, required=True))
def admit(t: Terminal, visit: Any, clerk: Any, now: int, package_code: int) -> Any:
    """Admission: block the package's rate on the card (the printed counter is the admission number)."""
    from point_of_service.services import hospital

    return hospital.admit(visit, package_code=package_code, trust=t.trust, **_till(t, clerk, now))


@_card_action(
    click.option("--admission", type=int, required=True, help="the admission's card counter"),
    click.option("--amount", type=int, default=None, help="final amount in paise (default: the amount held)"),
)
def discharge(t: Terminal, visit: Any, clerk: Any, now: int, admission: int, amount: int | None) -> Any:
    """Discharge: settle the admission and release what was not used."""
    from point_of_service.services import hospital

    return hospital.discharge(visit, admission=admission, final_amount=amount, **_till(t, clerk, now))


@_card_action(click.option("--admission", type=int, required=True))
def cancel(t: Terminal, visit: Any, clerk: Any, now: int, admission: int) -> Any:
    """Cancel an admission: release the whole block."""
    from point_of_service.services import hospital

    return hospital.cancel(visit, admission=admission, **_till(t, clerk, now))


@_card_action(
    click.option("--scheme", type=int, required=True),
    click.option("--amount", type=int, required=True, help="paise"),
)
def pay(t: Terminal, visit: Any, clerk: Any, now: int, scheme: int, amount: int) -> Any:
    """Cash disbursement against the scheme's entitlement on the card."""
    from point_of_service.services import paypoint

    return paypoint.disburse(visit, scheme_id=scheme, amount=amount, **_till(t, clerk, now))


@_card_action(click.option("--scheme", type=int, required=True))
def proof_of_life(t: Terminal, visit: Any, clerk: Any, now: int, scheme: int) -> Any:
    """Record proof of life for a pensioner (a zero-amount record signed by the card)."""
    from point_of_service.services import paypoint

    return paypoint.proof_of_life(visit, scheme_id=scheme, **_till(t, clerk, now))


# ------------------------------------------------------------------------------------------ sync, journal
@main.command()
@click.option("--url", default=None, help="central's base URL (default: the one set up)")
@click.pass_obj
def sync(settings: Settings, url: str | None) -> None:
    """Upload card records (idempotent, resumable); download revocations, catalogue, authorisations."""
    from point_of_service.services.sync import HttpTransport, SyncService

    t = _terminal(settings)
    base = url or t.identity.central_url
    if not base:
        raise click.UsageError("no central URL: pass --url or set it at setup")
    service = SyncService(t.journal, t.identity, t.trust, HttpTransport(base), now=lambda: settings.now)
    report = service.sync()
    click.echo(
        f"batches made {report.batches_made}, sent {report.batches_sent} ({report.duplicates} already held), "
        f"records {report.records_sent}, fallbacks {report.fallbacks_sent}; "
        f"downloaded: {', '.join(report.downloads) or 'nothing'}"
    )
    if report.reason is not None:
        _refuse(SyncError(report.reason, report.error or ""))


def _limits_text(limits: Any) -> str:
    return (
        f"{limits.count} of {limits.max_count} debits, {limits.amount} of {limits.max_amount} paise "
        f"since counter {limits.synced_counter}"
    )


def _echo_authorisations(visit: Any) -> None:
    """What central's authorisations did at this insertion (the refreshed limits first)."""
    applied = visit.authorisations
    if applied.limits_renewed:
        click.echo(
            f"central's sync acknowledgement presented: offline limits now {_limits_text(applied.limits)}"
        )
    for r in applied.top_ups:
        click.echo(
            f"central's top-up presented: +{r.amount} paise on scheme {r.scheme_id}, "
            f"balance {r.balance_after} paise (card counter {r.counter})"
        )
    for auth_id, why in applied.refused:
        click.echo(f"central's authorisation {auth_id} not taken: {why}", err=True)


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """How long offline, what waits for central, and each card's offline limits as last read."""
    from point_of_service.services.offline import offline_summary

    t = _terminal(settings)
    summary = offline_summary(t.journal, settings.now)
    s = summary.status
    offline = (
        "never synced" if s.seconds_offline is None else f"{s.seconds_offline / 3600:.1f} h since last sync"
    )
    click.echo(
        f"terminal {t.identity.chr}: {offline}; {s.pending_batches} batches and "
        f"{s.unbatched_records} records waiting"
    )
    for c in summary.cards:
        line = f"  card {c.card_id}:"
        if c.unsent_records:
            age = (settings.now - (c.oldest_unsent or settings.now)) / 86_400
            line += (
                f" {c.unsent_records} records ({c.unsent_paise} paise debited, oldest {age:.1f} days)"
                " not yet at central;"
            )
        else:
            line += " every record at central;"
        if c.limits is not None and c.read_at is not None:
            when = datetime.fromtimestamp(c.read_at, UTC).strftime("%Y-%m-%d %H:%M")
            how = " (reset by central's acknowledgement)" if c.renewed else ""
            line += f" offline limits at {when}{how}: {_limits_text(c.limits)}"
        if c.ack_waiting is not None:
            line += f"; central's acknowledgement up to counter {c.ack_waiting} waits for the card"
        click.echo(line)


@main.command()
@click.option("--card", "card_id", type=int, default=None)
@click.option("--kind", default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def journal(settings: Settings, card_id: int | None, kind: str | None, limit: int, as_json: bool) -> None:
    """The terminal's journal: every action with operator, time, card, reasons and fallbacks."""
    t = _terminal(settings)
    events = t.journal.events(card_id=card_id, kind=kind, limit=limit)
    if as_json:
        click.echo(json.dumps([e.__dict__ for e in events], default=dict, indent=1))
        return
    for e in events:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))
        click.echo(
            f"{when} {e.kind:<16} {e.outcome:<11} op={e.operator or '-'} card={e.card_id or '-'} "
            f"member={'-' if e.member is None else e.member} reason={e.reason or '-'} "
            f"fallback={e.fallback or '-'} {extra}"
        )


# ------------------------------------------------------------------------------------------ bench
@main.group()
def bench() -> None:
    """Benchmarks (each figure printed beside its ceiling)."""


@bench.command("verify")
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option(
    "--json", "json_out", default=None, help="also write the figures as JSON to this file ('-': stdout)"
)
def bench_verify(rounds: int, json_out: str | None) -> None:
    """One full verification through pcscd + vpcd, fingerprint included: APDUs, bytes, CPU ms, wall ms."""
    from point_of_service.bench import report_lines, run

    result = run(rounds, on_wait=lambda m: click.echo(f"[bench] {m}", err=True))
    if json_out == "-":
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo("\n".join(report_lines(result)))
        if json_out:
            Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
    if not result["ok"]:
        sys.exit(1)


def _register_web() -> None:
    from point_of_service.web.serve import register

    register(main)


_register_web()


def run_cli(argv: Sequence[str]) -> None:
    main(list(argv))
