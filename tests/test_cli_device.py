"""The device commands end to end: run on an emulated board equals the reference,
flash leaves QEMU running for profile/monitor until --stop, real boards go
through their flash tool (a stand-in openocd on PATH: the one seam we cannot
run here), and a silent port is one clear error."""

import json
import os
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest
from harness import convert, keras_model, random_inputs, save, tflm_run

pytestmark = pytest.mark.qemu


def mm(*args, env=None, timeout=600):
    e = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "mcu_mot", *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import keras

    L = keras.layers
    m = keras_model(
        lambda x: L.Softmax()(
            L.Dense(5)(
                L.Flatten()(
                    L.MaxPooling2D(2)(L.DepthwiseConv2D(3, padding="same")(L.Conv2D(6, 3, activation="relu")(x)))
                )
            )
        ),
        (10, 9, 2),
    )
    return save(convert(m, "int8"), tmp_path_factory.mktemp("dev"), "small")


def test_run_on_qemu_matches_tflm(model, tmp_path):
    (x,) = random_inputs(model, 3, seed=5)
    np.save(tmp_path / "x.npy", x)
    rc, out, err = mm(
        "run",
        model,
        "-b",
        "qemu-mps2-an386",
        "--input",
        tmp_path / "x.npy",
        "--output",
        tmp_path / "y.npy",
        "--profile",
        tmp_path / "p.json",
        "--build-dir",
        tmp_path / "build",
    )
    assert rc == 0, err
    y = np.load(tmp_path / "y.npy")
    (ref,) = tflm_run(model, [x])
    assert np.array_equal(y, ref.reshape(y.shape))
    prof = json.loads((tmp_path / "p.json").read_text())
    assert prof["unit"] == "instructions" and prof["board"] == "qemu-mps2-an386"
    assert abs(sum(layer["count"] for layer in prof["layers"]) - prof["total"]) <= 0.02 * prof["total"]
    assert [layer["op"] for layer in prof["layers"]][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]


def test_flash_profile_monitor_stop(model, tmp_path):
    bdir = tmp_path / "b"
    rc, _, err = mm("build", model, "-b", "qemu-mps3-an547", "-o", bdir)
    assert rc == 0, err
    rc, out, err = mm("flash", bdir)
    assert rc == 0, err
    state = json.loads((bdir / "device.json").read_text())
    try:
        rc, out, err = mm("monitor", bdir)
        assert rc == 0 and "connected" in out, err
        rc, out, err = mm("profile", bdir, "--runs", "3", "--json", tmp_path / "p.json", "--html", tmp_path / "p.html")
        assert rc == 0, err
        prof = json.loads((tmp_path / "p.json").read_text())
        assert prof["runs"] == 3 and prof["total"] > 0 and prof["unit"] == "instructions"
        assert (tmp_path / "p.html").exists()
        # the same emulator answered: no second QEMU was started for profile
        assert json.loads((bdir / "device.json").read_text())["pid"] == state["pid"]
    finally:
        rc, out, _ = mm("flash", bdir, "--stop")
    assert rc == 0 and "stopped" in out
    assert not (bdir / "device.json").exists()


def test_flash_real_board_uses_its_tool(model, tmp_path):
    bdir = tmp_path / "disco"
    rc, _, err = mm("build", model, "-b", "stm32f746g-disco", "-o", bdir)
    assert rc == 0, err
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "openocd.args"
    (fake / "openocd").write_text(f'#!/bin/sh\necho "$@" > {log}\n')
    (fake / "openocd").chmod(stat.S_IRWXU)
    rc, out, err = mm("flash", bdir, env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert rc == 0, err
    args = log.read_text()
    assert "board/stm32f7discovery.cfg" in args and "program" in args and "firmware.elf" in args
    rc, _, err = mm("flash", bdir, env={"PATH": "/nonexistent"})
    assert rc == 1 and "openocd not found" in err and "Traceback" not in err


def test_silent_port_is_one_line_error(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts, never answers
    port = srv.getsockname()[1]
    rc, _, err = mm("monitor", "--port", f"socket://127.0.0.1:{port}", timeout=120)
    srv.close()
    assert rc == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "no reply" in err


def test_unknown_board_is_one_line_error(model, tmp_path):
    rc, _, err = mm("build", model, "-b", "qemu-nope", "-o", tmp_path / "x")
    assert rc == 1 and "unknown board" in err.lower() and len(err.strip().splitlines()) == 1
