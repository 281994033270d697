"""mcu_mot as users install it (issue 16): the sdist and wheel built from this checkout carry the
templates, firmware sources, board files and SConstruct, and the wheel installed into a fresh venv
compiles, simulates, builds and runs a model on QEMU from a temporary folder, with nothing of the
checkout on its path.

Nothing is downloaded: the wheel is built without isolation, installed with --no-index --no-deps,
and the fresh venv reaches numpy, jinja2, SCons, pyelftools... through a .pth file naming this
interpreter's site-packages (after its own, so the installed mcu_mot is the one imported)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ("templates", "firmware", "boards", "SConstruct")  # what setup.py ships as mcu_mot/_data/
BOARD = "qemu-mps2-an386"

needs_gcc = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi)"
)
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed (Debian: qemu-system-arm)"
)


def _version() -> str:
    """mcu_mot/version.py's __version__, read from the checkout (not imported: the one under test)."""
    tree = ast.parse((ROOT / "mcu_mot" / "version.py").read_text())
    return next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and [t.id for t in n.targets] == ["__version__"]
    )


def _clean_env(**extra) -> dict:
    """The environment of a user's shell: no PYTHONPATH (the tests run with the checkout on it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(argv, cwd, env, timeout=180) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert r.returncode == 0, f"{argv}\n{r.stdout}\n{r.stderr}"
    return r


def _data_files() -> dict[str, Path]:
    """The checkout's files that must ship: relative path -> file."""
    out = {}
    for name in DATA:
        p = ROOT / name
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        for q in files:
            if "__pycache__" in q.parts or q.suffix in (".pyc", ".o", ".so", ".elf") or q.name.startswith(".sconsign"):
                continue
            out[q.relative_to(ROOT).as_posix()] = q
    return out


def _ignore_top(src, names):
    """Copying the checkout: no git data, builds, venvs, caches."""
    skip = {"__pycache__", ".pytest_cache"} | {n for n in names if n.endswith(".egg-info")}
    if Path(src) == ROOT:
        skip |= {".git", "build", "dist", ".venv", "out"}
    return [n for n in names if n in skip]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("wheel")


def _copy_checkout(dest: Path) -> Path:
    """A copy of the checkout, so building leaves no build/ or egg-info in it."""
    shutil.copytree(ROOT, dest, ignore=_ignore_top, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def source(work):
    return _copy_checkout(work / "src")


@pytest.fixture(scope="module")
def dist(work, source):
    """(sdist, wheel): `python -m build` builds the sdist, then the wheel from the unpacked sdist,
    so a folder MANIFEST.in forgot would be missing from the wheel too."""
    pytest.importorskip("build")
    out = work / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], cwd=work, env=_clean_env())
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(out.iterdir())
    return sdists[0], wheels[0]


def _fresh_venv(path: Path) -> Path:
    """A venv with no packages at all (not even pip: this interpreter's pip installs into it)."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent, env=_clean_env())
    return path / "bin" / "python"


def _site_packages(py: Path) -> Path:
    r = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=py.parent, env=_clean_env())
    return Path(r.stdout.strip())


def _in_checkout(path) -> bool:
    """A path among the checkout's sources (its .venv, where scripts/setup.sh puts the
    dependencies, is not: that is where CI's site-packages live)."""
    p = Path(path).resolve()
    venv = ROOT / ".venv"
    return (p == ROOT or ROOT in p.parents) and not (p == venv or venv in p.parents)


def _lend_dependencies(py: Path) -> None:
    """Let the fresh venv import this interpreter's third-party packages (numpy, jinja2, SCons, ...):
    a .pth file adds their folders at the end of sys.path. Never the checkout."""
    dirs = []
    for d in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]):
        d = str(Path(d).resolve())
        if d not in dirs:
            dirs.append(d)
    for d in dirs:
        assert not _in_checkout(d), d
    (_site_packages(py) / "zz_mcu_mot_test_deps.pth").write_text("\n".join(dirs) + "\n")


def _pip(py: Path, *args) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            py,
            "--disable-pip-version-check",
            "-q",
            "install",
            "--no-deps",
            "--no-index",
            *args,
        ],
        cwd=py.parent,
        env=_clean_env(),
    )


@pytest.fixture(scope="module")
def venv(work, dist):
    """A fresh venv with the wheel installed (before the dependencies are lent: pip sees an empty venv)."""
    py = _fresh_venv(work / "venv")
    _pip(py, dist[1])
    _lend_dependencies(py)
    return py.parent.parent


@pytest.fixture(scope="module")
def model(work):
    """A small int8 model (Dense 10 -> 6 relu -> 4) and a batch of 3 inputs."""
    pytest.importorskip("keras")
    import keras
    from harness import convert, keras_model, save

    d = work / "model"
    d.mkdir()
    m = keras_model(lambda x: keras.layers.Dense(4)(keras.layers.Dense(6, activation="relu")(x)), (10,))
    path = save(convert(m, "int8"), d, "tiny")
    x = np.random.default_rng(0).integers(-128, 128, (3, 10)).astype(np.int8)
    np.save(d / "x.npy", x)
    return path, d / "x.npy"


