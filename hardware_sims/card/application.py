"""The application plug-in interface and the services the card OS offers to applications.

An :class:`Application` owns one DF (selected by its AID), creates its files, PINs and key slots once in
:meth:`Application.install` (at the card's first power-up, in one atomic transaction), and answers its own
proprietary commands (CLA 0x80) in :meth:`Application.process`. Everything it may touch goes through
:class:`CardServices`: the journaled store (``transaction()``), its files, the key store, the RNG, the
clock, the RAM session and the fault-injection checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from .access import AccessCondition, Op, SecurityStatus
from .apdu import CommandApdu
from .errors import IsoError
from .faults import FaultInjector
from .filesystem import MF_PATH, FileHeader, FileSystem, child_path
from .iso import SW
from .security import KeyObject, PinObject, SecurityObjects
from .store import PersistentStore


class RandomSource(Protocol):
    """What the card needs from an RNG (random.Random and random.SystemRandom both fit)."""

    def randbytes(self, n: int) -> bytes: ...


Response = tuple[bytes, int]
"""Response data and status word."""


@dataclass
class CommandChain:
    """A command arriving in links (ISO 7816-4 5.3.3): its header and the data received so far (RAM)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytearray = field(default_factory=bytearray)
    links: int = 0

    def continues(self, cla: int, ins: int, p1: int, p2: int) -> bool:
        """True when a link (chaining bit already masked off) belongs to this chain."""
        return (cla, ins, p1, p2) == (self.cla, self.ins, self.p1, self.p2)


@dataclass
class Session:
    """RAM state: lost on every power off, power on and reset."""

    current_df: str = MF_PATH
    current_ef: str | None = None
    current_app: Application | None = None
    security: SecurityStatus = field(default_factory=SecurityStatus)
    challenge: bytes | None = None
    pending_response: bytes = b""
    se_sign_key: int | None = None
    se_auth_key: int | None = None
    session_keys: dict[str, bytes] = field(default_factory=dict)
    app_ram: dict[bytes, dict[str, object]] = field(default_factory=dict)
    terminal_id: bytes | None = None
    """Who the authenticated terminal is (e.g. its certificate holder reference), for binding records."""
    pending_cla: int = 0x00
    """Class (0x00 or 0x80) of the command that left ``pending_response`` waiting for GET RESPONSE."""
    chain: CommandChain | None = None
    """A command chain in progress (links received, last one not yet)."""

    def grant_terminal_rights(self, *rights: str, terminal_id: bytes | None = None) -> None:
        """Called by a terminal-authentication application once the terminal has proven itself."""
        self.security.terminal_rights.update(rights)
        if terminal_id is not None:
            self.terminal_id = terminal_id


