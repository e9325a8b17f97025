"""Dashboard users: a small file store (JSON, mode 0600) of werkzeug password hashes and roles.

Why a file and not a table: central's schema and migrations belong to the central service; the dashboard's
few dozen staff accounts are managed by the operators of central with ``python -m
cardsvc.central.dashboard.users add NAME --role ROLE [--district D]``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

MIN_PASSWORD = 10


class Role(StrEnum):
    CENTRAL = "central"  # central staff: everything (resolve flags, settle, revoke)
    DISTRICT = "district"  # district officer: their district's cards, flags and revocations
    AUDITOR = "auditor"  # read-only, and the audit log


class UserError(ValueError):
    """A user could not be added: the message says which rule was broken."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    district: str | None = None

    def may_change(self) -> bool:
        return self.role is not Role.AUDITOR


class UserStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    def add(self, name: str, password: str, role: Role, district: str | None = None) -> User:
        if not name or not name.replace("-", "").replace(".", "").isalnum():
            raise UserError(f"user name {name!r}: letters, digits, '-' and '.' only")
        if len(password) < MIN_PASSWORD or password.lower() == password or password.isalpha():
            raise UserError(f"password: at least {MIN_PASSWORD} characters with upper case and a digit")
        if role is Role.DISTRICT and not district:
            raise UserError("a district officer needs --district")
        users = self._load()
        users[name] = {
            "hash": generate_password_hash(password),
            "role": role.value,
            "district": district or "",
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(users, f, indent=1, sort_keys=True)
        tmp.replace(self.path)
        return User(name, role, district)

    def check(self, name: str, password: str) -> User | None:
        """The user if the password is right; None otherwise (same answer for unknown names)."""
        entry = self._load().get(name)
        if entry is None:
            check_password_hash(generate_password_hash("x"), password)  # same work as a real check
            return None
        if not check_password_hash(entry["hash"], password):
            return None
        return User(name, Role(entry["role"]), entry.get("district") or None)

    def get(self, name: str) -> User | None:
        entry = self._load().get(name)
        return None if entry is None else User(name, Role(entry["role"]), entry.get("district") or None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dashboard users")
    parser.add_argument("--store", default=os.environ.get("DASHBOARD_USERS", "dashboard-users.json"))
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--district")
    args = parser.parse_args(argv)
    password = os.environ.get("DASHBOARD_PASSWORD") or getpass.getpass("password: ")
    try:
        UserStore(Path(args.store)).add(args.name, password, Role(args.role), args.district)
    except UserError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name} ({args.role}) saved in {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