@pytest.fixture()
def user(work, venv, tmp_path):
    """A user's shell: cwd outside the checkout, no PYTHONPATH, the venv's bin first on PATH,
    a cache of its own (nothing compiled by the checkout's code is reused)."""
    env = _clean_env(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        MCU_MOT_CACHE=work / "cache",
        VIRTUAL_ENV=venv,
        TF_CPP_MIN_LOG_LEVEL=3,
    )
    env.pop("MCU_MOT_DEBUG", None)
    cwd = tmp_path / "user"
    cwd.mkdir()
    assert ROOT not in cwd.parents
    return cwd, env


# ---------------------------------------------------------------- what ships


def test_wheel_and_sdist_carry_the_data_files(dist):
    sdist, wheel = dist
    version = _version()
    assert wheel.name == f"mcu_mot-{version}-py3-none-any.whl"
    assert sdist.name == f"mcu_mot-{version}.tar.gz"
    want = _data_files()
    assert {
        "SConstruct",
        "firmware/runtime/boot2/rp2040_generic_03h.S",
        "templates/model.c.j2",
        "boards/qemu-mps2-an386.toml",
        "firmware/host/main_host.c",
    } <= set(want)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for rel, p in want.items():
            assert z.read(f"mcu_mot/_data/{rel}") == p.read_bytes(), rel
        shipped = {n[len("mcu_mot/_data/") :] for n in names if n.startswith("mcu_mot/_data/")}
        assert shipped == set(want), shipped ^ set(want)
        assert z.read(f"mcu_mot-{version}.dist-info/LICENSE") == (ROOT / "LICENSE").read_bytes()
        meta = z.read(f"mcu_mot-{version}.dist-info/METADATA").decode()
        assert f"\nVersion: {version}\n" in meta and "MIT License" in meta
        assert "mcu-mot = mcu_mot.cli:main" in z.read(f"mcu_mot-{version}.dist-info/entry_points.txt").decode()
        assert all(n.startswith(("mcu_mot/", f"mcu_mot-{version}.dist-info/")) for n in names), sorted(
            n for n in names if not n.startswith("mcu_mot")
        )
        assert not any("__pycache__" in n or n.endswith((".pyc", ".o", ".so")) for n in names)
    top = f"mcu_mot-{version}/"
    with tarfile.open(sdist) as t:
        in_sdist = {m.name[len(top) :] for m in t.getmembers() if m.isfile()}
    assert set(want) | {"LICENSE", "setup.py", "pyproject.toml", "MANIFEST.in", "mcu_mot/version.py"} <= in_sdist


def test_pip_install_dot_ships_the_data_files(work, user):
    """`pip install .` (not editable) into a fresh venv: the data come from the installed package."""
    source = _copy_checkout(work / "src-dot")
    py = _fresh_venv(work / "venv-dot")
    _lend_dependencies(py)  # setuptools for --no-build-isolation
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            py,
            "--disable-pip-version-check",
            "-q",
            "install",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            source,
        ],
        cwd=work,
        env=_clean_env(),
    )
    cwd, env = user
    r = _run([py, "-c", "import mcu_mot.resources as r; print(r.PACKAGE); print(r.DATA_ROOT)"], cwd=cwd, env=env)
    package, data = map(Path, r.stdout.split())
    assert package == (_site_packages(py) / "mcu_mot").resolve() and data == package / "_data"
    r = _run([py.parent / "mcu-mot", "boards"], cwd=cwd, env=env)
    assert BOARD in r.stdout


def test_editable_install_uses_the_checkout_live(work, user):
    """`pip install -e .` (scripts/setup.sh): nothing copied, the checkout's folders used as they are."""
    source = _copy_checkout(work / "src-editable")
    py = _fresh_venv(work / "venv-editable")
    _lend_dependencies(py)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            py,
            "--disable-pip-version-check",
            "-q",
            "install",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "-e",
            source,
        ],
        cwd=work,
        env=_clean_env(),
    )
    cwd, env = user
    r = _run(
        [py, "-c", "import mcu_mot.resources as r; print(r.PACKAGE); print(r.DATA_ROOT); print(r.INSTALLED)"],
        cwd=cwd,
        env=env,
    )
    package, data, installed = r.stdout.split()
    assert Path(package) == source.resolve() / "mcu_mot" and Path(data) == source.resolve()
    assert installed == "False" and not (source / "mcu_mot" / "_data").exists()


# ---------------------------------------------------------------- the installed wheel at work


