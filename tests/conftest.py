"""Shared test configuration. Each area keeps its fixtures in tests/fixtures/<area>.py."""

pytest_plugins = [
    "tests.fixtures.shared",
    "tests.fixtures.cardsim",
    "tests.fixtures.sensor",
    "tests.fixtures.db",
    "tests.fixtures.pcsc",
    "tests.fixtures.keys",
    "tests.fixtures.station",
    "tests.fixtures.beneficiary",
    "tests.fixtures.pos",
    "tests.fixtures.screens",
]
