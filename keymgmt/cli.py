"""Command line of keymgmt. Thin: every subcommand calls a KeyManager method and prints its outcome.

Secrets (key passphrases, token PINs) are read from environment variables when set (for scripted
ceremonies and tests) and otherwise prompted for without echo; they are never printed or logged.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from cardsvc.pki.chain import explain
from cardsvc.pki.errors import PkiError, ValidationError
from cardsvc.pki.revocation import RevocationReason, SubjectKind
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import ScryptCost, find_softhsm_module
from keymgmt.keystore import HOME_ENV, default_home
from keymgmt.service import Custody, FileCustody, KeyManager, Pkcs11Custody

ROOT_SECRET_ENV = "KEYMGMT_ROOT_SECRET"
DISTRICT_SECRET_ENV = "KEYMGMT_DISTRICT_SECRET"
NEW_KEY_SECRET_ENV = "KEYMGMT_NEW_KEY_SECRET"
TERMINAL_PASSPHRASE_ENV = "KEYMGMT_TERMINAL_PASSPHRASE"
OFFICER_PIN_ENV = "KEYMGMT_OFFICER_PIN"
SCRYPT_N_ENV = "KEYMGMT_SCRYPT_N"  # tests only: a cheaper scrypt cost

TERMINAL_TYPES = {"enrolment": Role.ENROLMENT_TERMINAL, "pos": Role.POS_TERMINAL}
OFFICER_TYPES = {"fko": Role.FIELD_KEY_OFFICER, "facility-operator": Role.FACILITY_OPERATOR}


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _secret(env: str, label: str, *, confirm: bool = False) -> str:
    value = os.environ.get(env)
    if value:
        return value
    entered: str = click.prompt(label, hide_input=True, confirmation_prompt=confirm)
    return entered


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


def _run(action: Callable[[], Any]) -> Any:
    """Run a service call; turn every PKI error into one clear line and exit status 1."""
    try:
        return action()
    except ValidationError as exc:
        _fail(explain(exc))
    except PkiError as exc:
        _fail(f"error ({exc.rule}): {exc.message}")
    except (ValueError, OSError) as exc:
        _fail(f"error: {exc}")


def _manager(ctx: click.Context) -> KeyManager:
    obj: KeyManager = ctx.obj
    return obj


def _rights(text: str | None) -> Right | None:
    return None if text is None else Right.parse_names(text)


def _custody(kind: str, module: str | None, token: str | None, key_label: str, secret_label: str) -> Custody:
    if kind == "file":
        return FileCustody(
            _secret(NEW_KEY_SECRET_ENV, f"passphrase for the new {secret_label} key", confirm=True).encode()
        )
    module = module or find_softhsm_module()
    if not module or not token:
        _fail("error: PKCS#11 custody needs --token (and --pkcs11-module if SoftHSM2 is not installed)")
    pin = _secret(NEW_KEY_SECRET_ENV, f"user PIN of token {token}")
    return Pkcs11Custody(module=module, token=token, pin=pin, key_label=key_label)


def holder_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--district, --rights and --years of every certificate a district issues (terminals, officers)."""
    f = click.option("--years", default=3, show_default=True, help="Validity (capped at the district's).")(f)
    f = click.option("--rights", default=None, help="Comma-separated rights (default: by role, keymgmt.md).")(
        f
    )
    return click.option("--district", required=True, help="Reference of the certifying district.")(f)


