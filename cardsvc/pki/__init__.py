"""Public-key infrastructure: CV certificates, roles and rights, chain validation, revocation lists,
signers (memory, encrypted file, PKCS#11) and the terminal-authentication message.

Everything re-exported here is pure (no I/O beyond key files and tokens), so simulated card applications
can use it. The officer-card host session lives in ``cardsvc.pki.officer_card`` (it needs the card stack).
Formats: docs/certificates.md; key management: docs/keymgmt.md.
"""

from cardsvc.pki.chain import (
    Revocation,
    TrustAnchor,
    ValidatedChain,
    check_extensions,
    explain,
    validate_chain,
)
from cardsvc.pki.cvc import (
    CONTENT_DIGEST_OID,
    CertificateExtension,
    CvCertificate,
    build_body,
    content_digest_extension,
    issue_certificate,
    self_signed_root,
)
from cardsvc.pki.errors import PkiError, ValidationError
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationList,
    RevocationReason,
    RevocationStore,
    SubjectKind,
    build_revocation_list,
    verify_revocation_list,
)
from cardsvc.pki.rights import DEFAULT_RIGHTS, ISSUABLE_BY, ROLE_MAX_RIGHTS, Right, Role
from cardsvc.pki.signer import FileSigner, Pkcs11Signer, Signer, SoftwareSigner, verify_signature
from cardsvc.pki.termauth import (
    TerminalAuthVerifier,
    authenticate_terminal,
    sign_terminal_auth,
    terminal_auth_commands,
    terminal_auth_message,
)

__all__ = [
    "CONTENT_DIGEST_OID",
    "DEFAULT_RIGHTS",
    "ISSUABLE_BY",
    "ROLE_MAX_RIGHTS",
    "CertificateExtension",
    "CvCertificate",
    "FileSigner",
    "Pkcs11Signer",
    "PkiError",
    "Revocation",
    "RevocationEntry",
    "RevocationList",
    "RevocationReason",
    "RevocationStore",
    "Right",
    "Role",
    "Signer",
    "SoftwareSigner",
    "SubjectKind",
    "TerminalAuthVerifier",
    "TrustAnchor",
    "ValidatedChain",
    "ValidationError",
    "authenticate_terminal",
    "build_body",
    "build_revocation_list",
    "check_extensions",
    "content_digest_extension",
    "explain",
    "issue_certificate",
    "self_signed_root",
    "sign_terminal_auth",
    "terminal_auth_commands",
    "terminal_auth_message",
    "validate_chain",
    "verify_revocation_list",
    "verify_signature",
]
