"""What the POS screens stand on: the terminal's services (journal, identity, trust, sync), the hardware
behind one small interface, and the state of the one terminal (signed-in clerk, supervisor, card visit).

The POS is a kiosk: one clerk at one terminal, so the state lives with the app, not in the browser. The
session cookie only carries the language and the CSRF token. Every card operation holds :attr:`lock`, so a
double click never sends two commands to the card at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cardsvc.beneficiary.session import OfflineState
from cardsvc.bio.template import FingerTemplate
from cardsvc.card.transport import CardConnection
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Journal
from point_of_service.services.signin import Clerk
from point_of_service.services.sync import SyncService
from point_of_service.services.verification import CardVisit
from point_of_service.trust import TrustState

#: How long a clerk's sign-in lasts (as the CLI), and a supervisor's.
CLERK_SECONDS = 10 * 3600
SUPERVISOR_SECONDS = 15 * 60


class PosHardware(Protocol):
    """The terminal's devices: the operator reader, the patient reader, the fingerprint sensor."""

    def operator_card(self) -> CardConnection:
        """A connection to the card in the operator reader (raises a TransportError when there is none)."""
        ...

    def patient_card(self) -> CardConnection:
        """A connection to the card in the patient reader (raises a TransportError when there is none)."""
        ...

    def capture(self) -> FingerTemplate:
        """One live finger from the sensor (raises a BiometricError / SensorError on failure)."""
        ...

    def devices(self) -> dict[str, bool]:
        """Presence of ``operator_reader``, ``operator_card``, ``card_reader``, ``card``, ``sensor``."""
        ...


@dataclass
class CardReading:
    """The card verification in progress, or the last one (memory only: step names and the translated
    refusal), so the card screen can tick each step as the card passes it (``/live/steps.json``)."""

    token: str = ""  # the page's own token for this reading (its live poll asks for it)
    passed: list[str] = field(default_factory=list)
    failed: str | None = None
    problem: dict[str, str] | None = None
    done: bool = False

    def step_passed(self, name: str) -> None:
        self.passed.append(name)

    def refused(self, step: str | None, problem: dict[str, str]) -> None:
        self.failed, self.problem, self.done = step, problem, True


@dataclass
class PosTerminal:
    """Everything the POS screens need; built by ``pos serve`` or by the tests."""

    journal: Journal
    identity: TerminalIdentity
    trust: TrustState
    hardware: PosHardware
    now: Callable[[], int]
    rng: Callable[[int], bytes] = os.urandom
    sync: SyncService | None = None
    clerk: Clerk | None = None
    supervisor: Clerk | None = None
    visit: CardVisit | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    reading: CardReading = field(default_factory=CardReading)
    #: the card's offline limits as last read from it (status bar; memory only)
    limits: OfflineState | None = None

    def signed_in(self) -> Clerk | None:
        if self.clerk is not None and self.now() - self.clerk.signed_in_at > CLERK_SECONDS:
            self.clerk = None
        return self.clerk

    def current_supervisor(self) -> Clerk | None:
        if self.supervisor is not None and self.now() - self.supervisor.signed_in_at > SUPERVISOR_SECONDS:
            self.supervisor = None
        return self.supervisor

    def end_visit(self) -> None:
        self.visit = None
        self.limits = None