def custody_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--key-label", default=None, help="Label of the key in the token (default: the reference)."
    )(f)
    f = click.option("--token", default=None, help="PKCS#11 token label (custody pkcs11).")(f)
    f = click.option("--pkcs11-module", default=None, envvar="PKCS11_MODULE", help="PKCS#11 module path.")(f)
    f = click.option(
        "--custody",
        type=click.Choice(["file", "pkcs11"]),
        default="file",
        show_default=True,
        help="Where the new private key lives: encrypted file in the keystore, or a PKCS#11 token.",
    )(f)
    return f


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=HOME_ENV,
    default=None,
    help=f"Keystore directory (env {HOME_ENV}; default ~/.keymgmt).",
)
@click.option(
    "--actor", envvar="KEYMGMT_ACTOR", default=None, help="Who acts (audit log); default: login name."
)
@click.option("--now", "now_text", default=None, hidden=True, help="Fixed clock (ISO time) for rehearsals.")
@click.pass_context
def main(ctx: click.Context, home: Path | None, actor: str | None, now_text: str | None) -> None:
    """Key management: root, districts, officer cards, terminals, revocation, audit."""
    fixed = _parse_time(now_text) if now_text else None
    n_env = os.environ.get(SCRYPT_N_ENV)
    ctx.obj = KeyManager(
        home or default_home(),
        actor=actor or getpass.getuser(),
        now=(lambda: fixed) if fixed else (lambda: datetime.now(UTC)),
        scrypt_cost=ScryptCost(n=int(n_env)) if n_env else None,
    )


@main.command("init-root")
@click.argument("reference")
@custody_options
@click.option("--years", default=20, show_default=True)
@click.pass_context
def init_root(
    ctx: click.Context,
    reference: str,
    custody: str,
    pkcs11_module: str | None,
    token: str | None,
    key_label: str | None,
    years: int,
) -> None:
    """Create the root key and its self-signed certificate (REFERENCE, e.g. INROOT00001)."""
    c = _custody(custody, pkcs11_module, token, key_label or reference, "root")
    cert = _run(lambda: _manager(ctx).init_root(reference, c, years=years))
    click.echo(f"root created: {cert.describe()}")


@main.command("add-district")
@click.argument("reference")
@custody_options
@click.option("--rights", default=None, help="Comma-separated rights (default: all).")
@click.option("--years", default=10, show_default=True)
@click.pass_context
def add_district(
    ctx: click.Context,
    reference: str,
    custody: str,
    pkcs11_module: str | None,
    token: str | None,
    key_label: str | None,
    rights: str | None,
    years: int,
) -> None:
    """Create a district (DKMA) key and certify it under the root."""
    m = _manager(ctx)
    root_secret = _secret(ROOT_SECRET_ENV, "root key passphrase / PIN")
    c = _custody(custody, pkcs11_module, token, key_label or reference, "district")
    cert = _run(
        lambda: m.add_district(reference, c, root_secret=root_secret, rights=_rights(rights), years=years)
    )
    click.echo(f"district added: {cert.describe()}")


@main.command("register-terminal")
@click.argument("reference")
@holder_options
@click.option("--type", "kind", type=click.Choice(sorted(TERMINAL_TYPES)), required=True)
@click.pass_context
def register_terminal(
    ctx: click.Context, reference: str, district: str, kind: str, rights: str | None, years: int
) -> None:
    """Generate a terminal key (encrypted at rest) and certify it under a district."""
    m = _manager(ctx)
    d_secret = _secret(DISTRICT_SECRET_ENV, f"key passphrase / PIN of {district}")
    t_pass = _secret(TERMINAL_PASSPHRASE_ENV, "passphrase for the terminal key", confirm=True).encode()
    cert = _run(
        lambda: m.register_terminal(
            reference,
            district=district,
            role=TERMINAL_TYPES[kind],
            district_secret=d_secret,
            terminal_passphrase=t_pass,
            rights=_rights(rights),
            years=years,
        )
    )
    click.echo(f"terminal registered: {cert.describe()}")


