"""Boards, firmware build (SCons + arm-none-eabi-gcc), size report, and a QEMU boot smoke test.

The firmware here is built with a test-only protocol stub (tests/firmware/stub_protocol.c:
echo, '?' -> one info line, 'R' -> run the model, 'F' -> fault) so the boards, startup code,
linker scripts, drivers and timers are checked on their own; the real protocol has its own tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mcu_mot.errors import MotError
from mcu_mot.fwbuild import board_names, build, load_board, size_report
from mcu_mot.fwbuild.boot2 import crc32_mpeg2
from mcu_mot.resources import DATA_ROOT as ROOT

STUB = Path(__file__).parent / "firmware" / "stub_protocol.c"
STUB_KW = dict(extra_sources=[STUB], omit=["mm_protocol.c"])
TARGET_BOARDS = [b for b in board_names() if b != "host"]
EMULATED = [b for b in TARGET_BOARDS if load_board(b).emulated]

needs_gcc = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi)"
)
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed (Debian: qemu-system-arm)"
)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny int8 models (the second differs only in its weights) and one whose arena
    alone (128 KB + 16 B) cannot fit qemu-netduinoplus2's 128 KB SRAM."""
    from harness import convert, keras_model, save
    from keras import layers as L

    d = tmp_path_factory.mktemp("build-models")
    tiny = lambda x: L.Dense(4)(L.Flatten()(L.Conv2D(4, 3, activation="relu")(x)))  # noqa: E731
    return {
        "tiny": save(convert(keras_model(tiny, (8, 8, 1), seed=0), "int8"), d, "tiny"),
        "tiny2": save(convert(keras_model(tiny, (8, 8, 1), seed=1), "int8"), d, "tiny2"),
        "ramhog": save(convert(keras_model(lambda x: L.Conv2D(8, 1)(x), (128, 128, 4)), "int8"), d, "ramhog"),
    }


@pytest.fixture(scope="module")
def stub_build(models, tmp_path_factory):
    """build(board) -> report of the tiny model with the stub protocol, built once per board."""
    root = tmp_path_factory.mktemp("fw")
    cache = {}

    def get(board):
        if board not in cache:
            cache[board] = build(models["tiny"], board, root / board, **STUB_KW)
        return cache[board]

    return get


# ---------------------------------------------------------------- boards


def test_every_board_file_validates():
    names = board_names()
    for required in (
        "host",
        "qemu-mps2-an385",
        "qemu-mps2-an386",
        "qemu-mps2-an500",
        "qemu-mps2-an505",
        "qemu-mps3-an547",
        "qemu-netduinoplus2",
        "stm32f746g-disco",
        "nucleo-l4r5zi",
        "nrf52840dk",
        "rpi-pico",
    ):
        assert required in names
    for name in names:
        b = load_board(name)
        assert b.name == name and b.description
        if b.is_host:
            continue
        assert b.code_region.length > 0 and b.ram_region.length > 0
        assert b.flash["method"] in ("qemu", "openocd", "pyocd", "picotool")
        assert b.emulated == (b.flash["method"] == "qemu")
        assert b.timer_unit == ("instructions" if b.emulated else "cycles")
        assert f"-mcpu={b.mcpu}" in b.cflags()
        b.defines()  # every macro renders


def test_board_facts():
    nd = load_board("qemu-netduinoplus2")
    sizes = {r.name: (r.origin, r.length) for r in nd.memory}
    assert sizes["flash"] == (0x08000000, 1 << 20)
    assert sizes["ram"] == (0x20000000, 128 << 10)
    assert sizes["ccm"] == (0x10000000, 64 << 10)
    pico = load_board("rpi-pico")
    assert pico.cpu == "cortex-m0plus" and "dsp" not in pico.features and pico.timer["kind"] == "systick"
    assert "mve" in load_board("qemu-mps3-an547").features
    assert load_board("qemu-mps2-an385").float_abi == "soft"
    argv = load_board("qemu-mps2-an386").qemu_argv("fw.elf", "tcp:127.0.0.1:1234,server=on,wait=off")
    assert argv[:3] == ["qemu-system-arm", "-M", "mps2-an386"] and "shift=0" in argv


def test_unknown_board_names_the_known_ones():
    with pytest.raises(MotError, match=r"unknown board 'nope' \(known: .*qemu-mps2-an386.*\)") as e:
        load_board("nope")
    assert "\n" not in str(e.value)