class CardServices:
    """The card OS as seen by an application (and by the OS's own command handlers)."""

    def __init__(self, store: PersistentStore, fs: FileSystem, objects: SecurityObjects, session: Session,
                 rng: RandomSource, clock: Callable[[], float], faults: FaultInjector,
                 app_paths: dict[bytes, str] | None = None) -> None:
        self.store = store
        self.fs = fs
        self.objects = objects
        self.session = session
        self.rng = rng
        self.clock = clock
        self.faults = faults
        self._app_paths = app_paths if app_paths is not None else {}

    # --- persistence and faults
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside commits atomically (old or new state survives a tear)."""
        with self.store.transaction():
            yield

    def checkpoint(self, label: str) -> None:
        """A point where the fault injector may pull the card mid-command."""
        self.faults.checkpoint(label)

    # --- RAM, time, randomness
    def ram(self, app: Application) -> dict[str, object]:
        """Per-application RAM, cleared on power off/on/reset."""
        return self.session.app_ram.setdefault(app.aid, {})

    def now(self) -> float:
        return self.clock()

    def random(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    # --- security
    def satisfied(self, cond: AccessCondition, scope: str) -> bool:
        return cond.satisfied(self.session.security, scope)

    def require(self, cond: AccessCondition, scope: str, what: str) -> None:
        """Raise 6982 unless ``cond`` holds."""
        if not self.satisfied(cond, scope):
            raise IsoError(SW.SECURITY_STATUS_NOT_SATISFIED, f"{what} needs {cond}")

    # --- files of an application (paths relative to its DF)
    def app_df(self, app: Application) -> str:
        """Path of the application's DF (cached once the card is up; looked up during install)."""
        cached = self._app_paths.get(app.aid)
        if cached is not None:
            return cached
        header = self.fs.find_by_aid(app.aid)
        if header is None:
            raise IsoError(SW.FILE_NOT_FOUND, f"application {app.aid.hex()} is not installed")
        return header.path

    def file(self, app: Application, fid: int) -> FileHeader:
        header = self.fs.child(self.app_df(app), fid)
        if header is None or header.is_df:
            raise IsoError(SW.FILE_NOT_FOUND, f"EF {fid:04X} not found in application {app.label}")
        return header

    def read_file(self, app: Application, fid: int, offset: int = 0, length: int | None = None) -> bytes:
        """Trusted read (no access check: the application is card code)."""
        header = self.file(app, fid)
        return self.fs.read(header, offset, header.size - offset if length is None else length)

    def write_file(self, app: Application, fid: int, offset: int, data: bytes) -> None:
        """Trusted write, bounds-checked; joins the application's open transaction if any."""
        header = self.file(app, fid)
        if offset + len(data) > header.size:
            raise IsoError(SW.NOT_ENOUGH_MEMORY, f"EF {fid:04X} is {header.size} bytes")
        self.fs.write(header, offset, data)

    # --- install-time creation (inside the application's DF)
    def create_ef(self, app: Application, fid: int, size: int, rules: dict[Op, AccessCondition], *,
                  sfi: int = 0, content: bytes = b"") -> FileHeader:
        return self.fs.create_ef(self.app_df(app), fid, size, rules, sfi=sfi, content=content)

    def create_df(self, app: Application, fid: int, rules: dict[Op, AccessCondition]) -> FileHeader:
        return self.fs.create_df(self.app_df(app), fid, rules=rules)

    def create_pin(self, app: Application, pin: PinObject) -> None:
        """Local references (b8 = 1) belong to the application; global ones to the MF."""
        scope = self.app_df(app) if pin.ref & 0x80 else MF_PATH
        self.objects.put_pin(scope, pin)

    def create_key_slot(self, app: Application, ref: int, rules: dict[Op, AccessCondition]) -> None:
        self.objects.put_key(self.app_df(app), KeyObject(ref, dict(rules)))

    # --- keys of an application
    def key(self, app: Application, ref: int) -> KeyObject:
        key = self.objects.key(self.app_df(app), ref)
        if key is None:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"key {ref:#04x} not found")
        if not key.generated:
            raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, f"key {ref:#04x} has not been generated")
        return key

    def sign(self, app: Application, ref: int, data: bytes) -> bytes:
        """ECDSA P-256/SHA-256 raw r||s with an application key (the application checks its own rules)."""
        return self.key(app, ref).sign_data(data)

    def public_key(self, app: Application, ref: int) -> bytes:
        return self.key(app, ref).public


class Application:
    """Base class of card applications. Subclasses set ``aid``, ``label`` and ``df_fid``."""

    aid: bytes = b""
    label: str = ""
    df_fid: int = 0

    def install(self, card: CardServices) -> None:
        """Create files, PINs and key slots in the application's DF (called once, atomically)."""

    def on_select(self, card: CardServices) -> None:
        """Called when the application's DF is selected (RAM already cleared of other selections)."""

    def process(self, apdu: CommandApdu, card: CardServices) -> Response:
        """Answer a proprietary command (CLA 0x80); the default knows none."""
        raise IsoError(SW.INS_NOT_SUPPORTED, f"application {self.label} has no INS {apdu.ins:02X}")

    def df_path(self) -> str:
        return child_path(MF_PATH, self.df_fid)
