"""ISO 7816-4 file system on the persistent store: MF, DFs (selectable by AID), transparent EFs.

Persistent objects (keys in :mod:`store`): ``fs.<path>`` holds a file's header, encoded as its FCP
template (tag 62, see :func:`FileHeader.encode`), and ``bin.<path>`` an EF's contents (always exactly its
declared size: space is allocated when the file is created, as on real cards). ``<path>`` is the FIDs
from the MF in hex joined by dots, e.g. ``3F00.DF01.0101``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import access, tlv
from .access import AccessCondition, Op
from .errors import IsoError, StateDirError
from .iso import SW, FileId, Tag
from .store import PersistentStore

MF_PATH = "3F00"
DF_DESCRIPTOR = 0x38
EF_DESCRIPTOR = 0x01  # working EF, transparent
LCS_ACTIVATED = 0x05


@dataclass(frozen=True)
class FileHeader:
    """What the card knows about one file (its FCP)."""

    path: str
    is_df: bool
    size: int = 0
    aid: bytes = b""
    sfi: int = 0
    rules: dict[Op, AccessCondition] = field(default_factory=dict)

    @property
    def fid(self) -> int:
        return int(self.path.rsplit(".", 1)[-1], 16)

    @property
    def parent(self) -> str | None:
        return self.path.rsplit(".", 1)[0] if "." in self.path else None

    @property
    def df_scope(self) -> str:
        """The DF whose PINs and keys govern this file."""
        return self.path if self.is_df else (self.parent or MF_PATH)

    def rule(self, op: Op) -> AccessCondition:
        """A missing rule means NEVER: files are closed unless opened explicitly."""
        return self.rules.get(op, access.NEVER)

    def encode(self, *, wrapper: int = Tag.FCP) -> bytes:
        body = tlv.tlv(Tag.FILE_DESCRIPTOR, bytes([DF_DESCRIPTOR if self.is_df else EF_DESCRIPTOR]))
        body += tlv.tlv(Tag.FILE_ID, self.fid.to_bytes(2, "big"))
        if self.aid:
            body += tlv.tlv(Tag.DF_NAME, self.aid)
        if not self.is_df:
            body += tlv.tlv(Tag.FILE_SIZE, self.size.to_bytes(2 if self.size <= 0xFFFF else 3, "big"))
        if self.sfi:
            body += tlv.tlv(Tag.SFI, bytes([self.sfi << 3]))
        body += tlv.tlv(Tag.LIFE_CYCLE, bytes([LCS_ACTIVATED]))
        body += tlv.tlv(Tag.SECURITY_ATTRIBUTES, access.encode_rules(self.rules))
        return tlv.tlv(wrapper, body)

    @classmethod
    def decode(cls, path: str, raw: bytes) -> FileHeader:
        try:
            (_tag, body), = tlv.parse(raw)
            fields = dict(tlv.parse(body))
            is_df = fields[Tag.FILE_DESCRIPTOR] == bytes([DF_DESCRIPTOR])
            size = int.from_bytes(fields.get(Tag.FILE_SIZE, b"\x00"), "big")
            sfi = fields.get(Tag.SFI, b"\x00")[0] >> 3
            rules = access.decode_rules(fields.get(Tag.SECURITY_ATTRIBUTES, b""))
        except (IsoError, KeyError, ValueError, IndexError) as exc:
            raise StateDirError(f"damaged file header for {path}") from exc
        return cls(path, is_df, size, fields.get(Tag.DF_NAME, b""), sfi, rules)


def child_path(parent: str, fid: int) -> str:
    return f"{parent}.{fid:04X}"


class FileSystem:
    """Lookup, creation, reading and writing of files; access checks are the caller's job (card OS)."""

    def __init__(self, store: PersistentStore) -> None:
        self.store = store

    def header(self, path: str) -> FileHeader | None:
        raw = self.store.get(f"fs.{path}")
        return None if raw is None else FileHeader.decode(path, raw)

    def exists(self, path: str) -> bool:
        return self.store.get(f"fs.{path}") is not None

    def children(self, df_path: str) -> list[FileHeader]:
        prefix = f"fs.{df_path}."
        out = []
        for key in self.store.keys(prefix):
            rest = key[len(prefix):]
            if "." not in rest:
                header = self.header(key[3:])
                if header is not None:
                    out.append(header)
        return out

    def child(self, df_path: str, fid: int) -> FileHeader | None:
        return self.header(child_path(df_path, fid))

    def find_by_aid(self, aid_prefix: bytes) -> FileHeader | None:
        """First DF whose name starts with ``aid_prefix`` (partial DF name selection)."""
        for key in self.store.keys("fs."):
            header = self.header(key[3:])
            if header is not None and header.is_df and header.aid and header.aid.startswith(aid_prefix):
                return header
        return None

    def find_by_sfi(self, df_path: str, sfi: int) -> FileHeader | None:
        for header in self.children(df_path):
            if not header.is_df and header.sfi == sfi:
                return header
        return None

    # ------------------------------------------------------------------ creation
    def create_mf(self) -> FileHeader:
        header = FileHeader(MF_PATH, True, rules={Op.READ: access.ALWAYS})
        self.store.put(f"fs.{MF_PATH}", header.encode())
        return header

    def create_df(self, parent: str, fid: int, aid: bytes = b"",
                  rules: dict[Op, AccessCondition] | None = None) -> FileHeader:
        self._check_new(parent, fid)
        if aid and not 1 <= len(aid) <= 16:
            raise ValueError(f"AID must be 1-16 bytes, got {len(aid)}")
        header = FileHeader(child_path(parent, fid), True, aid=aid, rules=dict(rules or {}))
        self.store.put(f"fs.{header.path}", header.encode())
        return header

    def create_ef(self, parent: str, fid: int, size: int, rules: dict[Op, AccessCondition],
                  *, sfi: int = 0, content: bytes = b"") -> FileHeader:
        """Create a transparent EF of fixed ``size`` (6A84 if the card is full); ``content`` pads with 00."""
        self._check_new(parent, fid)
        if len(content) > size:
            raise ValueError(f"content of {len(content)} bytes does not fit a {size}-byte file")
        if not 0 <= sfi <= 30:
            raise ValueError(f"SFI must be 1-30 (0 = none), got {sfi}")
        header = FileHeader(child_path(parent, fid), False, size=size, sfi=sfi, rules=dict(rules))
        with self.store.transaction():
            self.store.put(f"fs.{header.path}", header.encode())
            self.store.put(f"bin.{header.path}", content.ljust(size, b"\x00"))
        return header

    def delete(self, path: str) -> None:
        """Remove a file (and, for a DF, everything under it) in one transaction."""
        with self.store.transaction():
            for key in self.store.keys(f"fs.{path}") + self.store.keys(f"bin.{path}"):
                rest = key.split(".", 1)[1]
                if rest == path or rest.startswith(path + "."):
                    self.store.delete(key)

    def _check_new(self, parent: str, fid: int) -> None:
        parent_header = self.header(parent)
        if parent_header is None or not parent_header.is_df:
            raise IsoError(SW.FILE_NOT_FOUND, f"parent DF {parent} does not exist")
        if fid in (FileId.MF, 0x3FFF, 0xFFFF) or not 0 < fid <= 0xFFFF:
            raise IsoError(SW.INCORRECT_P1P2, f"file id {fid:04X} is reserved")
        if self.exists(child_path(parent, fid)):
            raise IsoError(SW.FILE_EXISTS, f"file {fid:04X} already exists in {parent}")

    # ------------------------------------------------------------------ contents
    def read(self, header: FileHeader, offset: int, length: int) -> bytes:
        data = self.store.get(f"bin.{header.path}")
        if data is None:
            raise StateDirError(f"contents of {header.path} are missing")
        return data[offset:offset + length]

    def write(self, header: FileHeader, offset: int, data: bytes) -> None:
        """Overwrite bytes in place; the caller has checked bounds. Atomic (joins an open transaction)."""
        old = self.store.get(f"bin.{header.path}")
        if old is None:
            raise StateDirError(f"contents of {header.path} are missing")
        self.store.put(f"bin.{header.path}", old[:offset] + data + old[offset + len(data):])
