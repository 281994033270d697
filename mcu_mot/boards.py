"""Board descriptions: boards/*.toml, loaded and validated (Zephyr-style data, no code).

A board file names the CPU and its compiler flags, the memories (with the real
part's sizes), the clock, the UART, the profiling timer, how to flash it and,
for emulated boards, the QEMU machine. `load_board(name)` returns a `Board`;
an unknown name is a one-line `MotError` listing the known boards.

`extends = "_base.toml"` (or a list) shares parts between files: the base is read first and the
file's own keys win, table by table and key by key ([[memory]] regions merge by name). Files
whose name starts with "_" are bases only, never boards. The schema is strict: an unknown key or
a value of the wrong type is a one-line MotError naming the file and the key.

What a board can run is derived here and nowhere else: `Board.isa` (kernel ISA level: plain,
dsp, mve) and `Board.reference_board` (the emulated board that measures its core). See
docs/boards.md.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from mcu_mot.errors import MotError
from mcu_mot.resources import BOARDS

BOARD_DIR = BOARDS

CPUS = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
# what each core can have; `features` must be a subset
CPU_FEATURES = {
    "cortex-m0plus": set(),
    "cortex-m3": set(),
    "cortex-m4": {"dsp", "fpu"},
    "cortex-m7": {"dsp", "fpu"},
    "cortex-m33": {"dsp", "fpu"},
    "cortex-m55": {"dsp", "fpu", "mve"},
}
UART_KINDS = {
    "cmsdk-apb-uart": (),
    "stm32-usart": ("family", "tx", "rx", "af", "clock_enable"),
    "nrf52-uarte": ("tx_pin", "rx_pin"),
    "rp2040-uart": ("tx_pin", "rx_pin"),
}
STM32_FAMILIES = ("stm32f4", "stm32f7", "stm32l4")
TIMER_KINDS = ("systick", "dwt")
FLASH_METHODS = ("qemu", "openocd", "pyocd", "picotool", "none")
FLOAT_ABIS = ("soft", "softfp", "hard")


@dataclass(frozen=True)
class Region:
    name: str
    origin: int
    length: int
    use: str  # "code" | "ram" | "extra"

    @property
    def end(self) -> int:
        return self.origin + self.length


@dataclass
class Board:
    name: str
    description: str
    cpu: str
    path: Path
    features: tuple = ()
    mcpu: str = ""
    mfpu: str | None = None
    float_abi: str = "soft"
    clock_hz: int = 0
    memory: tuple = ()
    stack_size: int = 16384
    heap_size: int = 0
    irqs: int = 32
    vtor: int | None = None
    caches: bool = False
    boot2: str | None = None
    uart: dict = field(default_factory=dict)
    timer: dict = field(default_factory=dict)
    flash: dict = field(default_factory=dict)
    qemu: dict | None = None

    # ---- derived ----
    @property
    def is_host(self) -> bool:
        return self.cpu == "host"

    @property
    def emulated(self) -> bool:
        return self.qemu is not None

    @property
    def isa(self) -> str:
        """The kernel ISA level the core runs: 'mve' (Helium), 'dsp' (the DSP extension) or
        'plain' (C only; also the host)."""
        features = set(self.features)
        return "mve" if "mve" in features else "dsp" if "dsp" in features else "plain"

    @property
    def is_reference(self) -> bool:
        """This emulated board measures its core for real boards without an emulator ([qemu] reference)."""
        return bool(self.emulated and self.qemu.get("reference", False))

    @property
    def reference_board(self) -> str | None:
        """The emulated board that measures this board's core (instruction counts on QEMU): the
        board itself when it is emulated, else the shipped board flagged `reference = true` in
        its [qemu] table with the same cpu and ISA level; None for the host or a core no shipped
        emulator has."""
        if self.is_host:
            return None
        if self.emulated:
            return self.name
        for b in list_boards():
            if b.is_reference and b.cpu == self.cpu and b.isa == self.isa:
                return b.name
        return None

    @property
    def code_region(self) -> Region:
        return next(r for r in self.memory if r.use == "code")

    @property
    def weights_region(self) -> Region:
        """Where the model's constant arrays go: a region with use = "weights" (external
        flash, a big RAM the loader fills) or else the code region."""
        return next((r for r in self.memory if r.use == "weights"), self.code_region)

    @property
    def ram_region(self) -> Region:
        return next(r for r in self.memory if r.use == "ram")

    @property
    def timer_unit(self) -> str:
        """'instructions' (QEMU: no cycle counter) or 'cycles' (hardware)."""
        return self.timer.get("unit") or ("instructions" if self.emulated else "cycles")

    def region_of(self, addr: int) -> Region | None:
        """The region holding `addr`, else the highest region starting below it (an overflow)."""
        inside = [r for r in self.memory if r.origin <= addr < r.end]
        if inside:
            return inside[0]
        below = [r for r in self.memory if r.origin <= addr]
        return max(below, key=lambda r: r.origin) if below else None

    def cflags(self) -> list[str]:
        """Target flags for compiling and linking (multilib selection included)."""
        flags = ["-mthumb", f"-mcpu={self.mcpu}", f"-mfloat-abi={self.float_abi}"]
        if self.mfpu:
            flags.append(f"-mfpu={self.mfpu}")
        return flags

    def defines(self) -> dict:
        """Preprocessor macros the runtime's drivers are configured with."""
        u, t = self.uart, self.timer
        d = {
            "MM_BOARD_NAME": f'"{self.name}"',
            "MM_CLOCK_HZ": f"{self.clock_hz}u",
            "MM_UART_BASE": f"0x{u['base']:08x}u",
            "MM_UART_BAUD": f"{u.get('baud', 115200)}u",
            "MM_UART_CLOCK_HZ": f"{u.get('clock_hz', self.clock_hz)}u",
            "MM_TIMER_UNIT": "0" if self.timer_unit == "instructions" else "1",
            "MM_TIMER_CALIBRATE": "1" if self.timer_unit == "instructions" else "0",
            "MM_TIMER_" + t["kind"].upper(): "1",
            "MM_UART_" + u["kind"].upper().replace("-", "_"): "1",
            "MM_CPU_" + self.cpu.upper().replace("-", "_"): "1",
        }
        if self.emulated:
            d["MM_EMULATED"] = "1"
        if u["kind"] == "stm32-usart":
            d["MM_" + u["family"].upper()] = "1"
            for key in ("tx", "rx"):
                port, pin = _stm32_pin(u[key], self.path)
                d[f"MM_UART_{key.upper()}_PORT"] = str(port)
                d[f"MM_UART_{key.upper()}_PIN"] = str(pin)
            d["MM_UART_AF"] = str(int(u["af"]))
            reg, bit = u["clock_enable"]
            d["MM_UART_CLKEN_REG"] = f"0x{int(reg):08x}u"
            d["MM_UART_CLKEN_BIT"] = str(int(bit))
            if u.get("lpuart"):
                d["MM_UART_LPUART"] = "1"
        elif u["kind"] in ("nrf52-uarte", "rp2040-uart"):
            d["MM_UART_TX_PIN"] = str(int(u["tx_pin"]))
            d["MM_UART_RX_PIN"] = str(int(u["rx_pin"]))
        return d

    def qemu_argv(self, elf, serial: str) -> list[str]:
        """The qemu-system-arm command that runs `elf` with the UART on `serial`
        (e.g. 'tcp:127.0.0.1:4321,server=on,wait=off'), counting instructions."""
        if not self.emulated:
            raise MotError(f"board '{self.name}' is not emulated (flash method: {self.flash.get('method')})")
        q = self.qemu
        return [
            "qemu-system-arm",
            "-M",
            q["machine"],
            "-cpu",
            q.get("cpu", self.cpu),
            "-kernel",
            str(elf),
            "-nographic",
            "-monitor",
            "none",
            "-icount",
            "shift=0",
            "-serial",
            serial,
        ] + [str(a) for a in q.get("extra_args", [])]

    def summary(self) -> dict:
        """One row for `mcu-mot boards`."""
        if self.is_host:
            return {
                "name": self.name,
                "cpu": "host",
                "features": "",
                "flash": "",
                "ram": "",
                "clock_mhz": "",
                "flash_method": "simulate",
                "description": self.description,
            }
        return {
            "name": self.name,
            "cpu": self.cpu,
            "features": ",".join(self.features),
            "flash": _human(self.code_region.length),
            "ram": _human(self.ram_region.length),
            "clock_mhz": self.clock_hz / 1e6,
            "flash_method": self.flash["method"],
            "description": self.description,
        }


