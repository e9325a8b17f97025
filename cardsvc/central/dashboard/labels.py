"""Data values in words: every code the central services hand to the dashboard (flag kinds, record types,
roles, schemes, genders, fingers, authorisation kinds, audit actions, reasons a claim is held) mapped to a
msgid of the one message catalogue, so a Hindi page shows no English code. Unknown codes are shown as they
are (a new flag kind appears, untranslated, rather than disappearing)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from cardsvc.central.dashboard.users import Role
from cardsvc.formats.transaction import RecordType

FLAG_LABELS: dict[str, Any] = {
    "duplicate_counter": _l("Same counter twice: cloned card or replay"),
    "counter_gap": _l("Records missing (counter gap)"),
    "balance_mismatch": _l("Balance does not add up"),
    "chain_break": _l("Record chain broken"),
    "outside_policy": _l("Used outside the policy year"),
    "impossible_travel": _l("Impossible travel between facilities"),
    "package_mix_outlier": _l("Unusual package mix at a facility"),
    "revoked_terminal": _l("Used by a revoked terminal"),
    "revoked_operator": _l("Used by a revoked operator"),
    "fko_count_mismatch": _l("FKO ledger differs from uploaded camps"),
    "unregistered_card": _l("Card no camp has reported"),
    "forged_record": _l("Record not signed by the card's key"),
    "duplicate_enrolment": _l("Same finger on two cards"),
    "unauthorised_renewal": _l("Renewal central did not authorise"),
    "unauthorised_split": _l("Cover moved to a split card without central's authorisation"),
}
#: Reasons a claim is held that are not flag kinds (services/settlement.py).
HOLD_LABELS: dict[str, Any] = {
    **FLAG_LABELS,
    "revoked_terminal": _l("Terminal revoked before this record"),
    "revoked_operator": _l("Operator revoked before this record"),
    "unregistered_card": _l("Card key not registered by a camp"),
    "block_not_uploaded": _l("The admission it closes is not uploaded"),
}
RECORD_LABELS: dict[int, Any] = {
    RecordType.BLOCK: _l("Admission (block)"), RecordType.SETTLE: _l("Discharge (settle)"),
    RecordType.RELEASE: _l("Cancellation (release)"), RecordType.CASH: _l("Cash payment"),
    RecordType.PROOF_OF_LIFE: _l("Proof of life"), RecordType.TOP_UP: _l("Top-up"),
    RecordType.RENEWAL: _l("Renewal"), RecordType.SPLIT: _l("Cover moved to a split card"),
}  # fmt: skip
ROLE_LABELS: dict[Role, Any] = {
    Role.CENTRAL: _l("Central staff"), Role.DISTRICT: _l("District officer"), Role.AUDITOR: _l("Auditor"),
}  # fmt: skip
SCHEME_LABELS: dict[int, Any] = {1: _l("Health cover"), 2: _l("Pension"), 3: _l("Life insurance")}
GENDER_LABELS: dict[str, Any] = {"F": _l("Women"), "M": _l("Men"), "O": _l("Other")}
MEMBER_GENDER: dict[str, Any] = {"F": _l("woman"), "M": _l("man"), "O": _l("other gender")}
FINGER_LABELS: dict[int, Any] = {
    1: _l("Right thumb"), 2: _l("Right index"), 3: _l("Right middle"), 4: _l("Right ring"),
    5: _l("Right little"), 6: _l("Left thumb"), 7: _l("Left index"), 8: _l("Left middle"),
    9: _l("Left ring"), 10: _l("Left little"),
}  # fmt: skip
REVOKE_KIND_LABELS: dict[str, Any] = {
    "card": _l("Beneficiary card"), "terminal": _l("Terminal"), "operator": _l("Operator"),
}  # fmt: skip
#: Authorisation kinds (services/authorise.py: StationKind and CardKind values).
AUTH_KIND_LABELS: dict[str, Any] = {
    "renew": _l("Renewal for the next policy year (station)"),
    "split": _l("Split card for some members (station)"),
    "replace": _l("Replacement of a lost card (station)"),
    "top_up": _l("Top-up of a scheme (card)"),
    "renewal": _l("New balance for a scheme (card)"),
    "sync_ack": _l("Sync acknowledgement (card)"),
    "supersede": _l("Card superseded by its replacement (card)"),
}
AUDIENCE_LABELS: dict[str, Any] = {"station": _l("Enrolment station"), "card": _l("The card itself")}
OUTCOME_LABELS: dict[str, Any] = {"same": _l("Same person"), "different": _l("Different people")}
ACTION_LABELS: dict[str, Any] = {
    "login": _l("Signed in"),
    "login-refused": _l("Sign-in refused"),
    "logout": _l("Signed out"),
    "resolve-flag": _l("Flag resolved"),
    "review-duplicate": _l("Duplicate enrolment reviewed"),
    "revoke": _l("Revoked"),
    "settle": _l("Settlement recorded"),
    "publish-revocations": _l("Revocation list published"),
    "authorise": _l("Authorisation issued"),
    "publish-catalogue": _l("Package catalogue published"),
}
#: What an audit entry is about ("card:<id>", "revocations:v3", ...).
SUBJECT_LABELS: dict[str, Any] = {
    "card": _l("Card"), "cards": _l("Cards"), "terminal": _l("Terminal"), "operator": _l("Operator"),
    "revocations": _l("Revocation list"), "catalogue": _l("Package catalogue"),
}  # fmt: skip
#: Keys of the audit entries' details.
DETAIL_LABELS: dict[str, Any] = {
    "reason": _l("Why"), "note": _l("Note"), "role": _l("Role"), "outcome": _l("Outcome"),
    "kind": _l("What"), "id": _l("Id"), "members": _l("Members"), "value_paise": _l("Amount"),
    "start": _l("From"), "end": _l("To (inclusive)"), "payable_paise": _l("Payable"),
    "signed_by": _l("Signed by"), "flags": _l("Flags"), "changed": _l("Packages changed"),
}  # fmt: skip
#: Refusals of the services (ServiceError.code) a staff member can act on, in words.
REFUSAL_LABELS: dict[str, Any] = {
    "card_under_review": _l(
        "Refused: a possible duplicate enrolment of this card is open. Review it first (De-duplication)."
    ),
    "unknown_card": _l("No camp has reported this card."),
    "bad_members": _l("Those members are not on this card (a split card carries some members, not all)."),
    "bad_value": _l("Give an amount in rupees greater than zero."),
    "already_resolved": _l("Someone resolved this flag already."),
    "unknown_flag": _l("No such flag."),
    "resolution_incomplete": _l("Say what was checked."),
    "unknown_terminal": _l("No such terminal."),
    "bad_period": _l("The period ends before it starts."),
    "unknown_facility": _l("No such facility."),
}

#: Package specialities (the catalogue's ``category``; the same words as the POS screens).
CATEGORY_LABELS: dict[str, Any] = {
    "obstetrics": _l("obstetrics"), "ophthalmology": _l("ophthalmology"), "general": _l("general"),
    "surgery": _l("surgery"), "medicine": _l("medicine"), "orthopaedics": _l("orthopaedics"),
    "paediatrics": _l("paediatrics"), "cardiology": _l("cardiology"),
}  # fmt: skip
#: How a package of an uploaded catalogue version compares with the package valid now.
CHANGE_LABELS: dict[str, Any] = {
    "new": _l("New package"), "rate": _l("Rate changed"), "renamed": _l("Name or speciality changed"),
    "same": _l("Unchanged"),
}  # fmt: skip
#: Columns of an uploaded catalogue, as staff name them.
UPLOAD_COLUMN_LABELS: dict[str, Any] = {
    "code": _l("code"), "name": _l("name"), "rate": _l("rate"), "category": _l("speciality"),
}  # fmt: skip
#: Why a line of an uploaded catalogue is refused (services/catalogue.py UploadProblem.problem).
UPLOAD_PROBLEM_LABELS: dict[str, Any] = {
    "bad_columns": _l("Give four columns: code, name, rate in rupees, speciality."),
    "bad_code": _l("The code must be a whole number from 1 to 4294967295."),
    "missing_name": _l("The name is missing."),
    "name_too_long": _l("The name is longer than 200 characters."),
    "bad_rate": _l("The rate must be an amount in rupees greater than zero, e.g. 12,500 or 12500.50."),
    "bad_category": _l("The speciality is longer than 60 characters."),
    "empty": _l("The list has no packages."),
    "too_many": _l("A catalogue holds at most 5000 packages."),
}

_FLAG_NO = re.compile(r"\(flag (\d+)")


def label(table: Mapping[Any, Any], key: Any) -> str:
    """The catalogued words for ``key`` in the current language, or the key itself when unknown."""
    found = table.get(key)
    return str(found) if found is not None else str(key)


def hold_reason(text: str) -> str:
    """A held claim's reason (``"<kind> (flag N: card ...)"``) in words: the kind's label and the flag."""
    kind = text.split(" ", 1)[0]
    words = label(HOLD_LABELS, kind)
    match = _FLAG_NO.search(text)
    if match is None:
        return words
    flag = _("flag no. %(n)s", n=match.group(1))
    return f"{words} ({flag})"


def refusal(code: str, fallback: str) -> str:
    """A service refusal in words; the service's own (English) sentence when it is not catalogued."""
    return label(REFUSAL_LABELS, code) if code in REFUSAL_LABELS else fallback


