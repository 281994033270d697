#!/usr/bin/env bash
# Set up, then run the demo: a small model made here, compiled to C, run on
# the host and checked bit for bit against the TFLite Micro interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python -m mcu_mot.flows.demo "$@"