def board_names() -> list[str]:
    """The shipped boards (boards/*.toml); files named _*.toml are bases for `extends`, not boards."""
    return sorted(p.stem for p in BOARD_DIR.glob("*.toml") if not p.name.startswith("_"))


def list_boards() -> list[Board]:
    return [load_board(n) for n in board_names()]


def load_board(name) -> Board:
    """A board by name (boards/NAME.toml) or by path to a .toml file of the same schema."""
    if isinstance(name, Board):
        return name
    name = str(name)
    path = Path(name)
    if not (name.endswith(".toml") and path.is_file()):
        path = BOARD_DIR / f"{name}.toml"
        if name.startswith("_") or not path.is_file():
            raise MotError(f"unknown board '{name}' (known: {', '.join(board_names())})")
    return _validate(resolve(path), path)


# ---------------------------------------------------------------- files, extends, schema


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise MotError(f"{path}: cannot read board file: {e.strerror or e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MotError(f"{path}: cannot read board file: {e}") from None


def _base_path(ref, child: Path) -> Path:
    """`extends = ref` in `child`: a file next to `child`, else one of the shipped boards/ folder."""
    name = ref if ref.endswith(".toml") else ref + ".toml"
    for folder in (child.parent, BOARD_DIR):
        p = folder / name
        if p.is_file():
            return p
    raise _bad(child, f"extends '{ref}': no such file (looked in {child.parent} and {BOARD_DIR})")


def _merge(base: dict, top: dict) -> dict:
    """`top` over `base`: tables merge key by key, [[memory]] regions by name, the rest is replaced."""
    out = dict(base)
    for key, value in top.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = _merge(old, value)
        elif key == "memory" and isinstance(value, list) and isinstance(old, list):
            regions = [dict(r) for r in old]
            index = {r.get("name"): i for i, r in enumerate(regions)}
            for r in value:
                i = index.get(r.get("name"))
                if i is None:
                    regions.append(dict(r))
                else:
                    regions[i] = _merge(regions[i], r)
            out[key] = regions
        else:
            out[key] = value
    return out


def resolve(path, _chain: tuple = ()) -> dict:
    """The data of one board file with its `extends` bases merged in (the file's own keys win),
    every file checked against the schema."""
    path = Path(path)
    key = path.resolve()
    if key in _chain:
        loop = " -> ".join(p.name for p in _chain[_chain.index(key) :] + (key,))
        raise _bad(path, f"extends cycle: {loop}")
    data = _read(path)
    _check_schema(data, path)
    refs = data.pop("extends", [])
    merged: dict = {}
    for ref in [refs] if isinstance(refs, str) else refs:
        merged = _merge(merged, resolve(_base_path(ref, path), _chain + (key,)))
    return _merge(merged, data)


# the keys a board file may hold, with their types: "str", "int", "bool", "size" (an int or a
# string like "512K"), "list[str]", "list[int]"; a dict is a table, a one-item list an array of tables
SIZE = "size"
SCHEMA = {
    "extends": "str|list[str]",
    "name": "str",
    "description": "str",
    "vendor": "str",
    "cpu": "str",
    "features": "list[str]",
    "clock_hz": "int",
    "stack_size": SIZE,
    "heap_size": SIZE,
    "irqs": "int",
    "vtor": SIZE,
    "caches": "bool",
    "boot2": "str",
    "compiler": {"mcpu": "str", "mfpu": "str", "mfloat-abi": "str"},
    "memory": [{"name": "str", "use": "str", "origin": SIZE, "length": SIZE}],
    "uart": {
        "kind": "str",
        "base": "int",
        "baud": "int",
        "clock_hz": "int",
        "family": "str",
        "tx": "str",
        "rx": "str",
        "af": "int",
        "clock_enable": "list[int]",
        "lpuart": "bool",
        "tx_pin": "int",
        "rx_pin": "int",
    },
    "timer": {"kind": "str", "unit": "str"},
    "flash": {"method": "str", "target": "str", "config": "list[str]"},
    "qemu": {"machine": "str", "cpu": "str", "extra_args": "list[str]", "reference": "bool"},
}
_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    SIZE: "a size (bytes, or like '128K'/'1M')",
    "list[str]": "a list of strings",
    "list[int]": "a list of integers",
    "str|list[str]": "a file name or a list of them",
    "table": "a table",
    "tables": "an array of tables ([[...]])",
}


