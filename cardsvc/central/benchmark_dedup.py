"""De-duplication benchmark: new camp cards searched against a district gallery through the service
(sealed boxes opened in memory, gallery built, 1:N searches, flags stored), beside the matcher alone doing
the same searches on templates already in memory (the ceiling: what the service's extra work costs).

Run: ``.venv/bin/python bench/bench_ingest_dedup.py [--gallery-cards N] [--new-cards K] [--json]``.
Synthetic minutiae sets stand in for fingers (decisions are the matcher's, measured in docs/biometrics.md);
SQLite in a temporary file.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.bio.iso19794 import decode_compact, encode_compact
from cardsvc.bio.matcher import Matcher
from cardsvc.bio.template import FingerTemplate, Minutia
from cardsvc.central.extensions import Database
from cardsvc.central.migrate import upgrade
from cardsvc.central.models import SealedTemplates
from cardsvc.central.services.dedup import deduplicate
from cardsvc.formats.templates import CampTemplate, seal_templates

FINGERS = (2, 7)
TARGET = 0.5  # the service should keep at least half of the matcher's own search rate


def _finger(rng: random.Random) -> FingerTemplate:
    return FingerTemplate(
        tuple(Minutia(rng.randint(30, 226), rng.randint(30, 258), rng.uniform(0, 360)) for _ in range(45)),
        256,
        288,
    )


def run_dedup_benchmark(gallery_cards: int = 200, new_cards: int = 20, *, as_json: bool = False) -> bool:
    rng = random.Random(1)
    key = ec.derive_private_key(rng.randrange(1, 2**255), ec.SECP256R1())
    cards = {
        card: [CampTemplate(0, f, encode_compact(_finger(rng))) for f in FINGERS]
        for card in range(1, gallery_cards + new_cards + 1)
    }
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'dedup.db'}")
        upgrade(database.engine)
        with database.sessions() as session:
            for card, templates in cards.items():
                session.add(SealedTemplates(
                    card_id=f"{card:016x}", district="D", received_at=0,
                    searched_at=None if card > gallery_cards else 0,
                    sealed=seal_templates(key.public_key(), card, templates, rng=rng.randbytes),
                ))  # fmt: skip
            session.commit()
            matcher = Matcher()
            start = time.perf_counter()
            report = deduplicate(session, key, 1, matcher=matcher)
            service = time.perf_counter() - start
        database.dispose()
    decoded = {
        (card, t.finger_position): decode_compact(t.minutiae, finger_position=t.finger_position)
        for card, templates in cards.items()
        for t in templates
    }
    start = time.perf_counter()
    gallery = matcher.gallery(cast("Mapping[Hashable, FingerTemplate]", decoded))
    for (card, _), probe in decoded.items():
        if card > gallery_cards:
            matcher.search(probe, gallery)
    alone = time.perf_counter() - start
    rate, ceiling = new_cards / service, new_cards / alone
    ok = rate >= TARGET * ceiling and report.searched_cards == new_cards
    figures = {
        "gallery_templates": len(decoded), "new_cards": new_cards, "service_seconds": round(service, 3),
        "matcher_seconds": round(alone, 3), "cards_per_second": round(rate, 2),
        "ceiling_cards_per_second": round(ceiling, 2), "target_fraction": TARGET,
        "false_pairs": len(report.pairs),
    }  # fmt: skip
    if as_json:
        print(json.dumps(figures, sort_keys=True))
    else:
        print(
            f"de-duplication: {new_cards} new cards x {len(FINGERS)} fingers against {len(decoded)} templates"
        )
        print("  service: open sealed boxes, build the gallery, search, store flags")
        print(f"  service  {rate:.2f} cards/s  (matcher alone, same searches; target {TARGET} of it)  "
              f"ceiling {ceiling:.2f}")  # fmt: skip
        print(f"  likely-duplicate pairs among unrelated synthetic fingers: {len(report.pairs)}")
        print("within target" if ok else "BELOW target")
    return ok
