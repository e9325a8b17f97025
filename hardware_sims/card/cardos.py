"""The simulated card operating system: power states, APDU dispatch, the inter-industry commands.

Layering: :mod:`apdu` parses, this module checks CLA/INS and access conditions and calls
:mod:`filesystem` / :mod:`security` / applications, which write through the journaled :mod:`store`.
Every failure inside a command becomes an ISO status word; only a fault-injected tear (:class:`CardTorn`)
or a command to an unpowered card (:class:`CardNotPowered`) reaches the caller of :meth:`transmit`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from . import access, atr, tlv
from .access import AccessCondition, Op
from .apdu import CommandApdu, parse_command
from .application import Application, CardServices, CommandChain, RandomSource, Response, Session
from .errors import CardNotPowered, CardTorn, IsoError, PersonalisationError
from .faults import FaultInjector
from .filesystem import MF_PATH, FileHeader, FileSystem, child_path
from .iso import CLA, INS, SW, FileId, MseP1P2, PsoP1P2, Tag, sw_more_data, sw_tries_left, sw_wrong_le
from .security import KeyObject, PinObject, SecurityObjects
from .store import PersistentStore

log = logging.getLogger(__name__)

KB = 1024
SUPPORTED_CAPACITIES = (32 * KB, 64 * KB, 80 * KB)

Handler = Callable[["SimulatedCard", CommandApdu], Response]


class SimulatedCard:
    """A contact smart card with an ISO 7816-4 file system, PINs, on-card P-256 keys and applications.

    Persistent memory lives in ``state_dir`` (survives power cycles and process restarts); RAM state is
    rebuilt on every power-up and reset. ``byte_rate`` (bytes/second over the contact interface) makes
    transmit() take as long as a real card would (through ``sleep``).

    ``supports_chaining`` (announced in the ATR) accepts command chaining for every command, the links'
    data gathered in RAM up to ``max_chained_data`` bytes; ``max_challenge`` is the longest GET CHALLENGE
    answer (a longer short Le gets 6Cxx).
    """

    def __init__(self, state_dir: Path, *, capacity: int = 32 * KB, max_command_apdu: int = 65535 + 9,
                 max_response_apdu: int = 65536 + 2, byte_rate: float | None = None,
                 faults: FaultInjector | None = None, rng: RandomSource | None = None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                 applications: Iterable[Application] = (), os_reserved: int | None = None,
                 supports_chaining: bool = True, max_chained_data: int = 65535,
                 max_challenge: int = 256) -> None:
        if max_command_apdu < 5 + 1 or max_response_apdu < 2 + 1:
            raise ValueError("APDU buffers must hold at least a header and one data byte")
        if max_chained_data < 1:
            raise ValueError(f"max_chained_data must be positive, got {max_chained_data}")
        if not 1 <= max_challenge <= 256:
            raise ValueError(f"max_challenge must be 1-256, got {max_challenge}")
        if byte_rate is not None and byte_rate <= 0:
            raise ValueError(f"byte_rate must be positive, got {byte_rate}")
        self.state_dir = Path(state_dir)
        self.capacity = capacity
        self.max_command_apdu = max_command_apdu
        self.max_response_apdu = max_response_apdu
        self.extended = max_command_apdu > atr.SHORT_COMMAND_MAX or max_response_apdu > atr.SHORT_RESPONSE_MAX
        self.byte_rate = byte_rate
        self.supports_chaining = supports_chaining
        self.max_chained_data = max_chained_data
        self.max_challenge = max_challenge
        self.faults = faults if faults is not None else FaultInjector()
        self.rng: RandomSource = rng if rng is not None else random.SystemRandom()
        self.clock = clock if clock is not None else time.time
        self._sleep = sleep if sleep is not None else time.sleep
        self.applications = list(applications)
        aids = [app.aid for app in self.applications]
        if len(set(aids)) != len(aids):
            raise ValueError("two applications share an AID")
        self.store = PersistentStore(self.state_dir, capacity=capacity, os_reserved=os_reserved,
                                     faults=self.faults)
        self.fs = FileSystem(self.store)
        self.objects = SecurityObjects(self.store)
        self.session = Session()
        self._app_paths: dict[bytes, str] = {}
        self.powered = False
        self.link_seconds = 0.0
        """Total time the byte-rate model has spent on the contact interface."""
        self.atr = atr.build_atr(self.extended, supports_chaining)

    @classmethod
    def with_default_filesystem(cls, state_dir: Path, **kwargs: object) -> SimulatedCard:
        """A card carrying the generic test application (see apps/generic.py)."""
        from .apps.generic import GenericApplication

        return cls(state_dir, applications=[GenericApplication()], **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ power
    @property
    def services(self) -> CardServices:
        return CardServices(self.store, self.fs, self.objects, self.session, self.rng, self.clock,
                            self.faults, self._app_paths)

    def power_on(self) -> bytes:
        """Cold reset: recover the journal, personalise on first use, clear RAM; returns the ATR."""
        self.powered = False
        self.session = Session()
        try:
            self.store.open()
            self._personalise()
            self._app_paths = {}
            for app in self.applications:
                header = self.fs.find_by_aid(app.aid)
                if header is not None:
                    self._app_paths[app.aid] = header.path
        except CardTorn:
            self.session = Session()
            raise
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        """Power removed: RAM state is gone."""
        self.powered = False
        self.session = Session()

    def reset(self) -> bytes:
        """Warm reset: same effect on state as a power cycle."""
        self.power_off()
        return self.power_on()

    def _personalise(self) -> None:
        if not self.fs.exists(MF_PATH):
            with self.store.transaction():
                self.fs.create_mf()
                self.fs.create_ef(MF_PATH, FileId.EF_DIR, 0, {Op.READ: access.ALWAYS})
                self.fs.create_ef(MF_PATH, FileId.EF_ATR_INFO, 0, {Op.READ: access.ALWAYS})
        info = atr.extended_length_info(self.max_command_apdu, self.max_response_apdu)
        self._ensure_ef_content(FileId.EF_ATR_INFO, info)
        for app in self.applications:
            if self.fs.find_by_aid(app.aid) is not None:
                continue
            if not 0 < app.df_fid <= 0xFFFF or not app.aid:
                raise ValueError(f"application {app.label!r} needs an AID and a DF file id")
            try:
                with self.store.transaction():
                    self.fs.create_df(MF_PATH, app.df_fid, app.aid, {Op.READ: access.ALWAYS})
                    app.install(self.services)
                    self._ensure_ef_content(FileId.EF_DIR, self._ef_dir())
            except IsoError as err:
                raise PersonalisationError(
                    f"application {app.label!r} could not be installed on a {self.capacity}-byte card "
                    f"({self.store.free()} bytes free): {err}") from err

    def _ef_dir(self) -> bytes:
        out = b""
        for header in self.fs.children(MF_PATH):
            if header.is_df and header.aid:
                app = next((a for a in self.applications if a.aid == header.aid), None)
                label = tlv.tlv(Tag.APPLICATION_LABEL, app.label.encode("ascii")) if app else b""
                out += tlv.tlv(Tag.APPLICATION_TEMPLATE, tlv.tlv(Tag.APPLICATION_ID, header.aid) + label)
        return out

    def _ensure_ef_content(self, fid: int, content: bytes) -> None:
        path = child_path(MF_PATH, fid)
        header = self.fs.header(path)
        if header is not None and self.fs.read(header, 0, header.size) == content:
            return
        with self.store.transaction():
            rules: dict[Op, AccessCondition] = header.rules if header else {Op.READ: access.ALWAYS}
            if header is not None:
                self.fs.delete(path)
            self.fs.create_ef(MF_PATH, fid, len(content), rules, content=content)

    # ------------------------------------------------------------------ transmit
    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; returns response data + SW1 SW2."""
        if not self.powered:
            raise CardNotPowered("the card is not powered: call power_on() first")
        try:
            data, sw = self._process(bytes(apdu))
        except CardTorn:
            self.power_off()
            raise
        response = data + sw.to_bytes(2, "big")
        if self.byte_rate is not None:
            seconds = (len(apdu) + len(response)) / self.byte_rate
            self.link_seconds += seconds
            self._sleep(seconds)
        return response

    def _process(self, raw: bytes) -> Response:
        session = self.session
        pending, pending_cla = session.pending_response, session.pending_cla
        session.pending_response = b""  # any command but GET RESPONSE drops the waiting data
        try:
            self.faults.checkpoint("command received")
            try:
                cmd = parse_command(raw, max_command=self.max_command_apdu, extended_allowed=self.extended)
                self._check_cla(cmd.cla)
            except IsoError:
                session.chain = None  # a broken link breaks the chain
                raise
            whole = self._chain(cmd)
            if whole is None:
                return b"", SW.OK  # link stored; the command runs when the last link arrives
            cmd = whole
            if self._is_get_response(cmd, pending, pending_cla):
                session.pending_response, session.pending_cla = pending, pending_cla
                data, sw = self._get_response(cmd)
            else:
                data, sw = self._dispatch(cmd)
            result = self._fit_response(cmd, data, sw)
            self.faults.checkpoint("response ready")
            log.debug("card: CLA %02X INS %02X -> %s", cmd.cla, cmd.ins, SW.describe(result[1]))
            return result
        except IsoError as err:
            log.debug("card: %s", err)
            return b"", err.sw
        except CardTorn:
            raise
        except Exception:  # a card never crashes: the terminal sees 6F00
            log.exception("card: unexpected failure processing INS %02X", raw[1] if len(raw) > 1 else -1)
            return b"", SW.NO_PRECISE_DIAGNOSIS

    def _check_cla(self, cla: int) -> None:
        if cla == 0xFF or not (cla < 0x20 or 0x80 <= cla < 0xA0):
            raise IsoError(SW.CLA_NOT_SUPPORTED, f"class byte {cla:02X}")
        if cla & CLA.CHAINING_BIT and not self.supports_chaining:
            raise IsoError(SW.CHAINING_NOT_SUPPORTED)
        if cla & CLA.SECURE_MESSAGING_BITS:
            raise IsoError(SW.SECURE_MESSAGING_NOT_SUPPORTED)
        if cla & CLA.CHANNEL_BITS:
            raise IsoError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)

    def _chain(self, cmd: CommandApdu) -> CommandApdu | None:
        """Command chaining (ISO 7816-4 5.3.3): gather links in RAM; return the whole command at the last.

        Inside a chain only links of the same command (same class, INS, P1, P2) are accepted: anything
        else gets 6883 (last command of the chain expected) and ends the chain unprocessed. Links carry
        no answer of their own (9000); the last link's Le applies to the whole command.
        """
        session = self.session
        chain = session.chain
        more = bool(cmd.cla & CLA.CHAINING_BIT)
        cla = cmd.cla & ~CLA.CHAINING_BIT & 0xFF
        if chain is not None and not chain.continues(cla, cmd.ins, cmd.p1, cmd.p2):
            session.chain = None
            raise IsoError(SW.LAST_COMMAND_OF_CHAIN_EXPECTED,
                           f"{cla:02X} {cmd.ins:02X} {cmd.p1:02X} {cmd.p2:02X} interrupts the chain of INS "
                           f"{chain.ins:02X} ({chain.links} links); the chain is dropped")
        if chain is None and not more:
            return cmd
        if chain is None:
            chain = session.chain = CommandChain(cla, cmd.ins, cmd.p1, cmd.p2)
        if len(chain.data) + len(cmd.data) > self.max_chained_data:
            session.chain = None
            raise IsoError(SW.WRONG_LENGTH, f"chained data exceeds the card's {self.max_chained_data} bytes")
        chain.data += cmd.data
        chain.links += 1
        if more:
            return None
        session.chain = None
        return CommandApdu(cla, cmd.ins, cmd.p1, cmd.p2, bytes(chain.data), cmd.ne, cmd.extended)

    @staticmethod
    def _is_get_response(cmd: CommandApdu, pending: bytes, pending_cla: int) -> bool:
        """INS C0 is GET RESPONSE in the inter-industry class, and in the proprietary class when the
        waiting data came from a proprietary command (ISO allows it; hosts echo the command's class)."""
        if cmd.ins != INS.GET_RESPONSE:
            return False
        return cmd.cla & 0x80 == 0 or (bool(pending) and pending_cla & 0x80 == cmd.cla & 0x80)

    def _dispatch(self, cmd: CommandApdu) -> Response:
        if cmd.cla & 0x80:
            app = self.session.current_app
            if app is None:
                raise IsoError(SW.CLA_NOT_SUPPORTED, "proprietary class with no application selected")
            return app.process(cmd, self.services)
        handler = _HANDLERS.get(cmd.ins)
        if handler is None:
            raise IsoError(SW.INS_NOT_SUPPORTED, f"INS {cmd.ins:02X}")
        return handler(self, cmd)

    def _fit_response(self, cmd: CommandApdu, data: bytes, sw: int) -> Response:
        """Data longer than Ne (or than the response buffer) waits for GET RESPONSE behind 61xx."""
        limit = min(cmd.ne, self.max_response_apdu - 2)
        if len(data) <= limit:
            return data, sw
        if sw != SW.OK:
            return b"", sw
        self.session.pending_response = data[limit:]
        self.session.pending_cla = cmd.cla & 0x80
        return data[:limit], sw_more_data(len(data) - limit)

    def _get_response(self, cmd: CommandApdu) -> Response:
        """The next part of the waiting data; on any refusal the data stays waiting."""
        session = self.session
        pending = session.pending_response
        if cmd.p1p2 != 0:
            raise IsoError(SW.INCORRECT_P1P2)
        if not pending:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, "no response data waiting")
        if cmd.data:
            raise IsoError(SW.WRONG_LENGTH, "GET RESPONSE takes no command data")
        limit = min(cmd.ne, self.max_response_apdu - 2)
        if limit == 0:
            raise IsoError(SW.WRONG_LENGTH, "GET RESPONSE without Le")
        if _le_too_long(cmd, len(pending)):
            raise IsoError(sw_wrong_le(len(pending)), f"{len(pending)} bytes waiting, Le asks {cmd.ne}")
        session.pending_response = pending[limit:]
        if not session.pending_response:
            return pending, SW.OK
        return pending[:limit], sw_more_data(len(pending) - limit)

    # ------------------------------------------------------------------ helpers
    def _scope(self) -> str:
        """DF scope of key and local PIN references: the selected application, else the MF."""
        return self._app_at(self.session.current_df)[1]

    def _app_at(self, path: str) -> tuple[Application | None, str]:
        """The application owning ``path`` (its DF or anything below it) and that DF's path."""
        for app in self.applications:
            app_path = self._app_paths.get(app.aid)
            if app_path is not None and (path == app_path or path.startswith(app_path + ".")):
                return app, app_path
        return None, MF_PATH

    def _require(self, cond: AccessCondition, scope: str, what: str) -> None:
        self.services.require(cond, scope, what)

    def _current_ef(self) -> FileHeader:
        path = self.session.current_ef
        header = self.fs.header(path) if path else None
        if header is None:
            raise IsoError(SW.COMMAND_NOT_ALLOWED, "no current EF")
        return header

    def _select_result(self, header: FileHeader) -> None:
        """Make ``header`` current; entering another application's DF (or leaving it) switches the
        current application and forgets the MSE key choices."""
        df = header.path if header.is_df else (header.parent or MF_PATH)
        self.session.current_df = df
        self.session.current_ef = None if header.is_df else header.path
        app, _ = self._app_at(df)
        if app is not self.session.current_app:
            self.session.se_sign_key = self.session.se_auth_key = None
            self.session.current_app = app
            if app is not None:
                app.on_select(self.services)
        elif header.is_df and app is not None and header.aid == app.aid:
            app.on_select(self.services)  # re-selecting the application

    def _find_fid(self, fid: int) -> FileHeader | None:
        if fid == FileId.MF:
            return self.fs.header(MF_PATH)
        cur = self.session.current_df
        found = self.fs.child(cur, fid)
        if found is None and self.fs.header(cur) is not None:
            parent = cur.rsplit(".", 1)[0] if "." in cur else None
            if parent:
                found = self.fs.child(parent, fid)
        return found or self.fs.child(MF_PATH, fid)

    def _ef_by_p1p2_odd(self, p1p2: int) -> FileHeader:
        """Odd-INS file reference: 0000 current EF, 0001-001E short EF id, else a file id."""
        if p1p2 == 0:
            return self._current_ef()
        found = self.fs.find_by_sfi(self.session.current_df, p1p2) if p1p2 <= 0x1E else self._find_fid(p1p2)
        if found is None or found.is_df:
            raise IsoError(SW.FILE_NOT_FOUND, f"EF {p1p2:04X}")
        self._select_result(found)
        return found

    def _ef_by_p1p2_even(self, cmd: CommandApdu) -> tuple[FileHeader, int]:
        """Even-INS READ/UPDATE BINARY: P1 b8 = 1 -> SFI in P1, offset P2; else 15-bit offset."""
        if cmd.p1 & 0x80:
            if cmd.p1 & 0x60:
                raise IsoError(SW.INCORRECT_P1P2, "P1 bits 7-6 must be 0 with a short EF id")
            found = self.fs.find_by_sfi(self.session.current_df, cmd.p1 & 0x1F)
            if found is None:
                raise IsoError(SW.FILE_NOT_FOUND, f"short EF id {cmd.p1 & 0x1F}")
            self._select_result(found)
            return found, cmd.p2
        return self._current_ef(), cmd.p1p2

    @staticmethod
    def _odd_offset(value: bytes | None) -> int:
        if value is None or not 1 <= len(value) <= 3:
            raise IsoError(SW.WRONG_DATA, "offset DO 54 of 1-3 bytes is required")
        return int.from_bytes(value, "big")

    # ------------------------------------------------------------------ file commands
    def _select(self, cmd: CommandApdu) -> Response:
        if cmd.p2 & 0xF3:
            raise IsoError(SW.INCORRECT_P1P2, f"SELECT P2={cmd.p2:02X}")
        data = cmd.data
        target: FileHeader | None
        if cmd.p1 == 0x00:
            if data in (b"", b"\x3f\x00"):
                target = self.fs.header(MF_PATH)
            elif len(data) == 2:
                target = self._find_fid(int.from_bytes(data, "big"))
            else:
                raise IsoError(SW.WRONG_LENGTH, "SELECT by file id takes 0 or 2 bytes")
        elif cmd.p1 in (0x01, 0x02):
            if len(data) != 2:
                raise IsoError(SW.WRONG_LENGTH, "SELECT by file id takes 2 bytes")
            target = self.fs.child(self.session.current_df, int.from_bytes(data, "big"))
            if target is not None and target.is_df != (cmd.p1 == 0x01):
                target = None
        elif cmd.p1 == 0x03:
            if data:
                raise IsoError(SW.WRONG_LENGTH, "SELECT parent takes no data")
            parent = self.fs.header(self.session.current_df)
            target = self.fs.header(parent.parent) if parent and parent.parent else None
        elif cmd.p1 == 0x04:
            if not 1 <= len(data) <= 16:
                raise IsoError(SW.WRONG_LENGTH, "SELECT by DF name takes 1-16 bytes")
            target = self.fs.find_by_aid(data)
        elif cmd.p1 in (0x08, 0x09):
            if not data or len(data) % 2:
                raise IsoError(SW.WRONG_LENGTH, "a path is a non-empty sequence of 2-byte file ids")
            path = MF_PATH if cmd.p1 == 0x08 else self.session.current_df
            fids = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
            if cmd.p1 == 0x08 and fids[0] == FileId.MF:
                fids = fids[1:]
            target = self.fs.header(path)
            for fid in fids:
                if target is None or not target.is_df:
                    target = None
                    break
                target = self.fs.child(target.path, fid)
        else:
            raise IsoError(SW.INCORRECT_P1P2, f"SELECT P1={cmd.p1:02X}")
        if target is None:
            raise IsoError(SW.FILE_NOT_FOUND)
        self._select_result(target)
        mode = cmd.p2 & 0x0C
        if mode == 0x0C or mode == 0x08:
            return b"", SW.OK
        return target.encode(wrapper=Tag.FCP if mode == 0x04 else Tag.FCI), SW.OK

    def _read_binary(self, cmd: CommandApdu) -> Response:
        if cmd.ins == INS.READ_BINARY:
            header, offset = self._ef_by_p1p2_even(cmd)
            if cmd.data:
                raise IsoError(SW.WRONG_LENGTH, "READ BINARY takes no command data")
        else:
            header = self._ef_by_p1p2_odd(cmd.p1p2)
            offset = self._odd_offset(tlv.find(cmd.data, Tag.OFFSET))
        if header.is_df:
            raise IsoError(SW.COMMAND_INCOMPATIBLE_WITH_FILE)
        self._require(header.rule(Op.READ), self._app_at(header.path)[1], f"reading EF {header.fid:04X}")
        if cmd.ne == 0:
            raise IsoError(SW.WRONG_LENGTH, "READ BINARY needs Le")
        if offset >= header.size:
            raise IsoError(SW.WRONG_P1P2, f"offset {offset} is beyond the {header.size}-byte file")
        limit = min(cmd.ne, self.max_response_apdu - 2)
        remaining = header.size - offset
        if cmd.ins == INS.READ_BINARY:
            n = min(limit, remaining)
            data = self.fs.read(header, offset, n)
        else:
            n = _fit_in_do(limit, remaining)
            data = tlv.tlv(Tag.DISCRETIONARY_DATA, self.fs.read(header, offset, n))
        eof = n == remaining and len(data) < limit
        return data, SW.END_OF_FILE if eof else SW.OK

    def _update_binary(self, cmd: CommandApdu) -> Response:
        if cmd.ins == INS.UPDATE_BINARY:
            header, offset = self._ef_by_p1p2_even(cmd)
            payload = cmd.data
        else:
            header = self._ef_by_p1p2_odd(cmd.p1p2)
            fields = tlv.parse(cmd.data)
            tags = [t for t, _ in fields]
            if tags != [Tag.OFFSET, Tag.DISCRETIONARY_DATA]:
                raise IsoError(SW.WRONG_DATA, "UPDATE BINARY (D7) takes 54 offset then 53 data")
            offset = self._odd_offset(fields[0][1])
            payload = fields[1][1]
        if header.is_df:
            raise IsoError(SW.COMMAND_INCOMPATIBLE_WITH_FILE)
        if not payload:
            raise IsoError(SW.WRONG_LENGTH, "UPDATE BINARY needs data")
        if cmd.ne:
            raise IsoError(SW.WRONG_LENGTH, "UPDATE BINARY returns no data (no Le)")
        self._require(header.rule(Op.UPDATE), self._app_at(header.path)[1], f"updating EF {header.fid:04X}")
        if offset > header.size:
            raise IsoError(SW.WRONG_P1P2, f"offset {offset} is beyond the {header.size}-byte file")
        if offset + len(payload) > header.size:
            raise IsoError(SW.NOT_ENOUGH_MEMORY,
                           f"{len(payload)} bytes at {offset} overflow the {header.size}-byte file")
        self.fs.write(header, offset, payload)
        return b"", SW.OK

    # ------------------------------------------------------------------ misc commands
    def _get_challenge(self, cmd: CommandApdu) -> Response:
        if cmd.p1p2 != 0:
            raise IsoError(SW.INCORRECT_P1P2)
        if cmd.data or not 1 <= cmd.ne <= 256:
            raise IsoError(SW.WRONG_LENGTH, "GET CHALLENGE takes no data and Le of 1-256")
        if cmd.ne > self.max_challenge:  # short Le here: at most 256
            raise IsoError(sw_wrong_le(self.max_challenge), f"at most {self.max_challenge} challenge bytes")
        challenge = self.rng.randbytes(cmd.ne)
        self.session.challenge = challenge
        return challenge, SW.OK

    def _get_data(self, cmd: CommandApdu) -> Response:
        """Fixed-length data objects: a short Le longer than the object (but not 00, "all") gets 6Cxx."""
        if cmd.p1p2 == Tag.EXTENDED_LENGTH_INFO:
            data = atr.extended_length_info(self.max_command_apdu, self.max_response_apdu)
        elif cmd.p1p2 == Tag.HISTORICAL_BYTES:
            data = tlv.tlv(Tag.HISTORICAL_BYTES, atr.historical_bytes(self.extended, self.supports_chaining))
        else:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"no data object {cmd.p1p2:04X}")
        if cmd.data:
            raise IsoError(SW.WRONG_LENGTH, "GET DATA takes no command data")
        if _le_too_long(cmd, len(data)):
            raise IsoError(sw_wrong_le(len(data)), f"data object {cmd.p1p2:04X} is {len(data)} bytes")
        return data, SW.OK

    # ------------------------------------------------------------------ PINs
    def _pin(self, ref: int) -> tuple[str, PinObject]:
        scope = access.pin_scope(ref, self._scope())
        pin = self.objects.pin(scope, ref)
        if pin is None:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"no PIN {ref:#04x}")
        return scope, pin

    def _try_pin(self, scope: str, pin: PinObject, candidate: bytes) -> bool:
        """One PIN try: the decremented counter is persisted BEFORE comparing (tearing cannot buy tries)."""
        if pin.blocked:
            raise IsoError(SW.AUTH_METHOD_BLOCKED, f"PIN {pin.ref:#04x} is blocked")
        self.objects.put_pin(scope, replace(pin, tries_left=pin.tries_left - 1))
        self.faults.checkpoint("PIN counter decremented")
        ok = pin.matches(candidate)
        self.faults.checkpoint("PIN compared")
        if ok:
            self.objects.put_pin(scope, replace(pin, tries_left=pin.max_tries))
            return True
        self.session.security.verified_pins.discard((scope, pin.ref))
        return False

    def _verify(self, cmd: CommandApdu) -> Response:
        if cmd.p1 not in (0x00, 0xFF):
            raise IsoError(SW.INCORRECT_P1P2, f"VERIFY P1={cmd.p1:02X}")
        scope, pin = self._pin(cmd.p2)
        verified = self.session.security.verified_pins
        if cmd.p1 == 0xFF:
            if cmd.data:
                raise IsoError(SW.WRONG_LENGTH, "VERIFY P1=FF (reset) takes no data")
            verified.discard((scope, pin.ref))
            return b"", SW.OK
        if not cmd.data:  # status query: does not burn a try
            if (scope, pin.ref) in verified:
                return b"", SW.OK
            if pin.blocked:
                return b"", SW.AUTH_METHOD_BLOCKED
            return b"", sw_tries_left(pin.tries_left)
        if not pin.min_length <= len(cmd.data) <= pin.max_length:
            raise IsoError(SW.WRONG_DATA, f"PIN length must be {pin.min_length}-{pin.max_length}")
        if self._try_pin(scope, pin, cmd.data):
            verified.add((scope, pin.ref))
            return b"", SW.OK
        return b"", sw_tries_left(pin.tries_left - 1)

    def _change_reference_data(self, cmd: CommandApdu) -> Response:
        if cmd.p1 != 0x00:
            raise IsoError(SW.INCORRECT_P1P2, "CHANGE REFERENCE DATA supports P1=00 (old || new) only")
        scope, pin = self._pin(cmd.p2)
        old, new = cmd.data[:len(pin.value)], cmd.data[len(pin.value):]
        if not new:
            raise IsoError(SW.WRONG_LENGTH, "CHANGE REFERENCE DATA takes old PIN || new PIN")
        if not self._try_pin(scope, pin, old):
            return b"", sw_tries_left(pin.tries_left - 1)
        if not pin.min_length <= len(new) <= pin.max_length:
            raise IsoError(SW.WRONG_DATA, f"new PIN length must be {pin.min_length}-{pin.max_length}")
        self.objects.put_pin(scope, replace(pin, value=new, tries_left=pin.max_tries))
        self.session.security.verified_pins.add((scope, pin.ref))
        return b"", SW.OK

    def _reset_retry_counter(self, cmd: CommandApdu) -> Response:
        scope, pin = self._pin(cmd.p2)
        new = b""
        if cmd.p1 in (0x00, 0x01):
            if not pin.puk_ref:
                raise IsoError(SW.CONDITIONS_NOT_SATISFIED, f"PIN {pin.ref:#04x} has no PUK")
            puk_scope, puk = self._pin(pin.puk_ref)
            code, new = cmd.data[:len(puk.value)], cmd.data[len(puk.value):]
            if cmd.p1 == 0x01 and new:
                raise IsoError(SW.WRONG_LENGTH, "RESET RETRY COUNTER P1=01 takes the PUK only")
            if cmd.p1 == 0x00 and not new:
                raise IsoError(SW.WRONG_LENGTH, "RESET RETRY COUNTER P1=00 takes PUK || new PIN")
            if not self._try_pin(puk_scope, puk, code):
                return b"", sw_tries_left(puk.tries_left - 1)
        elif cmd.p1 in (0x02, 0x03):
            self._require(pin.reset_rule, scope, f"resetting PIN {pin.ref:#04x}")
            new = cmd.data
            if (cmd.p1 == 0x02) != bool(new):
                raise IsoError(SW.WRONG_LENGTH, "P1=02 takes the new PIN, P1=03 no data")
        else:
            raise IsoError(SW.INCORRECT_P1P2, f"RESET RETRY COUNTER P1={cmd.p1:02X}")
        if new and not pin.min_length <= len(new) <= pin.max_length:
            raise IsoError(SW.WRONG_DATA, f"new PIN length must be {pin.min_length}-{pin.max_length}")
        self.objects.put_pin(scope, replace(pin, value=new or pin.value, tries_left=pin.max_tries))
        return b"", SW.OK

    # ------------------------------------------------------------------ keys
    def _key_ref_from(self, cmd: CommandApdu) -> int:
        if cmd.p2:
            return cmd.p2
        for tag in (Tag.CRT_DST, Tag.CRT_AT):
            crt = tlv.find(cmd.data, tag)
            if crt is not None:
                ref = tlv.find(crt, Tag.KEY_REFERENCE) or tlv.find(crt, Tag.PRIVATE_KEY_REFERENCE)
                if ref is not None and len(ref) == 1:
                    return ref[0]
        raise IsoError(SW.WRONG_DATA, "no key reference (P2 or CRT 83/84)")

    def _key(self, ref: int) -> tuple[str, KeyObject]:
        scope = self._scope()
        key = self.objects.key(scope, ref)
        if key is None:
            raise IsoError(SW.REFERENCE_NOT_FOUND, f"no key {ref:#04x}")
        return scope, key

    def _generate_key_pair(self, cmd: CommandApdu) -> Response:
        if cmd.p1 not in (0x80, 0x81):
            raise IsoError(SW.INCORRECT_P1P2, "P1=80 generates, P1=81 reads the public key")
        scope, key = self._key(self._key_ref_from(cmd))
        if cmd.p1 == 0x80:
            self._require(key.rule(Op.GENERATE), scope, f"generating key {key.ref:#04x}")
            key = key.generate(self.rng.randbytes(40))
            self.objects.put_key(scope, key)
        elif not key.generated:
            raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, f"key {key.ref:#04x} has not been generated")
        return tlv.tlv(Tag.PUBLIC_KEY_TEMPLATE, tlv.tlv(Tag.EC_PUBLIC_POINT, key.public)), SW.OK

    def _usable_key(self, ref: int | None, what: str) -> KeyObject:
        if ref is None:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, f"{what}: no key chosen with MSE SET")
        scope, key = self._key(ref)
        if not key.generated:
            raise IsoError(SW.REFERENCE_DATA_NOT_USABLE, f"key {ref:#04x} has not been generated")
        self._require(key.rule(Op.USE), scope, f"{what} with key {ref:#04x}")
        return key

    def _manage_security_environment(self, cmd: CommandApdu) -> Response:
        if cmd.p1p2 not in (MseP1P2.SET_DST, MseP1P2.SET_AT):
            raise IsoError(SW.INCORRECT_P1P2, f"MSE {cmd.p1p2:04X} (supported: 41B6, 41A4)")
        ref = tlv.find(cmd.data, Tag.PRIVATE_KEY_REFERENCE) or tlv.find(cmd.data, Tag.KEY_REFERENCE)
        if ref is None or len(ref) != 1:
            raise IsoError(SW.WRONG_DATA, "MSE SET needs a 1-byte key reference in 84 (or 83)")
        self._key(ref[0])
        if cmd.p1p2 == MseP1P2.SET_DST:
            self.session.se_sign_key = ref[0]
        else:
            self.session.se_auth_key = ref[0]
        return b"", SW.OK

    def _internal_authenticate(self, cmd: CommandApdu) -> Response:
        if cmd.p1 != 0x00:
            raise IsoError(SW.INCORRECT_P1P2)
        if not 1 <= len(cmd.data) <= 256:
            raise IsoError(SW.WRONG_LENGTH, "INTERNAL AUTHENTICATE takes a 1-256 byte challenge")
        key = self._usable_key(cmd.p2 or self.session.se_auth_key, "INTERNAL AUTHENTICATE")
        return key.sign_data(cmd.data), SW.OK

    def _perform_security_operation(self, cmd: CommandApdu) -> Response:
        if cmd.p1p2 != PsoP1P2.COMPUTE_DIGITAL_SIGNATURE:
            raise IsoError(SW.INCORRECT_P1P2, f"PSO {cmd.p1p2:04X} (supported: 9E9A)")
        if len(cmd.data) != 32:
            raise IsoError(SW.WRONG_LENGTH, "PSO COMPUTE DIGITAL SIGNATURE takes a 32-byte SHA-256 digest")
        key = self._usable_key(self.session.se_sign_key, "PSO COMPUTE DIGITAL SIGNATURE")
        return key.sign_digest(cmd.data), SW.OK


