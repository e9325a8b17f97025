"""De-duplication across camps: sealed templates uploaded with camps, searched per district, flagged pairs.

Fingers are generated minutiae sets (tests/fixtures/beneficiary.py), one touch at camp A and another touch
of the same finger at camp B: the person enrolled twice. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import select

from cardsvc.bio.iso19794 import encode_compact
from cardsvc.central.extensions import get_db
from cardsvc.central.models import FlagRow, SealedTemplates
from cardsvc.central.services.dedup import DedupPolicy, deduplicate, load_dedup_key, member_evidence
from cardsvc.central.services.reconcile import FlagKind
from cardsvc.central.services.terminals import register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal, p256_key
from cardsvc.formats.batch import BatchKind, CampCard
from cardsvc.formats.errors import FieldValueError
from cardsvc.formats.profile import StoredTemplate
from cardsvc.formats.templates import CampTemplate, SealError, from_stored, open_templates, seal_templates
from cardsvc.pki.signer import ScryptCost, encrypt_private_key
from tests.fixtures.beneficiary import impression, synthetic_finger

DAY = 86_400


def seeded(rng: random.Random) -> Callable[[int], bytes]:
    """A byte source for sealing (deterministic tests)."""
    return lambda n: rng.randbytes(n)


@pytest.fixture
def dedup_key() -> ec.EllipticCurvePrivateKey:
    return p256_key(random.Random(77))


def templates(fingers: dict[tuple[int, int], object]) -> list[CampTemplate]:
    return [CampTemplate(m, f, encode_compact(t)) for (m, f), t in sorted(fingers.items())]  # type: ignore[arg-type]


def upload_camp(app: Flask, terminal: SimTerminal, now: int, cards: list[CampCard]) -> None:
    body = terminal.batch(BatchKind.CAMP, cards, now)
    response = app.test_client().post(
        "/api/v1/batches", data=body, headers=terminal.headers("POST", "/api/v1/batches", body, now)
    )
    assert response.status_code == 201, response.get_json()


def test_sealed_box_opens_only_with_central_key_and_for_its_card(
    dedup_key: ec.EllipticCurvePrivateKey,
) -> None:
    sealed_for = templates({(0, 2): synthetic_finger(1), (1, 7): synthetic_finger(2)})
    box = seal_templates(dedup_key.public_key(), 0xCA4D, sealed_for, rng=seeded(random.Random(1)))
    assert open_templates(dedup_key, 0xCA4D, box) == tuple(sealed_for)
    with pytest.raises(SealError):
        open_templates(dedup_key, 0xCA4E, box)  # moved to another card
    with pytest.raises(SealError):
        open_templates(p256_key(random.Random(78)), 0xCA4D, box)  # another key
    tampered = box[:-1] + bytes([box[-1] ^ 1])
    with pytest.raises(SealError):
        open_templates(dedup_key, 0xCA4D, tampered)
    with pytest.raises(FieldValueError, match="3-byte minutiae"):
        CampTemplate(0, 2, b"\x01\x02")


def test_station_seals_what_it_wrote_to_the_card(dedup_key: ec.EllipticCurvePrivateKey) -> None:
    stored = [
        StoredTemplate(m, f, encode_compact(synthetic_finger(10 * m + f))) for m in (0, 1) for f in (2, 7)
    ]
    box = seal_templates(dedup_key.public_key(), 0xCA4D, from_stored(stored))
    opened = open_templates(dedup_key, 0xCA4D, box)
    assert [(t.member_index, t.finger_position, t.minutiae) for t in opened] == [
        (s.member_index, s.finger_position, s.compact) for s in stored
    ]


def test_key_file_is_encrypted_at_rest(tmp_path, dedup_key: ec.EllipticCurvePrivateKey) -> None:
    path = tmp_path / "dedup.key"
    path.write_bytes(encrypt_private_key(dedup_key, b"district secret", cost=ScryptCost(n=2**10)))
    assert b"district secret" not in path.read_bytes()
    loaded = load_dedup_key(path, b"district secret")
    assert loaded.private_numbers() == dedup_key.private_numbers()


def test_person_enrolled_in_two_camps_flagged_on_both_cards(
    central_app: Flask, clock: FixedClock, dedup_key: ec.EllipticCurvePrivateKey
) -> None:
    rng = random.Random(5)
    now = int(clock())
    terminal = SimTerminal.new(0x5EC0_0002, rng)
    with get_db(central_app).sessions() as session:
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), now - DAY)
        session.commit()
    twice = synthetic_finger(4242, 48)  # the person enrolled twice
    households = {
        0xA1: {(0, 2): synthetic_finger(11, 44), (1, 2): twice},
        0xA2: {(0, 2): synthetic_finger(12, 44), (1, 2): synthetic_finger(13, 44)},
        0xB1: {(0, 2): synthetic_finger(14, 44), (2, 2): impression(twice, 9)},  # the same finger again
        0xB2: {(0, 2): synthetic_finger(15, 44)},
    }
    cards = []
    for card_id, fingers in households.items():
        sim = SimCard.new(card_id, rng)
        camp = sim.camp_card("Jaipur", now - 30 * DAY, now + 300 * DAY, 0xF0)
        box = seal_templates(dedup_key.public_key(), card_id, templates(fingers), rng=seeded(rng))
        cards.append(replace(camp, templates=box))
    other_district = SimCard.new(0xC1, rng).camp_card("Patna", now - 30 * DAY, now + 300 * DAY, 0xF1)
    other_box = seal_templates(dedup_key.public_key(), 0xC1, templates({(0, 2): impression(twice, 10)}))
    upload_camp(central_app, terminal, now, cards[:2])  # camp A
    upload_camp(central_app, terminal, now, [*cards[2:], replace(other_district, templates=other_box)])

    with get_db(central_app).sessions() as session:
        stored = {r.card_id: bytes(r.sealed) for r in session.execute(select(SealedTemplates)).scalars()}
        assert len(stored) == 5 and all(b"FMR" not in s for s in stored.values())
        report = deduplicate(session, dedup_key, now)
    assert report.searched_cards == 5 and report.unreadable == []
    assert [(a, b) for a, b, _ in report.pairs] == [("00000000000000a1", "00000000000000b1")]
    with get_db(central_app).sessions() as session:
        flags = (
            session.execute(
                select(FlagRow)
                .where(FlagRow.kind == FlagKind.DUPLICATE_ENROLMENT.value)
                .order_by(FlagRow.card_id)
            )
            .scalars()
            .all()
        )
        assert [f.card_id for f in flags] == ["00000000000000a1", "00000000000000b1"]
        assert flags[0].details["other_card"] == "00000000000000b1"
        assert flags[0].details["matches"][0][:4] == [1, 2, 2, 2]  # member 1 of A is member 2 of B
        assert flags[1].details["matches"][0][:4] == [2, 2, 1, 2]
        assert flags[0].details["score"] >= 40
        # a second run searches nothing new and repeats nothing
        again = deduplicate(session, dedup_key, now + 60)
    assert again.searched_cards == 0 and again.new_flags == 0


T = 47.0  # the 1:N threshold of a ~50-finger gallery
POLICY = DedupPolicy()


@pytest.mark.parametrize(
    ("scores", "fingers", "flagged", "used"),
    [
        # one look-alike finger, the other finger disagrees: two people
        ({(2, 2): 60.0, (7, 7): 8.0, (2, 7): 3.0, (7, 2): 5.0}, (2, 2), False, None),
        # both fingers agree moderately: one person
        ({(2, 2): 50.0, (7, 7): 48.0, (2, 7): 3.0, (7, 2): 5.0}, (2, 2), True, [(2, 2), (7, 7)]),
        # one clear genuine finger, the other poorly captured: still one person
        ({(2, 2): 112.0, (7, 7): 4.0, (2, 7): 3.0, (7, 2): 5.0}, (2, 2), True, [(2, 2), (7, 7)]),
        # fingers captured under swapped positions still count
        ({(2, 2): 9.0, (7, 7): 6.0, (2, 7): 95.0, (7, 2): 88.0}, (2, 2), True, [(2, 7), (7, 2)]),
        # the same finger may not be counted twice: 60 + 55 would pass, 60 + 5 does not
        ({(2, 2): 60.0, (2, 7): 55.0, (7, 2): 5.0, (7, 7): 5.0}, (2, 2), False, None),
        # a member with one finger (injured hand): that finger alone, at the 1:N threshold
        ({(2, 2): 50.0, (2, 7): 3.0}, (1, 2), True, [(2, 2)]),
        ({(2, 2): 45.0, (2, 7): 3.0}, (1, 2), False, None),
    ],
)
def test_members_are_weighed_on_all_their_fingers(
    scores: dict[tuple[int, int], float], fingers: tuple[int, int], flagged: bool, used: list | None
) -> None:
    evidence = member_evidence(scores, *fingers, T, POLICY)
    assert (evidence is not None) == flagged
    if evidence is not None:
        assert [(a, b) for a, b, _ in evidence.pairs] == used
        assert evidence.total >= evidence.bar
