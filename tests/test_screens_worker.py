"""OneThreadApp without a browser: every request runs on the one thread that built the app, live requests
are answered on the caller's thread even while a long request holds the worker, and a factory that fails
leaves no thread behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from cardsvc.web.worker import OneThreadApp


def test_requests_run_on_the_builders_thread_and_live_ones_beside_a_long_request() -> None:
    release, started = threading.Event(), threading.Event()
    built_on: list[str] = []

    def factory() -> tuple[Any, Any]:
        built_on.append(threading.current_thread().name)

        @Request.application
        def app(request: Request) -> Response:
            if request.path == "/long":
                started.set()
                release.wait(10)
            return Response(threading.current_thread().name)

        return app, lambda: None

    wsgi = OneThreadApp(factory, name="one")
    try:
        client = Client(wsgi)
        assert client.get("/page").get_data(as_text=True) == built_on[0]
        answers: list[str] = []
        long = threading.Thread(target=lambda: answers.append(client.get("/long").get_data(as_text=True)))
        long.start()
        assert started.wait(10)
        live = client.get("/live/steps.json").get_data(as_text=True)
        assert live == threading.current_thread().name, "answered at once, while the worker is busy"
        release.set()
        long.join(10)
        assert answers == [built_on[0]]
    finally:
        release.set()
        wsgi.close()


def test_a_factory_that_fails_leaves_no_worker_thread() -> None:
    def factory() -> tuple[Any, Any]:
        raise RuntimeError("journal locked")

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="journal locked"):
        OneThreadApp(factory, name="broken")
    left = {t.name for t in threading.enumerate()} - before
    assert not any(name.startswith("broken") for name in left)
