"""``pos bench verify``: the cost of one full POS verification through pcscd + vpcd, fingerprint included.

One verification = everything a clerk waits for when a patient hands over a card: the card steps (present,
activated, chain, revocation, policy, clone challenge, terminal authentication, profile binding; see
point_of_service.services.verification) and the member step (the finger captured from the sensor simulator
over a pty through pyfingerprint, minutiae extracted on the host, compared with the templates the card
released after terminal authentication).

Figures: APDUs and bytes read (counted by the session below the response chaining layer), CPU ms of the
terminal's thread (``time.thread_time``: the simulated card and sensor run in other threads of this process
and are not the terminal's cost), wall ms. Ceilings from the issue: 20 APDUs, 4 KB read, 100 ms CPU.
Needs pcscd with the vsmartcard-vpcd readers (started if absent, as root) and holds the machine-wide vpcd
lock while it runs.
"""

from __future__ import annotations

import inspect
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cardsvc.benchfig import Figure, report
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.bio.extract import extract_template
from cardsvc.bio.iso19794 import encode_compact
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.profile import (
    Gender,
    HouseholdProfile,
    Member,
    OfflineLimits,
    Relation,
    SchemeCover,
    StoredTemplate,
    content_digest,
    encode_templates,
)
from cardsvc.pki.chain import TrustAnchor
from cardsvc.pki.cvc import CvCertificate, issue_certificate, self_signed_root
from cardsvc.pki.rights import DEFAULT_RIGHTS, Right, Role
from cardsvc.pki.signer import SoftwareSigner
from point_of_service.identity import TerminalIdentity, reference_id
from point_of_service.journal import Journal
from point_of_service.services.signin import Clerk
from point_of_service.services.verification import verify_card, verify_member
from point_of_service.trust import TrustState

CEILING_APDUS = 20
CEILING_BYTES = 4096
CEILING_CPU_MS = 100.0
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CARD_ID = "CARD-20000000001"
#: Member 0's enrolled fingers (ISO position -> synthetic finger seed), as a camp would have captured them.
FINGERS = {2: 3, 7: 4}


@dataclass(frozen=True)
class Figures:
    """One round's measurements; ``summarise`` turns the rounds into judged ``benchfig.Figure`` values."""

    apdus: int
    bytes_read: int
    bytes_sent: int
    cpu_ms: float
    sensor_io_cpu_ms: float
    wall_ms: float
    score: float


@dataclass
class _World:
    anchor: TrustAnchor
    district: CvCertificate
    identity: TerminalIdentity
    clerk: Clerk


def _issue(
    issuer: SoftwareSigner,
    car: str,
    chr: str,
    role: Role,
    signer: SoftwareSigner,
    rights: Right | None = None,
    effective: date = date(2026, 1, 1),
    expiry: date = date(2030, 12, 31),
) -> CvCertificate:
    return issue_certificate(
        issuer,
        car=car,
        chr=chr,
        public_point=signer.public_key(),
        role=role,
        rights=DEFAULT_RIGHTS[role] if rights is None else rights,
        effective=effective,
        expiry=expiry,
    )


