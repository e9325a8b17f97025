"""Making sure a pcscd with the vpcd readers is running, for tests, benchmarks and the demo.

Only one pcscd may run per machine: reuse a running one (``pgrep -x pcscd``), else start ``pcscd -f``
(root only) and later stop ONLY the PID started here, never by name.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cardsvc.card.transport import TransportError

VPCD_READER_PREFIX = "Virtual PCD"
VPCD_PORTS = (35963, 35964)  # slots 0 and 1 of Debian's vsmartcard-vpcd reader configuration


#: Every user of the vpcd slots on this machine (test sessions, benchmarks) holds this lock, so two of them
#: never serve cards on the same slot or stop the pcscd the other one uses.
LOCK_PATH = Path(os.environ.get("CARDSVC_PCSC_LOCK", "/tmp/cardsvc-vpcd.lock"))


class PcscdUnavailableError(TransportError):
    """pcscd is not running and cannot be started here (not installed, not root, no vpcd reader)."""


#: Set while this process (or its parent) holds the lock: nested users (a demo run inside a test session,
#: a subprocess it starts) share it instead of waiting for themselves.
LOCK_HELD_ENV = "CARDSVC_VPCD_LOCK_HELD"


class VpcdLock:
    """An exclusive advisory lock (flock) on the vpcd slots, released on close or process exit.

    Re-entrant for the holder and its children (through ``CARDSVC_VPCD_LOCK_HELD``).
    """

    def __init__(self, path: Path = LOCK_PATH) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float, on_wait: Callable[[str], None] | None = None) -> None:
        if os.environ.get(LOCK_HELD_ENV):
            return  # held by this process or a parent: share it
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise PcscdUnavailableError(
                        f"another process ({holder}) has used the vpcd slots for over {timeout:g} s"
                    ) from None
                if on_wait is not None and not told:
                    on_wait(f"waiting for another user of the vpcd slots ({self._holder(fd)})")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd
        os.environ[LOCK_HELD_ENV] = str(os.getpid())

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown pid"
        except OSError:
            return "unknown pid"

    def release(self) -> None:
        if self._fd is not None:
            os.environ.pop(LOCK_HELD_ENV, None)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


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
    _lock: VpcdLock | None = field(default=None, repr=False)

    def reader(self, slot: int = 0) -> str:
        return self.readers[slot]

    def stop(self) -> None:
        """Stop pcscd only if this handle started it (by its own PID); release the vpcd lock."""
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> PcscdHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ensure_pcscd(
    *,
    timeout: float = 15.0,
    log_path: Path | None = None,
    lock_timeout: float = 900.0,
    on_wait: Callable[[str], None] | None = None,
) -> PcscdHandle:
    """Take the vpcd lock, reuse or start pcscd, and wait until the vpcd readers are listed.

    The lock serialises test sessions and benchmarks on one machine (``lock_timeout`` seconds at most).
    """
    try:
        import smartcard.scard  # noqa: F401
    except ImportError as exc:
        raise PcscdUnavailableError(f"pyscard is not importable ({exc})") from exc
    lock = VpcdLock()
    lock.acquire(lock_timeout, on_wait)
    try:
        return _ensure_pcscd_locked(timeout, log_path, lock)
    except BaseException:
        lock.release()
        raise


def _ensure_pcscd_locked(timeout: float, log_path: Path | None, lock: VpcdLock) -> PcscdHandle:
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
    handle = PcscdHandle(pid, proc is not None, [], proc, lock)
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
