"""Card-side ISO/IEC 7816-4 constants: status words, instructions, tags.

The host defines its own copies in cardsvc/card/apdu.py; duplicating constants across the card/host
boundary mirrors reality (the card and the terminal are built by different people).
"""

from __future__ import annotations

from enum import IntEnum


class SW(IntEnum):
    """Status words the simulated card returns."""

    OK = 0x9000
    END_OF_FILE = 0x6282
    WARNING_NVM_CHANGED = 0x6300
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_INCOMPATIBLE_WITH_FILE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCE_NOT_FOUND = 0x6A88
    FILE_EXISTS = 0x6A89
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00

    @classmethod
    def describe(cls, sw: int) -> str:
        """Name of a status word, including the 61xx / 63Cx / 6Cxx families."""
        if sw in cls._value2member_map_:
            return cls(sw).name
        if sw >> 8 == 0x61:
            return f"MORE_DATA({sw & 0xFF})"
        if sw & 0xFFF0 == 0x63C0:
            return f"VERIFY_FAILED(tries_left={sw & 0x0F})"
        if sw >> 8 == 0x6C:
            return f"WRONG_LE(exact={sw & 0xFF})"
        return f"SW_{sw:04X}"


def sw_more_data(remaining: int) -> int:
    """61xx: xx more bytes are available with GET RESPONSE (00 means 256 or more)."""
    return 0x6100 | min(remaining, 0x100) & 0xFF


def sw_wrong_le(exact: int) -> int:
    """6Cxx: wrong Le; xx is the exact number of bytes available (00 means 256). The command did nothing."""
    return 0x6C00 | exact & 0xFF


def sw_tries_left(tries: int) -> int:
    """63Cx: wrong reference data (or status query), x tries left."""
    return 0x63C0 | min(tries, 15)


class INS(IntEnum):
    """Inter-industry instructions (CLA 0x00) the card OS implements itself."""

    MANAGE_SECURITY_ENVIRONMENT = 0x22
    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    PERFORM_SECURITY_OPERATION = 0x2A
    GENERATE_ASYMMETRIC_KEY_PAIR = 0x47
    GET_CHALLENGE = 0x84
    INTERNAL_AUTHENTICATE = 0x88
    SELECT = 0xA4
    READ_BINARY = 0xB0
    READ_BINARY_ODD = 0xB1
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA
    UPDATE_BINARY = 0xD6
    UPDATE_BINARY_ODD = 0xD7


class CLA(IntEnum):
    """Class bytes (only the parts the card interprets)."""

    INTERINDUSTRY = 0x00
    PROPRIETARY = 0x80
    CHAINING_BIT = 0x10
    SECURE_MESSAGING_BITS = 0x0C
    CHANNEL_BITS = 0x03


class Tag(IntEnum):
    """BER-TLV tags used by the card OS."""

    FCP = 0x62
    FCI = 0x6F
    FILE_SIZE = 0x80
    FILE_DESCRIPTOR = 0x82
    FILE_ID = 0x83
    DF_NAME = 0x84
    SECURITY_ATTRIBUTES = 0x86  # proprietary format, see access.py
    SFI = 0x88
    LIFE_CYCLE = 0x8A
    DISCRETIONARY_DATA = 0x53
    OFFSET = 0x54
    APPLICATION_TEMPLATE = 0x61
    APPLICATION_ID = 0x4F
    APPLICATION_LABEL = 0x50
    PUBLIC_KEY_TEMPLATE = 0x7F49
    EC_PUBLIC_POINT = 0x86
    EXTENDED_LENGTH_INFO = 0x7F66
    HISTORICAL_BYTES = 0x5F52
    INTEGER = 0x02
    CRT_DST = 0xB6  # digital signature template
    CRT_AT = 0xA4  # authentication template
    KEY_REFERENCE = 0x83
    PRIVATE_KEY_REFERENCE = 0x84


class FileId(IntEnum):
    """Well-known file identifiers."""

    MF = 0x3F00
    EF_DIR = 0x2F00
    EF_ATR_INFO = 0x2F01


class PsoP1P2(IntEnum):
    """PERFORM SECURITY OPERATION forms (P1 << 8 | P2)."""

    COMPUTE_DIGITAL_SIGNATURE = 0x9E9A


class MseP1P2(IntEnum):
    """MANAGE SECURITY ENVIRONMENT SET forms (P1 << 8 | P2)."""

    SET_DST = 0x41B6
    SET_AT = 0x41A4
