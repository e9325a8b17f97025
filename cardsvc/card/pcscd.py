"""Making sure a pcscd with the vpcd readers is running, for tests, benchmarks and the demo.

Only one pcscd may run per machine: reuse a running one (``pgrep -x pcscd``), else start ``pcscd -f``
(root only) and later stop ONLY the PID started here, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cardsvc.card.transport import TransportError

VPCD_READER_PREFIX = "Virtual PCD"
VPCD_PORTS = (35963, 35964)  # slots 0 and 1 of Debian's vsmartcard-vpcd reader configuration


class PcscdUnavailableError(TransportError):
    """pcscd is not running and cannot be started here (not installed, not root, no vpcd reader)."""


def running_pcscd() -> int | None:
    """PID of a running pcscd, if any."""
    try:
        out = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True, check=False, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    pids = [int(p) for p in out.stdout.split()]
    return pids[0] if pids else None


def vpcd_readers(prefix: str = VPCD_READER_PREFIX) -> list[str]:
    """Names of the vpcd readers pcscd lists now (empty when pcscd is down)."""
    from cardsvc.card.pcsc import list_readers

    try:
        return sorted(r for r in list_readers() if r.startswith(prefix))
    except TransportError:
        return []


@dataclass
class PcscdHandle:
    """The pcscd in use: PID, whether we started it, the vpcd readers (slot order)."""

    pid: int | None
    started_here: bool
    readers: list[str]
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def reader(self, slot: int = 0) -> str:
        return self.readers[slot]

    def stop(self) -> None:
        """Stop pcscd only if this handle started it (by its own PID)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> PcscdHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ensure_pcscd(*, timeout: float = 15.0, log_path: Path | None = None) -> PcscdHandle:
    """Reuse or start pcscd and wait until the vpcd readers are listed."""
    try:
        import smartcard.scard  # noqa: F401
    except ImportError as exc:
        raise PcscdUnavailableError(f"pyscard is not importable ({exc})") from exc
    proc: subprocess.Popen[bytes] | None = None
    pid = running_pcscd()
    if pid is None:
        exe = shutil.which("pcscd") or ("/usr/sbin/pcscd" if Path("/usr/sbin/pcscd").exists() else None)
        if exe is None:
            raise PcscdUnavailableError("pcscd is not installed (bash scripts/setup.sh installs it)")
        if os.geteuid() != 0:
            raise PcscdUnavailableError("pcscd is not running and only root can start it")
        if log_path is None:
            proc = subprocess.Popen([exe, "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with log_path.open("wb") as out:
                proc = subprocess.Popen([exe, "-f"], stdout=out, stderr=subprocess.STDOUT)
        pid = proc.pid
    handle = PcscdHandle(pid, proc is not None, [], proc)
    deadline = time.monotonic() + timeout
    while not (readers := vpcd_readers()):
        if proc is not None and proc.poll() is not None:
            raise PcscdUnavailableError(f"pcscd exited with status {proc.returncode} at start-up")
        if time.monotonic() > deadline:
            handle.stop()
            raise PcscdUnavailableError(
                f"no '{VPCD_READER_PREFIX}' reader within {timeout:g} s (is vsmartcard-vpcd installed?)"
            )
        time.sleep(0.1)
    handle.readers = readers
    return handle


def wait_for_card_state(reader: str, present: bool, timeout: float = 10.0) -> None:
    """Wait until pcscd reports a card in ``reader`` as present (or absent)."""
    from cardsvc.card.pcsc import PcscContext

    deadline = time.monotonic() + timeout
    with PcscContext() as ctx:
        while ctx.card_present(reader) != present:
            if time.monotonic() > deadline:
                state = "absent" if present else "present"
                raise TimeoutError(f"card in {reader!r} still {state} after {timeout:g} s")
            time.sleep(0.02)
