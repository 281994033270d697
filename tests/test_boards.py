"""Board files as data: `extends` (merge, chains, cycles, missing bases), the strict schema
(unknown keys with a suggestion, wrong types), every shipped board loads, bases are not boards,
and what the board model alone derives (ISA level, reference board)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcu_mot.boards import BOARD_DIR, board_names, list_boards, load_board, resolve
from mcu_mot.errors import MotError

BASE = """
vendor = "Acme"
clock_hz = 10_000_000
irqs = 16

[compiler]
mcpu = "cortex-m3"
mfloat-abi = "soft"

[[memory]]
name = "flash"
use = "code"
origin = 0x0
length = "256K"

[[memory]]
name = "ram"
use = "ram"
origin = 0x20000000
length = "64K"

[uart]
kind = "cmsdk-apb-uart"
base = 0x40004000
baud = 115200

[timer]
kind = "dwt"

[flash]
method = "pyocd"
target = "acme1"
"""


def _write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text)
    return p


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_extends_merges_key_by_key_and_the_child_wins(tmp_path):
    _write(tmp_path, "_acme.toml", BASE)
    p = _write(
        tmp_path,
        "acme-b.toml",
        """
extends = "_acme.toml"
name = "acme-b"
cpu = "cortex-m3"
clock_hz = 48_000_000

[uart]
baud = 9600

[[memory]]
name = "ram"
length = "128K"

