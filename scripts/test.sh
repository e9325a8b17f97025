#!/usr/bin/env bash
# The whole check: set-up, lint, types, then the test suite (simulated cards on the real pcscd stack included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy cardsvc keymgmt enrolment_station point_of_service hardware_sims
bash scripts/start-postgres.sh
echo "== pytest"; .venv/bin/python -m pytest "$@"
