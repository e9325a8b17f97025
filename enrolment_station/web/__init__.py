"""The enrolment station's screens, served on 127.0.0.1 by the station itself (no network needed; every
asset comes from the package). ``create_app(context)`` builds the Flask app over a StationContext."""

from __future__ import annotations

from typing import Any

from flask import Flask

from enrolment_station.web.station import CampThread, RecordingReader, StationContext, StationHardware

__all__ = ["CampThread", "RecordingReader", "StationContext", "StationHardware", "create_app"]


def create_app(context: StationContext, config: dict[str, Any] | None = None) -> Flask:
    from cardsvc.web import init_web
    from enrolment_station.web.views import bp

    app = Flask(__name__)
    app.config.update(config or {})
    app.config.setdefault("MAX_CONTENT_LENGTH", 6 * 1024 * 1024)  # a list or a photo (refused over 5 MB)
    init_web(app, title="Enrolment station")
    app.extensions["station"] = context
    app.register_blueprint(bp)
    return app
