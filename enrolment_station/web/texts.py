"""Operator-facing texts for the station's refusals: each station error class -> (problem, next step).

The station services raise errors with technical details (kept for the engineer and shown small); the
operator reads these catalogued sentences, translated through the shared catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable

from enrolment_station import errors

MESSAGES: dict[type[errors.StationError], tuple[str, str]] = {
    errors.EligibilityError: (
        "The eligibility list was refused; nothing was imported.",
        "Correct the rows listed below and import the file again.",
    ),
    errors.SessionClosedError: (
        "The Field Key Officer's session has closed.",
        "The FKO must sign in again with card, PIN and finger.",
    ),
    errors.SessionError: (
        "The Field Key Officer's card, PIN or finger was not accepted.",
        "Check that the FKO card is in its reader, then try the PIN and finger again.",
    ),
    errors.DuplicateFingerError: (
        "This finger is already enrolled for another person.",
        "Stop: check the person's identity with the FKO before going on.",
    ),
    errors.CaptureError: (
        "The fingerprint sensor failed.",
        "Check the sensor cable, then capture again.",
    ),
    errors.HouseholdError: (
        "This step is not possible for this household now.",
        "Check the household's status in the list.",
    ),
    errors.PersonalisationError: (
        "The card could not be written.",
        "Leave the card in the reader and press Write the card again; the station completes or restarts it.",
    ),
    errors.UploadError: (
        "The upload did not reach central.",
        "Nothing is lost: the batches stay queued; try again when the network is back.",
    ),
    errors.StationError: ("The station refused this step.", "Read the detail below and try again."),
}
NO_CARD = ("No card in the reader.", "Insert the card and try again.")
#: A refused photo (errors.PhotoError.why): the problem and the next step; nothing else was changed.
PHOTO_MESSAGES: dict[str, tuple[str, str]] = {
    "not_image": (
        "This file is not a photo.",
        "Take the photo again with the camera, or choose an image file.",
    ),
    "too_large": ("The photo is larger than 5 MB.", "Take the photo again at a lower resolution."),
    "too_small": (
        "The photo is too small to see the face (at least 120 x 160 pixels).",
        "Take the photo again closer to the member.",
    ),
}


def message_for(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, errors.PhotoError) and exc.why in PHOTO_MESSAGES:
        return PHOTO_MESSAGES[exc.why]
    for cls in type(exc).__mro__:
        if cls in MESSAGES:
            return MESSAGES[cls]
    return MESSAGES[errors.StationError]


def service_texts() -> Iterable[str]:
    for problem, next_step in [*MESSAGES.values(), *PHOTO_MESSAGES.values(), NO_CARD]:
        yield problem
        yield next_step
