"""End to end on emulated boards: build the firmware, start QEMU, talk to it over its UART's
TCP port, compare outputs with the TFLite Micro interpreter bit for bit, profile every layer,
and survive a faulty link (the fault proxy between pyserial and QEMU's port).

Fast subset: `-m qemu`; every emulated board and more models: `-m "qemu and slow"`."""

from __future__ import annotations

import numpy as np
import pytest
from faultproxy import FaultProxy
from harness import needs_qemu_tools

from mcu_mot.device.client import DeviceClient
from mcu_mot.device.qemu import QemuInstance
from mcu_mot.errors import MotError

needs_tools = needs_qemu_tools

MAIN_BOARDS = ["qemu-mps2-an386", "qemu-mps3-an547"]
OTHER_BOARDS = ["qemu-mps2-an385", "qemu-mps2-an500", "qemu-mps2-an505", "qemu-netduinoplus2"]


def _random_model(tmp_path, seed: int):
    import harness
    from randmodels import random_model

    return harness.save(harness.convert(random_model(seed), "int8"), tmp_path, f"rand{seed}")


def _build(model, board, tmp_path):
    from mcu_mot.fwbuild import build

    return build(model, board, tmp_path / f"build-{board}")


def _run_and_check(model, board, tmp_path, n: int = 3, seed: int = 0, profile: bool = True):
    import harness

    from mcu_mot.device import profile as PR

    report = _build(model, board, tmp_path)
    x = harness.random_inputs(model, n, seed)
    with QemuInstance(board, report["elf"]) as q, DeviceClient(q.url, timeout=2.0, retries=3) as dev:
        info = dev.info()
        assert info.unit == "instructions" and info.unit_per_tick > 1
        dev.check_model(report["model_sha256"])
        ours = dev.run(*x)
        prof = PR.profile(dev, runs=2, inputs=x, board=board) if profile else None
        stats = dev.stats()
    ref = harness.tflm_run(model, x)
    for a, r in zip(ours, ref):
        np.testing.assert_array_equal(a, r.reshape(a.shape))
    assert stats["corrupt"] == 0 and stats["retransmits"] == 0
    if prof is not None:
        calls = [layer for layer in report["layers"] if layer["kernel"]]
        assert prof["unit"] == "instructions" and prof["board"] == board
        assert [r["op"] for r in prof["layers"]] == [layer["op"] for layer in calls]
        assert [r["macs"] for r in prof["layers"]] == [layer["macs"] for layer in calls]
        assert prof["total"] > 0
        assert abs(sum(r["count"] for r in prof["layers"]) - prof["total"]) <= 0.02 * prof["total"]
        PR.write_json(prof, tmp_path / "profile.json")
        PR.write_html(prof, tmp_path / "profile.html")
    return prof


@needs_tools
@pytest.mark.qemu
@pytest.mark.parametrize("board", MAIN_BOARDS)
def test_random_model_bit_exact_with_a_complete_profile(tmp_path, board):
    _run_and_check(_random_model(tmp_path, 21), board, tmp_path)


@needs_tools
@pytest.mark.qemu
def test_faulty_link_to_qemu(tmp_path):
    """The fault proxy between pyserial and QEMU's UART port: right answers or one-line errors,
    and the device never runs an INVOKE twice or from a damaged frame."""
    import harness

    from mcu_mot.device.simulator import simulate

    model = _random_model(tmp_path, 22)
    report = _build(model, "qemu-mps2-an386", tmp_path)
    x = harness.random_inputs(model, 6, 1)
    ref = simulate(model, x)
    ok = failed = 0
    with QemuInstance("qemu-mps2-an386", report["elf"]) as q:
        with FaultProxy(
            q.port, seed=4, drop=3e-4, corrupt=3e-4, dup_byte=1e-4, dup_chunk=0.05, delay=0.03, max_delay=0.6
        ) as proxy:
            dev = DeviceClient(proxy.url, timeout=0.4, retries=10)
            for i in range(x[0].shape[0]):
                try:
                    for k, a in enumerate(x):
                        dev.set_input(k, a[i])
                except MotError as e:
                    assert "\n" not in str(e)
                    continue
                try:
                    dev.invoke()
                except MotError as e:
                    assert "\n" not in str(e)
                    failed += 1
                    continue
                ok += 1
                for k, r in enumerate(ref):
                    np.testing.assert_array_equal(dev.get_output(k), r[i])
            dev.close()
        with DeviceClient(q.url, timeout=2.0) as direct:
            st = direct.stats()
    assert ok >= x[0].shape[0] - 1
    assert ok <= st["invokes"] <= ok + failed


def test_missing_qemu_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MCU_MOT_QEMU", "qemu-system-arm-not-installed")
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(MotError, match="qemu-system-arm-not-installed not found") as e:
        QemuInstance("qemu-mps2-an386", elf).start()
    assert "\n" not in str(e.value)


@needs_tools
def test_missing_image_and_unemulated_board_are_one_line(tmp_path):
    with pytest.raises(MotError, match="firmware image not found"):
        QemuInstance("qemu-mps2-an386", tmp_path / "nope.elf").start()
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(MotError, match="not emulated"):
        QemuInstance("stm32f746g-disco", elf).start()


@needs_tools
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", OTHER_BOARDS)
def test_smoke_on_every_emulated_board(tmp_path, board):
    _run_and_check(_random_model(tmp_path, 23), board, tmp_path, n=2)


@needs_tools
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", MAIN_BOARDS)
@pytest.mark.parametrize("seed", [31, 32, 33, 34])
def test_more_random_models(tmp_path, board, seed):
    _run_and_check(_random_model(tmp_path, seed), board, tmp_path, n=2, profile=seed % 2 == 0)
