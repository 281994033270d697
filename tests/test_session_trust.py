"""What `flash`, `profile` and `monitor` read from a build folder is trusted only when only this
user can write the folder: device.json names a process to stop, report.json the image to run.
A planted pid is never killed, an image that is not the one report.json describes never runs."""

import hashlib
import json
import os
import subprocess
import sys

import pytest


def mm(*args, timeout=120):
    proc = subprocess.run(
        [sys.executable, "-m", "mcu_mot", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def _folder(tmp_path, elf=b"\x7fELF not really", sha=None):
    d = tmp_path / "fw"
    d.mkdir(mode=0o700)
    (d / "firmware.elf").write_bytes(elf)
    report = {
        "board": "qemu-mps2-an386",
        "model": "m.tflite",
        "elf_sha256": sha or hashlib.sha256(b"another image").hexdigest(),
    }
    (d / "report.json").write_text(json.dumps(report))
    return d


def test_a_planted_pid_is_never_killed(tmp_path):
    d = _folder(tmp_path)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (d / "device.json").write_text(
            json.dumps(
                {
                    "pid": victim.pid,
                    "port": "socket://127.0.0.1:1",
                    "board": "qemu-mps2-an386",
                    "elf": str(d / "firmware.elf"),
                }
            )
        )
        rc, out, err = mm("flash", d, "--stop")
        assert rc == 0 and "no emulator was running" in out, err
        assert victim.poll() is None, "a process that is not our emulator was killed"
        assert not (d / "device.json").exists()
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("damage", ["{", "[1, 2]", '{"pid": "x"}', '{"pid": 1, "elf": "e", "port": "p"}'])
def test_a_damaged_device_state_is_dropped_not_trusted(tmp_path, damage):
    d = _folder(tmp_path)
    (d / "device.json").write_text(damage)
    rc, out, err = mm("flash", d, "--stop")
    assert rc == 0 and "no emulator was running" in out, err


def test_an_image_that_is_not_the_reported_one_is_not_run(tmp_path):
    d = _folder(tmp_path)
    rc, out, err = mm("flash", d)
    assert rc == 1 and "is not the image" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert not (d / "device.json").exists()


def test_a_damaged_report_is_one_line(tmp_path):
    d = _folder(tmp_path)
    (d / "report.json").write_text('{"board": ')
    rc, _, err = mm("profile", d)
    assert rc == 1 and "unreadable report" in err and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder to another user")
def test_a_folder_another_user_owns_is_refused(tmp_path):
    d = _folder(tmp_path)
    os.chown(d, 65534, 65534)
    for cmd in (("flash", d), ("flash", d, "--stop"), ("profile", d)):
        rc, _, err = mm(*cmd)
        assert rc == 1 and "owned by uid 65534" in err and err.count("\n") == 1, (cmd, err)


def test_a_folder_others_can_write_is_refused(tmp_path):
    d = _folder(tmp_path)
    os.chmod(d, 0o777)
    rc, _, err = mm("monitor", d)
    assert rc != 0 and "writable by" in err and err.count("\n") == 1