@main.command("issue-officer")
@click.argument("reference")
@holder_options
@click.option("--role", "kind", type=click.Choice(sorted(OFFICER_TYPES)), required=True)
@click.option("--public-key", default=None, help="Officer's public point (hex, 65 bytes) read from the card.")
@click.option("--generate-key", is_flag=True, help="Demo without a card: generate the key here, encrypted.")
@click.pass_context
def issue_officer(
    ctx: click.Context,
    reference: str,
    district: str,
    kind: str,
    public_key: str | None,
    generate_key: bool,
    rights: str | None,
    years: int,
) -> None:
    """Certify an officer (FKO or facility operator) under a district."""
    m = _manager(ctx)
    if bool(public_key) == generate_key:
        _fail("error: give exactly one of --public-key HEX or --generate-key")
    d_secret = _secret(DISTRICT_SECRET_ENV, f"key passphrase / PIN of {district}")
    point: bytes | None = None
    key_custody: Custody | None = None
    if public_key:
        try:
            point = bytes.fromhex(public_key)
        except ValueError:
            _fail("error: --public-key must be hex")
    else:
        key_custody = FileCustody(
            _secret(NEW_KEY_SECRET_ENV, "passphrase for the officer key", confirm=True).encode()
        )
    cert = _run(
        lambda: m.issue_officer(
            reference,
            district=district,
            role=OFFICER_TYPES[kind],
            district_secret=d_secret,
            public_point=point,
            key_custody=key_custody,
            rights=_rights(rights),
            years=years,
        )
    )
    click.echo(f"officer certified: {cert.describe()}")


@main.command("personalise-officer-card")
@click.argument("reference")
@holder_options
@click.option("--role", "kind", type=click.Choice(sorted(OFFICER_TYPES)), required=True)
@click.option("--reader", required=True, help="PC/SC reader holding the blank officer card.")
@click.option(
    "--template",
    "templates",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Officer fingerprint template: compact minutiae, raw or 7F2E-wrapped (repeat per finger).",
)
@click.pass_context
def personalise_officer_card(
    ctx: click.Context,
    reference: str,
    district: str,
    kind: str,
    reader: str,
    templates: tuple[Path, ...],
    rights: str | None,
    years: int,
) -> None:
    """Personalise a blank officer card: key on the card, certificate, fingerprints, PIN, lock."""
    from cardsvc.bio.iso19794 import wrap_verify_template
    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.pki.officer_card import OfficerCardSession

    m = _manager(ctx)
    wrapped: list[bytes] = []
    for path in templates:
        raw = path.read_bytes()
        try:
            wrapped.append(raw if raw[:2] == b"\x7f\x2e" else wrap_verify_template(raw))
        except ValueError as exc:
            _fail(f"error: template {path}: {exc}")
    d_secret = _secret(DISTRICT_SECRET_ENV, f"key passphrase / PIN of {district}")
    pin = _secret(OFFICER_PIN_ENV, "the officer's new PIN (4-12 digits)", confirm=True)
    conn = _run(lambda: PcscConnection(reader, exclusive=True))
    try:
        session = _run(lambda: OfficerCardSession(conn))
        cert = _run(
            lambda: m.personalise_officer_card(
                session,
                reference,
                district=district,
                role=OFFICER_TYPES[kind],
                district_secret=d_secret,
                pin=pin,
                templates=wrapped,
                rights=_rights(rights),
                years=years,
            )
        )
    finally:
        conn.close()
    click.echo(f"officer card personalised: {cert.describe()}")


@main.command("unblock-officer-card")
@click.option("--reader", required=True, help="PC/SC reader holding the blocked officer card.")
@click.option("--district", required=True, help="Reference of the district that issued the card (this DKMA).")
@click.option("--pin", "unblock_pin", is_flag=True, help="Unblock the PIN: the officer chooses a new one.")
@click.option("--fingerprint", "unblock_finger", is_flag=True, help="Give the fingerprint its tries back.")
@click.pass_context
def unblock_officer_card(
    ctx: click.Context, reader: str, district: str, unblock_pin: bool, unblock_finger: bool
) -> None:
    """Unblock an officer card's PIN (new PIN, typed twice by the officer) and/or fingerprint check."""
    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.pki.officer import Unblock
    from cardsvc.pki.officer_card import OfficerCardSession

    if not (unblock_pin or unblock_finger):
        _fail("error: say what to unblock: --pin, --fingerprint or both")
    what = Unblock(0)
    if unblock_pin:
        what |= Unblock.PIN
    if unblock_finger:
        what |= Unblock.FINGERPRINT
    m = _manager(ctx)
    d_secret = _secret(DISTRICT_SECRET_ENV, f"key passphrase / PIN of {district}")
    new_pin: str | None = None
    if unblock_pin:  # typed twice by the officer, never by the DKMA staff
        new_pin = _secret(OFFICER_PIN_ENV, "the officer's new PIN (4-12 digits)", confirm=True)
    conn = _run(lambda: PcscConnection(reader, exclusive=True))
    try:
        cert = _run(
            lambda: m.unblock_officer_card(
                OfficerCardSession(conn),
                district=district,
                district_secret=d_secret,
                what=what,
                new_pin=new_pin,
            )
        )
    finally:
        conn.close()
    click.echo(f"officer card unblocked ({what.describe()}): {cert.describe()}")


