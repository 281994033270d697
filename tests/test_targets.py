"""The Target interface (mcu_mot.device.target): prepare -> launch -> open_transport -> close, the
same for the host build of the firmware, QEMU and a board on a serial port.

- HostTarget end to end (seconds, no cross compiler).
- SerialTarget through the real-board seams we can run here: a stand-in flash tool on PATH (as
  tests/test_cli_device.py does) and a pseudo-terminal bridged to the host firmware (pyserial
  opens a real tty), and the fault proxy between the target and the device.
- QemuTarget end to end, started for one session and detached the way `mcu-mot flash` does
  (slow, qemu).
- Which target a command gets (target_for, flash_target) and its one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import stat
import threading
import tty
from pathlib import Path

import numpy as np
import pytest
from harness import convert, keras_model, needs_qemu_tools, random_inputs, save

from mcu_mot.device.target import HostTarget, QemuTarget, SerialTarget, Target, flash_target, target_for
from mcu_mot.errors import MotError


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import keras

    L = keras.layers
    m = keras_model(lambda x: L.Dense(5)(L.Flatten()(L.Conv2D(4, 3, activation="relu")(x))), (8, 8, 1), seed=3)
    return save(convert(m, "int8"), tmp_path_factory.mktemp("targets"), "tiny")


@pytest.fixture(scope="module")
def reference(model):
    from mcu_mot.device.simulator import simulate

    x = random_inputs(model, 3, seed=7)
    return x, simulate(model, x)


def _same(outs, refs):
    for a, r in zip(outs, refs):
        np.testing.assert_array_equal(a, r.reshape(a.shape))


# ------------------------------------------------------------------ host


def test_host_target_end_to_end(model, reference):
    x, ref = reference
    target = HostTarget(model)
    assert isinstance(target, Target) and target.kind == "host"
    with target.connect(timeout=2.0) as dev:
        assert target.port and target.url == f"socket://127.0.0.1:{target.port}"
        dev.check_model(target.model_sha256[:8])
        _same(dev.run(*x), ref)
        proc = target.device.proc
    assert proc.poll() is not None, "close() stops the host firmware"
    with pytest.raises(MotError, match="not running"):
        target.url
    # a Target is a context manager too, and can be opened again after close
    with target as t, t.open_transport() as dev:
        assert dev.info().layers > 0


def test_steps_run_in_order_and_once(model):
    target = HostTarget(model)
    assert target.prepare() is target and target.exe.is_file()
    exe = target.exe
    target.launch()
    first = target.device
    target.launch()  # idempotent
    assert target.device is first and target.exe == exe
    target.close()
    target.close()  # so is close
    assert target.device is None


def test_missing_host_firmware_is_one_line(tmp_path):
    with pytest.raises(MotError, match="host firmware not found") as e:
        HostTarget(tmp_path / "nope").prepare()
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ serial


class PtyBridge:
    """A pseudo-terminal whose other end is a TCP port: pyserial opens `path` as a real serial
    device (termios and all), the bytes go to the host firmware."""

    def __init__(self, tcp_port: int):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.sock = socket.create_connection(("127.0.0.1", tcp_port))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, self.sock], [], [], 0.05)
            try:
                if self.master in ready:
                    self.sock.sendall(os.read(self.master, 4096))
                if self.sock in ready:
                    data = self.sock.recv(4096)
                    if not data:
                        return
                    os.write(self.master, data)
            except OSError:  # the tty side closed for a moment (pyserial reopening)
                self._stop.wait(0.01)

    def close(self):
        self._stop.set()
        self.thread.join(5)
        for fd in (self.master, self.slave):
            os.close(fd)
        self.sock.close()


@pytest.fixture
def fake_openocd(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "openocd.args"
    (bindir / "openocd").write_text(f'#!/bin/sh\necho "$@" > {log}\n')
    (bindir / "openocd").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def test_serial_target_flashes_then_talks_over_a_tty(model, reference, tmp_path, fake_openocd):
    """A real board's steps: the board file's flash tool programs the image, then the protocol
    runs over a serial device (here a pty whose far end is the host build of the firmware)."""
    x, ref = reference
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF stand-in")
    with HostTarget(model) as board_side:
        bridge = PtyBridge(board_side.port)
        try:
            target = SerialTarget(bridge.path, board="stm32f746g-disco", elf=elf, flash=True)
            with target.connect(timeout=2.0) as dev:
                args = fake_openocd.read_text()
                assert "board/stm32f7discovery.cfg" in args and "program" in args and str(elf) in args
                assert target.flashed_with.startswith("openocd ")
                assert dev.port == bridge.path
                dev.check_model(board_side.model_sha256[:8])
                _same(dev.run(*x), ref)
        finally:
            bridge.close()


def test_serial_target_attaches_without_flashing(model, reference, fake_openocd):
    """flash=False (monitor/profile/debug --port): no flash tool runs, the link survives faults."""
    from mcu_mot.device.faultproxy import FaultProxy, faults_at

    x, ref = reference
    with HostTarget(model) as board_side:
        f = faults_at(0.003)
        with FaultProxy(board_side.port, seed=5, to_device=f, to_host=f) as proxy:
            target = target_for(port=f"127.0.0.1:{proxy.port}")
            assert isinstance(target, SerialTarget) and not target.flash
            with target.connect(timeout=1.0) as dev:
                _same(dev.run(*x), ref)
    assert not fake_openocd.exists()


def test_serial_target_errors_are_one_line(tmp_path, fake_openocd):
    with pytest.raises(MotError, match="needs a port"):
        SerialTarget(None)
    with pytest.raises(MotError, match="needs a build folder"):
        SerialTarget("/dev/null", board="stm32f746g-disco", flash=True).prepare()
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(MotError, match="is emulated"):
        SerialTarget("/dev/null", board="qemu-mps2-an386", elf=elf, flash=True).prepare()
    t = SerialTarget(None, board="stm32f746g-disco", elf=elf, flash=True).launch()  # flash only
    assert fake_openocd.exists()
    with pytest.raises(MotError, match="no port to talk to stm32f746g-disco on: pass --port"):
        t.open_transport()
    with pytest.raises(MotError, match="cannot open port /nonexistent/tty"):
        SerialTarget("/nonexistent/tty").open_transport()


# ------------------------------------------------------------------ which target


def _folder(tmp_path, board: str) -> Path:
    d = tmp_path / board
    d.mkdir(mode=0o700)
    (d / "firmware.elf").write_bytes(b"\x7fELF")
    report = {
        "board": board,
        "model": "m.tflite",
        "model_sha256": "ab" * 32,
        "elf_sha256": hashlib.sha256(b"\x7fELF").hexdigest(),
    }
    (d / "report.json").write_text(json.dumps(report))
    return d


def test_target_for_picks_the_device(tmp_path):
    emu, real = _folder(tmp_path, "qemu-mps2-an386"), _folder(tmp_path, "stm32f746g-disco")
    t = target_for(emu)
    assert isinstance(t, QemuTarget) and t.attach and not t.detached
    t.prepare()
    assert t.board.name == "qemu-mps2-an386" and t.elf == emu / "firmware.elf" and t.model_sha256 == "ab" * 32
    with pytest.raises(MotError, match="board 'stm32f746g-disco' is real hardware: flash it and pass --port"):
        target_for(real)
    with pytest.raises(MotError, match="name a --port, or a build directory"):
        target_for()
    s = target_for(real, port="/dev/ttyACM0", flash=True)  # run --port: a real board is flashed first
    assert isinstance(s, SerialTarget) and s.flash
    s = target_for(emu, port="socket://127.0.0.1:1", flash=True)  # ... an emulated one's port is attached to
    assert isinstance(s, SerialTarget) and not s.flash
    assert isinstance(flash_target(emu), QemuTarget) and flash_target(emu).detached
    with pytest.raises(MotError, match="is emulated: flash starts QEMU"):
        flash_target(emu, port="/dev/ttyACM0")
    f = flash_target(real)
    assert isinstance(f, SerialTarget) and f.flash and f.port is None


def test_qemu_target_refuses_real_boards_and_foreign_images(tmp_path):
    real = _folder(tmp_path, "stm32f746g-disco")
    with pytest.raises(MotError, match="board 'stm32f746g-disco' is not emulated"):
        QemuTarget(real).prepare()
    emu = _folder(tmp_path, "qemu-mps2-an386")
    (emu / "firmware.elf").write_bytes(b"\x7fELF another")
    with pytest.raises(MotError, match="is not the image"):
        QemuTarget(emu).launch()
    with pytest.raises(MotError, match="a board and an image"):
        QemuTarget().prepare()
    with pytest.raises(MotError, match="detached emulator is recorded in its build folder"):
        QemuTarget(board="qemu-mps2-an386", elf=emu / "firmware.elf", detached=True)


def test_qemu_command_line_is_built_in_one_place(tmp_path, monkeypatch):
    from mcu_mot.boards import load_board
    from mcu_mot.device.qemu import qemu_command

    monkeypatch.setenv("MCU_MOT_QEMU", "sh")  # any installed binary
    argv = qemu_command("qemu-mps2-an505", tmp_path / "fw.elf", 4321, ["-d", "guest_errors"])
    assert argv[0].endswith("/sh")
    assert argv[1:] == load_board("qemu-mps2-an505").qemu_argv(
        tmp_path / "fw.elf", "tcp:127.0.0.1:4321,server=on,wait=off,nodelay=on"
    )[1:] + ["-d", "guest_errors"]
    import mcu_mot.device.session as session

    assert not hasattr(session, "start_detached") and not hasattr(session, "open_device")


# ------------------------------------------------------------------ qemu


@needs_qemu_tools
@pytest.mark.qemu
@pytest.mark.slow
def test_qemu_target_end_to_end(model, reference, tmp_path):
    from mcu_mot.device.session import running_emulator, stop_emulator
    from mcu_mot.fwbuild import build

    x, ref = reference
    bdir = tmp_path / "an386"
    build(model, "qemu-mps2-an386", bdir)
    target = QemuTarget(bdir)
    with target.connect(timeout=5.0, retries=3) as dev:
        dev.check_model(target.model_sha256)
        _same(dev.run(*x), ref)
        proc = target.instance.proc
        assert dev.info().unit == "instructions"
    assert proc.poll() is not None, "close() stops the emulator"
    # detached (`mcu-mot flash`): outlives the target, found again through device.json
    flashed = flash_target(bdir)
    flashed.launch()
    flashed.close()
    try:
        state = running_emulator(bdir)
        assert state is not None and state["pid"] == flashed.state["pid"]
        attached = target_for(bdir)
        with attached.connect(timeout=5.0) as dev:
            assert attached.instance is None and dev.port == state["port"]
            _same(dev.run(*x), ref)
        assert running_emulator(bdir) is not None, "closing an attached target leaves the emulator running"
    finally:
        assert stop_emulator(bdir)
    assert running_emulator(bdir) is None
