"""Formats of the beneficiary card: household profile, template and photo sets, status, attestation, debit
request and central authorisation. Round trips for any valid value, and strict refusals naming the field."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.beneficiary import protocol as fmt
from cardsvc.formats.profile import (
    ContentHashes,
    Gender,
    HouseholdProfile,
    Member,
    OfflineLimits,
    ProfileFormatError,
    Relation,
    SchemeCover,
    StoredTemplate,
    card_chr,
    card_number,
    content_digest,
    encode_templates,
    parse_templates,
    reference_id,
    tlv,
)
from cardsvc.formats.transaction import RecordType
from tests.fixtures.beneficiary import household_profile

names = st.text(st.characters(min_codepoint=0x41, max_codepoint=0x97A), min_size=1, max_size=16).map(
    lambda s: s.strip() or "A"
)
refs = st.from_regex(r"[A-Za-z0-9._-]{1,24}", fullmatch=True)


@st.composite
def profiles(draw: st.DrawFn) -> HouseholdProfile:
    n = draw(st.integers(1, 5))
    members = tuple(
        Member(
            i,
            draw(names),
            draw(st.sampled_from(list(Gender))),
            draw(st.integers(1900, 2099)),
            Relation.HEAD if i == 0 else draw(st.sampled_from(list(Relation)[1:])),
        )
        for i in range(n)
    )
    start = draw(st.dates(date(2000, 1, 1), date(2098, 1, 1)))
    ids = sorted(draw(st.sets(st.integers(0, 255), min_size=1, max_size=4)))
    return HouseholdProfile(
        card_id=card_chr(draw(st.integers(0, 10**19 - 1))), household_id=draw(refs), village=draw(names),
        district=draw(refs), fko_id=draw(refs), policy_start=start,
        policy_end=draw(st.dates(start, date(2099, 12, 31))),
        limits=OfflineLimits(draw(st.integers(1, 65535)), draw(st.integers(0, 2**32 - 1))),
        members=members, schemes=tuple(SchemeCover(i, draw(st.integers(0, 2**32 - 1))) for i in ids),
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(profiles())
def test_profile_round_trip(profile: HouseholdProfile) -> None:
    raw = profile.encode()
    assert HouseholdProfile.parse(raw) == profile
    assert HouseholdProfile.parse(raw).encode() == raw


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_byte_change_is_refused_or_parses_to_another_profile(data: st.DataObject) -> None:
    raw = bytearray(household_profile().encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        parsed = HouseholdProfile.parse(bytes(raw))
    except ProfileFormatError:
        return
    assert parsed != household_profile()  # never silently the same household
    assert parsed.encode() == bytes(raw)  # one encoding per value: the digest identifies the content


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.encode() + b"\x00\x00", "profile: .*no padding"),
        (lambda p: p.encode() + b"\x80\x00", "exactly one TLV"),
        (lambda p: p.encode().replace(b"\x80\x01\x01", b"\x80\x01\x02", 1), "version"),
        (lambda p: p.encode().replace(b"20261101", b"20261301"), "not a calendar date"),
        (lambda p: p.encode().replace(b"CARD-10000000001", b"CARD-01000000001"), "card id"),
    ],
)
def test_strict_profile_errors_name_the_field(mutate: object, message: str) -> None:
    with pytest.raises(ProfileFormatError, match=message):
        HouseholdProfile.parse(mutate(household_profile()))  # type: ignore[operator]


def test_household_rules() -> None:
    p = household_profile()
    spouse_first = (Member(0, "Sunita Devi", Gender.FEMALE, 1975, Relation.SPOUSE),)
    with pytest.raises(ProfileFormatError, match="head"):
        HouseholdProfile(**{**p.__dict__, "members": spouse_first}).encode()
    with pytest.raises(ProfileFormatError, match="1-5 members"):
        HouseholdProfile(
            **{**p.__dict__, "members": (*p.members, Member(5, "X", Gender.MALE, 2000, Relation.CHILD))}
        ).encode()
    with pytest.raises(ProfileFormatError, match="before start"):
        HouseholdProfile(**{**p.__dict__, "policy_end": date(2020, 1, 1)}).encode()


def test_ids() -> None:
    assert card_number(card_chr(10000000001)) == 10000000001
    with pytest.raises(ProfileFormatError):
        card_number("CARD-10000000000000000000")
    assert reference_id("INTRM-POS-0001") != reference_id("INTRM-POS-0002")


def test_templates_and_digest() -> None:
    ts = [StoredTemplate(0, 2, bytes(range(30))), StoredTemplate(0, 7, bytes(60))]
    raw = encode_templates(ts)
    assert parse_templates(raw) == tuple(ts)
    with pytest.raises(ProfileFormatError, match="one template per member and finger"):
        encode_templates([ts[0], ts[0]])
    with pytest.raises(ProfileFormatError):
        parse_templates(raw + tlv(0x73, b""))
    a = content_digest(b"p", raw)
    assert (
        a != content_digest(b"p", raw[:-3] + b"\x00\x00\x01")
        and a == ContentHashes.of(b"p", raw, b"").digest()
    )


def test_protocol_messages_round_trip() -> None:
    req = fmt.DebitRequest(RecordType.SETTLE, 1, 500, 7, 8, 9, 3, 2, bytes(16), b"\x01\x02")
    assert fmt.DebitRequest.parse(req.encode()) == req
    auth = fmt.Authorisation(fmt.AuthKind.TOP_UP, "CARD-1", 3, 1, 9000, b"", bytes(64))
    assert fmt.Authorisation.parse(auth.encode()) == auth
    att = fmt.Attestation(fmt.Lifecycle.ACTIVATED, 5, ContentHashes.of(b"a", b"b", b"c"), bytes(64))
    assert fmt.Attestation.parse(att.encode()) == att
    with pytest.raises(ProfileFormatError):
        fmt.DebitRequest.parse(req.encode()[:40])
