"""Deprecated alias: the PKI's TLV now lives in cardsvc/tlv.py (strict mode), its one home.

No parsing here. Kept only because keymgmt/cli.py (verify-chain) and tests/test_pki_tlv.py still import
this module; once they import ``strict_codec`` from cardsvc.tlv, delete this file.
"""

from __future__ import annotations

from cardsvc.pki.errors import FormatError
from cardsvc.tlv import Tlv, strict_codec

expect_sequence, parse_all, parse_single, tlv = strict_codec(FormatError)

__all__ = ["Tlv", "expect_sequence", "parse_all", "parse_single", "tlv"]
