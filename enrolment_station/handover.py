"""Hand-over: print the card face, then record who received the card. Always the last step of a card:
a card that was printed but never handed over shows up in the journal as ACTIVATED, not HANDED_OVER."""

from __future__ import annotations

from pathlib import Path

from cardsvc.formats.profile import HouseholdProfile
from enrolment_station.cardface import CardFace
from enrolment_station.errors import HouseholdError
from enrolment_station.journal import CardState, HouseholdStatus, Journal


def card_face(journal: Journal, card_id: str) -> CardFace:
    row = journal.card(card_id)
    if row is None or row["profile"] is None:
        raise HouseholdError(f"card {card_id} is not activated by this station")
    profile = HouseholdProfile.parse(bytes(row["profile"]))
    household = journal.household(profile.household_id)
    head = profile.members[0]
    number = next(m.member_no for m in household.members if m.name == head.name)
    return CardFace(
        card_id=card_id,
        head_name=head.name,
        household_id=profile.household_id,
        village_code=profile.village,
        policy=f"{profile.policy_start} – {profile.policy_end}",
        photo_png=journal.photo(profile.household_id, number),
    )


def print_face(journal: Journal, card_id: str, directory: Path) -> tuple[Path, Path]:
    png, pdf = card_face(journal, card_id).write(directory)
    journal.update_card(card_id, "card.printed", {"png": png.name, "pdf": pdf.name})
    return png, pdf


def hand_over(journal: Journal, card_id: str, *, received_by: int, faces_dir: Path) -> tuple[Path, Path]:
    """Print (if not yet printed) and record the hand-over to household member ``received_by``."""
    row = journal.card(card_id)
    if row is None:
        raise HouseholdError(f"card {card_id} is unknown to this station")
    if row["state"] == CardState.HANDED_OVER:
        raise HouseholdError(f"card {card_id} was already handed over to {row['handed_to']}")
    if row["state"] != CardState.ACTIVATED:
        raise HouseholdError(f"card {card_id} is {row['state']}: only an activated card is handed over")
    household = journal.household(row["household_id"])
    try:
        member = household.member(received_by)
    except KeyError:
        raise HouseholdError(f"household {household.household_id} has no member {received_by}") from None
    png, pdf = faces_dir / f"{card_id}.png", faces_dir / f"{card_id}.pdf"
    if not (png.exists() and pdf.exists()):
        png, pdf = print_face(journal, card_id, faces_dir)
    with journal.transaction():
        journal.db.execute(
            "UPDATE cards SET state = ?, handed_over_at = ?, handed_to = ? WHERE card_id = ?",
            (CardState.HANDED_OVER, journal.now(), member.name, card_id),
        )
        journal.event("card.handover", card_id, {"member": received_by, "name": member.name})
        if row["kind"] == "new":
            journal.set_household_status(household.household_id, HouseholdStatus.HANDED_OVER)
    return png, pdf
