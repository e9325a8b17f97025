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
