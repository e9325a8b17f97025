"""The application factory: configuration, database, migrations, blueprints, error rendering."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from cardsvc.central.config import DEFAULTS, from_environment
from cardsvc.central.errors import ServiceError
from cardsvc.central.extensions import Database


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the central service. ``config`` wins over the environment, which wins over the defaults."""
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    if config is None or "DATABASE_URL" not in config:
        app.config.update(from_environment())
    app.config.update(config or {})
    app.json.sort_keys = True  # type: ignore[attr-defined]

    database = Database(app.config["DATABASE_URL"])
    database.init_app(app)
    if app.config["MIGRATE_ON_START"]:
        from cardsvc.central.migrate import upgrade

        upgrade(database.engine)

    from cardsvc.central.api import api

    app.register_blueprint(api)
    if app.config["DASHBOARD"]:
        from cardsvc.central.dashboard import init_dashboard

        init_dashboard(app)  # the staff screens (cardsvc/central/dashboard, its own engineer's)
    _register_error_handlers(app)
    return app


def clock(app: Flask) -> int:
    """Server time in unix seconds from the injected clock."""
    now: Callable[[], float] = app.config["CLOCK"]
    return int(now())


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> tuple[Response, int]:
        return jsonify(error=error.code, reason=error.reason), error.status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        code = {413: "too_large", 404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
        reason = error.description or error.name
        if status == 413:
            reason = f"request body exceeds {app.config['MAX_CONTENT_LENGTH']} bytes"
        return jsonify(error=code, reason=reason), status
