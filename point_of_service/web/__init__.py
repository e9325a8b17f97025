"""The point-of-service screens (hospital and paypoint clerk), served on 127.0.0.1 by the terminal itself.

``create_app(terminal)`` builds the Flask app over a :class:`PosTerminal` (the services and the hardware);
``register_serve(cli_group)`` adds ``pos serve``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from point_of_service.web.terminal import PosHardware, PosTerminal

__all__ = ["PosHardware", "PosTerminal", "create_app"]


def create_app(terminal: PosTerminal, config: dict[str, Any] | None = None) -> Flask:
    """The POS screens over ``terminal``; ``config`` overrides Flask settings (SECRET_KEY, TESTING...)."""
    from cardsvc.web import init_web
    from point_of_service.web.views import bp

    app = Flask(__name__)
    app.config.update(config or {})
    init_web(app, title="Hospital and paypoint terminal")
    app.extensions["pos_terminal"] = terminal
    app.register_blueprint(bp)
    return app
