"""The central dashboard: reconciliation flags with drill-down to a card's ledger and a facility, settlement,
coverage and use charts, revocations and the signed revocation list, the package catalogue, authorisations,
the review of possible duplicate enrolments and the audit log, for central staff, district officers and
auditors.

``init_dashboard(app)`` registers it on the central app (``create_app`` calls it; config below).
Settings: DASHBOARD_USERS (the user store file), DASHBOARD_AUDIT_LOG (the actions log, a hash chain),
SECRET_KEY (sessions; set it in production, shared by every worker), DASHBOARD_IDLE_SECONDS (default 900);
central's CENTRAL_KEY signs what the dashboard publishes and authorises (without it those actions say so).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask

__all__ = ["init_dashboard"]


def init_dashboard(app: Flask) -> None:
    from cardsvc.central.dashboard import lists, packages  # noqa: F401  (register their routes on bp)
    from cardsvc.central.dashboard.views import bp
    from cardsvc.web import init_web

    idle = int(app.config.get("DASHBOARD_IDLE_SECONDS", 900))
    app.config["DASHBOARD_IDLE_SECONDS"] = idle
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(seconds=idle))
    app.config.setdefault("DASHBOARD_USERS", str(Path(app.instance_path) / "dashboard-users.json"))
    app.config.setdefault("DASHBOARD_AUDIT_LOG", str(Path(app.instance_path) / "dashboard-audit.jsonl"))
    app.extensions["dashboard_csrf"] = init_web(app, title="Central dashboard", csrf_everywhere=False)
    app.register_blueprint(bp)