def build_card(state: Path) -> tuple[Any, _World]:
    """A PKI, and an activated beneficiary card whose member 0 enrolled two synthetic fingers."""
    from hardware_sims.card.apps.beneficiary import BeneficiaryApplication
    from hardware_sims.card.cardos import SimulatedCard
    from hardware_sims.fingers import impression

    root_key, district_key, fko_key = (
        SoftwareSigner.generate(),
        SoftwareSigner.generate(),
        SoftwareSigner.generate(),
    )
    pos_key, enrol_key, op_key = (
        SoftwareSigner.generate(),
        SoftwareSigner.generate(),
        SoftwareSigner.generate(),
    )
    root = self_signed_root(
        root_key, chr="INROOT-BENCH", effective=date(2026, 1, 1), expiry=date(2036, 12, 31)
    )
    anchor = TrustAnchor.from_certificate(root)
    district = _issue(root_key, root.chr, "INDKMA-BENCH", Role.DISTRICT, district_key)
    fko = _issue(district_key, district.chr, "INFKO-BENCH", Role.FIELD_KEY_OFFICER, fko_key)
    pos = _issue(district_key, district.chr, "INTRM-POS-BENCH", Role.POS_TERMINAL, pos_key)
    enrol = _issue(district_key, district.chr, "INTRM-ENR-BENCH", Role.ENROLMENT_TERMINAL, enrol_key)
    operator = _issue(district_key, district.chr, "INFOP-BENCH", Role.FACILITY_OPERATOR, op_key)
    card = SimulatedCard(
        state,
        applications=[BeneficiaryApplication(card_id=CARD_ID, anchor=anchor)],
        rng=random.Random(1),
        clock=lambda: NOW.timestamp(),
    )
    session = BeneficiarySession(InProcessConnection(card))
    session.terminal_authenticate([district, enrol], enrol_key, CARD_ID)
    point = session.generate_key()
    start, end = date(2026, 11, 1), date(2027, 10, 31)
    people = (
        Member(0, "Ramesh Kumar", Gender.MALE, 1971, Relation.HEAD),
        Member(1, "Sunita Devi", Gender.FEMALE, 1975, Relation.SPOUSE),
        Member(2, "Anil Kumar", Gender.MALE, 1998, Relation.CHILD),
        Member(3, "Pooja Kumari", Gender.FEMALE, 2003, Relation.CHILD),
        Member(4, "Kamla Devi", Gender.FEMALE, 1948, Relation.PARENT),
    )
    profile = HouseholdProfile(
        card_id=CARD_ID,
        household_id="HH-BENCH-1",
        village="Rampur",
        district=district.chr,
        fko_id=fko.chr,
        policy_start=start,
        policy_end=end,
        limits=OfflineLimits(20, 2_000_000),
        members=people,
        schemes=(SchemeCover(1, 3_000_000),),
    )
    session.write_profile(profile)
    # a full household: two fingers for each of the five members (the card budget's worst case)
    templates = [
        StoredTemplate(
            m, f, encode_compact(extract_template(impression(FINGERS[f] + 10 * m, 0), quality=False))
        )
        for m in range(5)
        for f in sorted(FINGERS)
    ]
    session.write_templates(templates)
    extra: dict[str, Any] = {}
    if "content_digest" in inspect.signature(issue_certificate).parameters:  # the FKO certifies the contents
        extra["content_digest"] = content_digest(profile.encode(), encode_templates(templates))
    cert = issue_certificate(
        fko_key,
        car=fko.chr,
        chr=CARD_ID,
        public_point=point,
        role=Role.BENEFICIARY_CARD,
        rights=Right.NONE,
        effective=start,
        expiry=end,
        **extra,
    )
    if "district_certificate" in inspect.signature(session.put_certificate).parameters:
        session.put_certificate(cert, fko, district)  # type: ignore[call-arg, unused-ignore]
    else:
        session.put_certificate(cert, fko)
    card.power_off()
    identity = TerminalIdentity(pos.chr, 0x5EC0_BE7C, 17, anchor, (district, pos), pos_key)
    clerk = Clerk(operator.chr, reference_id(operator.chr), operator.rights, int(NOW.timestamp()), operator)
    return card, _World(anchor, district, identity, clerk)


