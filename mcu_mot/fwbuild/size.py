"""size: read a firmware ELF (pyelftools) and split flash and RAM by what uses them.

flash = every byte the image programs (the file size of the PT_LOAD segments:
text + rodata + the .data image), RAM = the memory size of the writable
PT_LOAD segments (.data + .bss + stack + heap + .noinit). Symbols split them:

  flash: weights (the model's constant arrays, mmw_*), kernels (functions and
         tables of firmware/kernels), model (the generated code, kernel
         parameter structs mmp_* and info tables), runtime (the rest: startup,
         drivers, protocol, libc, literals, padding)
  RAM:   arena (mm_arena), stack (.stack), heap (.heap), static (the rest)

Each split adds up exactly to its total. With a board, every memory region's
use (from the first to the last byte placed in it, as the linker counts) and
any overflow are reported too.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from rich.console import Console
from rich.table import Table

from mcu_mot.boards import board_names, load_board
from mcu_mot.errors import MotError
from mcu_mot.resources import KERNELS

KERNEL_DIR = KERNELS
PF_W = 0x2
SHF_WRITE = 0x1
SHF_ALLOC = 0x2


@lru_cache(maxsize=1)
def kernel_symbols() -> tuple[frozenset, frozenset]:
    """(global function names defined in firmware/kernels/*.c, the kernel source file names)."""
    names, files = set(), set()
    pat = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b(mm_\w+)\s*\(")
    for p in KERNEL_DIR.glob("*.c"):
        files.add(p.name)
        for line in p.read_text(errors="replace").splitlines():
            m = pat.match(line)
            if m and not line.rstrip().endswith(";"):
                names.add(m.group(1))
    return frozenset(names), frozenset(files)


RUNTIME_PREFIXES = (
    "mm_board",
    "mm_uart",
    "mm_timer",
    "mm_clock",
    "mm_fault",
    "mm_last_fault",
    "mm_protocol",
    "mm_cobs",
    "mm_crc32",
    "mm_prof",
    "mm_hal",
    "mm_vectors",
)


def _category(name: str, local_file: str | None) -> str:
    """Category of a symbol (ELF only: no linker map)."""
    kfuncs, kfiles = kernel_symbols()
    if name.startswith("mmw_"):
        return "weights"
    if name == "mm_arena":
        return "arena"
    if local_file is not None:
        return "kernels" if local_file in kfiles else "model" if local_file == "model.c" else "runtime"
    if name in kfuncs:
        return "kernels"
    if name.startswith(("mmp_", "model_")):
        return "model"
    if name.startswith("mm_") and not name.startswith(RUNTIME_PREFIXES):
        return "kernels"
    return "runtime"


def _object_category(obj: str, in_section: str) -> str:
    """Category of an input section (from the linker map) by the object file it came from."""
    _, kfiles = kernel_symbols()
    base = Path(obj.split("(")[0]).name
    if base == "model.o":
        return "weights" if ".mmw_" in in_section else "arena" if in_section.endswith(".mm_arena") else "model"
    if Path(base).stem + ".c" in kfiles and ("/kernels/" in obj or "kernels" in Path(obj).parts):
        return "kernels"
    return "runtime"


_HEX = r"0x([0-9a-fA-F]+)"


def parse_map(path: Path) -> list[tuple[str, str, int, str]]:
    """(output section, input section, size, object) for every input section and fill in a GNU
    ld map file's memory map."""
    lines = Path(path).read_text(errors="replace").splitlines()
    try:
        start = lines.index("Linker script and memory map")
    except ValueError:
        return []
    recs, out_sec, pending = [], None, None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        if pending is not None:
            m = re.match(rf"^\s+{_HEX}\s+{_HEX}(?:\s+(\S.*))?$", line)
            kind, name = pending
            pending = None
            if m:
                if kind == "out":
                    out_sec = name
                elif m.group(3):
                    recs.append((out_sec, name, int(m.group(2), 16), m.group(3).strip()))
                continue
        if line[0] not in " \t":
            m = re.match(rf"^(\S+)(?:\s+{_HEX}\s+{_HEX})?", line)
            name = m.group(1)
            if name.startswith("."):
                if m.group(2) is None:
                    pending = ("out", name)
                else:
                    out_sec = name
            else:
                out_sec = None
            continue
        if line.startswith(" *fill*"):
            m = re.match(rf"^ \*fill\*\s+{_HEX}\s+{_HEX}", line)
            if m:
                recs.append((out_sec, "*fill*", int(m.group(2), 16), ""))
            continue
        if line.startswith((" *", "  ")):
            continue  # input patterns, symbols, assignments
        m = re.match(rf"^ (\S+)(?:\s+{_HEX}\s+{_HEX}\s+(\S.*))?$", line)
        if m:
            if m.group(2) is None:
                pending = ("in", m.group(1))
            else:
                recs.append((out_sec, m.group(1), int(m.group(3), 16), m.group(4).strip()))
    return recs


def size_report(elf_path, board=None) -> dict:
    """Flash and RAM of a firmware ELF, split into weights / kernels / model / runtime and
    arena / stack / heap / static; with `board` (a name or Board), per-region use and overflow."""

    elf_path = Path(elf_path)
    if not elf_path.is_file():
        raise MotError(f"no such ELF file: {elf_path}")
    if board is None:
        board = _board_beside(elf_path)
    elif isinstance(board, str) and not board.endswith(".toml"):
        beside = _board_beside(elf_path)  # a build for a board file given by path names it so
        if board not in board_names() and getattr(beside, "name", None) == board:
            board = beside
    try:
        with open(elf_path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_machine"] != "EM_ARM":
                raise MotError(f"{elf_path} is not an Arm ELF ({elf['e_machine']})")
            segs = [
                (s["p_vaddr"], s["p_paddr"], s["p_filesz"], s["p_memsz"], s["p_flags"])
                for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD" and s["p_memsz"] > 0
            ]
            sections = {}
            for i, s in enumerate(elf.iter_sections()):
                if s["sh_flags"] & SHF_ALLOC and s["sh_size"] > 0:
                    sections[i] = (s.name, s["sh_type"], s["sh_flags"], s["sh_addr"], s["sh_size"])
            syms = []
            symtab = elf.get_section_by_name(".symtab")
            if symtab is not None:
                cur_file = None
                for sym in symtab.iter_symbols():
                    t = sym["st_info"]["type"]
                    if t == "STT_FILE":
                        cur_file = Path(sym.name).name
                        continue
                    if t not in ("STT_FUNC", "STT_OBJECT") or sym["st_size"] == 0:
                        continue
                    shndx = sym["st_shndx"]
                    if not isinstance(shndx, int) or shndx not in sections:
                        continue
                    local = sym["st_info"]["bind"] == "STB_LOCAL"
                    syms.append(
                        (
                            sym.name,
                            shndx,
                            sym["st_value"] & ~1 if t == "STT_FUNC" else sym["st_value"],
                            sym["st_size"],
                            cur_file if local else None,
                        )
                    )
    except ELFError as e:
        raise MotError(f"{elf_path}: not a readable ELF file ({e})") from None

    flash_bytes = sum(filesz for _, _, filesz, _, _ in segs)
    ram_bytes = sum(memsz for _, _, _, memsz, flags in segs if flags & PF_W)

    flash = {"weights": 0, "kernels": 0, "model": 0}
    ram = {"arena": 0, "stack": 0, "heap": 0}
    symbols = []
    seen = set()
    for name, shndx, addr, size, local_file in syms:
        if (shndx, addr) in seen:  # aliases (weak vectors) count once
            continue
        seen.add((shndx, addr))
        sname, stype, sflags, _, _ = sections[shndx]
        cat = _category(name, local_file)
        if stype != "SHT_NOBITS" and cat in flash:
            flash[cat] += size
        if sflags & SHF_WRITE and cat == "arena":
            ram["arena"] += size
        symbols.append({"name": name, "bytes": size, "category": cat, "section": sname})
    for sname, _, _, _, size in sections.values():
        if sname == ".stack":
            ram["stack"] += size
        elif sname == ".heap":
            ram["heap"] += size
    source = "symbols"
    by_map = _split_from_map(elf_path.with_suffix(".map"), sections)
    if by_map is not None:
        flash, ram["arena"] = by_map
        source = "map"
    flash["runtime"] = flash_bytes - sum(flash.values())
    ram["static"] = ram_bytes - sum(ram.values())
    if flash["runtime"] < 0 or ram["static"] < 0:  # symbols overlapping: should not happen
        raise MotError(f"{elf_path}: symbol sizes exceed the segments; cannot split")

    symbols.sort(key=lambda s: -s["bytes"])
    rep = {
        "elf": str(elf_path),
        "flash_bytes": flash_bytes,
        "ram_bytes": ram_bytes,
        "flash": flash,
        "ram": ram,
        "split_from": source,
        "sections": {name: size for name, _, _, _, size in sections.values()},
        "top_symbols": symbols[:20],
    }
    if board is not None:
        board = load_board(board)
        rep["board"] = board.name
        rep["regions"] = region_usage(segs, board)
    return rep


def _split_from_map(map_path: Path, sections: dict):
    """(flash split without runtime, arena bytes) from the linker map beside the ELF, or None when
    there is none or it does not describe this ELF (its output section sizes differ)."""
    if not map_path.is_file():
        return None
    recs = parse_map(map_path)
    by_name = {name: (stype, flags, size) for name, stype, flags, _, size in sections.values()}
    totals: dict[str, int] = {}
    for out_sec, _, size, _ in recs:
        if out_sec:
            totals[out_sec] = totals.get(out_sec, 0) + size
    for name, (_, _, size) in by_name.items():
        if name in totals and totals[name] != size:
            return None
    if not recs:
        return None
    flash = {"weights": 0, "kernels": 0, "model": 0}
    arena = 0
    for out_sec, in_sec, size, obj in recs:
        if out_sec not in by_name or in_sec == "*fill*":
            continue
        stype, flags, _ = by_name[out_sec]
        cat = _object_category(obj, in_sec)
        if stype != "SHT_NOBITS" and cat in flash:
            flash[cat] += size
        if flags & SHF_WRITE and cat == "arena":
            arena += size
    return flash, arena


def _board_beside(elf_path: Path):
    """The board of a `mcu-mot build` output directory (its build.json), if this ELF is one."""
    cfg = elf_path.parent / "build.json"
    try:
        data = json.loads(cfg.read_text())
        name, path = data.get("board"), data.get("board_file")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(path, str) and path.endswith(".toml") and Path(path).is_file():  # a board given by path
        try:
            return load_board(path)
        except MotError:
            pass
    return name if name in board_names() else None


def region_usage(segs, board) -> dict:
    """Per memory region: origin, length, used (first to last byte placed, as the linker
    counts), free, overflow (bytes past the end, 0 if it fits)."""
    ends: dict[str, int] = {}
    for vaddr, paddr, filesz, memsz, flags in segs:
        ranges = []
        if filesz:
            ranges.append((paddr, filesz))  # bytes programmed (load address)
        if flags & PF_W or vaddr != paddr:
            ranges.append((vaddr, memsz))  # bytes occupied at run time
        elif not filesz:
            ranges.append((vaddr, memsz))
        for start, size in ranges:
            r = board.region_of(start)
            if r is not None:
                ends[r.name] = max(ends.get(r.name, r.origin), start + size)
    out = {}
    for r in board.memory:
        used = ends.get(r.name, r.origin) - r.origin
        out[r.name] = {
            "use": r.use,
            "origin": r.origin,
            "length": r.length,
            "used": used,
            "free": max(0, r.length - used),
            "overflow": max(0, used - r.length),
        }
    return out


def overflows(rep: dict) -> list[tuple[str, dict]]:
    return [(name, r) for name, r in rep.get("regions", {}).items() if r["overflow"] > 0]


def fit_message(rep: dict, model: str = "model") -> str | None:
    """One line naming each overflowing region and by how much, or None if everything fits."""
    parts = []
    for name, r in overflows(rep):
        if r["use"] == "ram":
            f = rep["ram"]
            detail = f"arena {f['arena']} + stack {f['stack']} + heap {f['heap']} + static {f['static']} bytes"
            parts.append(f"RAM region '{name}' ({r['length']} bytes) overflows by {r['overflow']} bytes ({detail})")
        else:
            f = rep["flash"]
            detail = (
                f"weights {f['weights']} + kernels {f['kernels']} + model {f['model']} + runtime {f['runtime']} bytes"
            )
            parts.append(f"flash region '{name}' ({r['length']} bytes) overflows by {r['overflow']} bytes ({detail})")
    if not parts:
        return None
    return f"{model} does not fit {rep.get('board', 'the board')}: " + "; ".join(parts)


def print_size_report(rep: dict, console=None) -> None:
    """A rich table of the flash and RAM split (and the board's regions when known)."""

    console = console or Console()

    def pct(n, total):
        return f"{100.0 * n / total:5.1f} %" if total else "-"

    t = Table(title=f"{Path(rep['elf']).name}" + (f" on {rep['board']}" if rep.get("board") else ""))
    t.add_column("memory")
    t.add_column("part")
    t.add_column("bytes", justify="right")
    t.add_column("share", justify="right")
    for part in ("weights", "kernels", "model", "runtime"):
        t.add_row("flash", part, f"{rep['flash'][part]:,}", pct(rep["flash"][part], rep["flash_bytes"]))
    t.add_row("flash", "[b]total[/b]", f"[b]{rep['flash_bytes']:,}[/b]", "", end_section=True)
    for part in ("arena", "stack", "heap", "static"):
        t.add_row("RAM", part, f"{rep['ram'][part]:,}", pct(rep["ram"][part], rep["ram_bytes"]))
    t.add_row("RAM", "[b]total[/b]", f"[b]{rep['ram_bytes']:,}[/b]", "")
    console.print(t)
    if rep.get("regions"):
        r = Table(title="memory regions")
        for c in ("region", "use", "origin", "size", "used", "free", "fill"):
            r.add_column(c, justify="left" if c in ("region", "use") else "right")
        for name, g in rep["regions"].items():
            fill = pct(g["used"], g["length"])
            if g["overflow"]:
                fill = f"[red]overflow {g['overflow']:,}[/red]"
            r.add_row(
                name, g["use"], f"0x{g['origin']:08x}", f"{g['length']:,}", f"{g['used']:,}", f"{g['free']:,}", fill
            )
        console.print(r)
