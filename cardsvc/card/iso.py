"""ISO/IEC 7816-4 names: status words, instructions, class bits, P1/P2 values, tags and file ids.

Named ``IntEnum``s so logs and errors say ``FILE_NOT_FOUND (6A82)`` rather than a bare number.
"""

from __future__ import annotations

from enum import IntEnum


class SW(IntEnum):
    """Complete status words (SW1 << 8 | SW2). Families with a counter in SW2 are in :class:`SW1`."""

    OK = 0x9000
    NO_INFORMATION_GIVEN = 0x6200
    END_OF_FILE_REACHED = 0x6282
    SELECTED_FILE_DEACTIVATED = 0x6283
    VERIFICATION_FAILED = 0x6300
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_INCOMPATIBLE_WITH_FILE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    SM_DATA_OBJECTS_MISSING = 0x6987
    SM_DATA_OBJECTS_INCORRECT = 0x6988
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    LC_INCONSISTENT_WITH_P1P2 = 0x6A87
    REFERENCE_NOT_FOUND = 0x6A88
    FILE_ALREADY_EXISTS = 0x6A89
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


class SW1(IntEnum):
    """SW1 values whose SW2 carries a number (bytes available, correct Le, tries left)."""

    BYTES_AVAILABLE = 0x61  # 61xx: GET RESPONSE with Le = xx
    WARNING_COUNTER = 0x63  # 63Cx: verification failed, x tries left
    WRONG_LE = 0x6C  # 6Cxx: re-issue the command with Le = xx


def sw_name(sw: int) -> str:
    """Human name of a status word, e.g. ``FILE_NOT_FOUND (6A82)`` or ``BYTES_AVAILABLE 12 (6112)``."""
    try:
        return f"{SW(sw).name} ({sw:04X})"
    except ValueError:
        pass
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == SW1.WARNING_COUNTER and sw2 & 0xF0 == 0xC0:
        return f"VERIFICATION_FAILED {sw2 & 0x0F} tries left ({sw:04X})"
    try:
        return f"{SW1(sw1).name} {sw2} ({sw:04X})"
    except ValueError:
        return f"UNKNOWN_SW ({sw:04X})"


class Ins(IntEnum):
    """Instruction bytes (INS) of the ISO commands the card stack uses."""

    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    MANAGE_SECURITY_ENVIRONMENT = 0x22
    PERFORM_SECURITY_OPERATION = 0x2A
    GENERATE_ASYMMETRIC_KEY_PAIR = 0x47
    EXTERNAL_AUTHENTICATE = 0x82
    GET_CHALLENGE = 0x84
    GENERAL_AUTHENTICATE = 0x86
    INTERNAL_AUTHENTICATE = 0x88
    SELECT = 0xA4
    READ_BINARY = 0xB0
    READ_BINARY_ODD = 0xB1
    READ_RECORD = 0xB2
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA
    UPDATE_BINARY = 0xD6
    UPDATE_BINARY_ODD = 0xD7
    PUT_DATA = 0xDA
    APPEND_RECORD = 0xE2


#: Instructions whose command data is a secret (PIN, PUK, new PIN): the APDU log never shows it.
SECRET_DATA_INS = frozenset({Ins.VERIFY, Ins.CHANGE_REFERENCE_DATA, Ins.RESET_RETRY_COUNTER})


class Cla(IntEnum):
    """Class byte values and bits."""

    ISO = 0x00
    CHAINING = 0x10  # bit 5: more command APDUs of this chain follow
    SECURE_MESSAGING = 0x0C


class SelectP1(IntEnum):
    """SELECT P1: how the file is named."""

    FILE_ID = 0x00
    CHILD_DF = 0x01
    EF_UNDER_CURRENT_DF = 0x02
    PARENT_DF = 0x03
    DF_NAME = 0x04  # by application identifier (AID)
    PATH_FROM_MF = 0x08
    PATH_FROM_CURRENT_DF = 0x09


class SelectP2(IntEnum):
    """SELECT P2: which template the card returns."""

    FCI = 0x00
    FCP = 0x04
    FMD = 0x08
    NO_DATA = 0x0C


class Tag(IntEnum):
    """BER-TLV tags of ISO 7816-4 data objects the card stack reads."""

    DISCRETIONARY_DATA = 0x53
    OFFSET_DATA = 0x54  # READ/UPDATE BINARY odd INS: offset as a DO
    FCP = 0x62
    FMD = 0x64
    FCI = 0x6F
    FILE_SIZE = 0x80  # data bytes in a transparent EF
    FILE_SIZE_TOTAL = 0x81
    FILE_DESCRIPTOR = 0x82
    FILE_ID = 0x83
    DF_NAME = 0x84
    PROPRIETARY = 0xA5
    LIFE_CYCLE_STATUS = 0x8A
    INTEGER = 0x02
    CARD_CAPABILITIES = 0x47
    EXTENDED_LENGTH_INFO = 0x7F66


class FileId(IntEnum):
    """Reserved file identifiers."""

    MF = 0x3F00
    EF_DIR = 0x2F00
    EF_ATR = 0x2F01


class PinReference(IntEnum):
    """VERIFY P2: which reference data (PIN) is meant. 80 = specific (application) PIN 0."""

    GLOBAL_1 = 0x01
    SPECIFIC_1 = 0x80
    SPECIFIC_2 = 0x81