def test_bad_board_file_is_one_line(tmp_path):
    text = (ROOT / "boards" / "qemu-mps2-an386.toml").read_text()
    p = tmp_path / "qemu-mps2-an386.toml"
    p.write_text(text.replace('cpu = "cortex-m4"\n', 'cpu = "cortex-m9"\n', 1))
    with pytest.raises(MotError, match="unknown cpu 'cortex-m9'"):
        load_board(str(p))
    p.write_text(text.replace('length = "4M"', 'length = "lots"', 1))
    with pytest.raises(MotError, match="must be a size"):
        load_board(str(p))
    p.write_text(text.replace("origin = 0x20000000", "origin = 0x00200000", 1))
    with pytest.raises(MotError, match="overlap"):
        load_board(str(p))


def test_host_board_is_not_built(tmp_path):
    with pytest.raises(MotError, match="host simulation"):
        build(tmp_path / "m.tflite", "host", tmp_path / "out")


# ---------------------------------------------------------------- build


@needs_gcc
@pytest.mark.parametrize("board", TARGET_BOARDS)
def test_build_every_board(board, stub_build, models):
    rep = stub_build(board)
    b = load_board(board)
    elf = Path(rep["elf"])
    assert elf.is_file() and elf.name == "firmware.elf"
    saved = json.loads((elf.parent / "report.json").read_text())
    for key in (
        "model",
        "backend",
        "board",
        "arena_bytes",
        "weights_bytes",
        "layers",
        "flash_bytes",
        "ram_bytes",
        "flash",
        "ram",
    ):
        assert key in saved, key
    assert sum(rep["flash"].values()) == rep["flash_bytes"]
    assert sum(rep["ram"].values()) == rep["ram_bytes"]
    assert rep["flash"]["weights"] == rep["weights_bytes"]
    assert rep["ram"]["arena"] >= rep["arena_bytes"]
    assert rep["ram"]["stack"] == b.stack_size
    assert all(r["overflow"] == 0 for r in rep["regions"].values())

    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        e = ELFFile(f)
        vec = e.get_section_by_name(".vectors")
        sp, reset = (int.from_bytes(vec.data()[i : i + 4], "little") for i in (0, 4))
        code, ram = b.code_region, b.ram_region
        assert vec["sh_addr"] == code.origin + (256 if b.boot2 else 0)
        assert ram.origin < sp <= ram.end and sp % 8 == 0
        assert reset & 1 and code.origin <= reset < code.end  # Thumb, in flash
        syms = {s.name: s for s in e.get_section_by_name(".symtab").iter_symbols()}
        assert ram.origin <= syms["mm_arena"]["st_value"] < ram.end
        weights = [s for n, s in syms.items() if n.startswith("mmw_")]
        wr = b.weights_region  # the code region, or the board's own weights region
        assert weights and all(wr.origin <= s["st_value"] < wr.end for s in weights)
        if b.boot2:
            image = e.get_section_by_name(".boot2").data()
            assert len(image) == 256 and crc32_mpeg2(image[:252]) == int.from_bytes(image[252:], "little")


ISA_TARGETS = {"plain": "qemu-mps2-an385", "dsp": "qemu-mps2-an386", "mve": "qemu-mps3-an547"}  # M3, M4, M55
ISA_WHAT = {
    "plain": "no DSP/MVE: Cortex-M0+/M3, host",
    "dsp": "Cortex-M4/M7/M33 layouts",
    "mve": "Cortex-M55 Helium layouts",
}


