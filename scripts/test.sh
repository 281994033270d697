#!/usr/bin/env bash
# Set up, then run the test suite (fast subset; `scripts/test.sh -m slow` or `-m ""` for everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/pytest -n 2 -q -p no:cacheprovider "$@"
