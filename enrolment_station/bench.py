"""Benchmark: the station's own time per household of five members, excluding waiting for fingers.

Real parts: beneficiary cards and the FKO card through pcscd + vpcd + pyscard (slots 0 and 1), the real
journal, extraction (mindtct + NFIQ2), the matcher's 1:N search against every finger captured earlier in
the camp, personalisation APDUs, activation on the FKO card, card face (PNG + PDF). Excluded (it is the
person, not the station): making the synthetic impressions (stands in for the finger on the glass and the
image transfer) and swapping the physical card.

Ceilings. RSBY camps enrolled on the order of 100-150 households in a working day per station (8 h:
3-5 minutes a household, most of it people: photo, ten finger placements, explanations, printing). The
station's own share must stay a small part of that: 30 s per household of five in total, split as
capture processing (10 fingers) 12 s, personalisation with activation 12 s, card face and hand-over 6 s.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cardsvc.benchfig import Figure, payload, report
from cardsvc.bio.capture import CaptureResult

CEILINGS = {
    "capture": 12.0,
    "personalise": 12.0,
    "activation": 3.0,
    "card_face_and_handover": 6.0,
    "total": 30.0,
}
MEMBERS = (("HEAD", "M", 1975), ("SPOUSE", "F", 1979), ("SON", "M", 2008), ("DAUGHTER", "F", 2011),
           ("MOTHER", "F", 1950))  # fmt: skip
NAMES = ("Ram", "Sita", "Lav", "Kusha", "Kaushalya")


def _figure(part: str, seconds: float) -> Figure:
    return Figure(part, seconds, "s per household", CEILINGS[part])


class PreparedFingers:
    """Synthetic impressions made BEFORE the clock runs; capture() then costs what the station does."""

    def __init__(self) -> None:
        self.images: dict[tuple[str, int, int, int], Any] = {}
        self.prepare_seconds = 0.0
        self.inline_seconds = 0.0  # impressions made during a capture (retries, fallback fingers)
        self.captures = 0

    def prepare(self, household_id: str, members: int, fingers: tuple[int, ...] = (2, 7)) -> None:
        from enrolment_station.fingers import finger_seed
        from hardware_sims.fingers.impression import impression

        t = time.perf_counter()
        for m in range(1, members + 1):
            for f in fingers:
                self.images[(household_id, m, f, 1)] = impression(finger_seed(household_id, m, f), 1, "good")
        self.prepare_seconds += time.perf_counter() - t

    def capture(self, household_id: str, member_no: int, finger: int, attempt: int) -> CaptureResult:
        from cardsvc.bio.extract import extract_template

        image = self.images.get((household_id, member_no, finger, attempt))
        if image is None:  # a retry or fallback finger: make it now and do not count the making
            from enrolment_station.fingers import finger_seed
            from hardware_sims.fingers.impression import impression

            t = time.perf_counter()
            image = impression(finger_seed(household_id, member_no, finger), attempt, "good")
            self.inline_seconds += time.perf_counter() - t
        self.captures += 1
        template = extract_template(image)
        return CaptureResult(template, int(template.quality), 1, image)


def measure(households: int, out: Callable[[str], None]) -> tuple[list[Figure], dict[str, Any]]:
    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.card.pcscd import VPCD_PORTS, ensure_pcscd, wait_for_card_state
    from enrolment_station.camp import Camp, HouseholdTimings
    from enrolment_station.fingers import SyntheticFingerReader
    from enrolment_station.rehearsal import FKO_PIN, TERMINAL_PASSPHRASE, build_world
    from hardware_sims.card.vpcd import VpcdCardServer

    per: list[HouseholdTimings] = []
    info: dict[str, Any] = {}
    with ensure_pcscd(on_wait=out) as daemon, tempfile.TemporaryDirectory(prefix="bench-station-") as tmp:
        world = build_world(Path(tmp))
        fingers = PreparedFingers()
        rows = ["household_id,village_code,member_no,name,gender,year_of_birth,relation"]
        for h in range(1, households + 1):
            for i, ((relation, gender, year), name) in enumerate(zip(MEMBERS, NAMES, strict=True), start=1):
                rows.append(f"HB-{h:04d},204101,{i},{name} Verma,{gender},{year},{relation}")
        (Path(tmp) / "list.csv").write_text("\n".join(rows) + "\n")
        fko_reader, card_reader = daemon.reader(1), daemon.reader(0)
        with VpcdCardServer(world.fko_card, port=VPCD_PORTS[1]), \
                VpcdCardServer(world.blank_card(), port=VPCD_PORTS[0]) as card_server:  # fmt: skip
            wait_for_card_state(fko_reader, present=True)
            wait_for_card_state(card_reader, present=True)
            camp = Camp(
                world.home, passphrase=TERMINAL_PASSPHRASE, operator="bench", camp_id="BENCH", reader=fingers
            )
            camp.import_list(Path(tmp) / "list.csv")
            fko_conn = PcscConnection(fko_reader, exclusive=True)
            camp.open_session(fko_conn, pin=FKO_PIN, fingerprint=SyntheticFingerReader().officer_probe)
            fko = camp.session()
            activate = fko.activate
            spent = {"activation": 0.0}

            def timed_activate(body: bytes) -> Any:
                t = time.perf_counter()
                try:
                    return activate(body)
                finally:
                    spent["activation"] += time.perf_counter() - t

            fko.activate = timed_activate  # type: ignore[method-assign]
            apdus: list[int] = []
            captures: list[int] = []
            for h in range(1, households + 1):
                hid = f"HB-{h:04d}"
                fingers.prepare(hid, len(MEMBERS))
                if h > 1:
                    card_server.remove()
                    wait_for_card_state(card_reader, present=False)
                    card_server.card = world.blank_card()
                    card_server.insert()
                    wait_for_card_state(card_reader, present=True)
                timings = HouseholdTimings()
                spent["activation"] = 0.0
                fingers.inline_seconds, fingers.captures = 0.0, 0
                with PcscConnection(card_reader, exclusive=True) as conn:
                    result = camp.enrol_household(hid, conn, timings=timings)
                timings.add("activation", spent["activation"])
                timings.add("capture", -fingers.inline_seconds)  # the person's part, not the station's
                captures.append(fingers.captures)
                apdus.append(result.apdus)
                per.append(timings)
                total = sum(v for k, v in timings.parts.items() if k != "activation")
                out(
                    f"  household {hid}: {total:.2f} s  "
                    + "  ".join(f"{k} {v:.3f}" for k, v in timings.parts.items())
                )
            check = camp.ledger()
            camp.close()
            fko_conn.close()
            info = {"households": households, "members": len(MEMBERS), "fingers_per_member": 2,
                    "apdus_per_personalisation": statistics.median(apdus),
                    "captures_per_household": statistics.median(captures), "ledger_matches": check.matches,
                    "finger_simulation_excluded_s": round(fingers.prepare_seconds, 2)}  # fmt: skip
    figures = []
    for part in ("capture", "personalise", "activation", "card_face_and_handover"):
        figures.append(_figure(part, statistics.median(t.parts.get(part, 0.0) for t in per)))
    totals = [sum(v for k, v in t.parts.items() if k != "activation") for t in per]
    figures.append(_figure("total", statistics.median(totals)))
    return figures, info


def main(*, households: int = 3, json_out: Path | None = None, out: Callable[[str], None] = print) -> int:
    out(
        f"station benchmark: {households} household(s) of {len(MEMBERS)}, pcscd + vpcd + pyscard, "
        "median per household (excluding waiting for fingers)"
    )
    figures, info = measure(households, out)
    ok = report(figures, out)
    out(
        f"captures per household (retries included): {info['captures_per_household']}; "
        f"personalisation: {info['apdus_per_personalisation']} APDUs; ledger matches journal: "
        f"{info['ledger_matches']}"
    )
    if json_out is not None:
        document = payload("station", figures, **info)
        for entry in document["figures"]:
            entry["seconds"] = entry["value"]  # the key this JSON had before benchfig
        json_out.write_text(json.dumps(document, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