def _le_too_long(cmd: CommandApdu, available: int) -> bool:
    """A short Le asking for more than a fixed-length answer holds (Le 00, "up to 256", never is)."""
    return not cmd.extended and available <= 0xFF and available < cmd.ne < 256


def _fit_in_do(limit: int, remaining: int) -> int:
    """How many file bytes fit in a 53 data object of at most ``limit`` bytes (tag and length included)."""
    for header_size in (2, 3, 4):
        n = min(remaining, limit - header_size)
        if n > 0 and 1 + len(tlv.encode_length(n)) <= header_size:
            return n
    raise IsoError(SW.WRONG_LENGTH, "Le too small for a 53 data object")


_HANDLERS: dict[int, Handler] = {
    INS.SELECT: SimulatedCard._select,
    INS.READ_BINARY: SimulatedCard._read_binary,
    INS.READ_BINARY_ODD: SimulatedCard._read_binary,
    INS.UPDATE_BINARY: SimulatedCard._update_binary,
    INS.UPDATE_BINARY_ODD: SimulatedCard._update_binary,
    INS.GET_CHALLENGE: SimulatedCard._get_challenge,
    INS.GET_DATA: SimulatedCard._get_data,
    INS.VERIFY: SimulatedCard._verify,
    INS.CHANGE_REFERENCE_DATA: SimulatedCard._change_reference_data,
    INS.RESET_RETRY_COUNTER: SimulatedCard._reset_retry_counter,
    INS.GENERATE_ASYMMETRIC_KEY_PAIR: SimulatedCard._generate_key_pair,
    INS.MANAGE_SECURITY_ENVIRONMENT: SimulatedCard._manage_security_environment,
    INS.INTERNAL_AUTHENTICATE: SimulatedCard._internal_authenticate,
    INS.PERFORM_SECURITY_OPERATION: SimulatedCard._perform_security_operation,
}