@needs_gcc
def test_model_c_refuses_every_other_isa_level(tmp_path, models):
    """The weights (conv rows, depthwise 3x3 packing, FC order) and the scratch are laid out for one
    ISA level: model.c compiles for that level only. A DSP model compiled for the M55 used to build
    and then read its conv weights as the Helium layout; a plain model on a DSP core would plan the
    plain CMSIS-NN buffers for the DSP functions' needs."""
    from mcu_mot.codegen.compile import KERNEL_DIR, board_isa, generate

    cc = shutil.which("arm-none-eabi-gcc")
    for level in ISA_TARGETS:
        gen = tmp_path / level
        gen.mkdir()
        compiled = generate(models["tiny"], isa=level)
        for name, text in compiled.files.items():
            (gen / name).write_text(text)
        assert f"#define MODEL_ISA {list(ISA_TARGETS).index(level)}" in compiled.files["model.h"]
        targets = [(board, [cc, *load_board(board).cflags()]) for board in ISA_TARGETS.values()]
        # the host: the simulator's plain build, and dsp with the instructions emulated
        host_cc = os.environ.get("CC", "cc")
        targets += [("host", [host_cc]), ("host-dsp", [host_cc, "-DMM_EMULATE_DSP=1"])]
        for board, cmd in targets:
            target = board_isa(board) if board != "host-dsp" else "dsp"
            r = subprocess.run(
                [*cmd, "-fsyntax-only", "-std=gnu11", f"-I{gen}", f"-I{KERNEL_DIR}", str(gen / "model.c")],
                capture_output=True,
                text=True,
            )
            if target == level:
                assert r.returncode == 0, (level, board, r.stderr)
                continue
            assert r.returncode != 0, f"a {level} model.c compiled for {board} ({target})"
            want = (
                f'#error "model.c was generated for ISA {level} ({ISA_WHAT[level]}) but is compiled for '
                f'{target}: regenerate it with mcu-mot compile -b <a board with this core>"'
            )
            assert want in r.stderr, (level, board, r.stderr)
            assert r.stderr.count("error:") == 1, r.stderr  # that one error, nothing from the kernels


@needs_gcc
def test_incremental_build(tmp_path, models):
    out = tmp_path / "fw"
    first = build(models["tiny"], "qemu-mps2-an386", out, **STUB_KW)
    assert any(a.startswith("LINK") for a in first["actions"])
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".o", ".elf", ".c", ".ld")}
    again = build(models["tiny"], "qemu-mps2-an386", out, **STUB_KW)
    assert again["actions"] == []  # nothing recompiled, nothing relinked
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    other = build(models["tiny2"], "qemu-mps2-an386", out, **STUB_KW)  # same layers, new weights
    # model.c and what includes model.h (its hash changed) are recompiled; kernels and drivers are not
    assert "CC gen/model.c" in other["actions"] and "LINK firmware.elf" in other["actions"]
    assert set(other["actions"]) <= {"CC gen/model.c", f"CC {STUB}", "LINK firmware.elf"}


@needs_gcc
def test_size_report_matches_elf_segments(stub_build, tmp_path):
    rep = stub_build("qemu-mps2-an386")
    elf = rep["elf"]
    out = subprocess.run(["arm-none-eabi-readelf", "-lW", elf], capture_output=True, text=True, check=True).stdout
    filesz = memsz_w = 0
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            filesz += int(f[4], 16)
            if "W" in "".join(f[6:-1]):
                memsz_w += int(f[5], 16)
    again = size_report(elf)  # board found from the build directory
    assert again["board"] == "qemu-mps2-an386" and again["split_from"] == "map"
    assert again["flash_bytes"] == filesz and again["ram_bytes"] == memsz_w
    assert sum(again["flash"].values()) == filesz and sum(again["ram"].values()) == memsz_w
    sizes = subprocess.run(["arm-none-eabi-size", "-A", elf], capture_output=True, text=True, check=True).stdout
    sec = {f[0]: int(f[1]) for f in (ln.split() for ln in sizes.splitlines()) if len(f) == 3 and f[0].startswith(".")}
    assert again["ram"]["stack"] == sec[".stack"]
    text_like = sum(v for k, v in sec.items() if k in (".vectors", ".text", ".rodata", ".ARM.exidx", ".ARM.extab"))
    assert 0 <= filesz - (text_like + sec[".data"]) < 64  # only alignment padding between sections
    alone = tmp_path / "alone.elf"  # no map, no build.json: split by symbol names
    shutil.copy(elf, alone)
    bare = size_report(alone)
    assert bare["split_from"] == "symbols" and "regions" not in bare
    assert (bare["flash_bytes"], bare["ram_bytes"], bare["ram"]) == (filesz, memsz_w, again["ram"])
    assert bare["flash"]["weights"] == again["flash"]["weights"] == rep["weights_bytes"]
    assert abs(bare["flash"]["kernels"] - again["flash"]["kernels"]) < 64
    import io

    from rich.console import Console

    from mcu_mot.fwbuild.size import print_size_report

    buf = io.StringIO()
    print_size_report(again, Console(file=buf, width=120))
    assert "weights" in buf.getvalue() and "arena" in buf.getvalue()


