"""Cost of a full offline card verification (POS acceptance): APDUs, bytes, CPU ms and wall ms.

Run: ``.venv/bin/python bench/bench_verify.py [--rounds 30] [--json out.json]``. Needs root (to start
pcscd) or a running pcscd with the vsmartcard-vpcd readers; holds the machine-wide vpcd lock and serves the
card on vpcd slot 0. Each figure is printed beside its ceiling; exit status 1 if one is over.

A verification = SELECT, read limits, GET STATUS, certificates, INTERNAL AUTHENTICATE (clone check),
terminal authentication (2 certificates + challenge + proof), profile; chain, revocation (a list with 1,000
entries) and digest checks on the host (cardsvc/beneficiary/verify.py). The third set adds the fingerprint
step (templates read and hashed, one probe matched against a member's two fingers; the ceilings are the
same, so the matcher's time counts against the 100 ms). CPU ms is this process's CPU time,
which includes the simulated card (it runs in a thread of this process): an upper bound for the terminal.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cardsvc.benchfig import Figure, payload, report
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.beneficiary.verify import verify_card, verify_member
from cardsvc.bio.matcher import Matcher
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.pcscd import VPCD_PORTS, ensure_pcscd, wait_for_card_state
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationStore,
    SubjectKind,
    build_revocation_list,
)
from hardware_sims.card.vpcd import VpcdCardServer
from tests.fixtures.beneficiary import CARD_NOW, BeneficiaryWorld, build_world

CEILINGS = {"apdus": 20, "bytes_read": 4096, "wall_ms": 100.0, "cpu_ms": 100.0}


def _revocations(world: BeneficiaryWorld) -> RevocationStore:
    store = RevocationStore(anchor=world.anchor)
    entries = [
        RevocationEntry(f"CARD-{9_000_000 + i}", SubjectKind.CARD, CARD_NOW - timedelta(days=1))
        for i in range(1000)
    ]
    root = world.pki.root
    rl = build_revocation_list(root.signer, issuer=root.chr, version=1, issued_at=CARD_NOW, entries=entries)
    store.offer(rl, now=CARD_NOW)
    return store


def _one(
    world: BeneficiaryWorld, connection: Any, store: RevocationStore, matcher: Matcher | None = None
) -> tuple[float, float, int, int]:
    t0, c0 = time.perf_counter(), time.process_time()
    session = BeneficiarySession(connection)
    _, card = verify_card(session, anchor=world.anchor, district_certificates=world.district_certificates,
                revocations=store, terminal_chain=world.pos.chain, terminal_signer=world.pos.holder.signer,
                now=CARD_NOW, rng=random.Random(1).randbytes)  # fmt: skip
    if matcher is not None:  # the fingerprint step: the member's templates, one live probe
        verify_member(session, card, 1, world.probe(1), matcher)
    wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
    return wall, cpu, session.counter.apdus, session.counter.received


def measure(rounds: int, out: Any = print) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        base = Path(tmp)
        (base / "world").mkdir()
        world = build_world(base / "world")
        store = _revocations(world)
        state = base / "card"
        shutil.copytree(world.templates["activated"], state)
        card = world.new_card(state)
        inproc = [_one(world, InProcessConnection(card), store) for _ in range(rounds)]
        card.power_off()
        with ensure_pcscd(on_wait=out) as daemon:
            reader = daemon.reader(0)
            with VpcdCardServer(card, port=VPCD_PORTS[0]):
                wait_for_card_state(reader, present=True)
                pcsc, with_finger = [], []
                matcher = Matcher()
                for _ in range(rounds):
                    with PcscConnection(reader) as conn:
                        pcsc.append(_one(world, conn, store))
                    with PcscConnection(reader) as conn:
                        with_finger.append(_one(world, conn, store, matcher))
            wait_for_card_state(reader, present=False)
    runs_by_label = (
        ("in-process", inproc),
        ("pcscd + vpcd", pcsc),
        ("pcscd + vpcd + fingerprint", with_finger),
    )
    figures = []
    for label, runs in runs_by_label:
        figures += [
            Figure(f"{label}: APDUs per verification", max(r[2] for r in runs), "APDUs", CEILINGS["apdus"]),
            Figure(
                f"{label}: bytes read per verification",
                max(r[3] for r in runs),
                "bytes",
                CEILINGS["bytes_read"],
            ),
            Figure(
                f"{label}: wall time (median)",
                statistics.median(r[0] for r in runs),
                "ms",
                CEILINGS["wall_ms"],
            ),
            Figure(
                f"{label}: CPU time (median)", statistics.median(r[1] for r in runs), "ms", CEILINGS["cpu_ms"]
            ),
        ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    print(f"Beneficiary card verification, {args.rounds} rounds each (max APDUs/bytes, median times)")
    figures = measure(args.rounds)
    ok = report(figures)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(payload("verify", figures), indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