[[memory]]
name = "sram2"
use = "extra"
origin = 0x30000000
length = "16K"
""",
    )
    b = load_board(str(p))
    assert b.clock_hz == 48_000_000 and b.irqs == 16  # child wins, base fills in
    assert b.uart == {"kind": "cmsdk-apb-uart", "base": 0x40004000, "baud": 9600}
    assert [(r.name, r.origin, r.length) for r in b.memory] == [
        ("flash", 0, 256 << 10),
        ("ram", 0x20000000, 128 << 10),
        ("sram2", 0x30000000, 16 << 10),
    ]
    assert b.flash == {"method": "pyocd", "target": "acme1"}
    assert "extends" not in resolve(p)


def test_extends_chains_and_lists(tmp_path):
    _write(tmp_path, "_a.toml", BASE)
    _write(tmp_path, "_b.toml", 'extends = "_a"\nirqs = 40\n')
    _write(tmp_path, "_c.toml", '[timer]\nkind = "systick"\n')
    p = _write(tmp_path, "acme-c.toml", 'extends = ["_b.toml", "_c.toml"]\nname = "acme-c"\ncpu = "cortex-m3"\n')
    b = load_board(str(p))
    assert b.irqs == 40
    assert b.timer == {"kind": "systick"} and b.clock_hz == 10_000_000


def test_extends_falls_back_to_the_shipped_bases(tmp_path):
    text = (BOARD_DIR / "qemu-mps2-an386.toml").read_text().replace('name = "qemu-mps2-an386"', 'name = "mine"')
    b = load_board(str(_write(tmp_path, "mine.toml", text)))
    ref = load_board("qemu-mps2-an386")
    assert (b.uart, b.timer, b.clock_hz, b.memory) == (ref.uart, ref.timer, ref.clock_hz, ref.memory)


def test_extends_cycle_is_one_line(tmp_path):
    _write(tmp_path, "_x.toml", 'extends = "_y.toml"\n')
    _write(tmp_path, "_y.toml", 'extends = "_x.toml"\n')
    p = _write(tmp_path, "cyc.toml", 'extends = "_x.toml"\nname = "cyc"\ncpu = "cortex-m3"\n')
    with pytest.raises(MotError, match="extends cycle") as e:
        load_board(str(p))
    assert "_x.toml -> _y.toml -> _x.toml" in _one_line(e)
    p = _write(tmp_path, "self.toml", 'extends = "self.toml"\nname = "self"\n')
    with pytest.raises(MotError, match=r"self\.toml: extends cycle: self\.toml -> self\.toml"):
        load_board(str(p))


def test_missing_base_is_one_line(tmp_path):
    p = _write(tmp_path, "lost.toml", 'extends = "_nowhere.toml"\nname = "lost"\ncpu = "cortex-m3"\n')
    with pytest.raises(MotError, match=r"board file lost\.toml: extends '_nowhere\.toml': no such file") as e:
        load_board(str(p))
    _one_line(e)


@pytest.mark.parametrize(
    "text, key, hint",
    [
        ("clock_mhz = 25\n", "clock_mhz", "clock_hz"),
        ("[uart]\nbsae = 1\n", "bsae", "base"),
        ('[qemu]\nmachin = "mps2-an385"\n', "machin", "machine"),
        ('[[memory]]\nname = "x"\norigin_ = 0\n', "origin_", "origin"),
        ('[compiler]\nmfloat_abi = "hard"\n', "mfloat_abi", "mfloat-abi"),
    ],
)
def test_unknown_key_names_file_key_and_the_closest(tmp_path, text, key, hint):
    _write(tmp_path, "_acme.toml", BASE)
    p = _write(tmp_path, "typo.toml", 'extends = "_acme.toml"\nname = "typo"\ncpu = "cortex-m3"\n' + text)
    with pytest.raises(MotError) as e:
        load_board(str(p))
    msg = _one_line(e)
    assert "typo.toml" in msg and f"unknown key '{key}'" in msg and f"did you mean '{hint}'" in msg


def test_unknown_key_in_a_base_names_the_base(tmp_path):
    _write(tmp_path, "_acme.toml", BASE + "colour = 'red'\n")
    p = _write(tmp_path, "kid.toml", 'extends = "_acme.toml"\nname = "kid"\ncpu = "cortex-m3"\n')
    with pytest.raises(MotError, match=r"board file _acme\.toml: unknown key 'colour'"):
        load_board(str(p))


@pytest.mark.parametrize(
    "text, what",
    [
        ('irqs = "32"\n', "'irqs' must be an integer"),
        ("caches = 1\n", "'caches' must be true or false"),
        ('features = "dsp"\n', "'features' must be a list of strings"),
        ("uart = 3\n", "'uart' must be a table"),
        ("[uart]\nbaud = 1.5\n", "'uart.baud' must be an integer"),
        ('[uart]\nclock_enable = ["a", 1]\n', "'uart.clock_enable' must be a list of integers"),
        ("[[memory]]\nname = 3\n", "'memory[0].name' must be a string"),
        ('[qemu]\nreference = "yes"\n', "'qemu.reference' must be true or false"),
        ("stack_size = true\n", "'stack_size' must be a size"),
        ("extends = 5\n", "'extends' must be a file name"),
    ],
)
def test_wrong_types_are_one_line(tmp_path, text, what):
    _write(tmp_path, "_acme.toml", BASE)
    head = 'name = "typed"\ncpu = "cortex-m3"\n'
    if not text.startswith("extends"):
        head = 'extends = "_acme.toml"\n' + head
    p = _write(tmp_path, "typed.toml", head + text)
    with pytest.raises(MotError) as e:
        load_board(str(p))
    msg = _one_line(e)
    assert "typed.toml" in msg and what in msg, msg


def test_every_shipped_board_loads_and_bases_are_not_boards():
    names = board_names()
    bases = sorted(p.name for p in BOARD_DIR.glob("_*.toml"))
    assert bases, "the shipped boards share parts through _*.toml bases"
    assert not any(n.startswith("_") for n in names)
    for b in list_boards():
        assert b.name in names and b.path.parent == BOARD_DIR
    for base in bases:
        with pytest.raises(MotError, match="unknown board"):
            load_board(base[:-5])
    import contextlib
    import io

    from mcu_mot.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["boards"]) == 0
    assert "qemu-mps2-an386" in out.getvalue() and "_mps2" not in out.getvalue()


def test_the_mps2_boards_share_a_base():
    for name in ("qemu-mps2-an385", "qemu-mps2-an386", "qemu-mps2-an500", "qemu-mps2-an505"):
        assert 'extends = "_mps2.toml"' in (BOARD_DIR / f"{name}.toml").read_text()


def test_isa_and_reference_board_come_from_the_board_model():
    isa = {b.name: b.isa for b in list_boards()}
    assert isa["host"] == "plain" and isa["rpi-pico"] == "plain" and isa["qemu-mps2-an385"] == "plain"
    assert isa["qemu-mps2-an386"] == isa["nucleo-l4r5zi"] == isa["stm32f746g-disco"] == "dsp"
    assert isa["qemu-mps3-an547"] == "mve"
    ref = {b.name: b.reference_board for b in list_boards()}
    assert ref["host"] is None and ref["rpi-pico"] is None  # nothing emulates an M0+
    assert ref["nucleo-l4r5zi"] == ref["nrf52840dk"] == "qemu-mps2-an386"
    assert ref["stm32f746g-disco"] is None  # no M7 reference flagged
    assert ref["qemu-netduinoplus2"] == "qemu-netduinoplus2"  # emulated: itself
    # one reference per core, and it runs that core
    refs = [b for b in list_boards() if b.is_reference]
    assert len({b.cpu for b in refs}) == len(refs)
    from mcu_mot.codegen.compile import board_isa
    from mcu_mot.flows.autotune import reference_board

    for b in list_boards():
        assert board_isa(b.name) == b.isa and reference_board(b.name) == b.reference_board


def test_a_users_board_file_finds_its_reference(tmp_path):
    _write(tmp_path, "_acme.toml", BASE)
    p = _write(
        tmp_path,
        "m33.toml",
        """extends = "_acme.toml"
name = "m33"
cpu = "cortex-m33"
features = ["dsp"]
[compiler]
mcpu = "cortex-m33"
""",
    )
    b = load_board(str(p))
    assert b.isa == "dsp" and b.reference_board == "qemu-mps2-an505"
