"""The terminal API on SQLite and PostgreSQL: idempotent uploads and every refusal with its reason."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from cardsvc.central.extensions import get_db
from cardsvc.central.models import BatchRow, Card, Package, TransactionRow
from cardsvc.central.services.terminals import register_terminal, revoke_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.transaction import RecordType

UPLOAD = "/api/v1/batches"


@dataclass
class Field:
    app: Flask
    client: FlaskClient
    clock: FixedClock
    terminal: SimTerminal
    card: SimCard

    @property
    def now(self) -> int:
        return int(self.clock())

    def post(self, body: bytes, terminal: SimTerminal | None = None, **header_overrides: str):
        signer = terminal or self.terminal
        headers = signer.headers("POST", UPLOAD, body, self.now)
        headers.update(header_overrides)
        return self.client.post(UPLOAD, data=body, headers=headers)

    def get(self, path: str):
        return self.client.get(path, headers=self.terminal.headers("GET", path, b"", self.now))

    def count(self, model: type) -> int:
        with get_db(self.app).sessions() as session:
            return session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def field(central_app: Flask, clock: FixedClock) -> Field:
    rng = random.Random(11)
    terminal = SimTerminal.new(0x5EC0_0001, rng)
    with get_db(central_app).sessions() as session:
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), int(clock()) - 3600)
        session.commit()
    card = SimCard.new(0xCA4D_0001, rng)
    t = int(clock()) - 600
    card.transact(RecordType.BLOCK, 1_200_000, t, terminal.terminal_id, 0x0E, 17, reference=301)
    card.transact(RecordType.SETTLE, 1_100_000, t + 300, terminal.terminal_id, 0x0E, 17, reference=1)
    return Field(central_app, central_app.test_client(), clock, terminal, card)


def refusal(response, status: int, code: str) -> str:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"] == code, body
    assert body["reason"], "every refusal says why"
    return str(body["reason"])


def test_upload_stores_raw_and_parsed_records(field: Field) -> None:
    body = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    response = field.post(body)
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()["receipt"]
    assert receipt["items"] == 2 and receipt["new_items"] == 2 and receipt["kind"] == "transactions"
    with get_db(field.app).sessions() as session:
        stored = session.execute(select(TransactionRow).order_by(TransactionRow.counter)).scalars().all()
        batch = session.execute(select(BatchRow)).scalar_one()
    assert [r.raw for r in stored] == [r.encode() for r in field.card.log]
    assert [(r.counter, r.amount, r.facility_id) for r in stored] == [(1, 1_200_000, 17), (2, 1_100_000, 17)]
    assert batch.raw == body


def test_same_content_twice_gives_the_original_receipt_and_is_stored_once(field: Field) -> None:
    items = field.card.items()
    first = field.post(field.terminal.batch(BatchKind.TRANSACTIONS, items, field.now, seq=1))
    field.clock.advance(30)
    resigned = field.terminal.batch(BatchKind.TRANSACTIONS, items, field.now - 30, seq=1)  # new signature
    second = field.post(resigned)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.get_json()["receipt"] == first.get_json()["receipt"]
    assert second.get_json()["duplicate"] is True
    assert field.count(BatchRow) == 1 and field.count(TransactionRow) == 2


def test_overlapping_batches_store_each_record_once(field: Field) -> None:
    t = field.now
    field.card.transact(RecordType.CASH, 5_000, t - 100, field.terminal.terminal_id, 0x0E, 17)
    a = field.post(field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(field.card.log[:2]), t))
    b = field.post(field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(field.card.log[1:]), t))
    assert (a.status_code, b.status_code) == (201, 201)
    assert b.get_json()["receipt"]["new_items"] == 1
    assert field.count(BatchRow) == 2 and field.count(TransactionRow) == 3


def test_camp_then_fko_ledger_upload(field: Field) -> None:
    camp = field.card.camp_card("Jaipur", field.now - 86_400, field.now + 300 * 86_400, fko_id=0xF00)
    assert field.post(field.terminal.batch(BatchKind.CAMP, [camp], field.now)).status_code == 201
    assert field.count(Card) == 1
    from cardsvc.formats.batch import FkoLedgerEntry

    ledger = FkoLedgerEntry(0xF00, (field.card.card_id,))
    assert field.post(field.terminal.batch(BatchKind.FKO_LEDGER, [ledger], field.now)).status_code == 201


def test_malformed_body_refused_with_reason(field: Field) -> None:
    assert "JSON" in refusal(field.post(b"{not json"), 400, "malformed_batch")
    document = json.loads(field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now))
    document["batch"]["kind"] = "cheques"
    assert "batch.kind" in refusal(field.post(json.dumps(document).encode()), 400, "malformed_batch")


def test_oversized_body_refused(field: Field) -> None:
    field.app.config["MAX_CONTENT_LENGTH"] = 10_000
    body = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items() * 60, field.now)
    assert len(body) > 10_000
    assert "10000 bytes" in refusal(field.post(body), 413, "too_large")
    assert field.count(BatchRow) == 0


def test_unsigned_request_refused(field: Field) -> None:
    body = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    response = field.client.post(UPLOAD, data=body)
    assert "X-Signature" in refusal(response, 401, "unsigned")


def test_bad_request_signature_refused(field: Field) -> None:
    body = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    other = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now, seq=99)
    headers = field.terminal.headers("POST", UPLOAD, other, field.now)  # signed over another body
    refusal(field.client.post(UPLOAD, data=body, headers=headers), 401, "bad_signature")
    assert field.count(BatchRow) == 0


def test_replayed_nonce_refused(field: Field) -> None:
    body = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    headers = field.terminal.headers("POST", UPLOAD, body, field.now)
    assert field.client.post(UPLOAD, data=body, headers=headers).status_code == 201
    refusal(field.client.post(UPLOAD, data=body, headers=headers), 401, "replayed_nonce")


def test_stale_timestamp_refused(field: Field) -> None:
    body = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    headers = field.terminal.headers("POST", UPLOAD, body, field.now - 301)
    assert "-301 s" in refusal(field.client.post(UPLOAD, data=body, headers=headers), 401, "stale_timestamp")


def test_unknown_terminal_refused(field: Field) -> None:
    stranger = SimTerminal.new(0xBAD, random.Random(5))
    body = stranger.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    assert "0000000000000bad" in refusal(field.post(body, terminal=stranger), 401, "unknown_terminal")


def test_revoked_terminal_refused(field: Field) -> None:
    with get_db(field.app).sessions() as session:
        revoke_terminal(session, field.terminal.terminal_id, field.now - 60)
        session.commit()
    body = field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    refusal(field.post(body), 403, "revoked_terminal")


def test_batch_signed_by_another_key_refused(field: Field) -> None:
    impostor = SimTerminal.new(field.terminal.terminal_id, random.Random(6))  # same id, wrong key
    body = impostor.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    refusal(field.post(body), 422, "bad_batch_signature")


def test_forged_card_record_refused_naming_the_item(field: Field) -> None:
    forger = SimCard.new(field.card.card_id, random.Random(4))  # a clone without the chip's key ...
    record = forger.transact(RecordType.CASH, 100, field.now - 10, field.terminal.terminal_id, 1, 17)
    from cardsvc.formats.batch import TransactionItem

    items = [*field.card.items(), TransactionItem(record.encode(), field.card.public_key)]  # ... posing
    reason = refusal(field.post(field.terminal.batch(BatchKind.TRANSACTIONS, items, field.now)), 422,
                     "bad_record_signature")  # fmt: skip
    assert "batch.items[2]" in reason
    assert field.count(TransactionRow) == 0, "a batch with one bad record is refused whole"


def test_card_key_must_match_the_registered_one(field: Field) -> None:
    camp = field.card.camp_card("Jaipur", field.now - 86_400, field.now + 86_400, fko_id=1)
    assert field.post(field.terminal.batch(BatchKind.CAMP, [camp], field.now)).status_code == 201
    clone = SimCard.new(field.card.card_id, random.Random(12))
    clone.transact(RecordType.CASH, 100, field.now - 10, field.terminal.terminal_id, 1, 17)
    body = field.terminal.batch(BatchKind.TRANSACTIONS, clone.items(), field.now)
    refusal(field.post(body), 422, "card_key_mismatch")


def test_downloads(field: Field) -> None:
    with get_db(field.app).sessions() as session:
        session.add(Package(code=301, version=1, name="Hysterectomy", price_paise=1_200_000, valid_from=0))
        revoke_terminal(session, field.terminal.terminal_id, field.now + 3600)  # revoked later: still usable
        session.commit()
    packages = field.get("/api/v1/packages")
    assert packages.status_code == 200
    assert packages.get_json()["packages"][0]["name"] == "Hysterectomy"
    revocations = field.get("/api/v1/revocations").get_json()
    expected = {"id": f"{field.terminal.terminal_id:016x}", "revoked_at": field.now + 3600}
    assert revocations["terminals"] == [expected]
    assert field.get("/api/v1/authorisations").get_json()["authorisations"] == []
    refusal(field.client.get("/api/v1/packages"), 401, "unsigned")


def test_openapi_document_lists_every_route(field: Field) -> None:
    document = field.client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {rule.rule for rule in field.app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")}
    assert {f"/api/v1{path}" for path in document["paths"]} == routes


def test_large_camp_with_awkward_text_is_stored_exactly(field: Field) -> None:
    """250 cards (PostgreSQL bulk path: COPY) with tabs, newlines, backslashes and non-ASCII in text."""
    rng = random.Random(9)
    awkward = ["tab\there", "new\nline", "back\\slash", "Ābhā जयपुर", "quote\"'", "\\N"]
    cards = [SimCard.new(0xD000 + i, rng) for i in range(250)]
    camp = [
        card.camp_card(
            f"District {awkward[i % 6]}", field.now - 100, field.now + 100, 0xF, household=awkward[i % 6]
        )
        for i, card in enumerate(cards)
    ]
    response = field.post(field.terminal.batch(BatchKind.CAMP, camp, field.now))
    assert response.status_code == 201 and response.get_json()["receipt"]["new_items"] == 250
    with get_db(field.app).sessions() as session:
        stored = {c.card_id: c for c in session.execute(select(Card)).scalars()}
    for i, card in enumerate(cards):
        row = stored[f"{card.card_id:016x}"]
        assert (row.household_id, row.district) == (awkward[i % 6], f"District {awkward[i % 6]}")
        assert row.members == [m.to_json() for m in camp[i].members]
        assert row.public_key == card.public_key


def test_migrations_match_the_models(db_url: str) -> None:
    """The Alembic head creates exactly the schema the models describe (no forgotten migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from cardsvc.central.extensions import make_engine
    from cardsvc.central.models import Base

    engine = make_engine(db_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_batch_from_an_unregistered_terminal_relayed_is_refused(field: Field) -> None:
    stranger = SimTerminal.new(0xFACE, random.Random(13))
    body = stranger.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now)
    reason = refusal(field.post(body), 422, "unknown_batch_terminal")  # relayed by a registered terminal
    assert "000000000000face" in reason


def test_batch_made_after_its_terminals_revocation_is_refused_but_earlier_ones_accepted(field: Field) -> None:
    laptop = SimTerminal.new(0x1A9, random.Random(14))
    with get_db(field.app).sessions() as session:
        register_terminal(session, laptop.terminal_id, laptop.key.public_key(), field.now - 10_000)
        revoke_terminal(session, laptop.terminal_id, field.now - 1_000)
        session.commit()
    before = laptop.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now - 2_000)
    after = laptop.batch(BatchKind.TRANSACTIONS, field.card.items(), field.now - 500)
    assert field.post(before).status_code == 201  # made before the revocation, relayed later
    refusal(field.post(after), 403, "revoked_batch_terminal")