@main.command("read-ledger")
@click.option("--reader", required=True, help="PC/SC reader holding the officer card.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def read_ledger(ctx: click.Context, reader: str, json_out: Path | None) -> None:
    """Read and verify an officer card's activation ledger (e.g. after a camp, for payment)."""
    import json

    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.pki.officer_card import OfficerCardSession

    m = _manager(ctx)
    conn = _run(lambda: PcscConnection(reader, exclusive=True))
    try:
        ledger = _run(lambda: m.read_officer_ledger(OfficerCardSession(conn)))
    finally:
        conn.close()
    click.echo(f"ledger of {ledger.officer.chr}: {len(ledger.entries)} activation(s), verified")
    for e in ledger.entries:
        click.echo(f"{e.seq:>5} {e.when:%Y-%m-%dT%H:%M:%SZ} {e.card_chr}")
    if json_out is not None:
        doc = {
            "officer": ledger.officer.chr,
            "head": ledger.head.hex(),
            "activations": [
                {"seq": e.seq, "time": e.when.strftime("%Y-%m-%dT%H:%M:%SZ"), "card": e.card_chr,
                 "body_sha256": e.body_hash.hex()}
                for e in ledger.entries
            ],
        }  # fmt: skip
        json_out.write_text(json.dumps(doc, indent=1) + "\n")


@main.command()
@click.argument("subject")
@click.option(
    "--by", "by", required=True, help="Revoking authority: the root or the district that certified it."
)
@click.option(
    "--reason", type=click.Choice([r.name.lower() for r in RevocationReason]), default="unspecified"
)
@click.option("--kind", type=click.Choice([k.name.lower() for k in SubjectKind]), default=None)
@click.option("--at", "at_text", default=None, help="Revocation time (ISO, UTC); default now.")
@click.pass_context
def revoke(
    ctx: click.Context, subject: str, by: str, reason: str, kind: str | None, at_text: str | None
) -> None:
    """Record a revocation; `publish` puts it into the next signed list."""
    m = _manager(ctx)
    entry = _run(
        lambda: m.revoke(
            subject,
            by=by,
            reason=RevocationReason[reason.upper()],
            kind=SubjectKind[kind.upper()] if kind else None,
            at=_parse_time(at_text) if at_text else None,
        )
    )
    click.echo(
        f"revoked {entry.subject} ({entry.kind.name}) at {entry.revoked_at:%Y-%m-%dT%H:%M:%SZ}; "
        "publish to take effect"
    )


@main.command()
@click.option("--by", "by", required=True, help="Issuer of the list (root or district reference).")
@click.pass_context
def publish(ctx: click.Context, by: str) -> None:
    """Sign and store the next version of an issuer's revocation list."""
    m = _manager(ctx)
    is_root = _run(lambda: m.store.root_certificate().chr == by)
    secret = _secret(ROOT_SECRET_ENV if is_root else DISTRICT_SECRET_ENV, f"key passphrase / PIN of {by}")
    rl, path = _run(lambda: m.publish(by=by, secret=secret))
    click.echo(f"published {rl.issuer} v{rl.version} with {len(rl.entries)} entries: {path}")


@main.command()
@click.argument("reference")
@click.pass_context
def show(ctx: click.Context, reference: str) -> None:
    """Show a holder's certificate chain, top first."""
    m = _manager(ctx)
    root = _run(lambda: m.store.root_certificate())
    certs = _run(lambda: m.chain(reference))
    for depth, cert in enumerate([root, *certs]):
        click.echo("  " * depth + cert.describe())


@main.command()
@click.argument("reference")
@click.option("--at", "at_text", default=None, help="Validate at this time (ISO); default now.")
@click.option("--require", "require", default=None, help="Rights the holder must have, comma-separated.")
@click.pass_context
def verify(ctx: click.Context, reference: str, at_text: str | None, require: str | None) -> None:
    """Validate a holder's chain as a terminal would (root key + published lists). Exit 1 if refused."""
    m = _manager(ctx)
    required = _rights(require) or Right.NONE
    result = _run(
        lambda: m.verify(reference, at=_parse_time(at_text) if at_text else None, required=required)
    )
    click.echo(f"valid: {result.leaf.describe()}")


@main.command("verify-chain")
@click.argument("chain_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Trust bundle (root + lists) to verify against; default: this keystore's root and lists.",
)
@click.option("--at", "at_text", default=None, help="Validate at this time (ISO); default now.")
@click.option("--require", "require", default=None, help="Rights the holder must have, comma-separated.")
@click.pass_context
def verify_chain(
    ctx: click.Context, chain_file: Path, bundle: Path | None, at_text: str | None, require: str | None
) -> None:
    """Validate a chain file (concatenated CV certificates, as export-chain writes) as a terminal would."""
    from cardsvc.pki.cvc import CvCertificate
    from cardsvc.pki.errors import FormatError
    from cardsvc.tlv import strict_codec

    parse_all = strict_codec(FormatError).parse_all

    m = _manager(ctx)
    required = _rights(require) or Right.NONE
    at = _parse_time(at_text) if at_text else None

    def check() -> str:
        certs = [CvCertificate.parse(item.encoded) for item in parse_all(chain_file.read_bytes())]
        return m.verify_certificates(certs, bundle=bundle, at=at, required=required).leaf.describe()

    click.echo(f"valid: {_run(check)}")


@main.command("export-chain")
@click.argument("reference")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def export_chain(ctx: click.Context, reference: str, out: Path) -> None:
    """Write the root certificate and REFERENCE's chain (concatenated CV certificates) to OUT."""
    m = _manager(ctx)
    certs = _run(lambda: [m.store.root_certificate(), *m.chain(reference)])
    out.write_bytes(b"".join(c.encode() for c in certs))
    click.echo(f"wrote {len(certs)} certificates to {out}")


@main.command("export-bundle")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def export_bundle(ctx: click.Context, out: Path) -> None:
    """Write the trust bundle terminals carry (root, districts, newest revocation lists) to OUT."""
    m = _manager(ctx)
    bundle = _run(lambda: m.export_bundle(out))
    lists = ", ".join(f"{rl.issuer} v{rl.version}" for rl in bundle.lists) or "no lists"
    click.echo(
        f"bundle written to {out}: root {bundle.root.chr}, {len(bundle.districts)} district(s), {lists}"
    )


@main.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check every entry's hash chain and signature; name the first tampered entry."""
    m = _manager(ctx.find_root())
    count = _run(lambda: m.verify_audit())
    _, head = m.audit.head()
    click.echo(f"audit log intact: {count} entries, head {head}")


@audit.command("show")
@click.pass_context
def audit_show(ctx: click.Context) -> None:
    """Print the log, one entry a line."""
    m = _manager(ctx.find_root())
    for e in _run(lambda: list(m.audit.entries())):
        signed = f" signed-by={e['signer']}" if "sig" in e else ""
        click.echo(f"{e['seq']:>5} {e['time']} {e['actor']:<12} {e['action']:<18} {e['subject']}{signed}")


@main.command()
@click.option("--rounds", default=500, show_default=True, help="Repetitions behind each median.")
def bench(rounds: int) -> None:
    """Print PKI speed figures beside their ceilings; exit 1 if one is over (docs/keymgmt.md)."""
    from cardsvc.pki.bench import main as bench_main

    sys.exit(bench_main(rounds=rounds))
