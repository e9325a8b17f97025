"""Properties: a catalogue document mutated in any way is refused with the clerk's reason (never another
exception, never accepted with changed content); the fallback policy always leaves the clerk a way forward."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.pki.signer import SoftwareSigner
from point_of_service.catalogue import Catalogue, Package, verify_catalogue
from point_of_service.errors import CatalogueError
from point_of_service.services.fallback import Fallback, FallbackPolicy, VisitAttempts
from tests.fixtures.keys import build_hierarchy

NOW = datetime(2027, 1, 15, tzinfo=UTC)
_H = build_hierarchy(SoftwareSigner.generate(), SoftwareSigner.generate())
_CAT = Catalogue(
    7,
    _H.district.chr,
    1,
    1,
    (Package(301, "Normal delivery", 450_000, "obstetrics"), Package(112, "Cataract", 700_000, "eye")),
)
_WIRE = _CAT.sign(_H.district.signer, [_H.district.cert])


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(_WIRE) - 1), byte=st.integers(min_value=0, max_value=255)
)
def test_any_byte_changed_is_refused_or_identical(position: int, byte: int) -> None:
    mutated = bytearray(_WIRE)
    mutated[position] = byte
    try:
        got = verify_catalogue(bytes(mutated), _H.anchor, now=NOW)
    except CatalogueError as exc:
        assert exc.message.problem
        return
    assert got.canonical() == _CAT.canonical(), "accepted only when the signed content is unchanged"


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(["version", "issuer", "issued_at", "valid_from"]),
    value=st.one_of(st.integers(), st.text(max_size=8), st.none(), st.floats(allow_nan=False)),
)
def test_changed_header_fields_are_refused(field: str, value: object) -> None:
    doc = json.loads(_WIRE)
    if doc["catalogue"][field] == value:
        return
    doc["catalogue"][field] = value
    with pytest.raises(CatalogueError):
        verify_catalogue(json.dumps(doc).encode(), _H.anchor, now=NOW)


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 10)), max_size=40), st.integers(1, 5))
def test_override_is_always_offered(failures: list[tuple[int, int]], members: int) -> None:
    attempts = VisitAttempts(FallbackPolicy())
    for member, finger in failures:
        attempts.failed(member, finger)
    for member in range(members):
        options = attempts.options(member, {2, 7}, members)
        assert options[-1] is Fallback.OVERRIDE, "a patient is never stranded"
        assert (Fallback.ANOTHER_MEMBER in options) == (members > 1)