def run(rounds: int = 5, *, on_wait: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Serve the card on vpcd slot 0, put the finger on the simulated sensor, verify ``rounds`` times.

    The sensor is opened once (as a terminal does at start). CPU is split: the terminal's processing (card
    protocol and crypto, minutiae extraction, matching) is compared with the 100 ms ceiling; the CPU spent
    moving the image over the serial line inside the sensor driver (pyfingerprint) is reported beside it.
    """
    from cardsvc.bio.capture import FingerprintSensor, capture_finger
    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.card.pcscd import VPCD_PORTS, ensure_pcscd, wait_for_card_state
    from hardware_sims.card.vpcd import VpcdCardServer
    from hardware_sims.sensor.simulator import SensorSimulator

    with tempfile.TemporaryDirectory(prefix="pos-bench-") as tmp:
        base = Path(tmp)
        (base / "card").mkdir()
        card, world = build_card(base / "card")
        journal = Journal(base / "journal.sqlite")
        trust = TrustState.load(journal, world.anchor, districts={world.district.chr: world.district})
        now = int(NOW.timestamp())
        figures: list[Figures] = []
        with (
            ensure_pcscd(on_wait=on_wait) as pcscd,
            SensorSimulator(base / "flash", control_path=None) as sensor,
        ):
            reader = pcscd.reader(0)
            with VpcdCardServer(card, port=VPCD_PORTS[0]), FingerprintSensor(sensor.port) as fingerprint:
                wait_for_card_state(reader, present=True)
                spent = {"capture": 0.0, "extract": 0.0}
                for i in range(rounds + 1):  # round 0 warms caches (matcher tables, imports)
                    sensor.place(FINGERS[2], 1 + i % 3)
                    spent.update(capture=0.0, extract=0.0)

                    def extract(image: Any) -> Any:
                        t0 = time.thread_time()
                        template = extract_template(image, quality=False)
                        spent["extract"] += time.thread_time() - t0
                        return template

                    def capture() -> Any:
                        t0 = time.thread_time()
                        result = capture_finger(
                            fingerprint, min_quality=0, max_attempts=1, timeout=5.0, extract=extract
                        )
                        spent["capture"] += time.thread_time() - t0
                        return result.template

                    wall0, cpu0 = time.perf_counter(), time.thread_time()
                    with PcscConnection(reader, exclusive=True) as conn:
                        session = BeneficiarySession(conn)
                        visit = verify_card(
                            session,
                            identity=world.identity,
                            trust=trust,
                            clerk=world.clerk,
                            now=now,
                            rng=random.Random(i).randbytes,
                        )
                        match = verify_member(
                            visit, member=0, finger=2, capture=capture, clerk=world.clerk, now=now
                        )
                        counted = session.counter
                    cpu, wall = (time.thread_time() - cpu0) * 1000, (time.perf_counter() - wall0) * 1000
                    sensor_io = (spent["capture"] - spent["extract"]) * 1000
                    sensor.lift()
                    if not match.matched:
                        raise RuntimeError(f"the genuine finger did not match (score {match.score:.1f})")
                    if i:
                        figures.append(
                            Figures(
                                counted.apdus,
                                counted.received,
                                counted.sent,
                                cpu - sensor_io,
                                sensor_io,
                                wall,
                                match.score,
                            )
                        )
            wait_for_card_state(reader, present=False)
        journal.close()
    return summarise(figures)


def summarise(figures: list[Figures]) -> dict[str, Any]:
    med = {k: statistics.median(getattr(f, k) for f in figures) for k in asdict(figures[0])}
    judged = [
        Figure("apdus", max(f.apdus for f in figures), "APDUs", CEILING_APDUS),
        Figure("bytes_read", max(f.bytes_read for f in figures), "bytes", CEILING_BYTES),
        Figure("cpu_ms", med["cpu_ms"], "ms", CEILING_CPU_MS),
        Figure("sensor_io_cpu_ms", med["sensor_io_cpu_ms"], "ms", None),
        Figure("wall_ms", med["wall_ms"], "ms", None),
    ]
    return {
        "rounds": len(figures),
        "median": med,
        "figures": {f.name: f.to_json() for f in judged},
        "ok": all(f.ok for f in judged),
    }


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"one full POS verification through pcscd + vpcd, fingerprint included ({result['rounds']} rounds)"
    ]
    report([Figure.from_json(f) for f in result["figures"].values()], lines.append)
    return lines
