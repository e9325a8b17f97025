"""Client side of the simulator's control socket (JSON lines over a UNIX socket, see docs/sensor.md)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any


class ControlError(RuntimeError):
    """The control socket is unreachable or refused the request (the message says why)."""


class ControlClient:
    """Puts fingers on and takes them off a running `hwsim sensor serve`."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout

    def request(self, **request: Any) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(json.dumps(request).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            raise ControlError(f"sensor control socket {self.path}: {exc}") from exc
        if not buf:
            raise ControlError(f"sensor control socket {self.path} closed without answering")
        reply: dict[str, Any] = json.loads(buf)
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "request refused")))
        return reply

    def place(self, finger: int, impression: int = 0, quality: str = "good") -> dict[str, Any]:
        return self.request(op="place", finger=finger, impression=impression, quality=quality)

    def lift(self) -> dict[str, Any]:
        return self.request(op="lift")

    def status(self) -> dict[str, Any]:
        return self.request(op="status")
