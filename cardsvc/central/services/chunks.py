"""One home for slicing id lists into the bound parameters of SQL ``IN`` clauses.

A district's cards or a batch's records can be more ids than one statement should bind (SQLite builds
allow as few as 999 or 32,766 parameters; PostgreSQL's protocol 65,535), and one huge statement holds
locks and memory for its whole run, so every query over a list of ids takes it in slices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, TypeVar

T = TypeVar("T")

#: ids bound in one ``IN`` clause unless a caller chooses otherwise
IN_CHUNK: Final = 500


def in_chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterable[Sequence[T]]:
    """``values`` in consecutive slices of at most ``size`` (none for an empty sequence)."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    for start in range(0, len(values), size):
        yield values[start : start + size]