@needs_gcc
def test_model_too_big_names_region_and_overflow(tmp_path, models):
    with pytest.raises(MotError) as e:
        build(models["ramhog"], "qemu-netduinoplus2", tmp_path / "fw", **STUB_KW)
    msg = str(e.value)
    assert "\n" not in msg
    m = re.search(r"does not fit qemu-netduinoplus2: RAM region 'ram' \(131072 bytes\) overflows by (\d+) bytes", msg)
    assert m, msg
    log = (tmp_path / "fw" / "build.log").read_text()
    assert f"region `ram' overflowed by {m.group(1)} bytes" in log  # the linker agrees
    assert not (tmp_path / "fw" / "firmware.elf").exists()  # nothing to flash


@needs_gcc
def test_missing_toolchain(tmp_path, models, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(
        MotError,
        match=r"arm-none-eabi-gcc not found on PATH: install the Debian packages "
        r"gcc-arm-none-eabi",
    ):
        build(models["tiny"], "qemu-mps2-an386", tmp_path / "fw")


@needs_gcc
def test_user_sconstruct(tmp_path, models):
    """What docs/build.md tells a user: their SConstruct calls mcu_mot.fwbuild.sconstools.firmware."""
    stub = STUB.resolve()
    (tmp_path / "SConstruct").write_text(
        "from mcu_mot.fwbuild.sconstools import firmware\n"
        "env = Environment()\n"
        f"elf = firmware(env, {str(models['tiny'])!r}, board='qemu-mps3-an547', build_dir='fw',\n"
        f"               extra_sources=[{str(stub)!r}], omit=['mm_protocol.c'])\n"
        "Default(elf)\n"
    )
    run = lambda: subprocess.run(
        [os.sys.executable, "-m", "SCons", "-Q"],
        cwd=tmp_path,  # noqa: E731
        capture_output=True,
        text=True,
    )
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "fw" / "firmware.elf").is_file()
    r = run()
    assert "LINK" not in r.stdout and "CC " not in r.stdout


@needs_gcc
@pytest.mark.slow
def test_flash_overflow(tmp_path):
    from harness import convert, keras_model, save
    from keras import layers as L

    big = save(convert(keras_model(lambda x: L.Dense(80)(L.Flatten()(x)), (64, 64, 4)), "int8"), tmp_path, "big")
    with pytest.raises(MotError, match=r"flash region 'flash' \(1048576 bytes\) overflows by \d+ bytes \(weights"):
        build(big, "qemu-netduinoplus2", tmp_path / "fw", **STUB_KW)


# ---------------------------------------------------------------- hostile paths (issue 23)

SHELLY = ";touch {m};$(touch {m})`touch {m}`|touch {m}&\"'\\ $CC *?~#<>{{}}[],x"


