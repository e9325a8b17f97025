"""`cardsvc demo`: a district pilot on simulated hardware, through the real PC/SC stack.

Thin orchestration over the services: keymgmt runs the key ceremony, enrolment_station the camp,
point_of_service the hospital and the paypoint, cardsvc.central the ingest and reconciliation. Cards are
SimulatedCards served to pcscd through vpcd and reached with pyscard; fingers go through the sensor simulator
on a pty and pyfingerprint. Every attack is really attempted, and counted from the refusal reason the system
itself gave (never assumed). Stages that a service does not offer yet say so in the summary.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.pcscd import VPCD_PORTS, PcscdHandle, ensure_pcscd, wait_for_card_state
from cardsvc.card.session import Iso7816Session
from cardsvc.demo_world import (
    CLERK_PIN,
    DEDUP_PASSPHRASE,
    DISTRICT,
    DISTRICT_SECRET,
    FACILITY_ID,
    FKO,
    FKO_PIN,
    HEALTH_COVER,
    HOSPITAL_CLERK,
    HOSPITAL_CLERK_FINGER,
    PAYPOINT_CLERK,
    PAYPOINT_CLERK_FINGER,
    PENSION_COVER,
    POS,
    POS_PASSPHRASE,
    ROOT,
    ROOT_SECRET,
    SCHEME_HEALTH,
    SCHEME_PENSION,
    STATION,
    STATION_PASSPHRASE,
    STRUCK_OFF_CLERK,
    STRUCK_OFF_FINGER,
    CentralServer,
    Slot,
    eligibility_csv,
    household_id,
    utc_now,
)

Echo = Callable[[str], None]

#: Central's own coverage and use report is written here, inside the demo's report directory.
CENTRAL_REPORT_SUBDIR = "central"

#: The keys of the JSON summary every caller may rely on (docs/demo.md).
SUMMARY_KEYS = (
    "households_requested",
    "households_enrolled",
    "cards_activated",
    "verifications_accepted",
    "impostors_refused",
    "clones_refused",
    "tampered_refused",
    "revoked_refused",
    "torn_debits_recovered",
    "terminal_crashes_recovered",
    "double_debits",
    "transactions_total",
    "transactions_reconciled",
    "flags",
    "attacks_attempted",
    "attacks_refused",
    "stage_seconds",
    "missing",
    "report",
    "failed_stage",
    "settlement",
    "duplicates_flagged",
    "central_report",
)


@dataclass
class DemoSummary:
    """What the demo did, as a plain table and as JSON."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, label: str, value: Any, key: str | None = None) -> None:
        self.rows.append((label, str(value)))
        if key is not None:
            self.figures[key] = value


def _step(echo: Echo, text: str) -> None:
    echo(click.style("==> ", fg="cyan") + text)


class DemoError(click.ClickException):
    """A stage could not run (the message says which and why); exit status 1."""


@dataclass
class Pilot:
    """The state the stages hand to each other."""

    root: Path
    pcscd: PcscdHandle
    echo: Echo
    summary: DemoSummary
    km: Any = None
    anchor: Any = None
    fko_card: Any = None
    clerk_cards: dict[str, Any] = field(default_factory=dict)
    cards: dict[str, Any] = field(default_factory=dict)  # household id -> SimulatedCard
    station_seconds: dict[str, float] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)  # reason values the system gave
    attempts: Counter[str] = field(default_factory=Counter)  # attacks tried, by kind
    accepted: int = 0
    torn_recovered: int = 0
    crashes_recovered: int = 0
    transactions: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    started: int = field(default_factory=lambda: int(time.time()))
    failed: str | None = None
    terminal: Any = None  # the POS terminal after the field stage (cardsvc.demo_field.Terminal)
    report_dir: Path | None = None  # where central's report and the demo's page are written

    @property
    def dedup_key_file(self) -> Path:
        """Central's de-duplication key, encrypted at rest (the station holds only its public point)."""
        return self.root / "central" / "dedup.key"