def test_camp_reporting_a_known_card_with_another_key_is_a_conflict(field: Field) -> None:
    camp = field.card.camp_card("Jaipur", field.now - 100, field.now + 100, 1)
    assert field.post(field.terminal.batch(BatchKind.CAMP, [camp], field.now)).status_code == 201
    impostor = SimCard.new(field.card.card_id, random.Random(15)).camp_card("Jaipur", 0, 1, 1)
    refusal(field.post(field.terminal.batch(BatchKind.CAMP, [impostor], field.now)), 409, "card_conflict")
    assert field.count(Card) == 1


def test_record_breaking_the_format_is_refused_naming_it(field: Field) -> None:
    from cardsvc.formats.batch import TransactionItem

    bad = bytearray(field.card.log[0].encode())
    bad[1] = 99  # no such record type
    items = [TransactionItem(bytes(bad), field.card.public_key)]
    reason = refusal(
        field.post(field.terminal.batch(BatchKind.TRANSACTIONS, items, field.now)), 422, "bad_record"
    )
    assert "batch.items[0]" in reason and "record_type" in reason


def test_overlapping_batches_through_the_copy_pipeline(field: Field, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PostgreSQL bulk path (forced for small batches): records already held make the optimistic COPY
    fail; the batch is stored again with the look-up, each record once."""
    from cardsvc.central.services import ingest

    monkeypatch.setattr(ingest, "COPY_THRESHOLD", 1)
    monkeypatch.setattr(ingest, "CHUNK", 2)
    monkeypatch.setattr(ingest, "PIPELINE_CHUNK", 2)  # several chunks through the pipeline
    for n in range(5):
        field.card.transact(RecordType.CASH, 1_000, field.now - 100 + n, field.terminal.terminal_id, 0x0E, 17)
    log = field.card.log
    first = field.post(field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(log[:4]), field.now))
    second = field.post(field.terminal.batch(BatchKind.TRANSACTIONS, field.card.items(log[2:]), field.now))
    assert first.get_json()["receipt"]["new_items"] == 4
    assert second.get_json()["receipt"]["new_items"] == 3
    assert field.count(TransactionRow) == 7


def test_openapi_references_all_resolve(field: Field) -> None:
    document = field.client.get("/api/v1/openapi.json").get_json()
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        target = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"{ref} does not resolve"
            target = target[part]
