"""PKI benchmark: each figure printed beside its ceiling; exit status 1 if any figure is over its ceiling.

Run: ``.venv/bin/keymgmt bench`` (or ``.venv/bin/python -m cardsvc.pki.bench``). Ceilings come from
/work/shared/HARDWARE.md (ECDSA P-256 about 15,000 verifies/s and SoftHSM2 about 8,600 signs/s per core)
with headroom for a noisy shared 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cardsvc.benchfig import Figure, report
from cardsvc.pki.chain import TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate, issue_certificate, self_signed_root
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationList,
    RevocationStore,
    SubjectKind,
    build_revocation_list,
)
from cardsvc.pki.rights import DEFAULT_RIGHTS, Right, Role
from cardsvc.pki.signer import FileSigner, ScryptCost, Signer, SoftwareSigner, find_softhsm_module
from cardsvc.pki.termauth import authenticate_terminal, sign_terminal_auth

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def _issue(issuer_signer: Signer, car: str, chr: str, role: Role, signer: Signer) -> CvCertificate:
    return issue_certificate(
        issuer_signer,
        car=car,
        chr=chr,
        public_point=signer.public_key(),
        role=role,
        rights=DEFAULT_RIGHTS[role],
        effective=date(2026, 1, 1),
        expiry=date(2030, 12, 31),
        content_digest=bytes(32) if role is Role.BENEFICIARY_CARD else None,  # chain rule content-digest
    )


def run(rounds: int = 500, list_entries: int = 10_000) -> list[Figure]:
    root_key, district_key, fko_key, card_key, pos_key = (SoftwareSigner.generate() for _ in range(5))
    root = self_signed_root(root_key, chr="INROOT00001", effective=date(2026, 1, 1), expiry=date(2036, 1, 1))
    anchor = TrustAnchor.from_certificate(root)
    district = _issue(root_key, root.chr, "INDKMA-PATNA1", Role.DISTRICT, district_key)
    fko = _issue(district_key, district.chr, "INFKO-PAT-0007", Role.FIELD_KEY_OFFICER, fko_key)
    card = _issue(fko_key, fko.chr, "CARD-10000000001", Role.BENEFICIARY_CARD, card_key)
    pos = _issue(district_key, district.chr, "INTRM-POS-0001", Role.POS_TERMINAL, pos_key)
    card_chain = [c.encode() for c in (district, fko, card)]

    entries = [
        RevocationEntry(f"CARD-{i:011d}", SubjectKind.CARD, NOW - timedelta(days=1))
        for i in range(list_entries)
    ]
    t = time.perf_counter()
    rl = build_revocation_list(district_key, issuer=district.chr, version=1, issued_at=NOW, entries=entries)
    build_s = time.perf_counter() - t
    raw_list = rl.encode()
    t = time.perf_counter()
    store = RevocationStore(anchor)
    store.offer(RevocationList.parse(raw_list), now=NOW, issuer_chain=[district])
    load_s = time.perf_counter() - t

    figures = [
        Figure(
            "parse one CV certificate (median)",
            _median_ms(lambda: CvCertificate.parse(card_chain[2]), rounds),
            "ms",
            0.2,
        ),
        Figure(
            "validate card chain, 3 certificates, no lists (median)",
            _median_ms(lambda: validate_chain(card_chain, anchor, now=NOW), rounds),
            "ms",
            2.0,
        ),
        Figure(
            f"validate card chain against a {list_entries}-entry list (median)",
            _median_ms(lambda: validate_chain(card_chain, anchor, now=NOW, revocations=store), rounds),
            "ms",
            2.0,
        ),
    ]
    challenge = bytes(range(8))
    sig = sign_terminal_auth(pos_key, challenge=challenge, card_id=card.chr, terminal_chr=pos.chr)
    pos_chain = [district, pos]
    figures.append(
        Figure(
            "terminal authentication check on the card side (median)",
            _median_ms(
                lambda: authenticate_terminal(
                    pos_chain,
                    sig,
                    anchor=anchor,
                    challenge=challenge,
                    card_id=card.chr,
                    now=NOW,
                    required=Right.READ_TEMPLATES,
                ),
                rounds,
            ),
            "ms",
            3.0,
        )
    )
    figures += [
        Figure(
            f"revocation list size, {list_entries} card entries",
            len(raw_list) / 1024,
            "KiB",
            list_entries * 36 / 1024,
        ),
        Figure(f"build + sign a {list_entries}-entry list", build_s * 1000, "ms", 1500),
        Figure(f"parse + verify + install a {list_entries}-entry list", load_s * 1000, "ms", 1500),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = Path(tmp) / "k.enc"
        FileSigner.create(path, b"bench passphrase", cost=ScryptCost())
        FileSigner.load(path, b"bench passphrase")
        figures.append(
            Figure(
                "create + unlock a key file (scrypt n=2^15, twice)",
                (time.perf_counter() - t) * 1000,
                "ms",
                2000,
            )
        )
    figures += _officer_card_figures(rounds)
    figures += _pkcs11_figures(rounds)
    return figures


def _officer_card_figures(rounds: int) -> list[Figure]:
    """Officer card on the simulated card OS, in-process: match-on-card and one activation."""
    import random

    from cardsvc.bio.iso19794 import encode_compact, wrap_verify_template
    from cardsvc.bio.template import FingerTemplate, Minutia
    from cardsvc.card.inprocess import InProcessConnection
    from cardsvc.pki.cvc import build_body
    from cardsvc.pki.officer_card import OfficerCardSession
    from hardware_sims.card.apps.officer import OfficerApplication
    from hardware_sims.card.cardos import SimulatedCard

    r = random.Random(5)
    minutiae = [Minutia(r.randint(20, 230), r.randint(20, 270), r.uniform(0, 360)) for _ in range(40)]
    probe_minutiae = [Minutia(m.x + 3, m.y - 2, m.angle) for m in minutiae[:36]]
    template = wrap_verify_template(encode_compact(FingerTemplate(tuple(minutiae), 256, 288)))
    probe = wrap_verify_template(encode_compact(FingerTemplate(tuple(probe_minutiae), 256, 288)))
    district_key, officer_signer = SoftwareSigner.generate(), SoftwareSigner.generate()
    with tempfile.TemporaryDirectory() as tmp:
        card = SimulatedCard(Path(tmp), applications=[OfficerApplication()], clock=lambda: NOW.timestamp())
        session = OfficerCardSession(InProcessConnection(card))
        point = session.generate_key()
        officer = _issue(
            district_key, "INDKMA-PATNA1", "INFKO-PAT-0007", Role.FIELD_KEY_OFFICER, officer_signer
        )
        officer = issue_certificate(
            district_key,
            car=officer.car,
            chr=officer.chr,
            public_point=point,
            role=officer.role,
            rights=officer.rights,
            effective=officer.effective,
            expiry=officer.expiry,
        )
        session.put_certificate(officer)
        session.put_templates([template])
        session.set_pin("482916")
        session.lock()
        session.verify_pin_code("482916")
        session.verify_fingerprint(probe)  # warm-up: loads the matcher's calibration
        match_ms = _median_ms(lambda: session.verify_fingerprint(probe), 5)
        n = iter(range(10**6))

        def activate() -> None:
            body = build_body(
                car=officer.chr,
                chr=f"CARD-{next(n)}",
                public_point=officer_signer.public_key(),
                role=Role.BENEFICIARY_CARD,
                rights=Right.NONE,
                effective=date(2026, 11, 23),
                expiry=date(2027, 11, 22),
                content_digest=bytes(32),  # the officer card signs no card body without one
            )
            session.activate_card(body)

        activate_ms = _median_ms(activate, min(rounds, 150))
    return [
        Figure("officer card: match-on-card, in-process (median of 5)", match_ms, "ms", 1000),
        Figure("officer card: activate one beneficiary card, in-process (median)", activate_ms, "ms", 20),
    ]


def _pkcs11_figures(rounds: int) -> list[Figure]:
    module = find_softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        print("skip: SoftHSM2 not installed; no PKCS#11 figure")
        return []
    from cardsvc.pki.signer import Pkcs11Signer

    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.mkdir()
        conf = Path(tmp) / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                "bench",
                "--pin",
                "1234",
                "--so-pin",
                "5678",
            ],
            check=True,
            capture_output=True,
        )
        signer = Pkcs11Signer.generate(module, "bench", "1234", "bench-key")
        try:
            ms = _median_ms(lambda: signer.sign(b"x" * 200), rounds)
        finally:
            signer.close()
    return [Figure("SoftHSM2 ECDSA P-256 sign, SHA-256 on the host (median)", ms, "ms", 1.0)]


def main(rounds: int = 500) -> int:
    return 0 if report(run(rounds=rounds)) else 1


if __name__ == "__main__":
    sys.exit(main())
