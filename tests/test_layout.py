"""The house rules, as tests: data flows one way between the stages (import-linter contracts in
pyproject.toml), the code is ruff-clean and ruff-formatted, the C is clang-formatted."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed: scripts/setup.sh installs it with the test extras")
        return found
    return str(path)


def _run(*cmd):
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True)


def test_layers_and_no_cycles():
    proc = _run(_tool("lint-imports"), "--no-cache")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def test_import_linter_catches_a_stage_importing_a_later_one(tmp_path):
    """The contract is real: a copy of the package where ir imports the device is refused."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "mcu_mot", copy / "mcu_mot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / "mcu_mot" / "ir" / "graph.py", "a") as f:
        f.write("\nfrom mcu_mot.device import client  # noqa\n")
    proc = subprocess.run(
        [_tool("lint-imports"), "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0 and "mcu_mot.ir.graph -> mcu_mot.device.client" in proc.stdout, proc.stdout[-3000:]


def test_ruff_lint():
    proc = _run(_tool("ruff"), "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_format():
    proc = _run(_tool("ruff"), "format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_c_is_clang_formatted():
    files = sorted(p for p in (ROOT / "firmware").rglob("*") if p.suffix in (".c", ".h"))
    assert len(files) > 30
    proc = _run(_tool("clang-format"), "--dry-run", "-Werror", *files)
    assert proc.returncode == 0, proc.stderr[-4000:]