def run_demo(
    *,
    households: int = 20,
    json_path: str | None = None,
    echo: Echo = click.echo,
    workdir: Path | None = None,
    report_dir: Path | None = None,
) -> DemoSummary:
    """Run the pilot; print progress and a summary table; write the HTML report and optionally JSON."""
    if households < 2:
        raise click.BadParameter("the pilot needs at least 2 households (one is used for the clone attack)")
    summary = DemoSummary()
    summary.figures["households_requested"] = households
    with tempfile.TemporaryDirectory(prefix="cardsvc-demo-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        _step(echo, "PC/SC: making sure pcscd runs with the vpcd readers")
        out_dir = (
            Path(report_dir)
            if report_dir
            else (
                Path(json_path).resolve().parent / "demo-report" if json_path else Path.cwd() / "demo-report"
            )
        )
        with ensure_pcscd(on_wait=echo) as pcscd:
            summary.add("pcscd", f"pid {pcscd.pid} ({'started' if pcscd.started_here else 'reused'})")
            pilot = Pilot(root, pcscd, echo, summary, report_dir=out_dir)
            stages: list[tuple[str, Callable[[Pilot], None]]] = [
                ("platform", _platform),
                ("ceremony", _ceremony),
                ("camp", lambda p: _camp(p, households)),
                ("field", _field),
                ("central", _central),
            ]
            for name, stage in stages:
                t0 = time.perf_counter()
                try:
                    stage(pilot)
                except Exception as exc:  # the summary still shows what ran; the exit status says it failed
                    click.echo(traceback.format_exc(), err=True)
                    pilot.failed = f"{name}: {type(exc).__name__}: {exc}"
                    echo(click.style(f"stage {name} FAILED: {type(exc).__name__}: {exc}", fg="red"))
                    break
                finally:
                    pilot.stage_seconds[name] = round(time.perf_counter() - t0, 2)
        _finish(pilot)
        summary.figures["report"] = _write_report(pilot, out_dir)
    _print_table(summary, echo)
    if json_path:
        Path(json_path).write_text(json.dumps(summary.figures, indent=2, sort_keys=True) + "\n")
        echo(f"summary written to {json_path}")
    if pilot.failed:
        raise DemoError(f"the demo stopped: stage {pilot.failed}")
    failed = [name for name, ok in summary.figures.get("checks", {}).items() if not ok]
    if failed:
        raise DemoError(f"the pilot ran but these checks failed: {', '.join(failed)}")
    return summary


# ----------------------------------------------------------------------------------------------- stages
def _platform(p: Pilot) -> None:
    """The card platform alone: a generic card through pcscd + vpcd, its limits and APDU round trip."""
    from hardware_sims.card.apps.generic import GENERIC_AID, GenericApplication
    from hardware_sims.card.cardos import SimulatedCard
    from hardware_sims.card.vpcd import VpcdCardServer

    reader = p.pcscd.reader(0)
    _step(p.echo, f"platform: a simulated 32 KB card on '{reader}' (vpcd port {VPCD_PORTS[0]})")
    state = p.root / "platform-card"
    state.mkdir(parents=True, exist_ok=True)
    card = SimulatedCard(state, applications=[GenericApplication(big_file_size=8192)])
    with VpcdCardServer(card, port=VPCD_PORTS[0]):
        wait_for_card_state(reader, present=True)
        with PcscConnection(reader, exclusive=True) as conn:
            session = Iso7816Session(conn)
            limits = session.read_limits()
            p.summary.add("ATR", conn.atr.hex(" ").upper(), "atr")
            p.summary.add(
                "card limits (command / response data bytes)",
                f"{limits.max_command_data} / {limits.max_response_data}"
                f"{' (extended length)' if limits.extended_length else ''}",
            )
            session.select_aid(GENERIC_AID)
            rounds = 100
            t0 = time.perf_counter()
            for _ in range(rounds):
                session.get_challenge(8)
            per_apdu_ms = (time.perf_counter() - t0) * 1000 / rounds
    wait_for_card_state(reader, present=False)
    p.summary.add("short APDU round trip through pcscd + vpcd", f"{per_apdu_ms:.3f} ms (mean of {rounds})")
    p.summary.figures["apdu_round_trip_ms"] = round(per_apdu_ms, 4)


def _officer_card(p: Pilot, name: str, anchor: Any) -> Any:
    from hardware_sims.card.apps.officer import OfficerApplication
    from hardware_sims.card.cardos import SimulatedCard

    state = p.root / "cards" / name
    state.mkdir(parents=True)
    return SimulatedCard(state, applications=[OfficerApplication(anchor=anchor)])


def _officer_template(seed: int) -> bytes:
    """The officer's enrolment template (impression 0 of the synthetic finger), as officer cards store it."""
    from cardsvc.bio.extract import extract_template
    from cardsvc.bio.iso19794 import encode_compact, wrap_verify_template
    from hardware_sims.fingers.impression import impression

    return wrap_verify_template(
        encode_compact(extract_template(impression(seed, 0, "good")), max_minutiae=60)
    )


def _ceremony(p: Pilot) -> None:
    """Root, district, station and POS terminals, the FKO card and the facility operator cards (each
    personalised through pcscd), a struck-off facility revoked, the list published, the trust bundle."""
    from cardsvc.pki.officer_card import OfficerCardSession
    from cardsvc.pki.rights import Right, Role
    from cardsvc.pki.signer import FileSigner, ScryptCost
    from enrolment_station.fingers import FKO_FINGER_SEED
    from enrolment_station.keys import install as install_station
    from keymgmt.service import FileCustody, KeyManager
    from point_of_service.identity import install as install_pos
    from point_of_service.identity import reference_id

    echo = p.echo
    _step(echo, "key ceremony: root, district, terminals, officer cards")
    km = KeyManager(p.root / "keymgmt", actor="dkma-demo", now=utc_now, scrypt_cost=ScryptCost(n=2**12))
    km.init_root(ROOT, FileCustody(ROOT_SECRET.encode()))
    km.add_district(DISTRICT, FileCustody(DISTRICT_SECRET.encode()), root_secret=ROOT_SECRET)
    km.register_terminal(
        STATION,
        district=DISTRICT,
        role=Role.ENROLMENT_TERMINAL,
        district_secret=DISTRICT_SECRET,
        terminal_passphrase=STATION_PASSPHRASE,
        rights=Right.ENROL | Right.READ_PROFILE | Right.READ_TEMPLATES | Right.RENEW,
    )
    km.register_terminal(
        POS,
        district=DISTRICT,
        role=Role.POS_TERMINAL,
        district_secret=DISTRICT_SECRET,
        terminal_passphrase=POS_PASSPHRASE,
    )
    echo(f"    root {ROOT}, district {DISTRICT}, terminals {STATION} and {POS}")
    slot = Slot(p.pcscd, 1)
    officers = [
        (FKO, Role.FIELD_KEY_OFFICER, FKO_PIN, FKO_FINGER_SEED),
        (HOSPITAL_CLERK, Role.FACILITY_OPERATOR, CLERK_PIN, HOSPITAL_CLERK_FINGER),
        (PAYPOINT_CLERK, Role.FACILITY_OPERATOR, CLERK_PIN, PAYPOINT_CLERK_FINGER),
        (STRUCK_OFF_CLERK, Role.FACILITY_OPERATOR, CLERK_PIN, STRUCK_OFF_FINGER),
    ]
    try:
        for chr_, role, pin, seed in officers:
            card = _officer_card(p, chr_, km.anchor())
            slot.serve(card)
            with slot.connect() as conn:
                km.personalise_officer_card(
                    OfficerCardSession(conn),
                    chr_,
                    district=DISTRICT,
                    role=role,
                    district_secret=DISTRICT_SECRET,
                    pin=pin,
                    templates=[_officer_template(seed)],
                )
            p.clerk_cards[chr_] = card
            echo(f"    officer card {chr_} ({role.name}) personalised through pcscd: key made on the card")
    finally:
        slot.pull()
        slot.close()
    p.fko_card = p.clerk_cards.pop(FKO)
    km.revoke(STRUCK_OFF_CLERK, by=DISTRICT)
    km.publish(by=DISTRICT, secret=DISTRICT_SECRET)
    echo(f"    {STRUCK_OFF_CLERK} revoked (facility struck off); district list published")
    bundle_dir = p.root / "bundle"
    km.export_bundle(bundle_dir)
    chains = {}
    for chr_ in (STATION, POS):
        chain_file = p.root / f"{chr_}.chain"
        chain_file.write_bytes(b"".join(c.encode() for c in [km.store.root_certificate(), *km.chain(chr_)]))
        chains[chr_] = chain_file
    # Central's de-duplication key: made once, encrypted at rest; the station gets only its public point.
    FileSigner.create(p.dedup_key_file, DEDUP_PASSPHRASE, cost=ScryptCost(n=2**12))
    install_station(
        p.root / "station",
        key_file=km.store.holder_dir(STATION) / "key.enc",
        chain_file=chains[STATION],
        bundle_dir=bundle_dir,
        dedup_point=FileSigner.stored_public_key(p.dedup_key_file),
    )
    install_pos(
        p.root / "pos",
        chain_file=chains[POS],
        key_file=km.store.holder_dir(POS) / "key.enc",
        terminal_id=reference_id(POS),
        facility_id=FACILITY_ID,
    )
    p.km, p.anchor = km, km.anchor()
    p.summary.add(
        "key ceremony",
        f"root, 1 district, 2 terminals, {len(officers)} officer cards, 1 revoked; central dedup key",
    )


@contextlib.contextmanager
def _sensor(p: Pilot) -> Iterator[Any]:
    from hardware_sims.sensor.simulator import SensorSimulator

    sim = SensorSimulator(p.root / "sensor-flash", control_path=p.root / "sensor.sock")
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def _camp(p: Pilot, households: int) -> None:
    """Import the list, FKO opens the camp, every household captured, personalised, activated, handed over;
    the FKO ledger read back and compared; the camp batched for upload."""
    from cardsvc.bio.capture import FingerprintSensor
    from cardsvc.formats.profile import SchemeCover
    from enrolment_station.camp import Camp, HouseholdTimings
    from enrolment_station.fingers import SensorFingerReader
    from enrolment_station.personalise import Policy
    from hardware_sims.card.apps.beneficiary import BeneficiaryApplication
    from hardware_sims.card.cardos import SimulatedCard

    echo = p.echo
    _step(echo, f"enrolment camp: {households} households through pcscd + vpcd and the sensor simulator")
    csv = p.root / "eligibility.csv"
    csv.write_text(eligibility_csv(households))
    policy = Policy(
        schemes=(SchemeCover(SCHEME_HEALTH, HEALTH_COVER), SchemeCover(SCHEME_PENSION, PENSION_COVER))
    )
    fko_slot, ben_slot = Slot(p.pcscd, 1), Slot(p.pcscd, 0)
    timings = HouseholdTimings()
    enrolled = 0
    with _sensor(p) as sim, FingerprintSensor(sim.port) as sensor:
        reader = SensorFingerReader(sensor, placer=sim)
        camp = Camp(
            p.root / "station",
            passphrase=STATION_PASSPHRASE,
            operator="op-meera",
            camp_id="CAMP-PAT-DEMO",
            reader=reader,
            policy=policy,
        )
        try:
            listing = camp.import_list(csv)
            echo(f"    eligibility list: {len(listing.households)} households, {listing.rows} members")
            fko_slot.serve(p.fko_card)
            fko_conn = PcscConnection(fko_slot.reader, exclusive=True)
            camp.open_session(fko_conn, pin=FKO_PIN, fingerprint=reader.officer_probe)
            echo(f"    camp opened by {FKO} (PIN and fingerprint on the FKO card)")
            for i in range(1, households + 1):
                hid = household_id(i)
                number = 4_000_000_000 + i
                state = p.root / "cards" / f"ben-{hid}"
                state.mkdir(parents=True)
                card = SimulatedCard(
                    state, applications=[BeneficiaryApplication(card_id=f"CARD-{number}", anchor=p.anchor)]
                )
                ben_slot.serve(card)
                t0 = time.perf_counter()
                with ben_slot.connect() as conn:
                    result = camp.enrol_household(hid, conn, timings=timings)
                p.station_seconds[hid] = round(time.perf_counter() - t0, 2)
                p.cards[hid] = card
                enrolled += 1
                echo(
                    f"    [{i}/{households}] {hid}: {result.card_id} activated and handed over "
                    f"({p.station_seconds[hid]:.1f} s)"
                )
            ben_slot.pull()
            check = camp.ledger()
            echo(
                f"    FKO ledger read back: {check.ledger_count} activations, "
                f"journal {check.journal_activated} -> {'match' if check.matches else 'MISMATCH'}"
            )
            batches = camp.upload_batches()
            echo(f"    {len(batches)} batch(es) signed and queued for central")
            fko_conn.close()
        finally:
            camp.close()
            fko_slot.close()
            ben_slot.close()
    p.summary.add("households enrolled", enrolled, "households_enrolled")
    p.summary.add("cards activated (FKO ledger)", check.ledger_count, "cards_activated")
    p.summary.figures["fko_ledger_matches"] = check.matches
    mean = sum(p.station_seconds.values()) / max(1, len(p.station_seconds))
    p.summary.add("station time per household", f"{mean:.1f} s mean", "station_seconds_per_household")
    p.summary.figures["station_seconds_per_household"] = round(mean, 2)
    p.summary.figures["station_parts_seconds"] = {k: round(v, 2) for k, v in timings.parts.items()}


# ------------------------------------------------------------------------------------------------- field
def _now() -> int:
    return int(time.time())


def _field(p: Pilot) -> None:
    """Hospital then paypoint, and the attacks (cardsvc/demo_field.py)."""
    from cardsvc.demo_field import run_field

    with _sensor(p) as sim:
        p.terminal, counters = run_field(p, sim)
    p.accepted = counters["accepted"]
    p.torn_recovered = counters["torn"]
    p.crashes_recovered = counters["crash"]


def _central(p: Pilot) -> None:
    """Central on a real HTTP socket: the station and the POS upload, central reconciles."""
    from sqlalchemy import func, select

    from cardsvc.central.models import FlagRow, TransactionRow
    from cardsvc.central.services.dedup import deduplicate, load_dedup_key
    from cardsvc.central.services.reconcile import reconcile
    from cardsvc.central.services.reports import build_report
    from cardsvc.central.services.reports import write_report as write_central_report
    from cardsvc.central.services.terminals import add_facility, register_terminal
    from cardsvc.pki.signer import load_public_point
    from enrolment_station.journal import Journal as StationJournal
    from enrolment_station.keys import StationIdentity
    from enrolment_station.upload import send_pending
    from point_of_service.identity import reference_id
    from point_of_service.services.sync import HttpTransport, SyncService

    echo = p.echo
    term = p.terminal
    _step(echo, "central: terminals registered, camp and transactions uploaded over HTTP, reconciled")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines in the demo's output
    with CentralServer(p.root / "central.sqlite") as central:
        with central.session() as session:
            add_facility(session, FACILITY_ID, "District Hospital Patna", DISTRICT, 25.61, 85.14)
            for chr_ in (STATION, POS):
                cert = p.km.store.certificate(chr_)
                key = load_public_point(cert.public_point)
                register_terminal(
                    session,
                    reference_id(chr_),
                    key,
                    _now() - 3600,
                    facility_id=FACILITY_ID if chr_ == POS else None,
                )
            session.commit()
        station = StationIdentity.load(p.root / "station", STATION_PASSPHRASE, now=utc_now())
        with StationJournal(p.root / "station" / "journal.sqlite", now=utc_now, operator="op-meera") as sj:
            receipts = send_pending(sj, station, central.url, now=utc_now)
        echo(f"    station: {len(receipts)} batch(es) accepted by central")
        with central.session() as session:
            dedup = deduplicate(session, load_dedup_key(p.dedup_key_file, DEDUP_PASSPHRASE), _now())
        echo(
            f"    de-duplication: {dedup.searched_cards} card(s) searched against "
            f"{dedup.gallery_templates} sealed template(s); {dedup.new_flags} card(s) flagged"
        )
        sync = SyncService(term.journal, term.identity, term.trust, HttpTransport(central.url), now=_now)
        report = sync.sync()
        if report.error:
            raise DemoError(f"POS sync failed: {report.error}")
        echo(
            f"    POS: {report.batches_sent} batch(es), {report.records_sent} records sent; "
            f"downloaded {', '.join(report.downloads)}"
        )
        again = sync.sync()  # a second sync sends nothing new
        with central.session() as session:
            rec = reconcile(session, _now())
            session.commit()
            flags = Counter(session.scalars(select(FlagRow.kind)).all())
            held = dict(
                session.execute(
                    select(TransactionRow.card_id, func.count()).group_by(TransactionRow.card_id)
                ).all()
            )
            distinct = dict(
                session.execute(
                    select(TransactionRow.card_id, func.count(TransactionRow.counter.distinct())).group_by(
                        TransactionRow.card_id
                    )
                ).all()
            )
            flagged = {c for c in session.scalars(select(FlagRow.card_id)).all() if c}
            schemes = {
                (c, n): sch
                for c, n, sch in session.execute(
                    select(TransactionRow.card_id, TransactionRow.counter, TransactionRow.scheme_id)
                ).all()
            }
            unreconciled = [
                {
                    "flag": f.kind,
                    "card_id": f.card_id,
                    "counter": f.details.get("counter"),
                    "scheme_id": schemes.get((f.card_id, f.details.get("counter"))),
                    "details": f.details,
                }
                for f in session.scalars(select(FlagRow)).all()
            ]
        settled = _settle(p, central)
        with central.session() as session:
            report_files = write_central_report(build_report(session, _now()), _central_report_dir(p))
        echo(f"    central's coverage and use report: {report_files['report.html']}")
    p.summary.figures["central_reconcile"] = rec.to_json()
    p.summary.figures["settlement"] = settled
    # What the terminal holds is what the cards signed; central must hold each once, in an unflagged ledger.
    records = term.journal.records()
    by_card = Counter(f"{r.card_id:016x}" for r in records)
    double = sum(held.get(c, 0) - distinct.get(c, 0) for c in held) + flags.get("duplicate_counter", 0)
    reconciled = sum(n for c, n in by_card.items() if held.get(c) == n and c not in flagged)
    p.summary.figures.update(
        {
            "double_debits": double,
            "transactions_total": len(records),
            "transactions_reconciled": reconciled,
            "flags": dict(flags),
            "resync_new_records": again.records_sent,
            "unreconciled": unreconciled,
        }
    )
    p.summary.figures["dedup"] = dedup.to_json()
    p.summary.figures["central_report"] = {name: str(path) for name, path in report_files.items()}
    # Cards flagged duplicate_enrolment this run (a pair flags both cards); 0 for an honest camp.
    p.summary.add("cards flagged as duplicate enrolments", dedup.new_flags, "duplicates_flagged")
    term.stop()
    if dedup.unreadable:
        raise DemoError(f"central could not open the sealed templates of cards {dedup.unreadable}")


def _central_report_dir(p: Pilot) -> Path:
    """Central's report goes into ``central/`` of the demo's report directory, linked from the demo's page."""
    assert p.report_dir is not None, "run_demo sets the report directory before the stages"
    return p.report_dir / CENTRAL_REPORT_SUBDIR


def _settle(p: Pilot, central: CentralServer) -> dict[str, Any] | None:
    """Pay the hospital for the pilot's discharges with central's settlement service, where it exists."""
    try:
        settlement = importlib.import_module("cardsvc.central.services.settlement")
    except ImportError:
        p.missing.append("settlement per facility: cardsvc.central has no settlement service yet (issue 6)")
        return None
    now = _now()
    with central.session() as session:
        result, _ = settlement.run_settlement(session, FACILITY_ID, p.started - 86_400, now + 1, now=now)
        out: dict[str, Any] = result.to_json()
    held = Counter(reason for claim in out.pop("claims") for reason in claim["reasons"])
    out["held_reasons"] = dict(held)
    p.summary.add(
        "settlement, hospital",
        f"{out['payable_count']} claims payable (Rs {out['payable_paise'] / 100:,.0f}), "
        f"{out['held_count']} held",
    )
    p.echo(
        f"    settlement of facility {FACILITY_ID}: {out['payable_count']} payable, {out['held_count']} held"
    )
    return out


def _finish(p: Pilot) -> None:
    s = p.summary
    by_kind: Counter[str] = Counter()
    for key, n in p.refusals.items():
        by_kind[key.split(":", 1)[0]] += n
    expect = {
        "impostor": "finger-mismatch",
        "clone": "card-not-genuine",
        "tampered": "profile-tampered",
        "revoked": "operator-revoked",
    }
    counted = {k: p.refusals.get(f"{k}:{reason}", 0) for k, reason in expect.items()}
    s.add("verifications accepted (genuine members)", p.accepted, "verifications_accepted")
    s.add("impostor fingers refused", f"{counted['impostor']} of {p.attempts['impostor']}", None)
    s.add("cloned cards refused", f"{counted['clone']} of {p.attempts['clone']}", None)
    s.add("tampered cards refused", f"{counted['tampered']} of {p.attempts['tampered']}", None)
    s.add("revoked facility refused", f"{counted['revoked']} of {p.attempts['revoked']}", None)
    s.add("cards pulled mid-debit, recovered", f"{p.torn_recovered} of {p.attempts['torn']}", None)
    s.add("terminal crashes, recovered", f"{p.crashes_recovered} of {p.attempts['crash']}", None)
    s.figures.update(
        {
            "impostors_refused": counted["impostor"],
            "clones_refused": counted["clone"],
            "tampered_refused": counted["tampered"],
            "revoked_refused": counted["revoked"],
            "torn_debits_recovered": p.torn_recovered,
            "terminal_crashes_recovered": p.crashes_recovered,
            "attacks_attempted": dict(p.attempts),
            "refusal_reasons": dict(p.refusals),
            "attacks_refused": sum(counted.values()),
            "transactions": dict(p.transactions),
            "stage_seconds": p.stage_seconds,
            "missing": p.missing,
            "station_seconds": p.station_seconds,
        }
    )
    s.add(
        "transactions reconciled at central",
        f"{s.figures.get('transactions_reconciled')} of {s.figures.get('transactions_total')}",
    )
    s.add("double debits", s.figures.get("double_debits"))
    s.add("central flags", s.figures.get("flags") or "none")
    s.figures["failed_stage"] = p.failed
    if p.failed:
        s.add("FAILED", p.failed)
    else:
        checks = pilot_checks(s.figures, p.attempts, counted)
        s.figures["checks"] = checks
        failed = [name for name, ok in checks.items() if not ok]
        s.figures["passed"] = not failed
        s.add("verdict", "PASSED: every check held" if not failed else f"FAILED checks: {', '.join(failed)}")
    s.add("stage times (s)", ", ".join(f"{k} {v}" for k, v in p.stage_seconds.items()))
    for item in p.missing:
        s.add("not done", item)


def pilot_checks(
    figures: Mapping[str, Any], attempts: Mapping[str, int], refused: Mapping[str, int]
) -> dict[str, bool]:
    """What the pilot must show (issue 8): every household enrolled and its card activated and in the FKO
    ledger, every attack tried and refused for its own reason, every torn debit and crash recovered, no
    double debit, every transaction the cards signed reconciled at central, no honest card flagged."""
    attacks = ("impostor", "clone", "tampered", "revoked")
    return {
        "households_enrolled": figures.get("households_enrolled") == figures.get("households_requested"),
        "cards_activated": figures.get("cards_activated") == figures.get("households_enrolled"),
        "fko_ledger_matches": figures.get("fko_ledger_matches") is True,
        "genuine_members_accepted": int(figures.get("verifications_accepted") or 0) > 0,
        "every_attack_refused": all(
            attempts.get(a, 0) > 0 and refused.get(a) == attempts[a] for a in attacks
        ),
        "torn_debits_recovered": figures.get("torn_debits_recovered") == attempts.get("torn", 0) > 0,
        "terminal_crashes_recovered": figures.get("terminal_crashes_recovered")
        == attempts.get("crash", 0)
        > 0,
        "no_double_debit": figures.get("double_debits") == 0,
        "every_transaction_reconciled": figures.get("transactions_total") is not None
        and figures.get("transactions_reconciled") == figures.get("transactions_total"),
        "no_honest_card_flagged": figures.get("duplicates_flagged") == 0,
    }


def _write_report(p: Pilot, out_dir: Path) -> str:
    from cardsvc.demo_report import write_report

    central = p.summary.figures.get("central_report", {}).get("report.html")  # written by this run only
    path = write_report(p.summary, out_dir, central_report=Path(central) if central else None)
    p.echo(f"HTML report: {path}")
    return str(path)


def _print_table(summary: DemoSummary, echo: Echo) -> None:
    width = max(len(label) for label, _ in summary.rows)
    echo("")
    echo(click.style("Summary", bold=True))
    for label, value in summary.rows:
        echo(f"  {label.ljust(width)}  {value}")
