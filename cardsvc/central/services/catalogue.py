"""The package catalogue: hospital packages and their prices, versioned (a price change is a new version,
old versions stay, so a claim is always judged by the price valid when it was made)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.central.models import Package


def add_package_version(
    session: Session, code: int, name: str, price_paise: int, valid_from: int, category: str = "general"
) -> Package:
    """Add the next version of package ``code`` (version 1 if new)."""
    if not 0 <= code <= 0xFFFF_FFFF:
        raise ValueError(f"package code {code} does not fit the record's 4-byte reference")
    if price_paise < 0:
        raise ValueError(f"package {code}: price {price_paise} is negative")
    if not name.strip():
        raise ValueError(f"package {code}: name is empty")
    latest = session.execute(select(func.max(Package.version)).where(Package.code == code)).scalar_one()
    package = Package(
        code=code, version=(latest or 0) + 1, name=name, price_paise=price_paise, valid_from=valid_from,
        category=category,
    )  # fmt: skip
    session.add(package)
    return package


def catalogue(session: Session) -> list[dict[str, Any]]:
    """Every version of every package, by code then version."""
    rows = session.execute(select(Package).order_by(Package.code, Package.version)).scalars().all()
    return [
        {
            "code": p.code,
            "version": p.version,
            "name": p.name,
            "price_paise": p.price_paise,
            "valid_from": p.valid_from,
            "category": p.category,
        }
        for p in rows
    ]