def test_installed_package_is_not_the_checkout(venv, user):
    cwd, env = user
    probe = (
        "import json, os, sys, mcu_mot, mcu_mot.resources as r\n"
        "names = ['DATA_ROOT', 'TEMPLATES', 'FIRMWARE', 'KERNELS', 'RUNTIME', 'HOST_FIRMWARE', 'BOOT2',"
        " 'BOARDS', 'SCONSTRUCT']\n"
        "print(json.dumps({'file': mcu_mot.__file__, 'version': mcu_mot.__version__,"
        " 'path': [os.path.realpath(p) for p in sys.path],"
        " 'installed': r.INSTALLED, 'package': str(r.PACKAGE),"
        " 'paths': {n: str(getattr(r, n)) for n in names}}))\n"
    )
    info = json.loads(_run([venv / "bin" / "python", "-c", probe], cwd=cwd, env=env).stdout)
    site = _site_packages(venv / "bin" / "python").resolve()
    package = site / "mcu_mot"
    assert Path(info["file"]).resolve() == package / "__init__.py"
    assert info["installed"] and Path(info["package"]) == package
    for name, p in info["paths"].items():
        p = Path(p)
        assert package / "_data" in (p, *p.parents), (name, p)
        assert p.exists(), (name, p)
        assert not _in_checkout(p), (name, p)
    assert not any(_in_checkout(p) for p in info["path"] if p), info["path"]
    assert info["version"] == _version()
    r = _run([venv / "bin" / "mcu-mot", "--version"], cwd=cwd, env=env)
    assert r.stdout.strip() == f"mcu-mot {_version()}"


@needs_gcc
@needs_qemu
@pytest.mark.qemu
def test_installed_wheel_compiles_simulates_builds_and_runs(venv, model, user):
    """The installed `mcu-mot`: compile, simulate on the host, build for and run on QEMU; the
    device's outputs are the host simulation's, and every source compiled is the installed one."""
    cwd, env = user
    mm = venv / "bin" / "mcu-mot"
    path, x = model
    data = (_site_packages(venv / "bin" / "python") / "mcu_mot" / "_data").resolve()

    _run([mm, "compile", path, "-o", "lib"], cwd=cwd, env=env)
    assert (cwd / "lib" / "model.c").is_file() and (cwd / "lib" / "report.json").is_file()
    assert f"mcu_mot {_version()}" in (cwd / "lib" / "model.h").read_text().splitlines()[0]

    _run([mm, "simulate", path, "--input", x, "--output", "y_host.npy"], cwd=cwd, env=env)
    _run([mm, "build", path, "-b", BOARD, "-o", "fw"], cwd=cwd, env=env)
    cfg = json.loads((cwd / "fw" / "build.json").read_text())
    assert cfg["version"] == _version()
    srcs = [Path(s["src"]) for s in cfg["sources"]]
    assert all(data in p.parents or cwd in p.parents for p in srcs), srcs
    assert any(data / "firmware" / "runtime" in p.parents for p in srcs)
    assert Path(cfg["board_file"]).resolve() == data / "boards" / f"{BOARD}.toml"
    assert (cwd / "fw" / "firmware.elf").is_file() and (cwd / "fw" / "report.json").is_file()

    _run([mm, "run", path, "-b", BOARD, "--build-dir", "fw", "--input", x, "--output", "y_dev.npy"], cwd=cwd, env=env)
    host, dev = np.load(cwd / "y_host.npy"), np.load(cwd / "y_dev.npy")
    assert host.shape == (3, 4) and host.dtype == np.int8
    assert np.array_equal(host, dev)


@needs_gcc
def test_installed_wheel_in_a_users_sconstruct(venv, model, user):
    """docs/build.md: a user's own SConstruct, run by the venv's Python, imports the installed mcu_mot;
    and the installed SConstruct runs directly (MODEL=, BOARD=)."""
    cwd, env = user
    py = venv / "bin" / "python"
    path, _ = model
    (cwd / "SConstruct").write_text(
        "from mcu_mot.fwbuild.sconstools import firmware\n"
        "env = Environment()\n"
        f"elf = firmware(env, {str(path)!r}, board={BOARD!r}, build_dir='fw')\n"
        "Default(elf)\n"
    )
    _run([py, "-m", "SCons", "-Q"], cwd=cwd, env=env)
    assert (cwd / "fw" / "firmware.elf").is_file()
    cfg = json.loads((cwd / "fw" / "build.json").read_text())
    data = (_site_packages(py) / "mcu_mot" / "_data").resolve()
    assert Path(cfg["board_file"]).resolve() == data / "boards" / f"{BOARD}.toml"

    sconstruct = data / "SConstruct"
    _run(
        [py, "-m", "SCons", "-Q", "-f", sconstruct, f"MODEL={path}", f"BOARD={BOARD}", "BUILD_DIR=direct"],
        cwd=cwd,
        env=env,
    )
    assert (cwd / "direct" / "firmware.elf").is_file()