def upload_problem(problem: Any) -> dict[str, str]:
    """One bad line of an uploaded catalogue in words: where ("Line 3, rate:"), why, and the value as
    written (shown as data)."""
    if problem.problem == "duplicate_code":
        why = _("This code is already on line %(n)s.", n=problem.first_line)
    else:
        why = label(UPLOAD_PROBLEM_LABELS, problem.problem)
    if problem.line == 0:
        where = ""
    elif problem.field in UPLOAD_COLUMN_LABELS:
        where = _(
            "Line %(n)s, %(column)s:", n=problem.line, column=label(UPLOAD_COLUMN_LABELS, problem.field)
        )
    else:
        where = _("Line %(n)s:", n=problem.line)
    return {
        "where": where,
        "why": why,
        "value": problem.value,
        "field": problem.field,
        "code": problem.problem,
    }


def member_words(index: int, member: Mapping[str, Any]) -> str:
    """ "Member 2 (woman, born 1980)" for a card's member (index from 0)."""
    return _(
        "Member %(n)s (%(gender)s, born %(year)s)",
        n=index + 1,
        gender=label(MEMBER_GENDER, member.get("gender")),
        year=member.get("birth_year", "?"),
    )


def period_day(ts: int) -> str:
    """A settlement period's boundary as the day it names. Periods are whole UTC days (the CLI's
    ``--from/--to`` too, so one period is never settled twice under two names): the date is formatted as
    the UTC date, not shifted to India time."""
    from datetime import UTC, datetime

    from flask_babel import format_date

    return str(format_date(datetime.fromtimestamp(ts, UTC).date(), "medium"))


