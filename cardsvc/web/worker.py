"""``OneThreadApp``: serve an app whose services live on ONE thread, except live progress answered at once.

The station and the POS keep their journals in SQLite connections that belong to the thread that opened
them, and a single operator never needs two requests at once. But while a long request runs (a capture, a
card being written or verified) the screen must show its progress: requests under ``live_prefix`` are
answered from memory by the HTTP server's own thread, everything else runs on the one worker thread that
also built the app. Serve it with a threaded server (``run_simple(..., threaded=True)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Where the live endpoints live (memory only: no journal, no card, no device).
LIVE_PREFIX = "/live/"


class OneThreadApp:
    """WSGI wrapper: ``factory()`` -> ``(app, cleanup)`` runs on the worker thread, as does every request
    except those under ``live_prefix``; :meth:`close` runs ``cleanup`` there and stops the worker."""

    def __init__(
        self,
        factory: Callable[[], tuple[Any, Callable[[], None]]],
        live_prefix: str = LIVE_PREFIX,
        *,
        name: str = "screens",
    ) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        try:
            self.app, self._cleanup = self._worker.submit(factory).result()
        except BaseException:
            self._worker.shutdown()  # no thread left behind by an app that could not be built
            raise
        self.live_prefix = live_prefix

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith(self.live_prefix):
            return list(self.app(environ, start_response))

        def run() -> list[bytes]:
            body = self.app(environ, start_response)
            try:
                return list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()

        return self._worker.submit(run).result()

    def close(self) -> None:
        self._worker.submit(self._cleanup).result()
        self._worker.shutdown()
