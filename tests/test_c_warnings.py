"""The firmware C compiles warning-free with -Wall -Wextra -Werror: every kernel for each
distinct CPU among the boards (and for the host, plain and with the DSP instructions
emulated), every board's runtime, startup.c and a generated model.c per ISA level
(plain, dsp, mve), and the host firmware and simulator sources."""

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import convert, keras_model, save

from mcu_mot import boards
from mcu_mot.fwbuild import firmware, sconstools
from mcu_mot.resources import DATA_ROOT as ROOT

WARN = ["-Wall", "-Wextra", "-Werror"]
KERNELS = sorted((ROOT / "firmware" / "kernels").glob("*.c"))
BOARDS = sorted(p.stem for p in (ROOT / "boards").glob("*.toml") if p.stem != "host" and not p.stem.startswith("_"))


def _layers(x):
    """A small int8 model reaching most fast paths: CONV_2D (gemm), grouped CONV_2D,
    DEPTHWISE 3x3 and 5x5, ADD, pools, TRANSPOSE_CONV, FULLY_CONNECTED, SOFTMAX."""
    import keras

    L = keras.layers
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    g = L.Conv2D(8, 3, padding="same", groups=2)(y)
    d = L.DepthwiseConv2D(3, padding="same")(y)
    y = L.Add()([g, d])
    y = L.DepthwiseConv2D(5, padding="same", activation="relu6")(y)
    y = L.AveragePooling2D(2)(y)
    y = L.Conv2DTranspose(4, 3, strides=2, padding="same")(y)
    y = L.MaxPooling2D(2)(y)
    y = L.Flatten()(y)
    y = L.Dense(10)(y)
    return L.Softmax()(y)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("cwarn")
    return save(convert(keras_model(_layers, (8, 8, 4), seed=3), "int8"), d, "cwarn")


def _run_all(jobs):
    """Run compiler argument vectors two at a time; the failures' (argv, stderr)."""

    def one(argv):
        r = subprocess.run(argv, capture_output=True, text=True)
        return None if r.returncode == 0 and not r.stderr.strip() else (" ".join(argv[-3:]), r.stderr.strip())

    with ThreadPoolExecutor(max_workers=2) as pool:
        return [f for f in pool.map(one, jobs) if f]


def _report(failures):
    return "\n\n".join(f"{src}:\n{err}" for src, err in failures[:10])


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
def test_firmware_compiles_without_warnings_for_every_board(model, tmp_path):
    jobs, targets, isas = [], {}, {}
    from mcu_mot.codegen.compile import board_isa

    for name in BOARDS:
        b = boards.load_board(name)
        out = tmp_path / name
        cfg = firmware.prepare(model, name, out)
        isas.setdefault(board_isa(name), tuple(cfg["target_flags"]))
        targets.setdefault(tuple(cfg["target_flags"]), cfg)
        for k, src in enumerate(cfg["sources"]):
            if not src["src"].endswith(".c") or Path(src["src"]).parent == ROOT / "firmware" / "kernels":
                continue  # kernels: all of them, once per distinct CPU, below
            jobs.append(sconstools.compile_argv(cfg, src) + WARN + ["-c", "-o", str(out / f"{k}.o"), src["src"]])
        assert b.name == name
    assert set(isas) == {"plain", "dsp", "mve"}, isas  # a model.c per ISA level
    # every kernel for every distinct CPU: compiled to an object (the optimiser's warnings, the
    # inline assembly assembled) for the first CPU of each ISA level, checked (-fsyntax-only,
    # the time limit) for the other CPUs of that level
    for i, (flags, cfg) in enumerate(targets.items()):
        for k in KERNELS:
            out = ["-c", "-o", str(tmp_path / f"t{i}_{k.stem}.o")] if flags in isas.values() else ["-fsyntax-only"]
            jobs.append(sconstools.compile_argv(cfg, {"src": str(k)}) + WARN + out + [str(k)])
    failures = _run_all(jobs)
    assert not failures, _report(failures)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
def test_host_sources_compile_without_warnings(model, tmp_path):
    from mcu_mot.codegen.compile import generate
    from mcu_mot.device import host as hostfw
    from mcu_mot.device.simulator import HOST_CFLAGS, host_compiler

    cc, kdir = host_compiler(), ROOT / "firmware" / "kernels"
    jobs = []
    for isa, emulate in (("plain", []), ("dsp", ["-DMM_EMULATE_DSP=1"])):
        gen = tmp_path / isa
        gen.mkdir()
        for name, text in generate(model, "portable", "host", isa=isa).files.items():
            (gen / name).write_text(text)
        base = [cc, *HOST_CFLAGS, *emulate, f"-I{kdir}", f"-I{gen}"] + WARN
        jobs.append(base + ["-c", "-o", str(gen / "model.o"), str(gen / "model.c")])
        jobs += [base + ["-c", "-o", str(gen / f"{k.stem}.o"), str(k)] for k in KERNELS]
    # the host firmware (mcu-mot serve / the protocol tests): model.c, the protocol, the host HAL
    gen = tmp_path / "plain"
    base = [
        cc,
        *hostfw.HOST_CFLAGS,
        f"-I{gen}",
        f"-I{kdir}",
        f"-I{hostfw.RUNTIME}",
        f"-I{hostfw.HOST_DIR}",
        "-include",
        str(hostfw.RUNTIME / "mm_profile_hooks.h"),
    ] + WARN
    srcs = [
        gen / "model.c",
        *(hostfw.RUNTIME / s for s in hostfw.RUNTIME_SOURCES),
        *(hostfw.HOST_DIR / s for s in hostfw.HOST_SOURCES),
    ]
    jobs += [base + ["-c", "-o", str(tmp_path / f"fw_{s.stem}.o"), str(s)] for s in srcs]
    failures = _run_all(jobs)
    assert not failures, _report(failures)