def audit_subject(subject: str) -> str:
    """ "card:000000000000c001" -> "Card 000000000000c001" (in the page's language)."""
    kind, sep, rest = subject.partition(":")
    if not sep or kind not in SUBJECT_LABELS:
        return subject
    return f"{label(SUBJECT_LABELS, kind)} {rest.replace('+', ' + ')}"


def audit_detail(key: str, value: Any) -> str:
    """One detail of an audit entry in words and local formats (codes labelled, paise as rupees)."""
    from cardsvc.web.i18n import money

    if key == "outcome":
        return label(OUTCOME_LABELS, value)
    if key == "kind":
        return label(AUTH_KIND_LABELS, value)
    if key == "role":
        return label(ROLE_LABELS, value)
    if key.endswith("_paise") and isinstance(value, int):
        return money(value)
    if key in ("start", "end") and isinstance(value, int):
        return period_day(value if key == "start" else value - 1)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def template_helpers() -> dict[str, Any]:
    """What every dashboard template may use."""
    return {
        "flag_labels": FLAG_LABELS, "record_labels": RECORD_LABELS, "role_labels": ROLE_LABELS,
        "scheme_labels": SCHEME_LABELS, "gender_labels": GENDER_LABELS, "finger_labels": FINGER_LABELS,
        "revoke_kind_labels": REVOKE_KIND_LABELS, "auth_kind_labels": AUTH_KIND_LABELS,
        "audience_labels": AUDIENCE_LABELS, "outcome_labels": OUTCOME_LABELS, "action_labels": ACTION_LABELS,
        "detail_labels": DETAIL_LABELS, "label": label, "hold_reason": hold_reason,
        "member_words": member_words, "audit_detail": audit_detail, "audit_subject": audit_subject,
        "period_day": period_day, "category_labels": CATEGORY_LABELS, "change_labels": CHANGE_LABELS,
    }  # fmt: skip
