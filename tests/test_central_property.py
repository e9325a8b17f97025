"""Property: whatever a client sends to the upload API, the answer is a 4xx with a reason, never a 500.

Bodies are signed correctly (so they reach the batch parser and verifier): arbitrary bytes, arbitrary JSON,
valid batches with one field replaced by an arbitrary value, and valid batches with bytes flipped. Headers are
also mutated on their own. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.central.extensions import get_db
from cardsvc.central.services.terminals import register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.transaction import RecordType

UPLOAD = "/api/v1/batches"
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture
def target(central_app: Flask, clock: FixedClock) -> tuple[Flask, SimTerminal, bytes, int]:
    now = int(clock())
    terminal = SimTerminal.new(0x9A11, random.Random(1))
    with get_db(central_app).sessions() as session:
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), now - 100)
        session.commit()
    card = SimCard.new(0x1, random.Random(2))
    card.transact(RecordType.CASH, 100, now - 50, terminal.terminal_id, 1, 1)
    valid = terminal.batch(BatchKind.TRANSACTIONS, card.items(), now)
    return central_app, terminal, valid, now


def post(target: tuple[Flask, SimTerminal, bytes, int], body: bytes, headers: dict[str, str] | None = None):
    app, terminal, _valid, now = target
    response = app.test_client().post(
        UPLOAD, data=body, headers=headers or terminal.headers("POST", UPLOAD, body, now)
    )
    answer = response.get_json(silent=True)
    assert response.status_code < 500, answer
    assert isinstance(answer, dict), "every answer is JSON"
    if response.status_code >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
        assert isinstance(answer.get("reason"), str) and answer["reason"], answer
    return response


@SETTINGS
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_a_reason(target, body: bytes) -> None:
    assert post(target, body).status_code == 400


@SETTINGS
@given(value=json_values)
def test_arbitrary_json_is_refused_with_a_reason(target, value: Any) -> None:
    assert 400 <= post(target, json.dumps(value).encode()).status_code < 500


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@SETTINGS
@given(data=st.data(), replacement=json_values)
def test_a_valid_batch_with_any_field_replaced_is_never_a_500(target, data: st.DataObject, replacement):
    document = json.loads(target[2])
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    holder = document
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = replacement
    status = post(target, json.dumps(document).encode()).status_code
    assert status < 500


@SETTINGS
@given(data=st.data())
def test_a_valid_batch_with_bytes_flipped_is_refused(target, data: st.DataObject) -> None:
    body = bytearray(target[2])
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] ^= data.draw(st.integers(1, 255))
    status = post(target, bytes(body)).status_code
    assert status in (400, 413, 422) or status in (200, 201), status  # 2xx only if the flip was a no-op


@SETTINGS
@given(
    name=st.sampled_from(["X-Terminal-Id", "X-Timestamp", "X-Nonce", "X-Signature"]),
    value=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=90),
)
def test_mutated_headers_are_refused_with_a_reason(target, name: str, value: str) -> None:
    _app, terminal, valid, now = target
    headers = terminal.headers("POST", UPLOAD, valid, now)
    if headers[name] == value:
        return
    headers[name] = value
    assert post(target, valid, headers).status_code in (401, 403)
