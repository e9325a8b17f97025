"""Roles, rights and which tier may issue which role: the authorisation model of the certificates.

Rights are a bitmap (4 bytes, big-endian, in the CHAT's tag 53); the role is the last arc of the CHAT's OID.
Both are documented in docs/certificates.md; the numbers are wire values and must never be renumbered.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

#: OID arc under which a role is encoded: ROLE_OID_ARC + (role,). 2.999 is the ITU/ISO "example" arc,
#: a placeholder until the programme registers its own arc.
ROLE_OID_ARC: tuple[int, ...] = (2, 999, 7816, 1)

#: Signature algorithm OID carried in the public key (7F49/06): BSI TR-03110 id-TA-ECDSA-SHA-256.
ALGORITHM_OID_ECDSA_SHA256: tuple[int, ...] = (0, 4, 0, 127, 0, 7, 2, 2, 2, 2, 3)

RIGHTS_BYTES = 4


class Role(IntEnum):
    """Who a certificate holder is. The value is the last OID arc in the CHAT."""

    ROOT = 1
    DISTRICT = 2
    FIELD_KEY_OFFICER = 3
    FACILITY_OPERATOR = 4
    ENROLMENT_TERMINAL = 5
    POS_TERMINAL = 6
    BENEFICIARY_CARD = 7


class Right(IntFlag):
    """What a holder may do. Bit numbers are wire values (bit 0 = least significant bit of the bitmap)."""

    NONE = 0
    CERTIFY = 1 << 0  # issue certificates to the next tier down
    REVOKE = 1 << 1  # sign revocation lists
    PERSONALISE_OFFICER_CARD = 1 << 2  # write officer cards (DKMA)
    ACTIVATE_CARD = 1 << 3  # certify a beneficiary card at activation (FKO)
    ENROL = 1 << 4  # write household data to a blank card
    READ_PROFILE = 1 << 5  # read members, scheme entitlements, validity
    READ_TEMPLATES = 1 << 6  # read fingerprint templates (terminal authentication needed)
    DEBIT = 1 << 7  # block / settle a package, pay out
    TOP_UP = 1 << 8  # raise a wallet (renewal, top-up)
    PROOF_OF_LIFE = 1 << 9  # record proof of life (pensions)
    RENEW = 1 << 10  # rewrite the card for a new policy year
    SUPERVISE_OVERRIDE = 1 << 11  # authorise a biometric fallback override with a reason

    @classmethod
    def all(cls) -> Right:
        out = cls.NONE
        for r in cls:
            out |= r
        return out

    def names(self) -> list[str]:
        """Names of the set bits, lowest first (for messages and the CLI)."""
        return [r.name or "" for r in Right if r and r in self]

    @classmethod
    def parse_names(cls, text: str) -> Right:
        """Parse ``"READ_PROFILE,DEBIT"`` (case-insensitive; empty string = no rights)."""
        out = cls.NONE
        for part in text.replace("|", ",").split(","):
            part = part.strip().upper().replace("-", "_")
            if not part:
                continue
            try:
                out |= cls[part]
            except KeyError:
                known = ", ".join(r.name or "" for r in cls if r)
                raise ValueError(f"unknown right {part!r}; known rights: {known}") from None
        return out

    def encode(self) -> bytes:
        return int(self).to_bytes(RIGHTS_BYTES, "big")

    @classmethod
    def decode(cls, data: bytes) -> Right:
        value = int.from_bytes(data, "big")
        unknown = value & ~int(cls.all())
        if unknown:
            raise ValueError(f"rights bitmap has unknown bits {unknown:#x}")
        return cls(value)


#: Which role may issue which roles (the tier rule). The root is self-signed and issued by nobody.
ISSUABLE_BY: dict[Role, frozenset[Role]] = {
    Role.ROOT: frozenset({Role.DISTRICT}),
    Role.DISTRICT: frozenset(
        {Role.FIELD_KEY_OFFICER, Role.FACILITY_OPERATOR, Role.ENROLMENT_TERMINAL, Role.POS_TERMINAL}
    ),
    Role.FIELD_KEY_OFFICER: frozenset({Role.BENEFICIARY_CARD}),
    Role.FACILITY_OPERATOR: frozenset(),
    Role.ENROLMENT_TERMINAL: frozenset(),
    Role.POS_TERMINAL: frozenset(),
    Role.BENEFICIARY_CARD: frozenset(),
}

_OPERATIONS = (
    Right.READ_PROFILE
    | Right.READ_TEMPLATES
    | Right.DEBIT
    | Right.TOP_UP
    | Right.PROOF_OF_LIFE
    | Right.RENEW
    | Right.SUPERVISE_OVERRIDE
)

#: The most a role may ever hold, whatever its issuer holds (the role rule).
ROLE_MAX_RIGHTS: dict[Role, Right] = {
    Role.ROOT: Right.all(),
    Role.DISTRICT: Right.all(),
    Role.FIELD_KEY_OFFICER: Right.CERTIFY
    | Right.ACTIVATE_CARD
    | Right.ENROL
    | Right.READ_PROFILE
    | Right.READ_TEMPLATES,
    Role.FACILITY_OPERATOR: _OPERATIONS,
    Role.ENROLMENT_TERMINAL: Right.ENROL | Right.READ_PROFILE | Right.READ_TEMPLATES | Right.RENEW,
    Role.POS_TERMINAL: _OPERATIONS,
    Role.BENEFICIARY_CARD: Right.NONE,
}

#: What `keymgmt` grants by default when the operator does not name rights.
DEFAULT_RIGHTS: dict[Role, Right] = {
    Role.ROOT: Right.all(),
    Role.DISTRICT: Right.all(),
    Role.FIELD_KEY_OFFICER: ROLE_MAX_RIGHTS[Role.FIELD_KEY_OFFICER],
    Role.FACILITY_OPERATOR: Right.READ_PROFILE | Right.READ_TEMPLATES | Right.DEBIT | Right.PROOF_OF_LIFE,
    Role.ENROLMENT_TERMINAL: Right.ENROL | Right.READ_PROFILE | Right.READ_TEMPLATES,
    Role.POS_TERMINAL: Right.READ_PROFILE | Right.READ_TEMPLATES | Right.DEBIT | Right.PROOF_OF_LIFE,
    Role.BENEFICIARY_CARD: Right.NONE,
}


def role_oid(role: Role) -> tuple[int, ...]:
    return (*ROLE_OID_ARC, int(role))


def encode_oid(arcs: tuple[int, ...]) -> bytes:
    """DER content octets of an OBJECT IDENTIFIER (without tag 06 and length)."""
    if len(arcs) < 2:
        raise ValueError("an OID needs at least two arcs")
    out = bytearray()
    values = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    for v in values:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def decode_oid(data: bytes) -> tuple[int, ...]:
    if not data or data[-1] & 0x80:
        raise ValueError("truncated OID")
    values: list[int] = []
    v = 0
    for b in data:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            values.append(v)
            v = 0
    first = values[0]
    head = (min(first // 40, 2), first - 40 * min(first // 40, 2))
    return (*head, *values[1:])
