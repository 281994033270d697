#!/usr/bin/env bash
# Install everything mcu_mot needs on a Debian machine (run as root): the Arm
# cross-compiler, QEMU, a venv at .venv with the package installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="gcc python3-venv gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm espeak-ng sox"
missing=""
for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import mcu_mot, tensorflow, tflite_micro, pytest" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.mcu_mot_installed ]; then
    echo "setup: installing Python packages into .venv (first time: a few minutes)"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e ".[test]"
    touch .venv/.mcu_mot_installed
fi