def _mcu_mot(*args, cwd=None, timeout=300):
    return subprocess.run(
        [os.sys.executable, "-m", "mcu_mot", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


@needs_gcc
def test_build_dir_with_shell_metacharacters_runs_no_code(tmp_path, models):
    """`mcu-mot build -o '/tmp/x;id>/tmp/PWN;y'` once ran `id` (SCons' sh -c): now a name is a name."""
    marker = tmp_path / "PWNED"
    out = tmp_path / ("fw" + SHELLY.format(m=marker))
    r = _mcu_mot("build", models["tiny"], "-b", "qemu-mps2-an386", "--backend", "portable", "-o", out)
    assert not marker.exists(), "a shell ran part of the build folder's name"
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert Path(rep["elf"]) == out / "firmware.elf" and (out / "firmware.elf").is_file()
    assert not list(tmp_path.glob("fw;*PWNED*")) or out.is_dir()


@needs_gcc
def test_model_name_with_shell_metacharacters_runs_no_code(tmp_path, models):
    """`mcu-mot run` derives its build folder from the model's file name (m;id>PWN;.tflite)."""
    model = tmp_path / "m;touch PWNED;$(touch PWNED)`touch PWNED`'.tflite"
    shutil.copy(models["tiny"], model)
    out = tmp_path / f"{model.stem}-qemu-mps2-an386"  # what run does with the model's stem
    rep = build(model, "qemu-mps2-an386", out, **STUB_KW)
    assert not list(tmp_path.rglob("PWNED"))
    assert (out / "firmware.elf").is_file() and rep["elf"] == str(out / "firmware.elf")


@needs_gcc
def test_user_sconstruct_with_shell_metacharacters(tmp_path, models):
    """The same through mcu_mot.fwbuild.sconstools.firmware in a user's own SConstruct, with a define
    holding `$` and quotes: every argument reaches the compiler as written."""
    marker = tmp_path / "PWNED"
    fw = "fw" + SHELLY.format(m=marker)
    (tmp_path / "extra.c").write_text("const char *mm_test_define = MM_TEST_DEFINE;\n")
    (tmp_path / "SConstruct").write_text(
        "from mcu_mot.fwbuild.sconstools import firmware\n"
        "env = Environment()\n"
        f"elf = firmware(env, {str(models['tiny'])!r}, board='qemu-mps2-an386', build_dir={fw!r},\n"
        f"               extra_sources=[{str(STUB)!r}, 'extra.c'], omit=['mm_protocol.c'],\n"
        "               defines={'MM_TEST_DEFINE': '\"a$b `c` $(d) \\\\\"e\\\\\"\"'})\n"
        "Default(elf)\n"
    )
    r = subprocess.run([os.sys.executable, "-m", "SCons", "-Q"], cwd=tmp_path, capture_output=True, text=True)
    assert not marker.exists()
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / fw / "firmware.elf").is_file()
    obj = (tmp_path / fw / "obj" / "extra" / "extra.o").read_bytes()
    assert b'a$b `c` $(d) "e"\x00' in obj  # the C string literal, byte for byte


def test_openocd_command_never_gets_tcl_code(tmp_path):
    from mcu_mot.device.flasher import flash_command

    board = load_board("stm32f746g-disco")
    assert board.flash["method"] == "openocd"
    argv = flash_command(board, tmp_path / "fw" / "firmware.elf")
    assert argv[-2:] == ["-c", f"program {{{tmp_path / 'fw' / 'firmware.elf'}}} verify reset exit"]
    for bad in ("a b", "x[exec touch PWN]", "x$y", "x}; exec touch PWN; {", "x\\", 'x"y', "x;y", "x\ny"):
        with pytest.raises(MotError) as e:
            flash_command(board, tmp_path / bad / "firmware.elf")
        assert "\n" not in str(e.value) and "openocd" in str(e.value)


def test_flash_hardware_passes_openocd_a_safe_copy(tmp_path, monkeypatch):
    """A build folder whose path Tcl would interpret is flashed from a temporary copy."""
    from mcu_mot.device.flasher import flash_hardware

    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "openocd-args.json"
    fake = bindir / "openocd"
    fake.write_text(
        f"#!{os.sys.executable}\n"
        "import json, re, sys\n"
        "script = sys.argv[-1]\n"
        "m = re.fullmatch(r'program [{](.*)[}] verify reset exit', script)\n"
        f"json.dump({{'argv': sys.argv[1:], 'data': open(m.group(1), 'rb').read().hex()}}, "
        f"open({str(log)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    marker = tmp_path / "PWNED"
    elf = tmp_path / f"fw [exec touch {marker}] $x" / "firmware.elf"
    elf.parent.mkdir(parents=True)
    elf.write_bytes(b"\x7fELF-not-really")
    flash_hardware(load_board("stm32f746g-disco"), elf)
    got = json.loads(log.read_text())
    assert bytes.fromhex(got["data"]) == elf.read_bytes()
    assert "[" not in got["argv"][-1] and "$" not in got["argv"][-1]
    assert not marker.exists()
    with pytest.raises(MotError, match="no firmware to flash"):
        flash_hardware(load_board("stm32f746g-disco"), tmp_path / "missing" / "firmware.elf")


@needs_gcc
def test_board_file_by_path_keeps_size_breakdown(tmp_path, models):
    """-b path/to/myboard.toml with tiny memories: the overflow message still splits flash and RAM."""
    text = (ROOT / "boards" / "qemu-mps2-an386.toml").read_text()
    text = re.sub(r'(?m)^name = "qemu-mps2-an386"', 'name = "myboard"', text).replace('length = "4M"', 'length = "4K"')
    board_file = tmp_path / "boards" / "myboard.toml"
    board_file.parent.mkdir()
    board_file.write_text(text)
    r = _mcu_mot("build", models["tiny"], "-b", board_file, "--backend", "portable", "-o", tmp_path / "fw")
    assert r.returncode == 1, r.stdout + r.stderr
    line = r.stderr.strip()
    assert "\n" not in line
    assert re.search(
        r"tiny\.tflite does not fit myboard: flash region 'flash' \(4096 bytes\) overflows by \d+ "
        r"bytes \(weights \d+ \+ kernels \d+ \+ model \d+ \+ runtime \d+ bytes\); RAM region 'ram' "
        r"\(4096 bytes\) overflows by \d+ bytes \(arena \d+ \+ stack 16384",
        line,
    ), line
    big = tmp_path / "boards" / "bigboard.toml"  # and a board file that fits builds and sizes
    big.write_text(
        re.sub(
            r'(?m)^name = "qemu-mps2-an386"',
            'name = "bigboard"',
            (ROOT / "boards" / "qemu-mps2-an386.toml").read_text(),
        )
    )
    r = _mcu_mot("build", models["tiny"], "-b", big, "--backend", "portable", "-o", tmp_path / "fw2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "for bigboard" in r.stdout
    rep = size_report(tmp_path / "fw2" / "firmware.elf")
    assert rep["board"] == "bigboard" and rep["regions"]["ram"]["length"] == 4 << 20


# ---------------------------------------------------------------- QEMU boot smoke test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def qemu_uart(board: str, elf):
    """Start QEMU with the UART on a TCP port; yield a pyserial port; always kill QEMU."""
    import serial

    port = _free_port()
    argv = load_board(board).qemu_argv(elf, f"tcp:127.0.0.1:{port},server=on,wait=off")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ser = None
    try:
        deadline = time.monotonic() + 20
        while ser is None:
            if proc.poll() is not None:
                raise AssertionError(f"qemu exited: {proc.stdout.read().decode(errors='replace')}")
            try:
                ser = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.2)
            except (serial.SerialException, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield ser
    finally:
        if ser is not None:
            ser.close()
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _handshake(ser, timeout: float = 20.0) -> bytes:
    """Ask '?' until the board answers: bytes sent before its UART is up may be dropped."""
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ser.write(b"?")
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            buf += ser.read(256)
            if re.search(rb"layers=\d+\n", buf):
                return buf
    raise AssertionError(f"the board never answered; got {buf!r}")


def _read_until(ser, pattern: bytes, timeout: float = 20.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        buf += ser.read(256)
        if re.search(pattern, buf):
            return buf
    raise AssertionError(f"no {pattern!r} from the board; got {buf!r}")


@needs_gcc
@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("board", EMULATED)
def test_qemu_boot(board, stub_build):
    rep = stub_build(board)
    with qemu_uart(board, rep["elf"]) as ser:
        info = _handshake(ser)
        m = re.search(rb"unit=(\d+) x1000=(\d+) clock=(\d+) layers=(\d+)", info)
        assert m and int(m.group(1)) == 0  # instructions, on QEMU
        assert 1000 <= int(m.group(2)) <= 1_000_000  # calibrated at boot
        assert int(m.group(3)) == load_board(board).clock_hz
        assert int(m.group(4)) == sum(1 for layer in rep["layers"] if layer["kernel"])
        ser.write(b"echo-me")
        _read_until(ser, rb"echo-me")
        ser.write(b"R")
        assert int(re.search(rb"ran (\d+)\n", _read_until(ser, rb"ran \d+\n")).group(1)) > 0


@needs_gcc
@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize(
    "board,cmd,cfsr",
    [
        ("qemu-mps2-an386", b"F", rb"0x00010000"),  # undefined instruction (UFSR.UNDEFINSTR)
        ("qemu-mps3-an547", b"S", rb"0x00100000"),  # stack overflow caught by MSPLIM (UFSR.STKOF)
    ],
)
def test_qemu_fault_is_reported_then_resets(board, cmd, cfsr, stub_build):
    rep = stub_build(board)
    with qemu_uart(board, rep["elf"]) as ser:
        _handshake(ser)
        ser.write(cmd)
        out = _read_until(ser, rb"mm-stub ready")  # rebooted after the report
        assert re.search(
            rb"\x00MMFAULT exc=0x00000003 pc=0x[0-9a-f]{8} lr=0x[0-9a-f]{8} cfsr="
            + cfsr
            + rb" addr=0x[0-9a-f]{8} reset\n\x00",
            out,
        ), out
        assert re.search(rb"layers=\d+\n", _handshake(ser))  # and serves again
