"""Revocation lists: operators named by record id, entries sorted and unique, a second store consulted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cardsvc.pki import errors
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationList,
    RevocationStore,
    RevocationTag,
    SubjectKind,
    build_revocation_list,
    operator_subject,
    tlv,
)
from tests.fixtures.keys import PKI_NOW, PkiHierarchy

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def test_operator_subject_is_the_record_id_in_hex() -> None:
    assert operator_subject(0x0E) == "OP-000000000000000e"
    assert operator_subject(2**64 - 1) == "OP-ffffffffffffffff"
    for bad in (-1, 2**64):
        with pytest.raises(errors.FormatError):
            operator_subject(bad)


def test_operator_entries_round_trip(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    entry = RevocationEntry(operator_subject(0xC1E4), SubjectKind.OPERATOR, AT)
    rl = build_revocation_list(h.district.signer, issuer=h.district.chr, version=1, issued_at=PKI_NOW,
                               entries=[entry])  # fmt: skip
    parsed = RevocationList.parse(rl.encode())
    assert parsed.entries == (entry,) and parsed.entries[0].kind is SubjectKind.OPERATOR


def _signed_list(h: PkiHierarchy, entries: list[RevocationEntry]) -> bytes:
    """A list whose entries are written in the order given (build_revocation_list would sort them)."""
    body = tlv(
        RevocationTag.BODY,
        tlv(RevocationTag.FORMAT, b"\x01")
        + tlv(RevocationTag.ISSUER, h.district.chr.encode())
        + tlv(RevocationTag.VERSION, (1).to_bytes(4, "big"))
        + tlv(RevocationTag.ISSUED_AT, int(PKI_NOW.timestamp()).to_bytes(4, "big"))
        + tlv(RevocationTag.ENTRIES, b"".join(e.encode() for e in entries)),
    )
    return tlv(RevocationTag.LIST, body + tlv(RevocationTag.SIGNATURE, h.district.signer.sign(body)))


def test_unsorted_or_repeated_subjects_are_malformed(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    a = RevocationEntry("CARD-10000000001", SubjectKind.CARD, AT)
    b = RevocationEntry("CARD-10000000002", SubjectKind.CARD, AT)
    assert [e.subject for e in RevocationList.parse(_signed_list(h, [a, b])).entries] == [
        a.subject,
        b.subject,
    ]
    with pytest.raises(errors.FormatError, match="sorted by subject"):
        RevocationList.parse(_signed_list(h, [b, a]))
    with pytest.raises(errors.FormatError, match="one entry per subject"):
        RevocationList.parse(_signed_list(h, [a, RevocationEntry(a.subject, SubjectKind.CARD, LATER)]))


def _operator_list(h: PkiHierarchy, subject: str, at: datetime) -> RevocationList:
    entries = [RevocationEntry(subject, SubjectKind.OPERATOR, at)]
    return build_revocation_list(
        h.district.signer, issuer=h.district.chr, version=1, issued_at=PKI_NOW, entries=entries
    )


def test_a_store_consults_the_stores_it_is_given(pki_hierarchy: PkiHierarchy) -> None:
    h = pki_hierarchy
    path = (h.anchor.chr, h.district.chr)
    mine, central = RevocationStore(h.anchor), RevocationStore(h.anchor)
    mine.also.append(central)
    subject = operator_subject(0x77)
    assert mine.revocation_of(subject, path) is None
    mine.offer(_operator_list(h, subject, LATER), now=PKI_NOW, issuer_chain=[h.district.cert])
    earlier = _operator_list(h, subject, AT)
    central.offer(earlier, now=PKI_NOW, issuer_chain=[h.district.cert])  # same issuer and version: kept apart
    found = mine.revocation_of(subject, path)
    assert found is not None and found.revoked_at == AT  # the earliest, from the store consulted