def _is(value, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == SIZE:
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "list[int]":
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if kind == "str|list[str]":
        return _is(value, "str") or _is(value, "list[str]")
    raise AssertionError(kind)


def _check_schema(data: dict, path: Path, schema: dict = SCHEMA, where: str = "") -> None:
    """Every key known (else the closest known one is suggested), every value of its type."""
    for key, value in data.items():
        full = f"{where}.{key}" if where else key
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(schema)})"
            table = ""
            if where:
                top = where.split("[")[0]
                table = f" in [[{top}]] {where[len(top) :]}" if "[" in where else f" in [{where}]"
            raise _bad(path, f"unknown key '{key}'{table}{hint}")
        kind = schema[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise _bad(path, f"'{full}' must be {_TYPE_WORDS['table']} ([{full}]), got {_show(value)}")
            _check_schema(value, path, kind, full)
        elif isinstance(kind, list):
            if not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
                raise _bad(path, f"'{full}' must be {_TYPE_WORDS['tables']}, got {_show(value)}")
            for i, item in enumerate(value):
                _check_schema(item, path, kind[0], f"{full}[{i}]")
        elif not _is(value, kind):
            raise _bad(path, f"'{full}' must be {_TYPE_WORDS[kind]}, got {_show(value)}")


def _show(value) -> str:
    text = repr(value)
    return f"{text[:40] + '...' if len(text) > 43 else text} ({type(value).__name__})"


# ---------------------------------------------------------------- validation


def _bad(path: Path, msg: str) -> MotError:
    return MotError(f"board file {path.name}: {msg}")


def _size(v, path: Path, what: str) -> int:
    """An int, or a string like '512K', '4M', '0x1000'."""
    if isinstance(v, bool):
        raise _bad(path, f"{what} must be a size, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(0x[0-9a-fA-F_]+|\d[\d_]*)\s*([KkMmGg]i?[Bb]?)?\s*", v)
        if m:
            n = int(m.group(1).replace("_", ""), 0)
            unit = (m.group(2) or "").upper()[:1]
            return n * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
    raise _bad(path, f"{what} must be a size (bytes, or like '128K'/'1M'), got {v!r}")


def _req(d: dict, key: str, path: Path, where: str = ""):
    if key not in d:
        raise _bad(path, f"missing '{key}'" + (f" in [{where}]" if where else ""))
    return d[key]


def _stm32_pin(s: str, path: Path) -> tuple[int, int]:
    m = re.fullmatch(r"P([A-K])(\d{1,2})", str(s))
    if not m or int(m.group(2)) > 15:
        raise _bad(path, f"STM32 pin must look like 'PA9', got {s!r}")
    return ord(m.group(1)) - ord("A"), int(m.group(2))


def _validate(d: dict, path: Path) -> Board:
    name = _req(d, "name", path)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise _bad(
            path,
            "name must be letters, digits, '.', '_' and '-' (it becomes a C string, "
            "a folder name and a command-line word)",
        )
    if name != path.stem:
        raise _bad(path, f"name '{name}' differs from the file name '{path.stem}'")
    desc = str(d.get("description", name))
    cpu = _req(d, "cpu", path)
    flash = dict(d.get("flash", {}))
    if cpu == "host":
        return Board(name=name, description=desc, cpu="host", path=path, flash=flash or {"method": "none"})
    if cpu not in CPUS:
        raise _bad(path, f"unknown cpu '{cpu}' (choose from {', '.join(CPUS)})")
    features = tuple(d.get("features", []))
    extra = set(features) - CPU_FEATURES[cpu]
    if extra:
        raise _bad(path, f"{cpu} has no {', '.join(sorted(extra))}")

    comp = _req(d, "compiler", path)
    mcpu = _req(comp, "mcpu", path, "compiler")
    fabi = comp.get("mfloat-abi", "soft")
    if fabi not in FLOAT_ABIS:
        raise _bad(path, f"mfloat-abi must be one of {', '.join(FLOAT_ABIS)}")
    if fabi != "soft" and "fpu" not in features:
        raise _bad(path, f"mfloat-abi={fabi} needs the 'fpu' feature")
    if "fpu" in features and fabi == "soft":
        raise _bad(path, "a board with an FPU should use mfloat-abi hard (or softfp)")

    mem = []
    for i, r in enumerate(_req(d, "memory", path)):
        rname = _req(r, "name", path, f"memory {i}")
        if not isinstance(rname, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", rname):
            raise _bad(path, f"memory {i}: name must be a linker-script identifier (letters, digits, '_')")
        use = r.get("use", "extra")
        if use not in ("code", "ram", "weights", "extra"):
            raise _bad(path, f"memory '{rname}': use must be code, ram, weights or extra")
        mem.append(
            Region(
                rname,
                _size(_req(r, "origin", path, f"memory {rname}"), path, f"{rname}.origin"),
                _size(_req(r, "length", path, f"memory {rname}"), path, f"{rname}.length"),
                use,
            )
        )
    for use in ("code", "ram"):
        n = sum(r.use == use for r in mem)
        if n != 1:
            raise _bad(path, f'needs exactly one memory region with use = "{use}" (has {n})')
    if sum(r.use == "weights" for r in mem) > 1:
        raise _bad(path, 'at most one memory region may have use = "weights"')
    names = [r.name for r in mem]
    if len(set(names)) != len(names):
        raise _bad(path, "memory region names must be unique")
    for a in mem:
        if a.length <= 0:
            raise _bad(path, f"memory '{a.name}' has no length")
        for b in mem:
            if a is not b and a.origin < b.end and b.origin < a.end:
                raise _bad(path, f"memory regions '{a.name}' and '{b.name}' overlap")

    clock = int(_req(d, "clock_hz", path))
    uart = dict(_req(d, "uart", path))
    kind = _req(uart, "kind", path, "uart")
    if kind not in UART_KINDS:
        raise _bad(path, f"unknown uart kind '{kind}' (choose from {', '.join(UART_KINDS)})")
    _req(uart, "base", path, "uart")
    for k in UART_KINDS[kind]:
        _req(uart, k, path, "uart")
    if kind == "stm32-usart":
        if uart["family"] not in STM32_FAMILIES:
            raise _bad(path, f"uart family must be one of {', '.join(STM32_FAMILIES)}")
        _stm32_pin(uart["tx"], path), _stm32_pin(uart["rx"], path)
        ce = uart["clock_enable"]
        if not (isinstance(ce, list) and len(ce) == 2 and all(isinstance(x, int) for x in ce)):
            raise _bad(path, "uart clock_enable must be [register address, bit]")

    timer = dict(_req(d, "timer", path))
    if timer.get("kind") not in TIMER_KINDS:
        raise _bad(path, f"timer kind must be one of {', '.join(TIMER_KINDS)}")
    if timer["kind"] == "dwt" and cpu == "cortex-m0plus":
        raise _bad(path, "cortex-m0plus has no DWT cycle counter: use timer kind systick")
    if timer.get("unit", "cycles") not in ("cycles", "instructions"):
        raise _bad(path, "timer unit must be cycles or instructions")

    method = flash.get("method")
    if method not in FLASH_METHODS:
        raise _bad(path, f"flash method must be one of {', '.join(FLASH_METHODS)}")
    qemu = d.get("qemu")
    if (method == "qemu") != (qemu is not None):
        raise _bad(path, "flash method 'qemu' and a [qemu] table go together")
    if qemu is not None:
        _req(qemu, "machine", path, "qemu")
        if timer["kind"] != "systick":
            raise _bad(path, "QEMU has no cycle counter: an emulated board's timer kind must be systick")

    stack = _size(d.get("stack_size", 16384), path, "stack_size")
    heap = _size(d.get("heap_size", 0), path, "heap_size")
    if stack < 1024 or stack % 8:
        raise _bad(path, "stack_size must be a multiple of 8, at least 1024")
    vtor = d.get("vtor")
    if vtor is not None:
        vtor = _size(vtor, path, "vtor")
    boot2 = d.get("boot2")
    if boot2 not in (None, "rp2040-generic-03h"):
        raise _bad(path, f"unknown boot2 '{boot2}'")
    return Board(
        name=name,
        description=desc,
        cpu=cpu,
        path=path,
        features=features,
        mcpu=mcpu,
        mfpu=comp.get("mfpu"),
        float_abi=fabi,
        clock_hz=clock,
        memory=tuple(mem),
        stack_size=stack,
        heap_size=heap,
        irqs=int(d.get("irqs", 32)),
        vtor=vtor,
        caches=bool(d.get("caches", False)),
        boot2=boot2,
        uart=uart,
        timer=timer,
        flash=flash,
        qemu=dict(qemu) if qemu is not None else None,
    )


def _human(n: int) -> str:
    for unit, k in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {unit}B"
    return f"{n} B"
