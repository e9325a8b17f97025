"""The one slicer of central's long id lists (cardsvc/central/services/chunks.py): every id taken, in order,
in slices no longer than asked."""

from __future__ import annotations

import pytest

from cardsvc.central.services.chunks import IN_CHUNK, in_chunks


def test_slices_cover_the_list_in_order_and_never_exceed_the_size() -> None:
    values = list(range(1_234))
    slices = list(in_chunks(values, 500))
    assert [len(s) for s in slices] == [500, 500, 234]
    assert [v for s in slices for v in s] == values
    assert list(in_chunks([])) == [] and all(len(s) <= IN_CHUNK for s in in_chunks(values))
    with pytest.raises(ValueError, match="positive"):
        list(in_chunks(values, 0))
