"""Shared test configuration. Each area keeps its fixtures in tests/fixtures/<area>.py."""

from hypothesis import settings

# No per-example time limit anywhere: property tests judge behaviour, and a busy CI machine is no defect
# (speed is measured by bench/). A test's own @settings still chooses its number of examples.
settings.register_profile("cardsvc", deadline=None)
settings.load_profile("cardsvc")

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
