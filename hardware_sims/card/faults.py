"""Fault injection: pull the card after the Nth persistent write or at the Kth in-command step.

Counting mode (nothing armed) lets a test measure how many writes and steps a command takes, then run it
again once per tear point. A fault fires once and disarms itself, so the recovery power-up runs clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import CardTorn


@dataclass
class FaultInjector:
    """Counts persistent writes and command steps; kills the card at the armed point.

    kill_after_writes=N: the Nth write (1-based) is torn: with ``torn_write`` only its first half reaches
    memory, otherwise none of it; then :class:`CardTorn` is raised.
    kill_at_step=K: :class:`CardTorn` is raised at the Kth checkpoint() a command passes.
    """

    kill_after_writes: int | None = None
    kill_at_step: int | None = None
    torn_write: bool = False
    writes: int = 0
    steps: int = 0
    fired: str | None = None
    step_labels: list[str] = field(default_factory=list)

    def arm(
        self, *, after_writes: int | None = None, at_step: int | None = None, torn_write: bool = False
    ) -> None:
        """Arm a new fault and restart the counters."""
        self.kill_after_writes = after_writes
        self.kill_at_step = at_step
        self.torn_write = torn_write
        self.reset_counters()

    def disarm(self) -> None:
        """Count only, never kill."""
        self.kill_after_writes = None
        self.kill_at_step = None

    def reset_counters(self) -> None:
        """Start counting from zero (call before the command under test)."""
        self.writes = 0
        self.steps = 0
        self.fired = None
        self.step_labels = []

    def write_cut(self, size: int) -> int | None:
        """Called before each persistent write of ``size`` bytes.

        Returns None to write everything, or the number of bytes to write before dying (the caller writes
        that prefix and then calls :meth:`die`).
        """
        self.writes += 1
        if self.kill_after_writes is not None and self.writes == self.kill_after_writes:
            return size // 2 if self.torn_write else 0
        return None

    def die(self, where: str) -> None:
        """Fire: disarm and raise CardTorn."""
        self.fired = where
        self.disarm()
        raise CardTorn(where)

    def checkpoint(self, label: str) -> None:
        """A point inside a command where the card may lose power (between two actions)."""
        self.steps += 1
        self.step_labels.append(label)
        if self.kill_at_step is not None and self.steps == self.kill_at_step:
            self.die(f"at step {self.steps} ({label})")
